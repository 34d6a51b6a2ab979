//! Handler scopes: a program that runs a server and a client gives each
//! its own attribute handlers. The server's handlers (no scope) answer every
//! line; the client's (`scope = "uplink"`) only record what arrives. Were the
//! client to run the server's handlers too, the two would answer each other
//! forever.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use flexi_socket::{Connection, Error, FlexiSocket, Message, on_connect, on_message};
use support::within;

/// What the client's handlers saw.
static CLIENT_SAW: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[on_message]
async fn server_answers(conn: Connection, line: String) -> flexi_socket::Result<()> {
    conn.send(format!("re: {line}")).await
}

#[on_connect(scope = "uplink")]
async fn client_connected(conn: Connection) -> flexi_socket::Result<()> {
    conn.send("hello").await
}

#[on_message(scope = "uplink")]
async fn client_records(line: String) {
    CLIENT_SAW.lock().unwrap().push(line);
}

#[tokio::test]
async fn a_server_and_a_client_in_one_process_run_their_own_handlers() {
    let server = FlexiSocket::server("127.0.0.1:0").bind().await.unwrap();
    let addr = server.local_addr().socket_addr().unwrap();
    let handle = server.handle();
    let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));

    let client = within(
        "connect",
        FlexiSocket::client(addr).handler_scope("uplink").connect(),
    )
    .await
    .unwrap();
    let reply = client
        .request_matching("status", Duration::from_secs(5), |m: &Message| {
            m.as_bytes() == b"re: status"
        })
        .await
        .unwrap();
    assert_eq!(reply, Message::from("re: status"));
    // The server answered the client's on_connect greeting once, and the
    // client's handler only recorded it: it did not answer back.
    support::eventually("the greeting's answer", || {
        CLIENT_SAW.lock().unwrap().contains(&"re: hello".to_owned())
    })
    .await;
    client.close().await;
    handle.shutdown();
    within("shutdown", serving).await.unwrap().unwrap();
    assert_eq!(*CLIENT_SAW.lock().unwrap(), ["re: hello"]);
    assert_eq!(
        handle.stats().messages_in,
        2,
        "hello and status, no echo loop"
    );
}

#[tokio::test]
async fn a_scope_no_handler_has_is_a_start_up_error_naming_the_known_ones() {
    let error = FlexiSocket::client("127.0.0.1:9")
        .handler_scope("uplnik")
        .spawn()
        .unwrap_err();
    assert!(
        matches!(&error, Error::NoHandlersInScope { scope: Some(scope), known }
            if scope == "uplnik" && known == &["uplink".to_owned()]),
        "{error}"
    );
    assert!(error.to_string().contains("\"uplink\""), "{error}");
}

/// A server and a client that both run the handlers without a scope are
/// told so once, at start-up: each would run the other's handlers.
#[tokio::test]
async fn a_server_and_a_client_both_unscoped_are_warned_about() {
    let captured = support::log::Captured::default();
    let _logging = captured.install();
    let server = FlexiSocket::server("127.0.0.1:0").bind().await.unwrap();
    // Built, not connected: the handlers are chosen when the client starts.
    let client = FlexiSocket::client(server.local_addr().to_string())
        .reconnect(flexi_socket::Reconnect::never())
        .spawn()
        .unwrap();
    assert_eq!(
        captured.count("both run the attribute handlers without a scope"),
        1,
        "{}",
        captured.text()
    );
    client.close().await;
    drop(server);
}
