//! An alarm receiver: SIA DC-09 panels (TCP, or UDP with `--udp`) and
//! Sur-Gard MLR2-style automation links on one port, told apart by their
//! first bytes. Every accepted event is one line on stdout (`--json` for JSON
//! lines); every frame is answered and the connection stays open.
//! `--key ACCOUNT=HEX` (repeatable; 32, 48 or 64 hex digits) serves an
//! account with DC-09's AES encryption, and with it only.
//!
//! ```text
//! cargo run --example alarm_receiver -- 127.0.0.1:9000 --accounts 1234,ABC
//! cargo run --example alarm_panel -- 127.0.0.1:9000 --account 1234
//! cargo run --example alarm_receiver -- 127.0.0.1:9000 --key 5678=000102030405060708090A0B0C0D0E0F
//! cargo run --example alarm_panel -- 127.0.0.1:9000 --account 5678 --key 000102030405060708090A0B0C0D0E0F
//! printf '1011           @    \024' | nc -q 1 127.0.0.1 9000 | xxd   # Sur-Gard heartbeat: 06
//! ```
//!
//! The first unit a client sends (up to CR or DC4, at most 64 bytes) decides:
//!
//! | first unit | client type | framing |
//! |---|---|---|
//! | starts with LF | `dc09` | LF ... CR, at most 4105 bytes |
//! | 8 hex digits and `"` (a DC-09 frame that lost its LF) | `dc09` | the same: it gets a NAK |
//! | a digit ... DC4 | `surgard` | ... DC4 in, one bare byte out |
//! | anything else (HTTP, a TLS hello, binary) | `unknown` | closed without a reply |
//!
//! A stranger is told by its first bytes: one that starts with neither LF, a
//! digit nor the hex digits of a frame that lost its LF is closed as soon as
//! they arrive, without waiting for its unit to end.
//!
//! The checks of a DC-09 frame and their replies are in `alarm/verdict.rs`,
//! the encryption in `alarm/encryption.rs`, the Sur-Gard lines in
//! `alarm/surgard.rs`.

#[path = "alarm/dc09.rs"]
mod dc09;
#[path = "alarm/encryption.rs"]
mod encryption;
#[path = "alarm/event.rs"]
mod event;
#[path = "alarm/surgard.rs"]
mod surgard;
#[path = "alarm/verdict.rs"]
mod verdict;

use std::process::ExitCode;
use std::sync::Arc;

use flexi_socket::{
    Classifier, ClientType, Connection, Error, FirstUnit, FlexiSocket, Framing, LogRate,
    LogVerdict, Message, ServerBuilder, State, after_receive, before_send, on_error, on_message,
};

use encryption::Key;
use event::Event;
use verdict::{Accounts, Verdict};

const USAGE: &str = "usage: alarm_receiver <listen address> [--accounts 1234,ABC] \
                     [--key ACCOUNT=HEX]... [--udp] [--json]";

/// What a client is, from the first bytes it sends.
enum Device {
    Dc09,
    SurGard,
    Unknown,
}

impl Classifier for Device {
    fn classify(first_unit: &[u8]) -> Self {
        let lost_lf = first_unit.len() > 8
            && first_unit[..8].iter().all(u8::is_ascii_hexdigit)
            && first_unit[8] == b'"';
        match first_unit {
            [dc09::LF, ..] => Self::Dc09,
            [b'0'..=b'9', .., 0x14] => Self::SurGard,
            _ if lost_lf => Self::Dc09,
            _ => Self::Unknown,
        }
    }

    /// A stranger (a TLS hello, an HTTP request, binary) is told by its first
    /// bytes: closed at once instead of when its unit would end.
    fn classify_early(first_bytes: &[u8]) -> Option<Self> {
        // Up to 8 hex digits, then `"`: may still be a DC-09 frame that lost its LF.
        let may_have_lost_lf = first_bytes.iter().take(8).all(u8::is_ascii_hexdigit)
            && first_bytes.get(8).is_none_or(|&byte| byte == b'"');
        match first_bytes {
            [dc09::LF, ..] => Some(Self::Dc09),
            // A Sur-Gard line's DC4 may still come.
            [b'0'..=b'9', ..] => None,
            _ if may_have_lost_lf => None,
            _ => Some(Self::Unknown),
        }
    }

    fn client_type(&self) -> ClientType {
        match self {
            Self::Dc09 => "dc09".into(),
            Self::SurGard => "surgard".into(),
            Self::Unknown => "unknown".into(),
        }
    }

    fn client_types() -> Option<Vec<ClientType>> {
        Some(vec!["dc09".into(), "surgard".into(), "unknown".into()])
    }
}

/// Shared with every handler: whom we serve and how we print.
#[derive(Clone)]
struct Receiver {
    accounts: Arc<Accounts>,
    json: bool,
}

impl Receiver {
    fn print(&self, event: Event, conn: &Connection) {
        let event = event.with("peer", conn.peer_addr().to_string());
        if self.json {
            println!("{}", event.json_line());
        } else {
            println!("{}", event.text_line());
        }
    }
}

/// A frame is what follows its last LF: bytes before it are line noise or
/// a frame the panel abandoned and restarted. Without an LF nothing is
/// left, which the checks answer with a NAK.
#[after_receive(client_type = "dc09")]
async fn frame_start(msg: Message) -> Message {
    let start = msg
        .iter()
        .rposition(|&b| b == dc09::LF)
        .map_or(msg.len(), |lf| lf + 1);
    Message::new(msg.into_bytes().slice(start..))
}

