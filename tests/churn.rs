//! Connect/close churn: after 10 000 cycles the open file descriptors and the
//! connection registry are back where they started. Alone in its binary, so no
//! other test's sockets blur the count.

mod support;

use std::sync::Arc;

use flexi_socket::{Connection, DisconnectReason, FlexiSocket, Message, Router};
use support::{LineClient, eventually, start, within};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connect_close_cycles_leave_nothing_behind() {
    const CYCLES: u32 = 10_000;
    const AT_ONCE: u32 = 50;
    let disconnects = Arc::new(Semaphore::new(0));
    let counted = Arc::clone(&disconnects);
    let router = Router::new()
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await })
        .on_disconnect(move |_conn: Connection, _reason: DisconnectReason| {
            let counted = Arc::clone(&counted);
            async move { counted.add_permits(1) }
        });
    let running = start(FlexiSocket::server("127.0.0.1:0").router(router)).await;
    // One warm-up cycle so lazily created runtime resources are in the baseline.
    drop(LineClient::connect(running.addr).await);
    within("warm-up disconnect", disconnects.acquire())
        .await
        .unwrap()
        .forget();
    let connections = running.connections.clone();
    eventually("the warm-up connection closed", || connections.is_empty()).await;
    let baseline = open_fds();

    for _ in 0..CYCLES / AT_ONCE {
        let mut wave = JoinSet::new();
        for i in 0..AT_ONCE {
            let addr = running.addr;
            wave.spawn(async move {
                let mut client = LineClient::connect(addr).await;
                // Every other client says something first; the rest just leave.
                if i % 2 == 0 {
                    assert_eq!(client.ask("hi").await, "hi");
                }
            });
        }
        while let Some(done) = within("a wave", wave.join_next()).await {
            done.unwrap();
        }
    }
    within("every disconnect", disconnects.acquire_many(CYCLES))
        .await
        .unwrap()
        .forget();
    // on_disconnect runs before the socket is flushed and closed; the registry
    // entry goes last, once the socket is gone.
    eventually("an empty registry", || connections.is_empty()).await;
    assert_eq!(open_fds(), baseline, "file descriptors back to baseline");
    running.stop().await;
}
