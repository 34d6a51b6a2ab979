//! A peer flooding a server with bad frames does not flood its log: of each
//! kind of error, the first ten a second are logged, then one line counts
//! the rest; every error is still counted in the stats. Driven through the
//! in-memory harness, in paused time, with the log captured.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flexi_socket::testing::TestServer;
use flexi_socket::{Connection, FlexiSocket, Framing, Message, Router};

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_oversize_frames_is_logged_within_a_budget() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This test's runtime is the current thread: the server's tasks log here.
    let _logging = tracing::subscriber::set_default(subscriber);

    let echo = Router::new()
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await });
    let server = TestServer::start(
        FlexiSocket::server("in memory")
            .router(echo)
            .framing(Framing::lines().max_length(16)),
    )
    .unwrap();
    let mut peer = server.connect().await;
    let oversize = format!("{}\n", "x".repeat(40));
    for _ in 0..200 {
        peer.write(&oversize).await.unwrap();
    }
    peer.send("ok").await.unwrap();
    assert_eq!(peer.receive_str().await.unwrap(), "ok");
    assert_eq!(
        server.stats().errors.frame_too_large,
        200,
        "every one counted"
    );
    assert_eq!(captured.count("connection error"), 10, "ten logged");

    // A second later the next one is logged, after a line counting the rest.
    tokio::time::sleep(Duration::from_secs(1)).await;
    peer.write(&oversize).await.unwrap();
    peer.send("ok again").await.unwrap();
    assert_eq!(peer.receive_str().await.unwrap(), "ok again");
    assert_eq!(captured.count("190 more connection errors"), 1);
    // Eleven error lines, and the counting line ("... connection errors ...").
    assert_eq!(captured.count("connection error"), 11 + 1);
    server.shutdown().await;
}
