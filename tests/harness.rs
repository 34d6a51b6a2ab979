//! Loopback tests ported to the in-memory harness (`flexi_socket::testing`):
//! the same servers, built by the same builder, and the same assertions,
//! with pipes instead of sockets. Every test runs in tokio's paused time:
//! deadlines (idle, first message, frame, handler) pass at once and the
//! same way every run, and so does the 2 s linger a graceful close spends
//! on a peer that is still open at shutdown (in real time each such test
//! would wait it out, as its loopback original does).
//! Every test names the loopback test it mirrors, which stays as it is; the
//! routers, classifiers and constants both run come from `support::servers`.
//! Routers are built by hand (no attribute handlers), so this binary has no
//! global registry to share.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flexi_socket::testing::{PeerError, TestPeer, TestServer};
use flexi_socket::{DisconnectReason, FlexiSocket, Framing, ServerBuilder};
use support::servers::{
    AnyClient, Burst, Panel, alarms_only_router, bracket_router, burst_router,
    echo_reporting_errors, echo_router, factory_failing_calls_1_and_3, hanging_echo, hooks_router,
    observed_echo, one_byte_length_prefix, panel_router, unpadding_echo,
};
use support::{EventLog, Events, within};
use tokio::sync::watch;
use tokio::task::JoinSet;

fn server() -> ServerBuilder {
    FlexiSocket::server("in memory")
}

