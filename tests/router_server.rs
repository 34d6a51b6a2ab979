//! The TCP server driven by a hand-built `Router` (no attribute macros), over
//! real loopback sockets.

mod support;

use bytes::Bytes;
use flexi_socket::{Connection, DisconnectReason, Error, FlexiSocket, Framing, Router, State};
use support::servers::{
    Burst, Panel, alarms_only_router, burst_router, echo_reporting_errors, echo_router,
    hooks_router, panel_router,
};
use support::{Events, LineClient, start, within};
use tokio::io::AsyncWriteExt;

fn server() -> flexi_socket::ServerBuilder {
    FlexiSocket::server("127.0.0.1:0")
}

#[tokio::test]
async fn echoes_lines_in_order() {
    let running = start(server().router(echo_router())).await;
    let mut client = LineClient::connect(running.addr).await;
    for i in 0..100 {
        client.send_line(&format!("line {i}")).await;
    }
    for i in 0..100 {
        assert_eq!(client.recv_line().await, format!("line {i}"));
    }
    // "\r\n" is tolerated and not part of the message.
    assert_eq!(client.ask("windows\r").await, "windows");
    running.stop().await;
}

#[tokio::test]
async fn routes_by_client_type_with_default_fallback() {
    let running = start(server().router(panel_router()).classifier::<Panel>()).await;

    let mut alarm = LineClient::connect(running.addr).await;
    let mut sensor = LineClient::connect(running.addr).await;
    assert_eq!(alarm.ask("!!1234").await, "alarm:!!1234");
    assert_eq!(sensor.ask("##temp").await, "default(002):##temp");
    // Only the first message classifies: later messages keep the type.
    assert_eq!(alarm.ask("##not-a-sensor").await, "alarm:##not-a-sensor");
    assert_eq!(
        sensor.ask("!!not-an-alarm").await,
        "default(002):!!not-an-alarm"
    );
    running.stop().await;
}

#[tokio::test]
async fn unrouted_message_reaches_on_error_and_connection_lives_on() {
    let (events, mut log) = Events::new();
    let running = start(
        server()
            .router(alarms_only_router(events))
            .classifier::<Panel>()
            // On purpose: the test is about what happens to its messages.
            .allow_unhandled("002")
            .allow_unhandled("other"),
    )
    .await;
    let mut client = LineClient::connect(running.addr).await;
    client.send_line("no marker").await;
    let error = log.next_starting("error").await;
    assert!(
        error.contains("no on_message handler for client type other"),
        "{error}"
    );
    // The connection still works: a second client of type 001 is served as well.
    let mut alarm = LineClient::connect(running.addr).await;
    assert_eq!(alarm.ask("!!x").await, "ok");
    client.send_line("again").await;
    assert!(
        log.next_starting("error")
            .await
            .contains("client type other")
    );
    running.stop().await;
}

#[tokio::test]
async fn events_run_in_order_and_disconnect_fires_once() {
    let (events, mut log) = Events::new();
    let running = start(server().router(hooks_router()).state(events)).await;
    let mut client = LineClient::connect(running.addr).await;
    client.send_line("!!alpha").await;
    client.send_line("drop").await;
    client.send_line("beta").await;
    assert_eq!(client.recv_line().await, "<alpha>");
    assert_eq!(client.recv_line().await, "<beta>");
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
    running.stop().await;
    // Exactly once: nothing else was reported, even after shutdown.
    assert!(log.0.try_recv().is_err());
}

#[tokio::test]
async fn invalid_utf8_goes_to_on_error_and_the_connection_goes_on() {
    let (events, mut log) = Events::new();
    let router = Router::new()
        .on_message(|conn: Connection, msg: String| async move { conn.send(msg).await })
        .on_error(move |_conn: Connection, error: Error| {
            let events = events.clone();
            async move { events.push(error.to_string()) }
        });
    let running = start(server().router(router)).await;
    let mut client = LineClient::connect(running.addr).await;
    client.send_raw(b"caf\xe9\n").await;
    assert!(log.next().await.contains("not valid UTF-8"));
    assert_eq!(client.ask("still here").await, "still here");
    running.stop().await;
}

