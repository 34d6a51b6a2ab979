//! A `Connection` the application keeps after its peer left holds no socket:
//! the outbound queue lets the socket go when the connection closes, so the
//! file descriptors are back where they started while the handles live on.

mod support;

use std::sync::{Arc, Mutex};

use flexi_socket::{Connection, DisconnectReason, FlexiSocket, Router};
use support::{LineClient, eventually, start, within};
use tokio::sync::Semaphore;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_kept_after_it_closed_holds_no_socket() {
    const CLIENTS: u32 = 20;
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    let disconnects = Arc::new(Semaphore::new(0));
    let counted = Arc::clone(&disconnects);
    let router = Router::new()
        .on_message(move |conn: Connection, msg: String| {
            keep.lock().unwrap().push(conn.clone());
            async move { conn.send(msg).await }
        })
        .on_disconnect(move |_conn: Connection, _reason: DisconnectReason| {
            let counted = Arc::clone(&counted);
            async move { counted.add_permits(1) }
        });
    let running = start(FlexiSocket::server("127.0.0.1:0").router(router)).await;
    let baseline = open_fds();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = LineClient::connect(running.addr).await;
        assert_eq!(client.ask("hi").await, "hi");
        clients.push(client);
    }
    // A broadcast written straight to each idle socket, as the queue holds it.
    assert_eq!(
        running.connections.broadcast("news").await,
        CLIENTS as usize
    );
    drop(clients);
    within("every disconnect", disconnects.acquire_many(CLIENTS))
        .await
        .unwrap()
        .forget();
    let connections = running.connections.clone();
    eventually("an empty registry", || connections.is_empty()).await;
    assert_eq!(held.lock().unwrap().len(), CLIENTS as usize);
    eventually("file descriptors back to baseline", || {
        open_fds() == baseline
    })
    .await;
    running.stop().await;
}
