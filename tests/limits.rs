//! The protective limits, each against a misbehaving peer over loopback,
//! while well-behaved peers keep being served.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use flexi_socket::{
    Classifier, ClientType, Connection, FlexiSocket, Message, PanicPolicy, ServerBuilder,
    SlowConsumerPolicy,
};
use support::servers::{AnyClient, hanging_echo, observed_echo};
use support::{Events, LineClient, start, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn server() -> ServerBuilder {
    FlexiSocket::server("127.0.0.1:0")
}

#[tokio::test]
async fn slowloris_is_closed_at_the_frame_deadline_while_others_are_served() {
    let (events, mut log) = Events::new();
    let running = start(
        server()
            .router(observed_echo(&events))
            .frame_timeout(Duration::from_millis(300)),
    )
    .await;

    let mut slowloris = TcpStream::connect(running.addr).await.unwrap();
    let dripping = tokio::spawn(async move {
        // One byte at a time, never a newline; bounded to 200 bytes.
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..200 {
            ticker.tick().await;
            if slowloris.write_all(b"x").await.is_err() {
                return true;
            }
        }
        false
    });

    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(LineClient::connect(running.addr).await);
    }
    for round in 0..5 {
        for (i, client) in clients.iter_mut().enumerate() {
            let line = format!("client {i} round {round}");
            assert_eq!(client.ask(&line).await, line);
        }
    }
    assert_eq!(
        log.next_starting("disconnect").await,
        "disconnect frame not finished in time"
    );
    assert!(
        within("slowloris to notice", dripping).await.unwrap(),
        "the server closed the slowloris connection"
    );
    running.stop().await;
}