#[tokio::test]
async fn oversize_frame_is_discarded_and_the_next_frame_is_served() {
    let (events, mut log) = Events::new();
    let running = start(
        server()
            .router(echo_reporting_errors(events))
            .framing(Framing::lines().max_length(16)),
    )
    .await;
    let mut client = LineClient::connect(running.addr).await;
    client.send_raw(&[b'x'; 1000]).await;
    client.send_raw(b"\nexactly-16-bytes\n").await;
    assert_eq!(client.recv_line().await, "exactly-16-bytes");
    assert!(log.next().await.contains("limit is 16 bytes"));
    running.stop().await;
}

#[tokio::test]
async fn binary_garbage_and_views() {
    let router = Router::new().on_message(|conn: Connection, msg: Vec<u8>| async move {
        conn.send(format!("{} bytes", msg.len())).await
    });
    let running = start(server().router(router)).await;
    let mut client = LineClient::connect(running.addr).await;
    client.send_raw(&[0, 159, 146, 150, 255, b'\n']).await;
    assert_eq!(client.recv_line().await, "5 bytes");
    running.stop().await;
}

#[tokio::test]
async fn half_closed_peer_still_gets_every_reply() {
    let running = start(server().router(echo_router())).await;
    let mut client = LineClient::connect(running.addr).await;
    for i in 0..50 {
        client.send_line(&format!("before-fin {i}")).await;
    }
    client.finish_writing().await;
    let rest = String::from_utf8(client.read_to_end().await).unwrap();
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 50);
    assert_eq!(lines[49], "before-fin 49");
    running.stop().await;
}

#[tokio::test]
async fn frame_cut_by_eof_is_reported_not_delivered() {
    let (events, mut log) = Events::new();
    let on_message = events.clone();
    let router = Router::new()
        .on_message(move |_conn: Connection, msg: String| {
            let events = on_message.clone();
            async move { events.push(format!("message {msg}")) }
        })
        .on_error(move |_conn: Connection, error: Error| {
            let events = events.clone();
            async move { events.push(format!("error {error}")) }
        });
    let running = start(server().router(router)).await;
    let mut client = LineClient::connect(running.addr).await;
    client.send_raw(b"complete\nhalf a fr").await;
    client.finish_writing().await;
    assert_eq!(log.next().await, "message complete");
    let error = log.next().await;
    assert!(
        error.starts_with("error") && error.contains("9 bytes were not delivered"),
        "{error}"
    );
    running.stop().await;
}

#[tokio::test]
async fn reset_mid_frame_is_reported_and_others_are_served() {
    let (events, mut log) = Events::new();
    let router = echo_router().on_error(move |_conn: Connection, error: Error| {
        let events = events.clone();
        async move { events.push(format!("error {error}")) }
    });
    let running = start(server().router(router)).await;
    let mut other = LineClient::connect(running.addr).await;
    assert_eq!(other.ask("before").await, "before");

    let stream = within("connect", tokio::net::TcpStream::connect(running.addr))
        .await
        .unwrap();
    let mut stream = stream;
    stream.write_all(b"partial fra").await.unwrap();
    // SO_LINGER 0 makes close send RST instead of FIN.
    stream.set_zero_linger().unwrap();
    drop(stream);
    let error = log.next().await;
    assert!(error.starts_with("error"), "{error}");
    assert_eq!(other.ask("after").await, "after");
    running.stop().await;
}

