//! Per-client-type framing over real loopback sockets: a classifier that
//! looks at the raw first unit, a framing per client type that takes over
//! without losing a byte, outbound framing that differs from inbound, over
//! TCP and UDP, and the start-up checks.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flexi_socket::{
    Classifier, ClientType, Connection, DisconnectReason, Error, FirstUnit, FlexiSocket, Framing,
    Message, PanicPolicy, Router, ServerBuilder,
};
use support::udp::UdpClient;
use support::{EventLog, Events, Running, read_exact, read_to_end, start};
use tokio::io::AsyncWriteExt;

/// Panels start with LF and end frames with CR; links start with a digit
/// and end lines with DC4; anything else is "other".
struct Device(&'static str);

impl Classifier for Device {
    fn classify(first_unit: &[u8]) -> Self {
        Device(match first_unit {
            [b'\n', ..] => "panel",
            [b'0'..=b'9', .., 0x14] => "link",
            _ => "other",
        })
    }

    fn client_type(&self) -> ClientType {
        self.0.into()
    }

    fn client_types() -> Option<Vec<ClientType>> {
        Some(vec!["panel".into(), "link".into(), "other".into()])
    }
}

/// Panels get `<frame>` back, links one ACK byte per line, others are
/// logged and closed; every event goes to the log.
fn device_router(events: &Events) -> Router {
    let (panel, other) = (events.clone(), events.clone());
    let (error, closed) = (events.clone(), events.clone());
    Router::new()
        .on_message_for("panel", move |conn: Connection, msg: Message| {
            let events = panel.clone();
            async move {
                events.push(format!(
                    "panel {:?}",
                    msg.as_bytes().escape_ascii().to_string()
                ));
                conn.send([b"<", msg.as_bytes(), b">"].concat()).await
            }
        })
        .on_message_for("link", |conn: Connection, _msg: Message| async move {
            conn.send(&b"\x06"[..]).await
        })
        .on_message_for("other", move |conn: Connection, msg: Message| {
            let events = other.clone();
            async move {
                events.push(format!(
                    "other {:?}",
                    msg.as_bytes().escape_ascii().to_string()
                ));
                conn.close();
            }
        })
        .on_error(move |_conn: Connection, failure: Error| {
            let events = error.clone();
            async move { events.push(format!("error {failure}")) }
        })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let events = closed.clone();
            async move { events.push(format!("closed: {reason}")) }
        })
}

fn devices<T>(builder: ServerBuilder<T>, events: &Events) -> ServerBuilder<T> {
    builder
        .classifier::<Device>()
        .classify_raw(FirstUnit::until_any(b"\r\x14").max_length(16))
        .framing_for("panel", Framing::separator("\r"))
        .framing_for("link", Framing::separator("\x14").outbound(Framing::raw()))
        .framing_for("other", Framing::raw())
        .router(device_router(events))
}

async fn device_server() -> (Running, EventLog) {
    let (events, log) = Events::new();
    let running = start(devices(FlexiSocket::server("127.0.0.1:0"), &events)).await;
    (running, log)
}