/// LF, CRC and length around every reply body; the framing adds the CR.
#[before_send(client_type = "dc09")]
async fn envelope(body: Message) -> Message {
    Message::new(dc09::seal(&body))
}

#[on_message(client_type = "dc09")]
async fn dc09_frame(
    conn: Connection,
    frame: &[u8],
    receiver: State<Receiver>,
) -> flexi_socket::Result<()> {
    let now = dc09::unix_now();
    let verdict = verdict::judge(frame, &receiver.accounts, now);
    match &verdict {
        Verdict::Ack(accepted) => receiver.print(accepted.event(), &conn),
        Verdict::Nak(why) => log_refusal(&conn, "NAK", why),
        Verdict::Duh { why, .. } => log_refusal(&conn, "DUH", why),
    }
    conn.send(verdict.reply(now)).await
}

#[on_message(client_type = "surgard")]
async fn surgard_line(
    conn: Connection,
    line: &[u8],
    receiver: State<Receiver>,
) -> flexi_socket::Result<()> {
    let reply = match surgard::Line::parse(line) {
        Some(line) => {
            receiver.print(line.event(), &conn);
            surgard::ACK
        }
        None => {
            log_refusal(&conn, "NAK", "unknown Sur-Gard line");
            surgard::NAK
        }
    };
    conn.send(vec![reply]).await
}

/// Neither protocol: not worth a reply.
#[on_message(client_type = "unknown")]
async fn stranger(conn: Connection, first: &[u8]) {
    if let LogVerdict::Log { suppressed } = STRANGER_LOG.admit() {
        if suppressed > 0 {
            tracing::info!("{suppressed} more strangers were closed without a line");
        }
        tracing::info!(peer = %conn.peer_addr(), bytes = first.len(), "not an alarm device: closing");
    }
    conn.close();
}

/// What a peer controls is logged within a rate: one sending garbage as fast
/// as it can gets ten lines a second, not one per frame (the framework logs
/// its own connection errors the same way).
static REFUSAL_LOG: LogRate = LogRate::per_second(10);
static STRANGER_LOG: LogRate = LogRate::per_second(10);
static ERROR_LOG: LogRate = LogRate::per_second(10);

/// A NAK or DUH, and why.
fn log_refusal(conn: &Connection, reply: &str, why: impl std::fmt::Display) {
    if let LogVerdict::Log { suppressed } = REFUSAL_LOG.admit() {
        if suppressed > 0 {
            tracing::info!("{suppressed} more NAK/DUH lines were not logged in the last second");
        }
        tracing::info!(peer = %conn.peer_addr(), "{reply}: {why}");
    }
}

#[on_error]
async fn trouble(conn: Connection, error: Error) {
    if let LogVerdict::Log { suppressed } = ERROR_LOG.admit() {
        if suppressed > 0 {
            tracing::warn!(
                "{suppressed} more connection errors were not logged in the last second"
            );
        }
        tracing::warn!(peer = %conn.peer_addr(), "{error}");
    }
    // No end byte within the longest legitimate frame: garbage, not a device.
    if matches!(error, Error::FrameTooLarge { .. }) {
        conn.close();
    }
}

struct Options {
    addr: String,
    accounts: Accounts,
    udp: bool,
    json: bool,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut addr = None;
    let mut accounts = Accounts::default();
    let (mut udp, mut json) = (false, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--accounts" => {
                let list = args.next().ok_or("--accounts needs a list")?;
                accounts.add_list(&list);
            }
            "--key" => {
                let pair = args.next().ok_or("--key needs ACCOUNT=HEX")?;
                let (account, hex) = pair.split_once('=').ok_or("--key needs ACCOUNT=HEX")?;
                let key =
                    Key::from_hex(hex).map_err(|problem| format!("--key {account}: {problem}"))?;
                accounts.add_key(account, key);
            }
            "--udp" => udp = true,
            "--json" => json = true,
            _ if arg.starts_with("--") || addr.is_some() => {
                return Err(format!("unexpected argument {arg:?}"));
            }
            _ => addr = Some(arg),
        }
    }
    if accounts.is_empty() {
        return Err("no account: give --accounts or --key".into());
    }
    Ok(Options {
        addr: addr.ok_or("the listen address is missing")?,
        accounts,
        udp,
        json,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let options = match options() {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("{problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options) -> flexi_socket::Result<()> {
    // The same receiver over either transport: each builder keeps its own
    // transport's settings, so the choice is made here, not at run time.
    let server = if options.udp {
        receiver(FlexiSocket::udp(&options.addr), options)
            .bind()
            .await?
    } else {
        receiver(FlexiSocket::server(&options.addr), options)
            .bind()
            .await?
    };
    println!("listening on {}", server.local_addr());
    server.serve().await?;
    Ok(())
}

/// The receiver's classification, per-type framing and state, on either transport.
fn receiver<T>(builder: ServerBuilder<T>, options: Options) -> ServerBuilder<T> {
    builder
        .classifier::<Device>()
        .classify_raw(FirstUnit::until_any(b"\r\x14").max_length(64))
        .framing_for(
            "dc09",
            Framing::separator("\r").max_length(dc09::MAX_FRAME - 1),
        )
        .framing_for(
            "surgard",
            Framing::separator("\x14")
                .max_length(256)
                .outbound(Framing::raw()),
        )
        .framing_for("unknown", Framing::raw())
        .state(Receiver {
            accounts: Arc::new(options.accounts),
            json: options.json,
        })
}