#[tokio::test]
async fn handler_error_and_panic_are_isolated() {
    let (events, mut log) = Events::new();
    let disconnects = events.clone();
    let router = Router::new()
        .on_message(|conn: Connection, msg: String| async move {
            match msg.as_str() {
                "fail" => Err("bad input"),
                "panic" => panic!("boom"),
                _ => conn.send(msg).await.map_err(|_| "send failed"),
            }
        })
        .on_error(move |_conn: Connection, error: Error| {
            let events = events.clone();
            async move { events.push(format!("error {error}")) }
        })
        .on_disconnect(move |conn: Connection, _reason: DisconnectReason| {
            let events = disconnects.clone();
            async move { events.push(format!("disconnect {}", conn.id())) }
        });
    let running = start(server().router(router)).await;
    let mut survivor = LineClient::connect(running.addr).await;
    let mut victim = LineClient::connect(running.addr).await;
    assert_eq!(survivor.ask("hello").await, "hello");

    victim.send_line("fail").await;
    let failed = log.next().await;
    assert!(failed.contains("failed: bad input"), "{failed}");
    assert_eq!(victim.ask("still alive").await, "still alive");

    victim.send_line("panic").await;
    assert!(log.next().await.contains("panicked: boom"));
    assert!(log.next().await.starts_with("disconnect"));
    assert_eq!(
        victim.try_recv_line().await,
        None,
        "the panicking connection is closed"
    );

    assert_eq!(survivor.ask("unaffected").await, "unaffected");
    let mut newcomer = LineClient::connect(running.addr).await;
    assert_eq!(newcomer.ask("new").await, "new");
    running.stop().await;
    // The survivor and the newcomer leave at shutdown: one event each, distinct ids.
    let mut rest = [log.next().await, log.next().await];
    rest.sort();
    assert!(
        rest.iter().all(|event| event.starts_with("disconnect ")),
        "{rest:?}"
    );
    assert_ne!(rest[0], rest[1], "two different connections");
    assert!(
        log.0.try_recv().is_err(),
        "exactly one disconnect per connection"
    );
}

/// Starting a handler runs user code too: a hand-written closure that panics
/// before it returns its future is that handler's panic, caught by the same
/// guard as a panic in the future's first poll.
#[tokio::test]
async fn a_closure_that_panics_before_returning_its_future_is_a_handler_panic() {
    let (events, mut log) = Events::new();
    let router = Router::new()
        .on_message(|conn: Connection, msg: String| {
            if msg == "panic" {
                panic!("before the future");
            }
            async move { conn.send(msg).await }
        })
        .on_error(move |_conn: Connection, error: Error| {
            let events = events.clone();
            async move { events.push(format!("error {error}")) }
        });
    let running = start(server().router(router)).await;
    let mut client = LineClient::connect(running.addr).await;
    assert_eq!(client.ask("hello").await, "hello");

    client.send_line("panic").await;
    let error = log.next().await;
    assert!(error.contains("panicked: before the future"), "{error}");
    assert_eq!(
        client.try_recv_line().await,
        None,
        "the panicking connection is closed"
    );
    running.stop().await;
}

#[tokio::test]
async fn connections_handle_lists_sends_and_broadcasts() {
    let router = Router::new().on_message(|conn: Connection, _msg: Bytes| async move {
        conn.send(format!("id {}", conn.id())).await
    });
    let running = start(server().router(router).classifier::<Panel>()).await;
    let mut alarm = LineClient::connect(running.addr).await;
    let mut sensor = LineClient::connect(running.addr).await;
    let alarm_id: u64 = alarm.ask("!!").await[3..].parse().unwrap();
    let sensor_id: u64 = sensor.ask("##").await[3..].parse().unwrap();

    let listed: Vec<u64> = running
        .connections
        .list()
        .iter()
        .map(Connection::id)
        .collect();
    assert_eq!(listed, vec![alarm_id, sensor_id]);

    running
        .connections
        .send_to(sensor_id, "just you")
        .await
        .unwrap();
    assert_eq!(sensor.recv_line().await, "just you");
    assert!(matches!(
        running.connections.send_to(9999, "nobody").await,
        Err(Error::UnknownConnection { id: 9999 })
    ));

    assert_eq!(
        running.connections.broadcast_to("001", "alarms only").await,
        1
    );
    assert_eq!(alarm.recv_line().await, "alarms only");
    assert_eq!(running.connections.broadcast("everyone").await, 2);
    assert_eq!(alarm.recv_line().await, "everyone");
    assert_eq!(sensor.recv_line().await, "everyone");

    let stats = running.connections.get(alarm_id).unwrap().stats();
    assert_eq!((stats.messages_in, stats.messages_out), (1, 3));
    running.stop().await;
}

