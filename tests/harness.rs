//! Loopback tests ported to the in-memory harness (`flexi_socket::testing`):
//! the same servers, built by the same builder, and the same assertions,
//! with pipes instead of sockets. Every test runs in tokio's paused time:
//! deadlines (idle, first message, frame, handler) pass at once and the
//! same way every run, and so does the 2 s linger a graceful close spends
//! on a peer that is still open at shutdown (in real time each such test
//! would wait it out, as its loopback original does).
//! Every test names the loopback test it mirrors, which stays as it is.
//! Routers are built by hand (no attribute handlers), so this binary has no
//! global registry to share.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flexi_socket::testing::{PeerError, TestPeer, TestServer};
use flexi_socket::{
    Classifier, ClientType, Connection, DisconnectReason, Error, FlexiSocket, Framing, Message,
    Router, ServerBuilder,
};
use support::{Events, within};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

fn server() -> ServerBuilder {
    FlexiSocket::server("in memory")
}

fn start(builder: ServerBuilder) -> TestServer {
    TestServer::start(builder).expect("the test server starts")
}

/// Every connection is the same type; only the deadline for the first
/// message matters (as in `tests/limits.rs`).
struct AnyClient;

impl Classifier for AnyClient {
    fn classify(_first_frame: &[u8]) -> Self {
        AnyClient
    }

    fn client_type(&self) -> ClientType {
        "any".into()
    }
}

/// "!!" alarm panels, "##" sensors, anything else default (as in
/// `tests/router_server.rs`).
struct Panel(Option<&'static str>);

impl Classifier for Panel {
    fn classify(first_frame: &[u8]) -> Self {
        if first_frame.starts_with(b"!!") {
            Panel(Some("001"))
        } else if first_frame.starts_with(b"##") {
            Panel(Some("002"))
        } else {
            Panel(None)
        }
    }

    fn client_type(&self) -> ClientType {
        self.0
            .map_or(ClientType::from_static("other"), ClientType::from_static)
    }

    fn client_types() -> Option<Vec<ClientType>> {
        Some(vec!["001".into(), "002".into(), "other".into()])
    }
}

/// "burst" clients get the burst handler; everyone else echoes (as in
/// `tests/router_server.rs`).
struct Burst(bool);

impl Classifier for Burst {
    fn classify(first_frame: &[u8]) -> Self {
        Burst(first_frame == b"burst")
    }

    fn client_type(&self) -> ClientType {
        if self.0 {
            "burst".into()
        } else {
            "echo".into()
        }
    }
}

fn echo_router() -> Router {
    Router::new().on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await })
}

/// Echoes, and reports every error and disconnect reason to `events`.
fn observed_echo(events: &Events) -> Router {
    let errors = events.clone();
    let disconnects = events.clone();
    echo_router()
        .on_error(move |_conn: Connection, error: Error| {
            let events = errors.clone();
            async move { events.push(format!("error {error}")) }
        })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let events = disconnects.clone();
            async move { events.push(format!("disconnect {reason}")) }
        })
}

/// Sends `line` and returns the reply.
async fn ask(peer: &mut TestPeer, line: &str) -> String {
    peer.send(line).await.expect("send");
    peer.receive_str().await.expect("a reply")
}

/// Mirrors `limits.rs::slowloris_is_closed_at_the_frame_deadline_while_others_are_served`.
#[tokio::test(start_paused = true)]
async fn slowloris_is_closed_at_the_frame_deadline_while_others_are_served() {
    let (events, mut log) = Events::new();
    let server = start(
        server()
            .router(observed_echo(&events))
            .frame_timeout(Duration::from_millis(300)),
    );

    let mut slowloris = server.connect().await;
    let dripping = tokio::spawn(async move {
        // One byte at a time, never a newline; bounded to 200 bytes.
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..200 {
            ticker.tick().await;
            if slowloris.write(b"x").await.is_err() {
                return true;
            }
        }
        false
    });

    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(server.connect().await);
    }
    for round in 0..5 {
        for (i, client) in clients.iter_mut().enumerate() {
            let line = format!("client {i} round {round}");
            assert_eq!(ask(client, &line).await, line);
        }
        // Time passes between rounds (in paused time, at once), so the
        // slowloris's deadline falls while the others are being served.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        log.next_starting("disconnect").await,
        "disconnect frame not finished in time"
    );
    assert!(
        within("slowloris to notice", dripping).await.unwrap(),
        "the server closed the slowloris connection"
    );
    server.shutdown().await;
}

