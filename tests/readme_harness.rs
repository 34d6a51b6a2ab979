//! The README's "Testing your handlers" example, run as a test: the README
//! shows this file from its first `use` on (`tests/readme.rs` checks they
//! stay the same).

use flexi_socket::testing::TestServer;
use flexi_socket::{Connection, DisconnectReason, FlexiSocket, Router};
use std::time::Duration;

fn server() -> TestServer {
    let router = Router::new().on_message(|conn: Connection, msg: String| async move {
        conn.send(format!("ACK {msg}")).await
    });
    TestServer::start(
        FlexiSocket::server("in memory") // the address is not used
            .router(router) // or the attribute handlers, as usual
            .idle_timeout(Duration::from_secs(300)),
    )
    .expect("the handlers pass the start-up checks")
}

#[tokio::test(start_paused = true)]
async fn answers_then_closes_an_idle_peer() {
    let server = server();
    let mut peer = server.connect().await; // or connect_from(addr) for per-IP limits
    peer.send("hello").await.unwrap(); // framed as the server frames it
    assert_eq!(peer.receive_str().await.unwrap(), "ACK hello");
    // Deadlines are kept on a clock of up to one-second ticks: 300 s idle
    // closes within 302 s.
    let reason = peer
        .expect_closed_within(Duration::from_secs(305))
        .await
        .unwrap();
    assert_eq!(reason, Some(DisconnectReason::IdleTimeout));
    assert_eq!(server.shutdown().await.connections_aborted, 0);
}