#[tokio::test]
async fn per_connection_and_shared_state() {
    #[derive(Clone)]
    struct Greeting(&'static str);
    let router = Router::new().on_message(|conn: Connection, msg: String| async move {
        let count = conn
            .with_state(|n: &mut u32| {
                *n += 1;
                *n
            })
            .unwrap_or_else(|| {
                conn.set_state(1u32);
                1
            });
        let Greeting(greeting) = conn.app_state::<Greeting>().cloned().unwrap();
        conn.send(format!("{greeting} {msg} #{count}")).await
    });
    let running = start(server().router(router).state(Greeting("hi"))).await;
    let mut first = LineClient::connect(running.addr).await;
    let mut second = LineClient::connect(running.addr).await;
    assert_eq!(first.ask("a").await, "hi a #1");
    assert_eq!(first.ask("b").await, "hi b #2");
    assert_eq!(second.ask("c").await, "hi c #1");
    running.stop().await;
}

#[tokio::test]
async fn missing_state_is_a_clear_error() {
    let (events, mut log) = Events::new();
    let router = Router::new()
        .on_message(|_conn: Connection, State(_n): State<u64>| async move {})
        .on_error(move |_conn: Connection, error: Error| {
            let events = events.clone();
            async move { events.push(error.to_string()) }
        });
    let running = start(server().router(router)).await;
    let mut client = LineClient::connect(running.addr).await;
    client.send_line("x").await;
    assert!(log.next().await.contains("State<u64>"));
    running.stop().await;
}

#[tokio::test]
async fn start_up_checks_reject_bad_routing_tables() {
    let duplicate = Router::new()
        .on_message_for("001", |_c: Connection, _m: Bytes| async {})
        .on_message_for("001", |_c: Connection, _m: String| async {});
    let error = server()
        .router(duplicate)
        .classifier::<Panel>()
        .bind()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::DuplicateHandler { .. }), "{error}");

    let unknown = Router::new().on_message_for("999", |_c: Connection, _m: Bytes| async {});
    let error = server()
        .router(unknown)
        .classifier::<Panel>()
        .bind()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("999") && text.contains("001, 002, other"),
        "{text}"
    );

    let typed_without_classifier =
        Router::new().on_message_for("001", |_c: Connection, _m: Bytes| async {});
    let error = server()
        .router(typed_without_classifier)
        .bind()
        .await
        .unwrap_err();
    assert!(error.to_string().contains(".classifier::<"), "{error}");

    let error = server().router(Router::new()).bind().await.unwrap_err();
    assert!(
        error.to_string().contains("use that_crate as _;"),
        "{error}"
    );
}

#[tokio::test]
async fn bind_failure_names_the_address() {
    let running = start(server().router(echo_router())).await;
    let taken = running.addr.to_string();
    let error = FlexiSocket::server(&taken)
        .router(echo_router())
        .bind()
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&taken), "{error}");
    running.stop().await;
}

#[tokio::test]
async fn shutdown_flushes_replies_and_reports_the_reason() {
    let (events, mut log) = Events::new();
    let (burst_started, mut burst_log) = Events::new();
    let running = start(
        server()
            .router(burst_router(events, burst_started))
            .classifier::<Burst>()
            .outbound_queue(4),
    )
    .await;
    let mut client = LineClient::connect(running.addr).await;
    // The client reads nothing until the shutdown is under way: the replies
    // sit in the 4-message queue and the socket buffers when it starts.
    client.send_line("burst").await;
    burst_log.next().await;
    let stop = tokio::spawn(running.stop());
    for i in 0..2_000 {
        assert_eq!(client.recv_line().await, format!("reply {i}"));
    }
    assert_eq!(client.try_recv_line().await, None, "then the server closed");
    let report = within("shutdown", stop).await.unwrap();
    assert_eq!(
        (report.connections_closed, report.undelivered_messages),
        (1, 0)
    );
    assert_eq!(log.next().await, "disconnect: server shutdown");
}