fn start(builder: ServerBuilder) -> TestServer {
    TestServer::start(builder).expect("the test server starts")
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
    // A second of virtual time: the accept loop has every chance to take it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(server.connections().len(), 2);
    assert!(
        matches!(
            third.receive_within(Duration::from_millis(100)).await,
            Err(PeerError::TimedOut(_))
        ),
        "not served while two are open"
    );

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
    let server = start(
        server()
            .router(hanging_echo(&events))
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
    let server = start(server().router(panel_router()).classifier::<Panel>());

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
    let server = start(
        server()
            .router(alarms_only_router(events))
            .classifier::<Panel>()
            // On purpose: the test is about what happens to its messages.
            .allow_unhandled("002")
            .allow_unhandled("other"),
    );
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
    let server = start(server().router(hooks_router()).state(events));
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

/// Mirrors `router_server.rs::oversize_frame_is_discarded_and_the_next_frame_is_served`.
#[tokio::test(start_paused = true)]
async fn oversize_frame_is_discarded_and_the_next_frame_is_served() {
    let (events, mut log) = Events::new();
    let server = start(
        server()
            .router(echo_reporting_errors(events))
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

/// Replies `<message>` to every message and reports errors to the log (as
/// `framing_server.rs::bracket_server`).
fn bracket_server(framing: Framing) -> (TestServer, EventLog) {
    let (events, log) = Events::new();
    let server = start(server().framing(framing).router(bracket_router(events)));
    (server, log)
}

/// Mirrors `framing_server.rs::separator_of_several_bytes_split_across_writes`.
#[tokio::test(start_paused = true)]
async fn separator_of_several_bytes_split_across_writes() {
    let (server, _log) = bracket_server(Framing::separator("\r\n\r\n"));
    let mut stream = server.connect().await;
    stream.write(b"one\r\n").await.unwrap();
    stream.write(b"\r\ntwo\r").await.unwrap();
    stream.write(b"\n\r\n").await.unwrap();
    assert_eq!(
        stream.read_exact(18).await.unwrap(),
        b"<one>\r\n\r\n<two>\r\n\r\n"
    );
    server.shutdown().await;
}

/// Mirrors `framing_server.rs::fixed_length_frames_and_padded_replies`.
#[tokio::test(start_paused = true)]
async fn fixed_length_frames_and_padded_replies() {
    let (refusing, mut log) = bracket_server(Framing::fixed(6));
    let mut stream = refusing.connect().await;
    stream.write(b"abcdefghij").await.unwrap();
    // "<abcdef>" is 8 bytes: longer than a frame, so the send fails and
    // nothing is written; "ghij" stays buffered until two more bytes arrive.
    stream.write(b"kl").await.unwrap();
    stream.close().await;
    assert_eq!(stream.read_to_end().await.unwrap(), b"");
    // Both frames were read: each reply was refused by the encoder.
    for reply in ["<abcdef>", "<ghijkl>"] {
        let error = log.next().await;
        assert!(
            error.contains("cannot frame the outbound message")
                && error.contains("8 bytes, more than the fixed frame length of 6"),
            "{reply}: {error}"
        );
    }
    refusing.shutdown().await;

    let padding = start(server().framing(Framing::fixed(6)).router(unpadding_echo()));
    let mut stream = padding.connect().await;
    stream.write(b"abcd  xyz123").await.unwrap();
    // "abcd" is padded back to six bytes with spaces.
    assert_eq!(stream.read_exact(12).await.unwrap(), b"abcd  xyz123");
    padding.shutdown().await;
}

/// Mirrors `framing_server.rs::length_prefixed_recovers_after_an_oversize_frame`.
/// The original reads the reply's raw bytes (`[0, 5, b'<', b'a', b'b', b'c',
/// b'>']`); the peer decodes them with the same two-byte prefix, so the
/// message `<abc>` is that frame.
#[tokio::test(start_paused = true)]
async fn length_prefixed_recovers_after_an_oversize_frame() {
    let framing = Framing::length_prefixed().prefix_len(2).max_length(8);
    let (server, mut log) = bracket_server(framing);
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

/// Mirrors `framing_server.rs::eof_framing_delivers_the_whole_stream_and_replies_before_closing`.
#[tokio::test(start_paused = true)]
async fn eof_framing_delivers_the_whole_stream_and_replies_before_closing() {
    let (server, _log) = bracket_server(Framing::eof());
    let mut stream = server.connect().await;
    stream.write(b"the whole\nstream").await.unwrap();
    stream.close().await;
    assert_eq!(stream.read_to_end().await.unwrap(), b"<the whole\nstream>");
    server.shutdown().await;
}

/// Mirrors `framing_server.rs::raw_delivers_chunks_as_they_arrive`.
#[tokio::test(start_paused = true)]
async fn raw_delivers_chunks_as_they_arrive() {
    let (server, _log) = bracket_server(Framing::raw());
    let mut stream = server.connect().await;
    stream.write(b"chunk").await.unwrap();
    assert_eq!(stream.read_exact(7).await.unwrap(), b"<chunk>");
    server.shutdown().await;
}

/// Mirrors `framing_server.rs::idle_gap_ends_a_message_after_silence`. The
/// original reads the reply's raw bytes; the peer decodes them with the
/// same idle gap (idle-gap replies are the message's bytes as they are), so
/// it also waits for 200 ms of silence after them. In paused time the gaps
/// pass at once and a pause between the two writes cannot split the burst.
#[tokio::test(start_paused = true)]
async fn idle_gap_ends_a_message_after_silence() {
    let (server, _log) = bracket_server(Framing::idle_gap(Duration::from_millis(200)));
    let mut stream = server.connect().await;
    stream.write(b"first ").await.unwrap();
    stream.write(b"burst").await.unwrap();
    // The reply only comes once the server has seen 200 ms of silence.
    assert_eq!(stream.receive().await.unwrap().as_bytes(), b"<first burst>");
    stream.write(b"second").await.unwrap();
    assert_eq!(stream.receive().await.unwrap().as_bytes(), b"<second>");
    server.shutdown().await;
}

/// Mirrors `framing_server.rs::idle_gap_recovers_after_an_oversize_burst`;
/// the peer decodes the reply with the same idle gap (as above).
#[tokio::test(start_paused = true)]
async fn idle_gap_recovers_after_an_oversize_burst() {
    let gap = Duration::from_millis(50);
    let (server, mut log) = bracket_server(Framing::idle_gap(gap).max_length(8));
    let mut stream = server.connect().await;
    stream.write([b'x'; 20]).await.unwrap();
    // Reported as soon as the burst goes over the limit, before its gap.
    let error = log.next().await;
    assert!(error.contains("the limit is 8 bytes"), "{error}");
    // Only silence ends a burst, and keeping it is the sender's part of the
    // protocol: bytes sent sooner would be dropped with the oversize burst.
    tokio::time::sleep(gap * 4).await;
    stream.write(b"ok").await.unwrap();
    assert_eq!(stream.receive().await.unwrap().as_bytes(), b"<ok>");
    server.shutdown().await;
}

/// Mirrors `framing_server.rs::custom_tokio_util_codec`.
#[tokio::test(start_paused = true)]
async fn custom_tokio_util_codec() {
    let (server, _log) = bracket_server(one_byte_length_prefix());
    let mut stream = server.connect().await;
    stream.write([2, b'h', b'i']).await.unwrap();
    assert_eq!(
        stream.read_exact(5).await.unwrap(),
        [4, b'<', b'h', b'i', b'>']
    );
    server.shutdown().await;
}

/// Mirrors `framing_server.rs::a_codec_factory_that_panics_costs_one_connection`.
/// The peers only write and read raw bytes: they never call the factory.
#[tokio::test(start_paused = true)]
async fn a_codec_factory_that_panics_costs_one_connection() {
    let (server, mut log) = bracket_server(factory_failing_calls_1_and_3());
    let mut never_opened = server.connect().await;
    assert_eq!(never_opened.read_to_end().await.unwrap(), b"");
    let mut no_decoder = server.connect().await;
    assert_eq!(no_decoder.read_to_end().await.unwrap(), b"");
    let error = log.next().await;
    assert!(
        error.starts_with("framing failed: the codec factory panicked: factory call 3 fails"),
        "{error}"
    );
    let mut served = server.connect().await;
    served.write(b"hi").await.unwrap();
    assert_eq!(served.read_exact(4).await.unwrap(), b"<hi>");
    server.shutdown().await;
}

/// Mirrors `framing_server.rs::stx_etx_frames_skip_junk_and_restart_on_a_second_start`.
#[tokio::test(start_paused = true)]
async fn stx_etx_frames_skip_junk_and_restart_on_a_second_start() {
    let (server, mut log) = bracket_server(Framing::delimited("\x02", "\x03"));
    let mut stream = server.connect().await;
    stream.write(b"junk\x02hel").await.unwrap();
    stream.write(b"lo\x03\x02cut\x02ne").await.unwrap();
    stream.write(b"w\x03").await.unwrap();
    assert_eq!(
        stream.read_exact(16).await.unwrap(),
        b"\x02<hello>\x03\x02<new>\x03"
    );
    // The stray bytes, then the frame cut by the second start.
    let stray = log.next().await;
    assert!(
        stray.starts_with("discarded 4 bytes outside any frame"),
        "{stray}"
    );
    let cut = log.next().await;
    assert!(cut.contains("3 bytes were not delivered"), "{cut}");
    server.shutdown().await;
}

/// Mirrors `router_server.rs::shutdown_flushes_replies_and_reports_the_reason`.
#[tokio::test(start_paused = true)]
async fn shutdown_flushes_replies_and_reports_the_reason() {
    let (events, mut log) = Events::new();
    let (burst_started, mut burst_log) = Events::new();
    let server = start(
        server()
            .router(burst_router(events, burst_started))
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
    use support::servers::{CLIENTS, Handled, MAX_PER_CLIENT, WINDOW, acking_router};

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
        let handled = Arc::new(Handled::new());
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
        handled
            .shut_down_mid_stream(trigger_at, go, clients, server.shutdown())
            .await;
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

/// A peer frames its second message with its client type's own framing
/// right away, without waiting for the server to have classified it (the
/// review's case: two sends in a row, then the replies).
#[tokio::test(start_paused = true)]
async fn a_peer_switches_to_its_client_type_s_framing_after_its_first_message() {
    let router =
        flexi_socket::Router::new().on_message(
            |conn: flexi_socket::Connection, msg: String| async move {
                conn.send(format!("<{msg}>")).await
            },
        );
    let server = start(
        server()
            .router(router)
            .classifier::<Panel>()
            .framing_for("001", Framing::separator("\r")),
    );
    let mut panel = server.connect().await;
    panel.send("!!hello").await.unwrap();
    panel.send("second").await.unwrap();
    assert_eq!(panel.receive_str().await.unwrap(), "<!!hello>");
    assert_eq!(panel.receive_str().await.unwrap(), "<second>");
    server.shutdown().await;
}