/// Mirrors `limits.rs::silent_client_is_closed_at_the_first_message_deadline`.
#[tokio::test(start_paused = true)]
async fn silent_client_is_closed_at_the_first_message_deadline() {
    let (events, mut log) = Events::new();
    let server = start(
        server()
            .router(observed_echo(&events))
            .classifier::<AnyClient>()
            .first_message_timeout(Duration::from_millis(200)),
    );
    let mut silent = server.connect().await;
    assert_eq!(log.next().await, "disconnect no first message in time");
    assert_eq!(
        silent.expect_closed().await.unwrap(),
        Some(DisconnectReason::FirstMessageTimeout)
    );
    server.shutdown().await;
}

/// Mirrors `limits.rs::oversize_first_message_closes_before_classification`.
#[tokio::test(start_paused = true)]
async fn oversize_first_message_closes_before_classification() {
    let (events, mut log) = Events::new();
    let server = start(
        server()
            .router(observed_echo(&events))
            .classifier::<AnyClient>()
            .first_message_max_length(16),
    );
    let mut greedy = server.connect().await;
    greedy.write([b'a'; 100]).await.unwrap();
    assert_eq!(
        log.next().await,
        "disconnect limit: first message longer than 16 bytes"
    );
    assert_eq!(
        greedy.expect_closed().await.unwrap(),
        Some(DisconnectReason::Limit(
            "first message longer than 16 bytes".into()
        ))
    );
    server.shutdown().await;
}

/// Mirrors `limits.rs::idle_connection_is_closed`.
#[tokio::test(start_paused = true)]
async fn idle_connection_is_closed() {
    let (events, mut log) = Events::new();
    let server = start(
        server()
            .router(observed_echo(&events))
            .idle_timeout(Duration::from_millis(200)),
    );
    let mut idle = server.connect().await;
    assert_eq!(ask(&mut idle, "one message").await, "one message");
    assert_eq!(log.next().await, "disconnect idle timeout");
    assert_eq!(
        idle.expect_closed().await.unwrap(),
        Some(DisconnectReason::IdleTimeout)
    );
    server.shutdown().await;
}

/// Mirrors `limits.rs::at_the_connection_limit_the_server_stops_accepting_then_resumes`.
#[tokio::test(start_paused = true)]
async fn at_the_connection_limit_the_server_stops_accepting_then_resumes() {
    let (events, _log) = Events::new();
    let server = start(server().router(observed_echo(&events)).max_connections(2));
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    assert_eq!(ask(&mut first, "1").await, "1");
    assert_eq!(ask(&mut second, "2").await, "2");

    // The third peer connects (its pipe waits, as a handshake would in the
    // kernel's backlog), but the server does not accept it while two are open.
    let mut third = server.connect().await;
    third.send("3").await.unwrap();
    assert_eq!(server.connections().len(), 2);

    drop(first);
    assert_eq!(third.receive_str().await.unwrap(), "3");
    server.shutdown().await;
}

/// Mirrors `limits.rs::per_ip_cap_refuses_extra_connections`.
#[tokio::test(start_paused = true)]
async fn per_ip_cap_refuses_extra_connections() {
    let (events, _log) = Events::new();
    let server = start(
        server()
            .router(observed_echo(&events))
            .max_connections_per_ip(1),
    );
    // Both from 127.0.0.1, as over loopback.
    let mut allowed = server.connect().await;
    assert_eq!(ask(&mut allowed, "in").await, "in");
    let mut refused = server.connect().await;
    assert_eq!(
        refused.expect_closed().await.unwrap(),
        None,
        "closed at once, never accepted"
    );
    assert_eq!(ask(&mut allowed, "still in").await, "still in");
    drop(allowed);
    server.shutdown().await;
}