#[tokio::test]
async fn shutdown_counts_what_a_resetting_peer_left_unwritten() {
    const REPLIES: usize = 4_096;
    let (events, mut log) = Events::new();
    let (queued, disconnected) = (events.clone(), events);
    let router = Router::new()
        .on_message(move |conn: Connection, _msg: Bytes| {
            let queued = queued.clone();
            async move {
                // 16 MiB: more than the socket buffers take from a peer that reads nothing.
                let reply = "x".repeat(4 * 1024);
                for _ in 0..REPLIES {
                    conn.send(reply.as_str()).await?;
                }
                queued.push("queued");
                Ok::<(), Error>(())
            }
        })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let events = disconnected.clone();
            async move { events.push(format!("disconnect: {reason}")) }
        });
    let running = start(
        server()
            .router(router)
            .outbound_queue(REPLIES)
            .outbound_queue_bytes(32 << 20),
    )
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4 * 1024).unwrap();
    let mut client = within("connect", socket.connect(running.addr))
        .await
        .unwrap();
    client.write_all(b"go\n").await.unwrap();
    assert_eq!(log.next().await, "queued");
    let stop = tokio::spawn(running.stop());
    assert_eq!(log.next().await, "disconnect: server shutdown");
    // The peer goes away with a reset: what is still queued cannot be written.
    client.set_zero_linger().unwrap();
    drop(client);
    let report = within("shutdown", stop).await.unwrap();
    assert_eq!(
        (report.connections_closed, report.connections_aborted),
        (1, 0)
    );
    assert!(
        (1..=REPLIES as u64).contains(&report.undelivered_messages),
        "{report:?}"
    );
}

#[tokio::test]
async fn server_stats_count_traffic_and_errors_by_kind() {
    let running = start(
        server()
            .router(echo_router())
            .framing(Framing::lines().max_length(8)),
    )
    .await;
    let mut client = LineClient::connect(running.addr).await;
    assert_eq!(client.ask("one").await, "one");
    assert_eq!(client.ask("two").await, "two");
    client.send_raw(b"far too long for eight bytes\n").await;
    assert_eq!(client.ask("three").await, "three");
    let stats = running.handle.stats();
    assert_eq!(stats.connections_open, 1);
    assert_eq!(stats.connections_total, 1);
    assert_eq!((stats.messages_in, stats.messages_out), (3, 3));
    assert_eq!(stats.bytes_in, 11);
    assert_eq!(stats.bytes_out, 14, "framing included");
    assert_eq!(stats.errors.frame_too_large, 1);
    assert_eq!(stats.errors.io, 0);
    running.stop().await;
}

/// Connections are accepted in the task that runs `serve()`: a send made from
/// that very task must still wake the connection's writer (which runs in the
/// connection's own task), or the reply would wait for the next wake-up.
#[tokio::test]
async fn a_send_from_the_task_that_serves_reaches_the_peer() {
    let (connected, mut ids) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::new().on_connect(move |conn: Connection| {
        let connected = connected.clone();
        async move {
            let _ = connected.send(conn.id());
        }
    });
    let server = server().router(router).bind().await.unwrap();
    let addr = server.local_addr().socket_addr().unwrap();
    let connections = server.connections();
    let handle = server.handle();
    let serving = tokio::spawn(async move {
        let sending = async {
            let id = ids.recv().await.expect("a connection opens");
            connections.send_to(id, "hello").await
        };
        let (served, sent) =
            tokio::join!(server.serve_with_shutdown(std::future::pending()), sending);
        (served, sent)
    });
    let mut client = LineClient::connect(addr).await;
    assert_eq!(client.recv_line().await, "hello");
    handle.shutdown();
    let (served, sent) = within("the server to stop", serving).await.unwrap();
    sent.unwrap();
    served.unwrap();
}

