//! A classifier that decides on the first bytes (`Classifier::classify_early`)
//! classifies the connection before its first frame is complete: a stranger
//! whose first bytes rule out every protocol is closed at once, over TCP,
//! TLS, Unix sockets and UDP, long before the first-message timeout. The timeout is set
//! to a minute and every wait here is a few seconds, so these tests fail if
//! the early decision is missing.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flexi_socket::{
    Classifier, Connection, DisconnectReason, FirstUnit, FlexiSocket, Framing, Message, Router,
    ServerBuilder, ServerTransport, TlsServerConfig,
};
use support::tls::server_identity;
use support::udp::UdpClient;
use support::{EventLog, Events, start, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// What an unanswered stranger would otherwise cost: this long open.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stranger may stay open in these tests.
const PROMPTLY: Duration = Duration::from_secs(5);

/// Devices greet with "HELLO "; nothing else is one.
#[derive(Classifier, Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    #[client_type = "device"]
    #[classify(prefix = "HELLO ")]
    Device,
    #[client_type = "stranger"]
    #[classify(default)]
    Stranger,
}

/// Devices get their frames echoed; a stranger is reported with the bytes
/// it sent and closed.
fn router(events: &Events) -> Router {
    let (strangers, disconnects) = (events.clone(), events.clone());
    Router::new()
        .on_message_for("device", |conn: Connection, msg: Message| async move {
            conn.send(msg).await
        })
        .on_message_for("stranger", move |conn: Connection, first: Message| {
            let events = strangers.clone();
            async move {
                events.push(format!("stranger {:?}", first.as_bytes()));
                conn.close();
            }
        })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let events = disconnects.clone();
            async move { events.push(format!("disconnect {reason}")) }
        })
}

/// Line framing, the classifier above, and raw framing for strangers: once
/// their first bytes classify them, what they sent is delivered at once.
fn classified<T: ServerTransport>(builder: ServerBuilder<T>, events: &Events) -> ServerBuilder<T> {
    builder
        .framing(Framing::lines())
        .classifier::<Peer>()
        .framing_for("stranger", Framing::raw())
        .first_message_timeout(FIRST_MESSAGE_TIMEOUT)
        .router(router(events))
}

fn tcp_server(events: &Events) -> ServerBuilder {
    classified(FlexiSocket::server("127.0.0.1:0"), events)
}

/// Reads until the server closes, which must come [`PROMPTLY`].
async fn closed_promptly(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut reply = Vec::new();
    tokio::time::timeout(PROMPTLY, stream.read_to_end(&mut reply))
        .await
        .expect("the stranger is closed at once, not at the first-message timeout")
        .expect("read");
    reply
}

async fn write(stream: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) {
    within("write", stream.write_all(bytes)).await.unwrap();
    within("flush", stream.flush()).await.unwrap();
}

/// The stranger's report and its disconnect, in order.
async fn stranger_closed(events: &mut EventLog, sent: &[u8]) {
    assert_eq!(events.next().await, format!("stranger {sent:?}"));
    assert!(events.next().await.starts_with("disconnect"));
}

#[tokio::test]
async fn a_tls_hello_to_a_plain_server_is_closed_on_its_first_bytes() {
    let (events, mut log) = Events::new();
    let running = start(tcp_server(&events)).await;
    let mut stream = running.connect().await;
    // The start of a ClientHello: record type 0x16, TLS 1.0, no line end.
    let hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03";
    write(&mut stream, hello).await;
    assert_eq!(closed_promptly(&mut stream).await, b"");
    stranger_closed(&mut log, hello).await;
    drop(stream);
    running.stop().await;
}

#[tokio::test]
async fn a_device_decided_early_still_gets_its_whole_first_frame() {
    let (events, _log) = Events::new();
    let running = start(tcp_server(&events)).await;
    let mut stream = running.connect().await;
    // "HELLO " settles the type; the first frame still ends at its newline.
    write(&mut stream, b"HELLO ").await;
    write(&mut stream, b"wor").await;
    write(&mut stream, b"ld\n").await;
    let mut echo = [0; 12];
    within("the echo", stream.read_exact(&mut echo))
        .await
        .unwrap();
    assert_eq!(&echo, b"HELLO world\n");
    drop(stream);
    running.stop().await;
}