/// Mirrors `limits.rs::handler_timeout_cancels_the_handler_and_the_connection_goes_on`.
#[tokio::test(start_paused = true)]
async fn handler_timeout_cancels_the_handler_and_the_connection_goes_on() {
    let (events, mut log) = Events::new();
    let router =
        observed_echo(&events).on_message_for("any", |conn: Connection, msg: String| async move {
            if msg == "hang" {
                std::future::pending::<()>().await;
            }
            conn.send(msg).await
        });
    let server = start(
        server()
            .router(router)
            .classifier::<AnyClient>()
            .handler_timeout(Duration::from_millis(100)),
    );
    let mut client = server.connect().await;
    client.send("hang").await.unwrap();
    assert!(log.next().await.contains("did not finish within 100ms"));
    assert_eq!(ask(&mut client, "next").await, "next");
    server.shutdown().await;
}

/// Mirrors `router_server.rs::routes_by_client_type_with_default_fallback`.
#[tokio::test(start_paused = true)]
async fn routes_by_client_type_with_default_fallback() {
    let router = Router::new()
        .on_message_for("001", |conn: Connection, msg: String| async move {
            conn.send(format!("alarm:{msg}")).await
        })
        .on_message(|conn: Connection, msg: String| async move {
            let kind = conn
                .client_type()
                .map(ClientType::to_string)
                .unwrap_or_default();
            conn.send(format!("default({kind}):{msg}")).await
        });
    let server = start(server().router(router).classifier::<Panel>());

    let mut alarm = server.connect().await;
    let mut sensor = server.connect().await;
    assert_eq!(ask(&mut alarm, "!!1234").await, "alarm:!!1234");
    assert_eq!(ask(&mut sensor, "##temp").await, "default(002):##temp");
    // Only the first message classifies: later messages keep the type.
    assert_eq!(
        ask(&mut alarm, "##not-a-sensor").await,
        "alarm:##not-a-sensor"
    );
    assert_eq!(
        ask(&mut sensor, "!!not-an-alarm").await,
        "default(002):!!not-an-alarm"
    );
    server.shutdown().await;
}

/// Mirrors `router_server.rs::unrouted_message_reaches_on_error_and_connection_lives_on`.
#[tokio::test(start_paused = true)]
async fn unrouted_message_reaches_on_error_and_connection_lives_on() {
    let (events, mut log) = Events::new();
    let router = Router::new()
        .on_message_for("001", |conn: Connection, _msg: Bytes| async move {
            conn.send("ok").await
        })
        .on_error(move |_conn: Connection, error: Error| {
            let events = events.clone();
            async move { events.push(format!("error: {error}")) }
        });
    let server = start(server().router(router).classifier::<Panel>());
    let mut client = server.connect().await;
    client.send("no marker").await.unwrap();
    let error = log.next_starting("error").await;
    assert!(
        error.contains("no on_message handler for client type other"),
        "{error}"
    );
    // The connection still works: a second client of type 001 is served as well.
    let mut alarm = server.connect().await;
    assert_eq!(ask(&mut alarm, "!!x").await, "ok");
    client.send("again").await.unwrap();
    assert!(
        log.next_starting("error")
            .await
            .contains("client type other")
    );
    server.shutdown().await;
}