#[tokio::test]
async fn the_first_unit_sent_byte_by_byte_is_part_of_the_first_frame() {
    let (running, mut log) = device_server().await;
    let mut stream = running.connect().await;
    for byte in b"\nAB" {
        stream.write_all(&[*byte]).await.unwrap();
        stream.flush().await.unwrap();
    }
    stream.write_all(b"C\r\nDE\r").await.unwrap();
    let expected = b"<\nABC>\r<\nDE>\r";
    assert_eq!(read_exact(&mut stream, expected.len()).await, expected);
    assert_eq!(log.next().await, r#"panel "\\nABC""#);
    assert_eq!(log.next().await, r#"panel "\\nDE""#);
    running.stop().await;
}

#[tokio::test]
async fn a_unit_cut_at_its_limit_still_classifies_and_the_frame_stays_whole() {
    let (running, mut log) = device_server().await;
    let mut stream = running.connect().await;
    // 1 + 25 bytes before the CR: past the unit's 16-byte limit.
    let frame = format!("\n{}\r", "x".repeat(25));
    stream.write_all(frame.as_bytes()).await.unwrap();
    let reply = read_exact(&mut stream, frame.len() + 2).await;
    assert_eq!(
        reply,
        format!("<{}>\r", &frame[..frame.len() - 1]).as_bytes()
    );
    assert!(log.next().await.starts_with("panel"));
    running.stop().await;
}

#[tokio::test]
async fn outbound_framing_differs_from_inbound_one_bare_byte_per_line() {
    let (running, _log) = device_server().await;
    let mut stream = running.connect().await;
    stream.set_nodelay(true).unwrap();
    // Only the DC4 makes this unit a link's: cut any earlier, it would be "other".
    stream.write_all(b"1011").await.unwrap();
    stream.flush().await.unwrap();
    stream.write_all(b"    @    \x145 18\x14").await.unwrap();
    stream.write_all(b"3\x14").await.unwrap();
    stream.shutdown().await.unwrap();
    // Three lines, three ACK bytes, and no DC4 appended to any of them.
    assert_eq!(read_to_end(&mut stream).await, b"\x06\x06\x06");
    running.stop().await;
}

#[tokio::test]
async fn anything_else_is_classified_on_its_raw_bytes_and_gets_its_own_framing() {
    let (running, mut log) = device_server().await;
    let mut stream = running.connect().await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_to_end(&mut stream).await, b"");
    let event = log.next().await;
    assert!(event.starts_with(r#"other "GET / HTTP/1.1"#), "{event}");
    running.stop().await;
}

#[tokio::test]
async fn a_peer_closing_before_the_unit_ends_is_classified_on_what_it_sent() {
    let (running, mut log) = device_server().await;
    let mut stream = running.connect().await;
    stream.write_all(b"\nab").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut stream).await, b"");
    // Classified as a panel: its CR framing reports the unfinished frame.
    let event = log.next().await;
    assert!(
        event.starts_with("error discarded an incomplete frame: 3 bytes"),
        "{event}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_unit_that_never_ends_is_bounded_by_the_first_message_timeout() {
    let (events, mut log) = Events::new();
    let builder =
        FlexiSocket::server("127.0.0.1:0").first_message_timeout(Duration::from_millis(200));
    let running = start(devices(builder, &events)).await;
    let mut stream = running.connect().await;
    stream.write_all(b"\nabc").await.unwrap();
    assert_eq!(read_to_end(&mut stream).await, b"");
    assert_eq!(log.next().await, "closed: no first message in time");
    running.stop().await;
}

#[tokio::test]
async fn an_idle_gap_ends_a_short_first_unit() {
    let (events, mut log) = Events::new();
    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            .framing(Framing::idle_gap(Duration::from_millis(50)))
            .classifier::<Device>()
            .classify_raw(FirstUnit::first_bytes(8))
            .router(device_router(&events)),
    )
    .await;
    let mut stream = running.connect().await;
    stream.write_all(b"ab").await.unwrap();
    // Two bytes of the eight, then silence: the gap ends the unit.
    assert_eq!(read_to_end(&mut stream).await, b"");
    assert_eq!(log.next().await, r#"other "ab""#);
    running.stop().await;
}

#[tokio::test]
async fn the_frame_deadline_follows_the_framing_switched_to() {
    let (events, mut log) = Events::new();
    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            // raw() has no partial frames, so no frame deadline; a panel's framing has.
            .framing(Framing::raw())
            .frame_timeout(Duration::from_millis(200))
            .classifier::<Device>()
            .classify_raw(FirstUnit::first_bytes(1))
            .framing_for("panel", Framing::separator("\r"))
            .router(device_router(&events)),
    )
    .await;
    let mut stream = running.connect().await;
    stream.write_all(b"\nhalf a frame").await.unwrap();
    assert_eq!(read_to_end(&mut stream).await, b"");
    assert_eq!(log.next().await, "closed: frame not finished in time");
    running.stop().await;
}

/// Panics on units starting with `!`, counting its calls on them.
struct Fragile;

static FRAGILE_CALLS: AtomicUsize = AtomicUsize::new(0);

impl Classifier for Fragile {
    fn classify(first: &[u8]) -> Self {
        if first.starts_with(b"!") {
            FRAGILE_CALLS.fetch_add(1, Ordering::SeqCst);
            panic!("cannot classify {first:?}");
        }
        Fragile
    }
    fn client_type(&self) -> ClientType {
        "fine".into()
    }
}

#[tokio::test]
async fn a_classifier_that_panicked_on_the_raw_unit_is_not_asked_again() {
    let (events, mut log) = Events::new();
    let seen = events.clone();
    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            .on_panic(PanicPolicy::Continue)
            .classifier::<Fragile>()
            .classify_raw(FirstUnit::first_bytes(2))
            .router(
                Router::new()
                    .on_message(move |conn: Connection, msg: String| {
                        let events = seen.clone();
                        async move {
                            events.push(format!("{msg} as {:?}", conn.client_type()));
                        }
                    })
                    .on_error(move |_conn: Connection, error: Error| {
                        let events = events.clone();
                        async move { events.push(format!("error {error}")) }
                    }),
            ),
    )
    .await;
    let mut stream = running.connect().await;
    stream.write_all(b"!one\n!two\n").await.unwrap();
    let error = log.next().await;
    assert!(error.contains("panicked: cannot classify"), "{error}");
    // Unclassified for good: the lines go to the default handler, and the
    // classifier never sees the first line as a frame.
    assert_eq!(log.next().await, "!one as None");
    assert_eq!(log.next().await, "!two as None");
    assert_eq!(FRAGILE_CALLS.load(Ordering::SeqCst), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_codec_factory_that_panics_at_the_switch_closes_that_connection_only() {
    let (events, mut log) = Events::new();
    let broken = Framing::custom(|| -> tokio_util::codec::BytesCodec { panic!("no codec today") });
    let running =
        start(devices(FlexiSocket::server("127.0.0.1:0"), &events).framing_for("link", broken))
            .await;
    let mut link = running.connect().await;
    link.write_all(b"1011 @ \x14").await.unwrap();
    assert_eq!(read_to_end(&mut link).await, b"");
    let error = log.next().await;
    assert!(
        error.starts_with("error framing failed: the codec factory panicked: no codec today"),
        "{error}"
    );
    assert_eq!(log.next().await, "closed: framing failed");
    // The server goes on.
    let mut panel = running.connect().await;
    panel.write_all(b"\nok\r").await.unwrap();
    assert_eq!(read_exact(&mut panel, 6).await, b"<\nok>\r");
    running.stop().await;
}

/// The first line names the protocol of the rest.
struct Hello(&'static str);

impl Classifier for Hello {
    fn classify(first_frame: &[u8]) -> Self {
        Hello(if first_frame == b"BIN" {
            "binary"
        } else {
            "text"
        })
    }
    fn client_type(&self) -> ClientType {
        self.0.into()
    }
}

/// Lines until the hello classifies; "binary" clients then switch to
/// one-byte length prefixes. Every message is answered `<message>`.
fn hello_server<T>(builder: ServerBuilder<T>) -> ServerBuilder<T> {
    let echo = |conn: Connection, msg: Message| async move {
        conn.send([b"<", msg.as_bytes(), b">"].concat()).await
    };
    builder
        .classifier::<Hello>()
        .framing_for("binary", Framing::length_prefixed().prefix_len(1))
        .router(Router::new().on_message(echo))
}

#[tokio::test]
async fn framing_switches_after_the_first_frame_without_losing_the_rest_of_the_read() {
    let running = start(hello_server(FlexiSocket::server("127.0.0.1:0"))).await;
    let mut stream = running.connect().await;
    // The hello and two binary frames in one write: the bytes after the
    // hello were read with it, before the switch.
    stream.write_all(b"BIN\n\x03abc\x02de").await.unwrap();
    // Every reply, the first one included, is framed as binary.
    let expected = b"\x05<BIN>\x05<abc>\x04<de>";
    assert_eq!(read_exact(&mut stream, expected.len()).await, expected);
    let mut text = running.connect().await;
    text.write_all(b"hi\nthere\n").await.unwrap();
    let expected = b"<hi>\n<there>\n";
    assert_eq!(read_exact(&mut text, expected.len()).await, expected);
    running.stop().await;
}

#[tokio::test]
async fn over_udp_the_rest_of_the_classifying_datagram_is_the_client_types() {
    let running = start(hello_server(
        FlexiSocket::udp("127.0.0.1:0").framing(Framing::lines()),
    ))
    .await;
    let client = UdpClient::connect(running.addr).await;
    client.send(b"BIN\n\x03abc\x02de").await;
    for reply in [&b"\x05<BIN>"[..], b"\x05<abc>", b"\x04<de>"] {
        assert_eq!(client.recv().await, reply);
    }
    running.stop().await;
}

#[tokio::test]
async fn over_udp_the_first_datagram_classifies_and_the_framing_splits_datagrams() {
    let (events, _log) = Events::new();
    let running = start(devices(FlexiSocket::udp("127.0.0.1:0"), &events)).await;
    let panel = UdpClient::connect(running.addr).await;
    panel.send(b"\nA\r\nB\r").await;
    assert_eq!(panel.recv().await, b"<\nA>\r");
    assert_eq!(panel.recv().await, b"<\nB>\r");
    let link = UdpClient::connect(running.addr).await;
    link.send(b"1011 @ \x14").await;
    assert_eq!(link.recv().await, b"\x06");
    running.stop().await;
}

#[tokio::test]
async fn start_up_rejects_per_type_framing_without_a_classifier_or_for_an_unknown_type() {
    let router = || Router::new().on_message(|_c: Connection, _m: Message| async {});
    let without = FlexiSocket::server("127.0.0.1:0")
        .framing_for("panel", Framing::raw())
        .router(router())
        .bind()
        .await;
    assert!(
        matches!(
            without,
            Err(Error::NoClassifierFor {
                method: "framing_for"
            })
        ),
        "{without:?}"
    );
    let raw_without = FlexiSocket::server("127.0.0.1:0")
        .classify_raw(FirstUnit::first_bytes(1))
        .router(router())
        .bind()
        .await;
    assert!(
        matches!(
            raw_without,
            Err(Error::NoClassifierFor {
                method: "classify_raw"
            })
        ),
        "{raw_without:?}"
    );
    let too_long = FlexiSocket::server("127.0.0.1:0")
        .classifier::<Device>()
        .classify_raw(FirstUnit::first_bytes(100))
        .first_message_max_length(64)
        .router(router())
        .bind()
        .await;
    assert!(
        matches!(
            too_long,
            Err(Error::FirstUnitOverCap { unit: 100, cap: 64 })
        ),
        "{too_long:?}"
    );
    let unknown = FlexiSocket::server("127.0.0.1:0")
        .classifier::<Device>()
        .framing_for("pannel", Framing::raw())
        .router(router())
        .bind()
        .await;
    let Err(error) = unknown else {
        panic!("a framing for an unknown client type was accepted")
    };
    assert!(matches!(error, Error::UnknownFramingClientType { .. }));
    assert_eq!(
        error.to_string(),
        "`.framing_for(\"pannel\", ..)` names a client type the classifier never produces \
         (it produces: panel, link, other); fix the client type or the classifier"
    );
}
