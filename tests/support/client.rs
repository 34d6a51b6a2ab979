//! Client mode for the tests: a server that greets and answers, a client
//! that reports what it receives, and retries quick enough for a test.

use std::time::Duration;

use flexi_socket::{Connection, DisconnectReason, Reconnect, Router};

use super::Events;

/// A server that says "welcome" on connect, answers "re:<msg>", and reports
/// every message it gets.
pub fn server_router(events: &Events) -> Router {
    let seen = events.clone();
    Router::new()
        .on_connect(|conn: Connection| async move {
            let _ = conn.send("welcome").await;
        })
        .on_message(move |conn: Connection, msg: String| {
            let seen = seen.clone();
            async move {
                seen.push(format!("server got {msg}"));
                conn.send(format!("re:{msg}")).await
            }
        })
}

/// A client that reports what it receives and when it disconnects.
pub fn client_router(events: &Events) -> Router {
    let received = events.clone();
    let disconnects = events.clone();
    Router::new()
        .on_message(move |_conn: Connection, msg: String| {
            let received = received.clone();
            async move { received.push(format!("client got {msg}")) }
        })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let disconnects = disconnects.clone();
            async move { disconnects.push(format!("client disconnected: {reason}")) }
        })
}

pub fn quick_retries() -> Reconnect {
    Reconnect::default()
        .initial_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(100))
}