/// Mirrors `router_server.rs::events_run_in_order_and_disconnect_fires_once`
/// (on_connect, after_receive, before_send, on_disconnect).
#[tokio::test(start_paused = true)]
async fn events_run_in_order_and_disconnect_fires_once() {
    let (events, mut log) = Events::new();
    let router = Router::new()
        .on_connect(|conn: Connection| async move {
            shared_events(&conn).push("connect");
        })
        .after_receive(|conn: Connection, msg: Message| async move {
            shared_events(&conn).push(format!("after_receive {}", String::from_utf8_lossy(&msg)));
            // Strip a leading "!!" marker; drop lines that say "drop".
            if &msg[..] == b"drop" {
                return None;
            }
            Some(Message::new(strip_marker(msg.into_bytes())))
        })
        .on_message(|conn: Connection, msg: String| async move {
            shared_events(&conn).push(format!("message {msg} first={}", conn.is_first_message()));
            conn.send(msg).await
        })
        .before_send(|_conn: Connection, msg: Message| async move {
            Message::from(format!("<{}>", String::from_utf8_lossy(&msg)))
        })
        .on_disconnect(|conn: Connection, _reason: DisconnectReason| async move {
            shared_events(&conn).push("disconnect");
        });
    let server = start(server().router(router).state(events));
    let mut client = server.connect().await;
    client.send("!!alpha").await.unwrap();
    client.send("drop").await.unwrap();
    client.send("beta").await.unwrap();
    assert_eq!(client.receive_str().await.unwrap(), "<alpha>");
    assert_eq!(client.receive_str().await.unwrap(), "<beta>");
    drop(client);

    let expected = [
        "connect",
        "after_receive !!alpha",
        "message alpha first=true",
        "after_receive drop",
        "after_receive beta",
        "message beta first=false",
        "disconnect",
    ];
    for want in expected {
        assert_eq!(log.next().await, want);
    }
    server.shutdown().await;
    // Exactly once: nothing else was reported, even after shutdown.
    assert!(log.0.try_recv().is_err());
}

fn shared_events(conn: &Connection) -> &Events {
    conn.app_state::<Events>()
        .expect("the test gives Events as state")
}

/// Strips a leading "!!" marker, as an alarm receiver's after_receive would.
fn strip_marker(bytes: Bytes) -> Bytes {
    if bytes.starts_with(b"!!") {
        bytes.slice(2..)
    } else {
        bytes
    }
}

/// Mirrors `router_server.rs::oversize_frame_is_discarded_and_the_next_frame_is_served`.
#[tokio::test(start_paused = true)]
async fn oversize_frame_is_discarded_and_the_next_frame_is_served() {
    let (events, mut log) = Events::new();
    let router = echo_router().on_error(move |_conn: Connection, error: Error| {
        let events = events.clone();
        async move { events.push(error.to_string()) }
    });
    let server = start(
        server()
            .router(router)
            .framing(Framing::lines().max_length(16)),
    );
    let mut client = server.connect().await;
    // Raw: the peer's own line encoder would refuse the oversize line.
    client.write([b'x'; 1000]).await.unwrap();
    client.write(b"\nexactly-16-bytes\n").await.unwrap();
    assert_eq!(client.receive_str().await.unwrap(), "exactly-16-bytes");
    assert!(log.next().await.contains("limit is 16 bytes"));
    server.shutdown().await;
}

/// Mirrors `framing_server.rs::length_prefixed_recovers_after_an_oversize_frame`.
/// The original reads the reply's raw bytes (`[0, 5, b'<', b'a', b'b', b'c',
/// b'>']`); the peer decodes them with the same two-byte prefix, so the
/// message `<abc>` is that frame.
#[tokio::test(start_paused = true)]
async fn length_prefixed_recovers_after_an_oversize_frame() {
    let (events, mut log) = Events::new();
    let router = Router::new()
        .on_message(|conn: Connection, msg: Message| async move {
            let reply = [b"<", msg.as_bytes(), b">"].concat();
            conn.send(reply).await
        })
        .on_error(move |_conn: Connection, error: Error| {
            let events = events.clone();
            async move { events.push(error.to_string()) }
        });
    let framing = Framing::length_prefixed().prefix_len(2).max_length(8);
    let server = start(server().framing(framing).router(router));
    let mut stream = server.connect().await;
    let mut input = vec![0, 20];
    input.extend([b'x'; 20]);
    input.extend([0, 3, b'a', b'b', b'c']);
    stream.write(&input).await.unwrap();
    assert_eq!(stream.receive().await.unwrap().as_bytes(), b"<abc>");
    let error = log.next().await;
    assert!(
        error.contains("20 bytes") && error.contains("limit is 8"),
        "{error}"
    );
    server.shutdown().await;
}

