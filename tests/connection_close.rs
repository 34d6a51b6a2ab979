//! Closing a connection from this side: `send` after `Connection::close()`
//! fails and never reaches the peer while what was sent before does,
//! `closed()` waits for the end, a client's own `close()` is reported as
//! closed (not as a server shutdown), and `Connection` shows as `#id peer
//! (client type)`.

mod support;

use flexi_socket::{Classifier, Connection, DisconnectReason, Error, FlexiSocket, Router};
use support::client::server_router;
use support::{Events, LineClient, Running, start, within};

#[derive(Classifier)]
enum Kind {
    #[client_type = "001"]
    #[classify(prefix = "!!")]
    Alarm,
    #[classify(default)]
    Other,
}

/// A server whose handlers report what `close`, `send` and `closed` did.
async fn server(events: &Events) -> Running {
    let (on_message, on_disconnect, on_error) = (events.clone(), events.clone(), events.clone());
    let router = Router::new()
        .on_message(move |conn: Connection, msg: String| {
            let events = on_message.clone();
            async move {
                match msg.trim_start_matches("!!") {
                    "quit" => {
                        conn.send("bye").await?;
                        conn.close();
                        let late = conn.send("late").await;
                        events.push(format!("late send: {}", refused(&late)));
                    }
                    "who" => conn.send(conn.to_string()).await?,
                    "wait" => conn.closed().await,
                    other => conn.send(other.to_owned()).await?,
                }
                Ok::<_, Error>(())
            }
        })
        .on_disconnect(move |conn: Connection, reason: DisconnectReason| {
            let events = on_disconnect.clone();
            async move {
                let sent = conn.send("from on_disconnect").await;
                events.push(format!(
                    "disconnected: {reason}; its send: {}",
                    refused(&sent)
                ));
            }
        })
        .on_error(move |_conn: Connection, error: Error| {
            let events = on_error.clone();
            async move { events.push(format!("error: {error}")) }
        });
    start(
        FlexiSocket::server("127.0.0.1:0")
            .classifier::<Kind>()
            .router(router),
    )
    .await
}

fn refused(result: &flexi_socket::Result<()>) -> &'static str {
    match result {
        Ok(()) => "accepted",
        Err(Error::ConnectionClosed { .. }) => "refused as closed",
        Err(_) => "failed otherwise",
    }
}

#[tokio::test]
async fn a_send_after_close_is_refused_and_what_came_before_is_flushed() {
    let (events, mut log) = Events::new();
    let running = server(&events).await;
    let mut client = LineClient::connect(running.addr).await;
    assert_eq!(client.ask("hello").await, "hello");
    client.send_line("quit").await;
    // "bye" was queued before close(): it arrives; nothing after it does.
    assert_eq!(client.read_to_end().await, b"bye\n");
    assert_eq!(log.next().await, "late send: refused as closed");
    assert_eq!(
        log.next().await,
        "disconnected: closed by the application; its send: refused as closed"
    );
    drop(client);
    running.stop().await;
}

#[tokio::test]
async fn closed_waits_for_the_end_and_a_connection_shows_its_id_peer_and_type() {
    let (events, mut log) = Events::new();
    let running = server(&events).await;
    let mut client = LineClient::connect(running.addr).await;
    let client_addr = client.writer.local_addr().unwrap();
    let shown = client.ask("who").await;
    let conn = running.connections.list().pop().expect("one connection");
    // Classified by this first message: the classifier's default type.
    assert_eq!(shown, format!("#{} {client_addr} (Other)", conn.id()));
    assert_eq!(
        client.ask("!!who").await,
        shown,
        "classified by its first message only"
    );

    let mut classified = LineClient::connect(running.addr).await;
    let classified_addr = classified.writer.local_addr().unwrap();
    let shown = classified.ask("!!who").await;
    assert!(
        shown.starts_with('#') && shown.ends_with(&format!(" {classified_addr} (001)")),
        "{shown}"
    );

    conn.close();
    assert!(client.read_to_end().await.is_empty(), "FIN, nothing sent");
    // The server lingers, reading, until the peer closes too.
    drop(client);
    within("closed()", conn.closed()).await;
    // Ended: on_disconnect ran and the connection left the list.
    assert_eq!(
        log.0.try_recv().as_deref(),
        Ok("disconnected: closed by the application; its send: refused as closed")
    );
    assert_eq!(
        running.connections.len(),
        1,
        "only the classified one is left"
    );
    within("closed() again", conn.closed()).await;
    assert!(matches!(
        conn.send("after the end").await,
        Err(Error::ConnectionClosed { .. })
    ));
    drop(classified);
    running.stop().await;
}

#[tokio::test]
async fn closed_awaited_by_the_connection_s_own_handler_is_reported_not_a_hang() {
    let (events, mut log) = Events::new();
    let running = server(&events).await;
    let mut client = LineClient::connect(running.addr).await;
    client.send_line("wait").await;
    let error = log.next_starting("error: ").await;
    assert!(
        error.contains("panicked") && error.contains("own task"),
        "{error}"
    );
    drop(client);
    running.stop().await;
}

#[tokio::test]
async fn a_client_closing_itself_tells_on_disconnect_it_was_closed() {
    let (server_events, _server_log) = Events::new();
    let running =
        start(FlexiSocket::server("127.0.0.1:0").router(server_router(&server_events))).await;
    let (events, mut log) = Events::new();
    let reasons = events.clone();
    let router = Router::new()
        .on_message(|_conn: Connection, _msg: String| async {})
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let reasons = reasons.clone();
            async move { reasons.push(format!("{reason:?}")) }
        });
    let client = within(
        "connect",
        FlexiSocket::client(running.addr).router(router).connect(),
    )
    .await
    .unwrap();
    within("close", client.close()).await;
    assert_eq!(log.next().await, "Closed");
    running.stop().await;
}