#[tokio::test]
async fn silent_client_is_closed_at_the_first_message_deadline() {
    let (events, mut log) = Events::new();
    let running = start(
        server()
            .router(observed_echo(&events))
            .classifier::<AnyClient>()
            .first_message_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut silent = LineClient::connect(running.addr).await;
    assert_eq!(log.next().await, "disconnect no first message in time");
    assert_eq!(silent.try_recv_line().await, None);
    running.stop().await;
}

#[tokio::test]
async fn oversize_first_message_closes_before_classification() {
    let (events, mut log) = Events::new();
    let running = start(
        server()
            .router(observed_echo(&events))
            .classifier::<AnyClient>()
            .first_message_max_length(16),
    )
    .await;
    let mut greedy = LineClient::connect(running.addr).await;
    greedy.send_raw(&[b'a'; 100]).await;
    assert_eq!(
        log.next().await,
        "disconnect limit: first message longer than 16 bytes"
    );
    assert_eq!(greedy.try_recv_line().await, None);
    running.stop().await;
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let (events, mut log) = Events::new();
    let running = start(
        server()
            .router(observed_echo(&events))
            .idle_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut idle = LineClient::connect(running.addr).await;
    assert_eq!(idle.ask("one message").await, "one message");
    assert_eq!(log.next().await, "disconnect idle timeout");
    assert_eq!(idle.try_recv_line().await, None);
    running.stop().await;
}

#[tokio::test]
async fn at_the_connection_limit_the_server_stops_accepting_then_resumes() {
    let (events, _log) = Events::new();
    let running = start(server().router(observed_echo(&events)).max_connections(2)).await;
    let mut first = LineClient::connect(running.addr).await;
    let mut second = LineClient::connect(running.addr).await;
    assert_eq!(first.ask("1").await, "1");
    assert_eq!(second.ask("2").await, "2");

    // The third handshake completes in the kernel's backlog, but the server
    // does not accept it while two are open.
    let mut third = LineClient::connect(running.addr).await;
    third.send_line("3").await;
    assert_eq!(running.connections.len(), 2);

    drop(first);
    assert_eq!(third.recv_line().await, "3");
    running.stop().await;
}

#[tokio::test]
async fn per_ip_cap_refuses_extra_connections() {
    let (events, _log) = Events::new();
    let running = start(
        server()
            .router(observed_echo(&events))
            .max_connections_per_ip(1),
    )
    .await;
    let mut allowed = LineClient::connect(running.addr).await;
    assert_eq!(allowed.ask("in").await, "in");
    let mut refused = LineClient::connect(running.addr).await;
    assert_eq!(refused.try_recv_line().await, None, "closed at once");
    assert_eq!(allowed.ask("still in").await, "still in");
    drop(allowed);
    running.stop().await;
}

/// One host holding every place but the reserved tenth gets no more, and
/// what it holds keeps working; another host still gets in, up to the last
/// place (issue 18: idle slots held for free).
#[tokio::test]
async fn the_last_places_are_kept_for_other_addresses() {
    let (events, _log) = Events::new();
    // Ten places: by default the last one is kept for other addresses.
    let running = start(server().router(observed_echo(&events)).max_connections(10)).await;
    let hog: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = Vec::new();
    for i in 0..9 {
        let mut client = LineClient::connect_from(hog, running.addr).await;
        assert_eq!(client.ask(&format!("hog {i}")).await, format!("hog {i}"));
        held.push(client);
    }
    let mut refused = LineClient::connect_from(hog, running.addr).await;
    assert_eq!(refused.try_recv_line().await, None, "closed at once");
    let mut other = LineClient::connect_from("127.0.0.2".parse().unwrap(), running.addr).await;
    assert_eq!(other.ask("other host").await, "other host");
    assert_eq!(held[0].ask("still in").await, "still in");
    assert_eq!(running.handle.stats().connections_refused, 1);
    drop((held, other));
    running.stop().await;
}

/// `reserve_for_other_ips(0)`: one address may take every place.
#[tokio::test]
async fn without_a_reserve_one_address_takes_every_place() {
    let (events, _log) = Events::new();
    let running = start(
        server()
            .router(observed_echo(&events))
            .max_connections(10)
            .reserve_for_other_ips(0),
    )
    .await;
    let mut held = Vec::new();
    for i in 0..10 {
        let mut client = LineClient::connect(running.addr).await;
        assert_eq!(client.ask(&format!("{i}")).await, format!("{i}"));
        held.push(client);
    }
    drop(held);
    running.stop().await;
}

/// A client that never reads while the server sends it 16 MiB.
async fn flood_a_non_reader(policy: SlowConsumerPolicy) -> (Vec<String>, u64) {
    flood_with(
        |server| server.slow_consumer(policy),
        policy == SlowConsumerPolicy::Disconnect,
    )
    .await
}

async fn flood_with(
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
    disconnects: bool,
) -> (Vec<String>, u64) {
    let (events, mut log) = Events::new();
    let sent_errors = events.clone();
    let router =
        observed_echo(&events).on_message_for("flood", move |conn: Connection, _m: Message| {
            let events = sent_errors.clone();
            async move {
                let chunk = vec![b'z'; 64 * 1024];
                for sent in 0..256 {
                    if let Err(error) = conn.send(chunk.clone()).await {
                        events.push(format!("send {sent} failed: {error}"));
                        return;
                    }
                }
                events.push("all sent");
            }
        });
    let running = start(configure(
        server()
            .router(router)
            .classifier::<Flood>()
            .outbound_queue_bytes(1024 * 1024),
    ))
    .await;
    let mut non_reader = LineClient::connect(running.addr).await;
    non_reader.send_line("flood").await;
    let outcome = log.next_starting("send").await;

    let queued = running
        .connections
        .list()
        .iter()
        .map(|c| c.stats().bytes_out)
        .max();
    let mut bystander = LineClient::connect(running.addr).await;
    assert_eq!(bystander.ask("unaffected").await, "unaffected");
    let mut seen = vec![outcome];
    if disconnects {
        seen.push(log.next_starting("disconnect").await);
    }
    drop(non_reader);
    running.stop().await;
    (seen, queued.unwrap_or(0))
}

struct Flood(bool);

impl Classifier for Flood {
    fn classify(first_frame: &[u8]) -> Self {
        Flood(first_frame == b"flood")
    }

    fn client_type(&self) -> ClientType {
        if self.0 {
            "flood".into()
        } else {
            "normal".into()
        }
    }
}

#[tokio::test]
async fn slow_consumer_is_disconnected_with_bounded_memory() {
    let (seen, _) = flood_a_non_reader(SlowConsumerPolicy::Disconnect).await;
    assert!(seen[0].contains("outbound queue of connection"), "{seen:?}");
    assert_eq!(seen[1], "disconnect peer does not read (slow consumer)");
}

#[tokio::test]
async fn slow_consumer_sends_fail_but_the_connection_stays() {
    let (seen, queued) = flood_a_non_reader(SlowConsumerPolicy::Fail).await;
    assert!(seen[0].contains("is full"), "{seen:?}");
    // The socket buffers plus the 1 MiB queue hold far less than 16 MiB.
    assert!(queued < 16 * 1024 * 1024, "{queued} bytes accepted");
}

#[tokio::test]
async fn slow_consumer_sends_time_out_when_waiting() {
    let (seen, _) = flood_a_non_reader(SlowConsumerPolicy::Wait(Duration::from_millis(200))).await;
    assert!(seen[0].contains("waited 200ms"), "{seen:?}");
}

#[tokio::test]
async fn panic_policy_continue_keeps_the_connection() {
    let (events, mut log) = Events::new();
    let router =
        observed_echo(&events).on_message_for("any", |conn: Connection, msg: String| async move {
            assert!(msg != "panic", "asked to panic");
            conn.send(msg).await
        });
    let running = start(
        server()
            .router(router)
            .classifier::<AnyClient>()
            .on_panic(PanicPolicy::Continue),
    )
    .await;
    let mut client = LineClient::connect(running.addr).await;
    client.send_line("panic").await;
    assert!(log.next().await.contains("panicked: asked to panic"));
    assert_eq!(client.ask("alive").await, "alive");
    running.stop().await;
}

#[tokio::test]
async fn handler_timeout_cancels_the_handler_and_the_connection_goes_on() {
    let (events, mut log) = Events::new();
    let running = start(
        server()
            .router(hanging_echo(&events))
            .classifier::<AnyClient>()
            .handler_timeout(Duration::from_millis(100)),
    )
    .await;
    let mut client = LineClient::connect(running.addr).await;
    client.send_line("hang").await;
    assert!(log.next().await.contains("did not finish within 100ms"));
    assert_eq!(client.ask("next").await, "next");
    running.stop().await;
}

#[tokio::test]
async fn slow_consumer_policy_per_client_type() {
    // The server waits by default, but "flood" peers are disconnected.
    let (seen, _) = flood_with(
        |server| server.slow_consumer_for("flood", SlowConsumerPolicy::Disconnect),
        true,
    )
    .await;
    assert_eq!(seen[1], "disconnect peer does not read (slow consumer)");
}

#[tokio::test]
async fn closing_a_connection_whose_peer_stopped_reading_ends_within_the_flush_timeout() {
    let (events, mut log) = Events::new();
    let router = observed_echo(&events).on_message_for(
        "flood",
        |conn: Connection, _m: Message| async move {
            // Fill the queue and the socket buffers of a peer that never reads, then close.
            let chunk = vec![b'z'; 64 * 1024];
            for _ in 0..512 {
                if conn.send(chunk.clone()).await.is_err() {
                    break;
                }
            }
            conn.close();
        },
    );
    let running = start(
        server()
            .router(router)
            .classifier::<Flood>()
            .outbound_queue_bytes(256 * 1024)
            .slow_consumer(SlowConsumerPolicy::Wait(Duration::from_millis(100)))
            .shutdown_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut non_reader = LineClient::connect(running.addr).await;
    non_reader.send_line("flood").await;
    assert_eq!(
        log.next_starting("disconnect").await,
        "disconnect closed by the application"
    );
    // The writer is blocked on a full socket; the task still ends, bounded by
    // the flush timeout and the linger, while the peer holds its socket open.
    let connections = running.connections.clone();
    support::eventually("the connection task to end", || connections.is_empty()).await;
    drop(non_reader);
    running.stop().await;
}

#[tokio::test]
async fn a_busy_stream_whose_reads_end_mid_frame_is_not_a_slowloris() {
    let (events, mut log) = Events::new();
    let running = start(
        server()
            .router(observed_echo(&events))
            .frame_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut client = TcpStream::connect(running.addr).await.unwrap();
    // 40 writes, 20 ms apart (800 ms in all, four frame timeouts), each
    // finishing one line and starting the next: never a complete buffer.
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    client.write_all(b"li").await.unwrap();
    for i in 0..40 {
        ticker.tick().await;
        client
            .write_all(format!("ne {i}\nli").as_bytes())
            .await
            .unwrap();
    }
    client.write_all(b"ne end\n").await.unwrap();
    let mut reader = tokio::io::BufReader::new(client);
    let mut echoed = 0;
    let mut line = String::new();
    while within(
        "an echo",
        tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line),
    )
    .await
    .unwrap()
        > 0
    {
        echoed += 1;
        if line == "line end\n" {
            break;
        }
        line.clear();
    }
    assert_eq!(echoed, 41);
    assert!(log.0.try_recv().is_err(), "no disconnect, no error");
    running.stop().await;
}