/// Mirrors `router_server.rs::shutdown_flushes_replies_and_reports_the_reason`.
#[tokio::test(start_paused = true)]
async fn shutdown_flushes_replies_and_reports_the_reason() {
    let (events, mut log) = Events::new();
    let router = echo_router().on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
        let events = events.clone();
        async move { events.push(format!("disconnect: {reason}")) }
    });
    let (burst_started, mut burst_log) = Events::new();
    let router = router.on_message_for("burst", move |conn: Connection, _msg: Bytes| {
        let burst_started = burst_started.clone();
        async move {
            burst_started.push("started");
            for i in 0..2_000 {
                conn.send(format!("reply {i}")).await?;
            }
            Ok::<(), Error>(())
        }
    });
    let server = start(
        server()
            .router(router)
            .classifier::<Burst>()
            .outbound_queue(4),
    );
    let mut client = server.connect().await;
    // The client reads nothing until the shutdown is under way.
    client.send("burst").await.unwrap();
    burst_log.next().await;
    let reading = async {
        for i in 0..2_000 {
            assert_eq!(client.receive_str().await.unwrap(), format!("reply {i}"));
        }
        client.expect_closed().await
    };
    let (report, closed) = tokio::join!(server.shutdown(), reading);
    assert_eq!(
        closed.unwrap(),
        Some(DisconnectReason::Shutdown),
        "then the server closed"
    );
    assert_eq!(
        (report.connections_closed, report.undelivered_messages),
        (1, 0)
    );
    assert_eq!(log.next().await, "disconnect: server shutdown");
}

/// Mirrors `router_server.rs::server_stats_count_traffic_and_errors_by_kind`.
#[tokio::test(start_paused = true)]
async fn server_stats_count_traffic_and_errors_by_kind() {
    let server = start(
        server()
            .router(echo_router())
            .framing(Framing::lines().max_length(8)),
    );
    let mut client = server.connect().await;
    assert_eq!(ask(&mut client, "one").await, "one");
    assert_eq!(ask(&mut client, "two").await, "two");
    client
        .write(b"far too long for eight bytes\n")
        .await
        .unwrap();
    assert_eq!(ask(&mut client, "three").await, "three");
    let stats = server.stats();
    assert_eq!(stats.connections_open, 1);
    assert_eq!(stats.connections_total, 1);
    assert_eq!((stats.messages_in, stats.messages_out), (3, 3));
    assert_eq!(stats.bytes_in, 11);
    assert_eq!(stats.bytes_out, 14, "framing included");
    assert_eq!(stats.errors.frame_too_large, 1);
    assert_eq!(stats.errors.io, 0);
    server.shutdown().await;
}

/// Mirrors `shutdown.rs::shutdown_mid_stream` (its three tests): 50 peers
/// stream sequenced messages within a window of unacknowledged ones; the
/// server shuts down mid-stream; what it handled equals what the peers saw
/// acknowledged, nothing twice, no peer sees a failure, none is cut.
mod graceful_shutdown_under_load {
    use super::*;

    const CLIENTS: usize = 50;
    /// Messages in flight per client.
    const WINDOW: usize = 8;
    /// Each client stops sending after this many, so the test is bounded.
    const MAX_PER_CLIENT: usize = 2_000;

    struct Handled {
        connected: Semaphore,
        messages: Mutex<Vec<String>>,
        reached: Notify,
    }

    fn acking_router(handled: Arc<Handled>, trigger_at: usize) -> Router {
        let connects = Arc::clone(&handled);
        Router::new()
            .on_connect(move |_conn: Connection| {
                let connects = Arc::clone(&connects);
                async move { connects.connected.add_permits(1) }
            })
            .on_message(move |conn: Connection, msg: String| {
                let handled = Arc::clone(&handled);
                async move {
                    let count = {
                        let mut messages = handled.messages.lock().unwrap();
                        messages.push(msg.clone());
                        messages.len()
                    };
                    if count == trigger_at {
                        handled.reached.notify_one();
                    }
                    conn.send(format!("ACK {msg}")).await
                }
            })
    }

