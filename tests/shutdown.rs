//! Graceful shutdown under load loses nothing: 50 clients stream sequenced
//! messages and count the server's ACKs; the server shuts down mid-stream. The
//! set of messages the server handled equals the set the clients saw
//! acknowledged, nothing is handled twice, no client sees a reset, and no
//! connection has to be cut at the deadline. Repeated at several trigger points.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flexi_socket::{Connection, FlexiSocket, Router};
use support::{start, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

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

impl Handled {
    fn new() -> Self {
        Self {
            connected: Semaphore::new(0),
            messages: Mutex::new(Vec::new()),
            reached: Notify::new(),
        }
    }
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

/// Streams `c<client>-<seq>` lines within a window of unacknowledged ones
/// until the server closes; returns what was acknowledged.
async fn stream_until_closed(
    addr: SocketAddr,
    client: usize,
    mut go: watch::Receiver<bool>,
) -> BTreeSet<String> {
    let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    // Everyone starts once the server has accepted everyone.
    within("the start signal", go.wait_for(|go| *go))
        .await
        .unwrap();
    let (reader, mut writer) = stream.into_split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let credits = Arc::clone(&window);
    let writing = tokio::spawn(async move {
        for seq in 0..MAX_PER_CLIENT {
            // Closed by the reader when the server's FIN arrives.
            let Ok(permit) = credits.acquire().await else {
                break;
            };
            permit.forget();
            if writer
                .write_all(format!("c{client}-{seq}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut lines = BufReader::new(reader).lines();
    let mut acked = BTreeSet::new();
    while let Some(line) = within("an ACK or EOF", lines.next_line())
        .await
        .unwrap_or_else(|error| panic!("client {client} saw {error} (a reset?)"))
    {
        let message = line.strip_prefix("ACK ").expect("ACK lines").to_owned();
        assert!(acked.insert(message), "duplicate ACK");
        window.add_permits(1);
    }
    window.close();
    within("the writer", writing).await.unwrap();
    acked
}

async fn shutdown_mid_stream(trigger_at: usize) {
    let handled = Arc::new(Handled::new());
    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            .router(acking_router(Arc::clone(&handled), trigger_at))
            .shutdown_timeout(Duration::from_secs(8)),
    )
    .await;
    let (go, start_signal) = watch::channel(false);
    let mut clients = JoinSet::new();
    for client in 0..CLIENTS {
        clients.spawn(stream_until_closed(
            running.addr,
            client,
            start_signal.clone(),
        ));
    }
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
    let report = running.stop().await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_right_after_the_first_message() {
    shutdown_mid_stream(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_early_in_the_stream() {
    shutdown_mid_stream(500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deep_in_the_stream() {
    shutdown_mid_stream(20_000).await;
}
