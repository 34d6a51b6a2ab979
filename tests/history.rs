//! A connection's message history: the last N messages in and out, each as
//! it came and as the handler saw it (or as sent and as written), bounded
//! in bytes, available in on_disconnect after a reset, per client type, and
//! nothing at all when off.

mod support;

use flexi_socket::testing::TestServer;
use flexi_socket::{
    Classifier, ClientType, Connection, Direction, DisconnectReason, FlexiSocket, Framing, Message,
    Router,
};
use support::{start, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Strips a leading `!` (and drops `drop`), echoes, and wraps replies in `<>`.
fn filtering_echo() -> Router {
    Router::new()
        .after_receive(|_conn: Connection, msg: Message| async move {
            let text = String::from_utf8_lossy(&msg).into_owned();
            (text != "drop").then(|| Message::from(text.trim_start_matches('!').to_owned()))
        })
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await })
        .before_send(|_conn: Connection, msg: Message| async move {
            Some(Message::from(format!(
                "<{}>",
                String::from_utf8_lossy(&msg)
            )))
        })
}

fn forms(conn: &Connection) -> Vec<(Direction, String, Option<String>)> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    conn.history()
        .entries()
        .iter()
        .map(|entry| {
            (
                entry.direction(),
                text(entry.raw()),
                entry.processed().map(text),
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_last_messages_are_kept_in_order_with_both_forms() {
    let server = TestServer::start(
        FlexiSocket::server("in memory")
            .router(filtering_echo())
            .history(5, 4096),
    )
    .unwrap();
    let mut peer = server.connect().await;
    for message in ["!a", "!b", "drop", "!c"] {
        peer.send(message).await.unwrap();
    }
    assert_eq!(peer.receive_str().await.unwrap(), "<a>");
    assert_eq!(peer.receive_str().await.unwrap(), "<b>");
    assert_eq!(peer.receive_str().await.unwrap(), "<c>");
    let conn = peer.connection().await.unwrap();
    let some = |text: &str| Some(text.to_owned());
    let expected = [
        (Direction::Inbound, "!b".to_owned(), some("b")),
        (Direction::Outbound, "b".to_owned(), some("<b>")),
        (Direction::Inbound, "drop".to_owned(), None),
        (Direction::Inbound, "!c".to_owned(), some("c")),
        (Direction::Outbound, "c".to_owned(), some("<c>")),
    ];
    assert_eq!(forms(&conn), expected);
    let shown = conn.history().to_string();
    assert!(shown.contains("<- \"!c\" => \"c\""), "{shown}");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_byte_bound_holds_against_large_frames() {
    let server = TestServer::start(
        FlexiSocket::server("in memory")
            .router(filtering_echo())
            .history(100, 4096),
    )
    .unwrap();
    let mut peer = server.connect().await;
    let large = "x".repeat(3000);
    for _ in 0..10 {
        peer.send(&large).await.unwrap();
        assert_eq!(peer.receive().await.unwrap().len(), 3002);
    }
    let history = peer.connection().await.unwrap().history();
    let kept: usize = history
        .entries()
        .iter()
        .map(|entry| entry.raw().len() + entry.processed().map_or(0, <[u8]>::len))
        .sum();
    assert!(kept <= 4096, "{kept} bytes kept");
    let last = history.entries().last().unwrap();
    assert!(last.is_truncated(), "a message over the bound is cut to it");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn nothing_is_recorded_when_history_is_off() {
    let server =
        TestServer::start(FlexiSocket::server("in memory").router(filtering_echo())).unwrap();
    let mut peer = server.connect().await;
    peer.send("!a").await.unwrap();
    assert_eq!(peer.receive_str().await.unwrap(), "<a>");
    assert!(peer.connection().await.unwrap().history().is_empty());
    server.shutdown().await;
}

/// "001" for `!!`, anything else "other".
struct Panel(bool);

impl Classifier for Panel {
    fn classify(first_frame: &[u8]) -> Self {
        Panel(first_frame.starts_with(b"!!"))
    }

    fn client_type(&self) -> ClientType {
        if self.0 { "001".into() } else { "other".into() }
    }

    fn client_types() -> Option<Vec<ClientType>> {
        Some(vec!["001".into(), "other".into()])
    }
}

#[tokio::test(start_paused = true)]
async fn history_for_one_client_type_only() {
    let echo = Router::new()
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await });
    let server = TestServer::start(
        FlexiSocket::server("in memory")
            .router(echo)
            .classifier::<Panel>()
            .history_for("001", 10, 4096),
    )
    .unwrap();
    let mut panel = server.connect().await;
    let mut other = server.connect().await;
    panel.send("!!alarm").await.unwrap();
    other.send("hello").await.unwrap();
    assert_eq!(panel.receive_str().await.unwrap(), "!!alarm");
    assert_eq!(other.receive_str().await.unwrap(), "hello");
    let panel_history = panel.connection().await.unwrap().history();
    assert_eq!(panel_history.entries().len(), 2, "{panel_history}");
    assert_eq!(
        panel_history.entries()[0].client_type(),
        Some(&ClientType::from("001"))
    );
    assert!(other.connection().await.unwrap().history().is_empty());
    server.shutdown().await;
}

/// The last words of a connection the peer reset, in on_disconnect.
#[tokio::test]
async fn on_disconnect_sees_the_history_after_a_reset() {
    let (last_words, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::new()
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await })
        .on_disconnect(move |conn: Connection, reason: DisconnectReason| {
            let _ = last_words.send((reason, conn.history()));
            async {}
        });
    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            .router(router)
            .history(10, 4096),
    )
    .await;
    let stream = within("connect", TcpStream::connect(running.addr))
        .await
        .unwrap();
    let (reader, mut writer) = stream.into_split();
    writer.write_all(b"first\nlast words\n").await.unwrap();
    let mut lines = BufReader::new(reader).lines();
    assert_eq!(
        within("echo", lines.next_line()).await.unwrap().as_deref(),
        Some("first")
    );
    assert_eq!(
        within("echo", lines.next_line()).await.unwrap().as_deref(),
        Some("last words")
    );
    // A reset, not a FIN: linger zero, then close.
    let stream = lines.into_inner().into_inner().reunite(writer).unwrap();
    stream.set_zero_linger().unwrap();
    drop(stream);
    let (reason, history) = within("on_disconnect", heard.recv()).await.unwrap();
    assert!(matches!(reason, DisconnectReason::Reset(_)), "{reason:?}");
    let inbound: Vec<_> = history
        .inbound()
        .map(|entry| entry.raw().to_vec())
        .collect();
    assert_eq!(inbound, [b"first".to_vec(), b"last words".to_vec()]);
    running.stop().await;
}

/// A send the framing refuses (longer than a fixed frame) was not written.
#[tokio::test(start_paused = true)]
async fn a_send_that_failed_is_not_recorded() {
    let echo = Router::new()
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await });
    let server = TestServer::start(
        FlexiSocket::server("in memory")
            .router(echo)
            .framing(Framing::fixed(4))
            .history(10, 4096),
    )
    .unwrap();
    let mut peer = server.connect().await;
    peer.send("abcd").await.unwrap();
    assert_eq!(peer.receive_str().await.unwrap(), "abcd");
    let conn = peer.connection().await.unwrap();
    assert!(
        conn.send("too long").await.is_err(),
        "the framing refuses it"
    );
    let outbound: Vec<_> = conn
        .history()
        .outbound()
        .map(|entry| entry.raw().to_vec())
        .collect();
    assert_eq!(
        outbound,
        [b"abcd".to_vec()],
        "only the send that was queued"
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_per_type_history_without_a_classifier_keeps_nothing() {
    let echo = Router::new()
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await });
    let server = TestServer::start(
        FlexiSocket::server("in memory")
            .router(echo)
            .history_for("001", 10, 4096),
    )
    .unwrap();
    let mut peer = server.connect().await;
    peer.send("hello").await.unwrap();
    assert_eq!(peer.receive_str().await.unwrap(), "hello");
    assert!(peer.connection().await.unwrap().history().is_empty());
    server.shutdown().await;
}