#[tokio::test]
async fn bytes_that_may_still_become_a_device_are_not_decided() {
    let (events, _log) = Events::new();
    let running = start(tcp_server(&events)).await;
    let mut stream = running.connect().await;
    // "HE" may become "HELLO ": no decision, so no stranger.
    write(&mut stream, b"HE").await;
    write(&mut stream, b"LLO x\n").await;
    let mut echo = [0; 8];
    within("the echo", stream.read_exact(&mut echo))
        .await
        .unwrap();
    assert_eq!(&echo, b"HELLO x\n");
    drop(stream);
    running.stop().await;
}

#[tokio::test]
async fn an_unfinished_raw_first_unit_is_decided_on_its_first_bytes() {
    let (events, mut log) = Events::new();
    let builder = tcp_server(&events).classify_raw(FirstUnit::until_any(b"\n").max_length(64));
    let running = start(builder).await;
    let mut stream = running.connect().await;
    // A request line without its end: the unit would wait for "\n" or 64 bytes.
    write(&mut stream, b"GET / HTTP/1.1").await;
    assert_eq!(closed_promptly(&mut stream).await, b"");
    stranger_closed(&mut log, b"GET / HTTP/1.1").await;

    // Devices are classified by the raw unit as before.
    let mut device = running.connect().await;
    write(&mut device, b"HELLO raw\n").await;
    let mut echo = [0; 10];
    within("the echo", device.read_exact(&mut echo))
        .await
        .unwrap();
    assert_eq!(&echo, b"HELLO raw\n");
    drop((stream, device));
    running.stop().await;
}

#[tokio::test]
async fn over_tls_the_decision_uses_the_decrypted_bytes() {
    let (events, mut log) = Events::new();
    let identity = server_identity();
    let tls = TlsServerConfig::from_pem(&identity.cert_pem, &identity.key_pem).unwrap();
    let running = start(tcp_server(&events).tls(tls)).await;
    let config = support::tls::client_config(&identity.cert_pem, None);
    let tcp = running.connect().await;
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = within(
        "TLS handshake",
        TlsConnector::from(Arc::clone(&config)).connect(name, tcp),
    )
    .await
    .unwrap();
    let junk = b"\x00\x01\x02binary";
    write(&mut stream, junk).await;
    // The server closes (with or without close_notify): no reply either way.
    let mut reply = Vec::new();
    let read = tokio::time::timeout(PROMPTLY, stream.read_to_end(&mut reply))
        .await
        .expect("the stranger is closed at once, not at the first-message timeout");
    assert!(reply.is_empty(), "{read:?} {reply:?}");
    stranger_closed(&mut log, junk).await;
    drop(stream);
    running.stop().await;
}

#[tokio::test]
async fn over_a_unix_socket_as_over_tcp() {
    let (events, mut log) = Events::new();
    let dir = std::env::temp_dir().join(format!("flexi-early-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server.sock");
    let builder = classified(
        FlexiSocket::server(format!("unix:{}", path.display())),
        &events,
    );
    let server = builder.bind().await.expect("server should start");
    let handle = server.handle();
    let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));
    let mut stream = within("connect", UnixStream::connect(&path)).await.unwrap();
    write(&mut stream, b"\x00junk").await;
    assert_eq!(closed_promptly(&mut stream).await, b"");
    stranger_closed(&mut log, b"\x00junk").await;
    drop(stream);
    handle.shutdown();
    within("server shutdown", serving)
        .await
        .expect("server task panicked")
        .expect("server failed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn over_udp_an_unfinished_frame_in_a_junk_datagram_is_decided_at_once() {
    let (events, mut log) = Events::new();
    let running = start(classified(FlexiSocket::udp("127.0.0.1:0"), &events)).await;
    let client = UdpClient::connect(running.addr).await;
    // No line end: without an early decision the datagram is a truncated
    // frame, reported and never classified.
    client.send(b"\x16\x03\x01junk").await;
    tokio::time::timeout(PROMPTLY, stranger_closed(&mut log, b"\x16\x03\x01junk"))
        .await
        .expect("the junk datagram is decided at once");

    // A device's datagram is a frame as before.
    let device = UdpClient::connect(running.addr).await;
    device.send(b"HELLO udp\n").await;
    assert_eq!(device.recv().await, b"HELLO udp\n");
    running.stop().await;
}

