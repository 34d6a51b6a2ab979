//! Broadcasts over TCP, where a frame that finds a connection's writer idle
//! is written by the broadcasting task itself: each connection still gets
//! its frames in the order they were sent, a client that stops reading
//! delays only itself, and the counters include what was written that way.

mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flexi_socket::{
    Connection, Connections, DisconnectReason, FlexiSocket, Router, SlowConsumerPolicy,
};
use support::{LineClient, Running, start, within};

fn server() -> flexi_socket::ServerBuilder {
    FlexiSocket::server("127.0.0.1:0")
}

/// The server's connections, known once it runs.
type Known = Arc<OnceLock<Connections>>;

/// Starts `builder` with [`router`].
async fn serve(builder: flexi_socket::ServerBuilder) -> Running {
    let known = Known::default();
    let running = start(builder.router(router(known.clone()))).await;
    known.set(running.connections.clone()).expect("set once");
    running
}

/// `go` sends "a", broadcasts "b" and sends "c"; `quiet` broadcasts "b"
/// first, onto an empty queue, then sends "c"; `stats` answers the
/// connection's outbound counters; anything else is echoed.
fn router(known: Known) -> Router {
    Router::new().on_message(move |conn: Connection, msg: String| {
        let connections = known.get().expect("known before a message").clone();
        async move {
            match msg.as_str() {
                "go" => {
                    conn.send("a").await?;
                    connections.broadcast("b").await;
                    conn.send("c").await
                }
                "quiet" => {
                    connections.broadcast("b").await;
                    conn.send("c").await
                }
                "stats" => {
                    let stats = conn.stats();
                    conn.send(format!("{} {}", stats.messages_out, stats.bytes_out))
                        .await
                }
                _ => conn.send(msg).await,
            }
        }
    })
}

/// A broadcast made between a handler's own sends arrives between them on
/// that connection, whether the handler's earlier reply still waits in the
/// queue or the queue was empty; the other connection has it too.
#[tokio::test]
async fn a_broadcast_between_a_handler_s_own_sends_arrives_between_them() {
    let running = serve(server()).await;
    let mut sender = LineClient::connect(running.addr).await;
    let mut other = LineClient::connect(running.addr).await;
    // Both are listed once they have been answered.
    assert_eq!(sender.ask("hello").await, "hello");
    assert_eq!(other.ask("hello").await, "hello");
    for trigger in ["go", "quiet", "go"] {
        sender.send_line(trigger).await;
        let mut seen = Vec::new();
        for _ in 0..if trigger == "go" { 3 } else { 2 } {
            seen.push(sender.recv_line().await);
        }
        let expected: &[&str] = if trigger == "go" {
            &["a", "b", "c"]
        } else {
            &["b", "c"]
        };
        assert_eq!(seen, expected, "after {trigger}");
        assert_eq!(other.recv_line().await, "b");
    }
    running.stop().await;
}

/// A line written by the broadcast itself counts like any other: the
/// connection's messages and bytes out include it.
#[tokio::test]
async fn a_connection_s_counters_include_the_broadcasts_it_was_sent() {
    let running = serve(server()).await;
    let mut client = LineClient::connect(running.addr).await;
    // "hello\n" (6 bytes) was counted when "stats" ran ...
    assert_eq!(client.ask("hello").await, "hello");
    assert_eq!(client.ask("stats").await, "1 6");
    let reached = within("the broadcast", running.connections.broadcast("news")).await;
    assert_eq!(reached, 1);
    assert_eq!(client.recv_line().await, "news");
    // ... then "1 6\n" (4 bytes) and "news\n" (5 bytes).
    assert_eq!(client.ask("stats").await, "3 15");
    running.stop().await;
}

/// A client that stops reading fills its socket, then its queue: from then
/// on a broadcast (here under the `Fail` policy) skips it and counts only
/// the others, who get every line meanwhile. Once it reads again it has
/// every line that counted it, in order and whole, and none of the others;
/// and broadcasts reach it again.
#[tokio::test]
async fn a_client_that_stops_reading_misses_only_what_it_had_no_room_for_and_keeps_its_order() {
    const MAX_BROADCASTS: usize = 10_000;
    let running = serve(
        server()
            .slow_consumer(SlowConsumerPolicy::Fail)
            .outbound_queue_bytes(256 * 1024),
    )
    .await;
    let mut stalled = LineClient::connect(running.addr).await;
    let mut reading = LineClient::connect(running.addr).await;
    assert_eq!(stalled.ask("hello").await, "hello");
    assert_eq!(reading.ask("hello").await, "hello");
    let padding = "x".repeat(16 * 1024);
    let line = |n: usize| format!("{n} {padding}");
    // Which lines the stalled client was counted for.
    let mut counted_for_stalled = Vec::new();
    let mut skipped = 0;
    for n in 0..MAX_BROADCASTS {
        let reached = within("a broadcast", running.connections.broadcast(line(n))).await;
        assert_eq!(reading.recv_line().await, line(n), "the reading client");
        match reached {
            2 => counted_for_stalled.push(n),
            1 => skipped += 1,
            other => panic!("broadcast {n} reached {other} connections"),
        }
        if skipped == 3 {
            break;
        }
    }
    assert_eq!(skipped, 3, "the stalled client's queue never filled");
    // Reading again, it has exactly the lines it was counted for, in order.
    for n in counted_for_stalled {
        assert_eq!(stalled.recv_line().await, line(n), "the stalled client");
    }
    let reached = within("a broadcast", running.connections.broadcast("after")).await;
    assert_eq!(reached, 2);
    assert_eq!(stalled.recv_line().await, "after");
    assert_eq!(reading.recv_line().await, "after");
    running.stop().await;
}

/// A peer that resets its connection is reported as reset even when a
/// broadcast's write meets the reset before the connection's own read: the
/// socket's error (which the kernel reports once) stays the reader's.
#[tokio::test]
async fn a_reset_that_a_broadcast_meets_first_is_still_reported_as_a_reset() {
    let (told, mut reasons) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::new()
        .on_message(|conn: Connection, msg: String| async move { conn.send(msg).await })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let told = told.clone();
            async move {
                let _ = told.send(reason);
            }
        });
    let running = start(server().router(router)).await;
    let mut client = LineClient::connect(running.addr).await;
    assert_eq!(client.ask("hello").await, "hello");
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let stream = client.reader.into_inner().reunite(client.writer).unwrap();
    // Closed with a zero linger: a reset, not a FIN (and no wait on drop).
    #[allow(deprecated)]
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
    // Blocking, so the server's task cannot read the reset meanwhile.
    std::thread::sleep(Duration::from_millis(50));
    within("the broadcast", running.connections.broadcast("news")).await;
    let reason = within("on_disconnect", reasons.recv()).await.unwrap();
    let reset = std::io::Error::from_raw_os_error(libc::ECONNRESET).to_string();
    assert!(
        matches!(&reason, DisconnectReason::Reset(error) if *error == reset),
        "disconnected for {reason:?}"
    );
    running.stop().await;
}
