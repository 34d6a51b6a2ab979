//! Graceful shutdown under load loses nothing: 50 clients stream sequenced
//! messages and count the server's ACKs; the server shuts down mid-stream. The
//! set of messages the server handled equals the set the clients saw
//! acknowledged, nothing is handled twice, no client sees a reset, and no
//! connection has to be cut at the deadline. Repeated at several trigger points.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flexi_socket::FlexiSocket;
use support::servers::{CLIENTS, Handled, MAX_PER_CLIENT, WINDOW, acking_router};
use support::{start, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

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
    handled
        .shut_down_mid_stream(trigger_at, go, clients, running.stop())
        .await;
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