/// The longest first bytes [`Watcher::classify_early`] was shown.
static LONGEST_LOOK: AtomicUsize = AtomicUsize::new(0);
/// How many times it was shown 512 bytes, the most it may be shown.
static LOOKS_AT_THE_BOUND: AtomicUsize = AtomicUsize::new(0);

/// A classifier that never decides early, and notes what it was shown.
enum Watcher {
    Device,
}

impl Classifier for Watcher {
    fn classify(_first_frame: &[u8]) -> Self {
        Watcher::Device
    }
    fn classify_early(first_bytes: &[u8]) -> Option<Self> {
        LONGEST_LOOK.fetch_max(first_bytes.len(), Ordering::Relaxed);
        if first_bytes.len() == 512 {
            LOOKS_AT_THE_BOUND.fetch_add(1, Ordering::Relaxed);
        }
        None
    }
    fn client_type(&self) -> flexi_socket::ClientType {
        "device".into()
    }
}

/// Trickles a 4 KiB first line to a server classified by [`Watcher`], and
/// more of it after the classifier's last look; the line still reaches its
/// handler whole.
async fn trickle_a_long_first_line(builder: ServerBuilder) {
    LONGEST_LOOK.store(0, Ordering::Relaxed);
    LOOKS_AT_THE_BOUND.store(0, Ordering::Relaxed);
    let running = start(
        builder
            .framing(Framing::lines())
            .classifier::<Watcher>()
            .first_message_timeout(FIRST_MESSAGE_TIMEOUT)
            .router(
                Router::new()
                    .on_message_for("device", |conn: Connection, msg: Message| async move {
                        conn.send(msg).await
                    }),
            ),
    )
    .await;
    let mut stream = running.connect().await;
    // None of these pieces settles anything.
    let line: Vec<u8> = (0..4096).map(|i| b'a' + (i % 26) as u8).collect();
    let (before, after) = line.split_at(3840);
    for piece in before.chunks(64) {
        write(&mut stream, piece).await;
    }
    support::eventually("the classifier's last early look", || {
        LONGEST_LOOK.load(Ordering::Relaxed) >= 512
    })
    .await;
    // Reads after the last look: none may look again.
    for piece in after.chunks(64) {
        write(&mut stream, piece).await;
    }
    write(&mut stream, b"\n").await;
    let mut echo = vec![0; line.len() + 1];
    within("the echo", stream.read_exact(&mut echo))
        .await
        .unwrap();
    assert_eq!(&echo[..line.len()], &line[..]);
    assert_eq!(LONGEST_LOOK.load(Ordering::Relaxed), 512);
    assert_eq!(
        LOOKS_AT_THE_BOUND.load(Ordering::Relaxed),
        1,
        "one last look at 512 bytes, then the whole unit decides"
    );
    drop(stream);
    running.stop().await;
}

/// The statics above are this one test's: a frame, then a raw first unit.
#[tokio::test]
async fn a_long_first_frame_or_raw_unit_is_shown_early_once_up_to_512_bytes() {
    trickle_a_long_first_line(FlexiSocket::server("127.0.0.1:0")).await;
    trickle_a_long_first_line(
        FlexiSocket::server("127.0.0.1:0")
            .classify_raw(FirstUnit::until_any(b"\n").max_length(8192)),
    )
    .await;
}