    /// Streams `c<client>-<seq>` messages, at most `WINDOW` unacknowledged,
    /// until the server closes; returns what was acknowledged. A peer has
    /// one task, so it alternates: it fills the window, then reads one ACK.
    async fn stream_until_closed(
        mut peer: TestPeer,
        client: usize,
        mut go: watch::Receiver<bool>,
    ) -> BTreeSet<String> {
        within("the start signal", go.wait_for(|go| *go))
            .await
            .unwrap();
        let mut acked = BTreeSet::new();
        let (mut seq, mut in_flight, mut sending) = (0, 0, true);
        loop {
            while sending && in_flight < WINDOW && seq < MAX_PER_CLIENT {
                if peer.send(format!("c{client}-{seq}")).await.is_err() {
                    sending = false;
                    break;
                }
                seq += 1;
                in_flight += 1;
            }
            if seq == MAX_PER_CLIENT && sending {
                peer.close().await;
                sending = false;
            }
            match peer.receive_str().await {
                Ok(line) => {
                    let message = line.strip_prefix("ACK ").expect("ACK lines").to_owned();
                    assert!(acked.insert(message), "duplicate ACK");
                    in_flight -= 1;
                }
                Err(PeerError::Closed) => break,
                Err(error) => panic!("client {client} saw {error}"),
            }
        }
        acked
    }

    async fn shutdown_mid_stream(trigger_at: usize) {
        let handled = Arc::new(Handled {
            connected: Semaphore::new(0),
            messages: Mutex::new(Vec::new()),
            reached: Notify::new(),
        });
        let server = start(
            server()
                .router(acking_router(Arc::clone(&handled), trigger_at))
                .shutdown_timeout(Duration::from_secs(8)),
        );
        let (go, start_signal) = watch::channel(false);
        let mut clients = JoinSet::new();
        for client in 0..CLIENTS {
            let peer = server.connect().await;
            clients.spawn(stream_until_closed(peer, client, start_signal.clone()));
        }
        // Everyone starts once the server has accepted everyone.
        within(
            "every connection",
            handled.connected.acquire_many(CLIENTS as u32),
        )
        .await
        .unwrap()
        .forget();
        let reached = handled.reached.notified();
        go.send(true).unwrap();
        within("the trigger point", reached).await;
        let report = server.shutdown().await;

        let mut acked = BTreeSet::new();
        while let Some(set) = within("the clients", clients.join_next()).await {
            acked.extend(set.unwrap());
        }
        let handled_list = handled.messages.lock().unwrap().clone();
        let handled_set: BTreeSet<String> = handled_list.iter().cloned().collect();
        assert_eq!(
            handled_list.len(),
            handled_set.len(),
            "a message was handled twice"
        );
        assert!(handled_set.len() >= trigger_at);
        assert_eq!(handled_set, acked, "handled and acknowledged differ");
        assert_eq!(report.connections_aborted, 0, "{report:?}");
        assert_eq!(report.undelivered_messages, 0, "{report:?}");
        assert_eq!(report.connections_closed, CLIENTS as u64, "{report:?}");
    }

    /// Mirrors `shutdown.rs::shutdown_right_after_the_first_message`.
    #[tokio::test(start_paused = true)]
    async fn shutdown_right_after_the_first_message() {
        shutdown_mid_stream(1).await;
    }

    /// Mirrors `shutdown.rs::shutdown_early_in_the_stream`.
    #[tokio::test(start_paused = true)]
    async fn shutdown_early_in_the_stream() {
        shutdown_mid_stream(500).await;
    }

    /// Mirrors `shutdown.rs::shutdown_deep_in_the_stream`.
    #[tokio::test(start_paused = true)]
    async fn shutdown_deep_in_the_stream() {
        shutdown_mid_stream(20_000).await;
    }
}