/// The frames of one read are handled in the poll that read them while
/// each handler finishes at once; what has to wait (a handler that awaits,
/// the report of a failure, a discarded frame's report) goes on elsewhere,
/// and the frames after it keep their order.
#[tokio::test]
async fn frames_after_one_that_waits_keep_their_order() {
    let (events, mut log) = Events::new();
    let router = Router::new()
        .on_message(|conn: Connection, msg: String| async move {
            if msg.starts_with("wait") {
                wait_for_another_task().await;
            }
            if msg == "fail" {
                return Err("bad input");
            }
            conn.send(msg).await.map_err(|_| "send failed")
        })
        .on_error(move |_conn: Connection, error: Error| {
            let events = events.clone();
            async move {
                wait_for_another_task().await;
                events.push(error.to_string());
            }
        });
    let running = start(
        server()
            .router(router)
            .framing(Framing::lines().max_length(16)),
    )
    .await;
    let mut client = LineClient::connect(running.addr).await;

    // A failure whose report waits.
    client.send_raw(b"a\nfail\nb\n").await;
    assert_eq!(client.recv_line().await, "a");
    assert_eq!(client.recv_line().await, "b");
    assert!(log.next().await.contains("failed: bad input"));

    // A frame discarded among complete ones.
    let mut batch = b"c\n".to_vec();
    batch.extend_from_slice(&[b'x'; 40]);
    batch.extend_from_slice(b"\nd\n");
    client.send_raw(&batch).await;
    assert_eq!(client.recv_line().await, "c");
    assert_eq!(client.recv_line().await, "d");
    assert!(log.next().await.contains("limit is 16 bytes"));

    // A handler that waits, then more frames.
    client.send_raw(b"e\nwait f\ng\nwait h\ni\n").await;
    for expected in ["e", "wait f", "g", "wait h", "i"] {
        assert_eq!(client.recv_line().await, expected);
    }
    running.stop().await;
}

/// Waits until a task just spawned has run: the awaiting future is pending
/// and woken from elsewhere, as when it waits for I/O or a lock.
async fn wait_for_another_task() {
    tokio::spawn(async {})
        .await
        .expect("an empty task completes");
}

/// A broadcast's send that must wait (here a `before_send` held on one
/// connection) holds up only itself: the other connection has the line
/// while it waits, and the count includes both once it is let go.
#[tokio::test]
async fn a_broadcast_reaches_the_others_while_one_send_waits() {
    use flexi_socket::Message;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::sync::Semaphore;
    // The held connection's before_send waits for a permit; the others pass.
    let gate = Arc::new(Semaphore::new(0));
    let held_id = Arc::new(AtomicU64::new(u64::MAX));
    let (held, held_by) = (gate.clone(), held_id.clone());
    let router = Router::new()
        .on_message(|conn: Connection, _msg: Bytes| async move {
            conn.send(format!("id {}", conn.id())).await
        })
        .before_send(move |conn: Connection, msg: Message| {
            let (gate, held_by) = (held.clone(), held_by.clone());
            async move {
                if conn.id() == held_by.load(Ordering::Relaxed) && msg.as_bytes() == b"news" {
                    gate.acquire().await.expect("gate open").forget();
                }
                Some(Message::from(format!(
                    "<{}>",
                    String::from_utf8_lossy(&msg)
                )))
            }
        });
    let running = start(server().router(router)).await;
    let mut first = LineClient::connect(running.addr).await;
    let first_id: u64 = first.ask("hi").await["<id ".len()..]
        .trim_end_matches('>')
        .parse()
        .unwrap();
    held_id.store(first_id, Ordering::Relaxed);
    let mut second = LineClient::connect(running.addr).await;
    assert!(second.ask("hi").await.starts_with("<id "));

    let connections = running.connections.clone();
    let broadcast = tokio::spawn(async move { connections.broadcast("news").await });
    // The second has it while the first's send still waits at its gate.
    assert_eq!(second.recv_line().await, "<news>");
    assert!(!broadcast.is_finished());
    gate.add_permits(1);
    assert_eq!(within("the broadcast", broadcast).await.unwrap(), 2);
    assert_eq!(first.recv_line().await, "<news>");
    drop((first, second));
    running.stop().await;
}
