//! SIA DC-09 for the alarm receiver's tests, written apart from the
//! example's code so that the tests check it instead of mirroring it: frames
//! sealed with the crate's CRC helper, UTC timestamps from a plain count of
//! days, a TCP peer that reads CR-ended replies or single bytes, the two
//! examples as processes, and a receiver played by the test for the panel.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use flexi_socket::checksum::Checksum;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command};

use super::example::{ExampleServer, example_path};
use super::{LineClient, within};

/// LF, CRC, length, `body`, CR: a frame as a panel sends it.
pub fn frame(body: &str) -> Vec<u8> {
    let crc = Checksum::Crc16Arc.to_hex(body.as_bytes());
    frame_with(&crc, &format!("{:04X}", body.len()), body)
}

/// A frame with the CRC and length fields given as they are, right or not.
pub fn frame_with(crc: &str, length: &str, body: &str) -> Vec<u8> {
    format!("\n{crc}{length}{body}\r").into_bytes()
}

/// The body of a reply frame (LF, CRC, length, body, CR), checked.
pub fn open(reply: &[u8]) -> String {
    let text = std::str::from_utf8(reply).expect("a reply is ASCII");
    let inner = text
        .strip_prefix('\n')
        .and_then(|rest| rest.strip_suffix('\r'))
        .unwrap_or_else(|| panic!("reply {text:?} is not LF ... CR"));
    assert!(inner.len() >= 8, "reply {text:?} is too short");
    let (crc, rest) = inner.split_at(4);
    let (length, body) = rest.split_at(4);
    assert_eq!(
        crc,
        Checksum::Crc16Arc.to_hex(body.as_bytes()),
        "CRC of reply {text:?}"
    );
    assert_eq!(
        length,
        format!("{:04X}", body.len()),
        "length of reply {text:?}"
    );
    body.to_owned()
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// `_HH:MM:SS,MM-DD-YYYY` in UTC, by counting whole years and months from
/// 1970 (slow and obvious, unlike the example's arithmetic).
pub fn timestamp(unix: i64) -> String {
    assert!(unix >= 0, "timestamps before 1970 are not needed here");
    let (mut days, seconds) = (unix / 86_400, unix % 86_400);
    let leap = |year: i64| (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let mut year = 1970;
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 1;
    for length in lengths {
        if days < length {
            break;
        }
        days -= length;
        month += 1;
    }
    format!(
        "_{:02}:{:02}:{:02},{month:02}-{:02}-{year}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        days + 1
    )
}

/// A TCP peer of the receiver: a panel or an automation link.
pub struct Peer {
    pub client: LineClient,
}

impl Peer {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            client: LineClient::connect(addr).await,
        }
    }

    /// The address the receiver sees.
    pub fn addr(&self) -> SocketAddr {
        self.client.writer.local_addr().unwrap()
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.client.send_raw(bytes).await;
    }

    /// The body of the next reply frame.
    pub async fn reply(&mut self) -> String {
        let mut reply = Vec::new();
        let read = within(
            "a reply frame",
            self.client.reader.read_until(b'\r', &mut reply),
        )
        .await
        .expect("read");
        assert!(
            read > 0,
            "the receiver closed the connection instead of replying"
        );
        open(&reply)
    }

    /// Sends a frame of `body` and returns the reply's body.
    pub async fn ask(&mut self, body: &str) -> String {
        self.send(&frame(body)).await;
        self.reply().await
    }

    /// The next single byte (a Sur-Gard reply).
    pub async fn byte(&mut self) -> u8 {
        within("a reply byte", self.client.reader.read_u8())
            .await
            .expect("a reply byte, not the end of the connection")
    }

    /// Waits until the receiver closes the connection and checks that it
    /// sent nothing. A reset counts as closed: the receiver may close with
    /// our bytes still unread.
    pub async fn closed_without_reply(&mut self) {
        let mut received = Vec::new();
        let mut chunk = [0; 1024];
        within("the receiver to close", async {
            loop {
                match self.client.reader.read(&mut chunk).await {
                    Ok(0) => break,
                    Ok(n) => received.extend_from_slice(&chunk[..n]),
                    Err(error) if error.kind() == ErrorKind::ConnectionReset => break,
                    Err(error) => panic!("read: {error}"),
                }
            }
        })
        .await;
        assert!(received.is_empty(), "expected no reply, got {received:?}");
    }
}

/// The receiver on 127.0.0.1:0, knowing accounts 1234 and ABC, with a
/// database of its own in a temporary directory.
pub async fn receiver(extra: &[&str]) -> ExampleServer {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let db = scratch.path().join("alarm-events.db");
    let mut server = ExampleServer::start_command(
        receiver_command(&db, &["--accounts", "1234,ABC"]).args(extra),
        "alarm_receiver",
    )
    .await;
    server.scratch = Some(scratch);
    server
}

/// The receiver on 127.0.0.1:0 with `args`, storing its events in `db`.
pub fn receiver_command(db: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(example_path("alarm_receiver"));
    command.arg("127.0.0.1:0").arg("--db").arg(db).args(args);
    command
}

/// The next line the receiver printed, without its newline.
pub async fn printed(server: &mut ExampleServer) -> String {
    let mut line = String::new();
    within("a printed event", server.stdout.read_line(&mut line))
        .await
        .expect("read the receiver's stdout");
    assert!(
        line.ends_with('\n'),
        "the receiver's stdout ended: {line:?}"
    );
    line.pop();
    line
}

/// `reply` is a NAK stamped with the receiver's time, which is ours.
pub fn assert_nak(reply: &str, what: &str) {
    let ours = now();
    let stamp = reply
        .strip_prefix("\"NAK\"0000R0L0A0[]")
        .unwrap_or_else(|| panic!("{what}: expected a NAK, got {reply:?}"));
    assert!(
        (ours - 3..=ours + 1).any(|t| timestamp(t) == stamp),
        "{what}: NAK time {stamp:?}, our time {}",
        timestamp(ours)
    );
}

/// The panel example with `args`, its stdout piped.
pub fn panel_command(args: &[&str]) -> Command {
    let mut command = Command::new(example_path("alarm_panel"));
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

pub async fn run_panel(args: &[&str]) -> (Output, String) {
    let output = within("the panel to finish", panel_command(args).output())
        .await
        .expect("the panel runs");
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    (output, stdout)
}

pub async fn finish_panel(panel: Child) -> (Output, String) {
    let output = within("the panel to finish", panel.wait_with_output())
        .await
        .expect("the panel runs");
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    (output, stdout)
}

/// A receiver played by the test: accepts the panel and reads its frames.
pub struct FakeReceiver {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl FakeReceiver {
    pub async fn accept(listener: &TcpListener) -> Self {
        let (stream, _) = within("the panel to connect", listener.accept())
            .await
            .unwrap();
        let (reader, writer) = stream.into_split();
        Self {
            reader: BufReader::new(reader),
            writer,
        }
    }

    /// The body of the panel's next frame, checked.
    pub async fn frame(&mut self) -> String {
        let mut bytes = Vec::new();
        within(
            "a frame from the panel",
            self.reader.read_until(b'\r', &mut bytes),
        )
        .await
        .unwrap();
        open(&bytes)
    }

    pub async fn reply(&mut self, body: &str) {
        within("write", self.writer.write_all(&frame(body)))
            .await
            .unwrap();
    }
}

/// Splits a panel's body into everything before its timestamp and the time.
pub fn split_time(body: &str) -> (&str, &str) {
    assert!(body.len() > 20, "{body:?} has no timestamp");
    body.split_at(body.len() - 20)
}
