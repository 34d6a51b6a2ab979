//! Client mode against real servers on loopback: the same handlers, request
//! and reply, reconnecting with the handshake and the outbox after the server
//! comes back on the same port, and clear errors when nothing answers.

mod support;

use std::time::Duration;

use flexi_socket::{
    Connection, Error, FlexiSocket, Framing, Message, OutboxPolicy, Reconnect, ReplyOrder, Router,
};
use support::client::{client_router, quick_retries, server_router};
use support::{Events, start, within};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[tokio::test]
async fn same_handlers_and_request_reply() {
    let (server_events, _server_log) = Events::new();
    let running =
        start(FlexiSocket::server("127.0.0.1:0").router(server_router(&server_events))).await;
    let (events, mut log) = Events::new();
    let client = within(
        "connect",
        FlexiSocket::client(running.addr)
            .router(client_router(&events))
            .connect(),
    )
    .await
    .unwrap();
    assert!(client.is_connected());
    assert_eq!(log.next().await, "client got welcome");

    client.send("plain").await.unwrap();
    assert_eq!(log.next().await, "client got re:plain");

    let reply = client
        .request("question", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, Message::from("re:question"));
    let reply = client
        .request_matching("second", Duration::from_secs(5), |m| {
            m.starts_with(b"re:second")
        })
        .await
        .unwrap();
    assert_eq!(reply, Message::from("re:second"));

    assert_eq!(client.close().await, 0);
    assert!(log.next().await.starts_with("client disconnected"));
    assert!(matches!(
        client.send("late").await,
        Err(Error::ClientClosed)
    ));
    running.stop().await;
}

#[tokio::test]
async fn reconnects_to_the_same_port_with_handshake_then_outbox_in_order() {
    let (server_events, mut server_log) = Events::new();
    let first =
        start(FlexiSocket::server("127.0.0.1:0").router(server_router(&server_events))).await;
    let addr = first.addr;

    let (events, mut log) = Events::new();
    let client = FlexiSocket::client(addr)
        .router(client_router(&events))
        .handshake("HELLO")
        .reconnect(quick_retries())
        .connect()
        .await
        .unwrap();
    assert_eq!(server_log.next().await, "server got HELLO");

    first.stop().await;
    assert_eq!(
        log.next_starting("client disconnected").await,
        "client disconnected: peer closed the connection"
    );
    for i in 1..=3 {
        client.send(format!("queued {i}")).await.unwrap();
    }
    assert!(!client.is_connected());

    let second = start(FlexiSocket::server(addr).router(server_router(&server_events))).await;
    within("reconnect", client.connected()).await.unwrap();
    for expected in [
        "server got HELLO",
        "server got queued 1",
        "server got queued 2",
        "server got queued 3",
    ] {
        assert_eq!(server_log.next().await, expected);
    }
    client.send("after").await.unwrap();
    assert_eq!(server_log.next().await, "server got after");
    client.close().await;
    second.stop().await;
}

#[tokio::test]
async fn nothing_listening_gives_up_after_max_attempts() {
    // Bind then drop: a port on which nothing listens.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let result = within(
        "giving up",
        FlexiSocket::client(addr)
            .router(Router::new())
            .reconnect(quick_retries().max_attempts(3))
            .connect(),
    )
    .await;
    let error = result.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::GaveUp { .. }), "{text}");
    assert!(
        text.contains("after 3 attempts") && text.contains("cannot connect"),
        "{text}"
    );
}

#[tokio::test]
async fn server_that_never_answers_times_out_the_request() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let (socket, _) = silent.accept().await.unwrap();
        socket
    });
    let client = within(
        "connect",
        FlexiSocket::client(addr).router(Router::new()).connect(),
    )
    .await
    .unwrap();
    let _held = within("accept", accepting).await.unwrap();
    let error = client
        .request("anyone?", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RequestTimeout { .. }), "{error}");
    client.close().await;
}

#[tokio::test]
async fn a_request_still_waiting_when_the_client_closes_ends_with_client_closed() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let accepting = tokio::spawn(async move { silent.accept().await.unwrap().0 });
    let client = within(
        "connect",
        FlexiSocket::client(addr).router(Router::new()).connect(),
    )
    .await
    .unwrap();
    let mut held = within("accept", accepting).await.unwrap();
    // Far longer than `within` waits: only the close can end it in time.
    let request = tokio::spawn({
        let client = client.clone();
        async move { client.request("anyone?", Duration::from_secs(600)).await }
    });
    let mut line = [0; 8];
    within("the request", held.read_exact(&mut line))
        .await
        .unwrap();
    assert_eq!(&line, b"anyone?\n");
    within("close", client.close()).await;
    let ended = within("the request to end", request).await.unwrap();
    assert!(matches!(ended, Err(Error::ClientClosed)), "{ended:?}");
}

#[tokio::test]
async fn a_client_connection_without_traffic_closes_at_its_idle_timeout() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let accepting = tokio::spawn(async move { silent.accept().await.unwrap().0 });
    let (events, mut log) = Events::new();
    let client = within(
        "connect",
        FlexiSocket::client(addr)
            .router(client_router(&events))
            .reconnect(Reconnect::never())
            .idle_timeout(Duration::from_millis(200))
            .connect(),
    )
    .await
    .unwrap();
    let _held = within("accept", accepting).await.unwrap();
    assert_eq!(log.next().await, "client disconnected: idle timeout");
    client.close().await;
}

#[tokio::test]
async fn outbox_policy_fail_refuses_when_full_and_close_reports_dropped() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = FlexiSocket::client(addr)
        .router(Router::new())
        .reconnect(quick_retries())
        .outbox(2)
        .outbox_policy(OutboxPolicy::Fail)
        .spawn()
        .unwrap();
    client.send("one").await.unwrap();
    client.send("two").await.unwrap();
    let error = client.send("three").await.unwrap_err();
    assert!(matches!(error, Error::NotConnected { .. }), "{error}");
    assert_eq!(
        client.close().await,
        2,
        "two messages never left the outbox"
    );
}

#[tokio::test]
async fn connections_that_die_at_once_count_as_failed_attempts() {
    // A server that accepts and closes at once: without backoff the client
    // would reconnect in a tight loop forever.
    let hostile = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hostile.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&accepted);
    let closing = tokio::spawn(async move {
        for _ in 0..10 {
            let (socket, _) = hostile.accept().await.unwrap();
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    let client = FlexiSocket::client(addr)
        .router(Router::new())
        .reconnect(quick_retries().max_attempts(3))
        .spawn()
        .unwrap();
    let gave_up = within("giving up", async {
        loop {
            if let Err(error) = client.connected().await {
                return error;
            }
            // Connected for a moment; wait for the next state change.
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(matches!(gave_up, Error::GaveUp { .. }), "{gave_up}");
    assert!(
        gave_up.to_string().contains("after 3 attempts"),
        "{gave_up}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    closing.abort();
}

/// A server that answers every line with one quoting it, and nothing else.
fn quoting_server() -> Router {
    Router::new().on_message(|conn: Connection, msg: String| async move {
        conn.send(format!("re:{msg}")).await
    })
}

/// The README's client example: handshake, a send, then a request. The
/// request's reply is the one quoting it, never the reply still owed to the
/// handshake or the send (which reach on_message, in order). Twenty fresh
/// clients, for the replies owed to the others race the request.
#[tokio::test]
async fn the_readme_client_gets_the_reply_to_its_request_not_to_earlier_messages() {
    let running = start(FlexiSocket::server("127.0.0.1:0").router(quoting_server())).await;
    for _ in 0..20 {
        let (events, mut log) = Events::new();
        let client = within(
            "connect",
            FlexiSocket::client(running.addr)
                .router(client_router(&events))
                .handshake("!!panel 1234")
                .connect(),
        )
        .await
        .unwrap();
        client.send("!!ALARM zone 3").await.unwrap();
        let ack = client
            .request("!!STATUS", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(ack, Message::from("re:!!STATUS"));
        assert_eq!(log.next().await, "client got re:!!panel 1234");
        assert_eq!(log.next().await, "client got re:!!ALARM zone 3");
        client.close().await;
    }
    running.stop().await;
}

/// What the client's own handlers send owes a reply too.
#[tokio::test]
async fn a_message_sent_by_a_client_handler_owes_its_reply_like_any_other() {
    let running = start(FlexiSocket::server("127.0.0.1:0").router(quoting_server())).await;
    let (events, mut log) = Events::new();
    let router = client_router(&events).on_connect(|conn: Connection| async move {
        let _ = conn.send("login").await;
    });
    let client = within(
        "connect",
        FlexiSocket::client(running.addr).router(router).connect(),
    )
    .await
    .unwrap();
    let reply = client
        .request("status", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, Message::from("re:status"));
    assert_eq!(log.next().await, "client got re:login");
    client.close().await;
    running.stop().await;
}

/// A server that answers only questions: counting every message times out
/// with a hint that names the remedy; `ReplyOrder::RequestsOnly` fits it.
#[tokio::test]
async fn a_server_that_answers_only_requests_needs_requests_only() {
    let answers_questions = Router::new().on_message(|conn: Connection, msg: String| async move {
        if msg.ends_with('?') {
            conn.send(format!("re:{msg}")).await?;
        }
        Ok::<_, Error>(())
    });
    let running = start(FlexiSocket::server("127.0.0.1:0").router(answers_questions)).await;
    let counting = within(
        "connect",
        FlexiSocket::client(running.addr)
            .router(Router::new())
            .handshake("hello")
            .connect(),
    )
    .await
    .unwrap();
    let error = counting
        .request("status?", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::RequestTimeout { owed_before: 1, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("ReplyOrder::RequestsOnly"),
        "{error}"
    );
    counting.close().await;

    let requests_only = within(
        "connect",
        FlexiSocket::client(running.addr)
            .router(Router::new())
            .handshake("hello")
            .reply_order(ReplyOrder::RequestsOnly)
            .connect(),
    )
    .await
    .unwrap();
    let reply = requests_only
        .request("status?", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, Message::from("re:status?"));
    requests_only.close().await;
    running.stop().await;
}

/// The reply a lost connection owed cannot come on the next one: the
/// request ends when its connection does, not at its timeout.
#[tokio::test]
async fn a_request_whose_connection_drops_ends_with_connection_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move { listener.accept().await.unwrap().0 });
    let client = within(
        "connect",
        FlexiSocket::client(addr)
            .router(Router::new())
            .reconnect(Reconnect::never())
            .connect(),
    )
    .await
    .unwrap();
    let mut held = within("accept", accepting).await.unwrap();
    let request = tokio::spawn({
        let client = client.clone();
        // Far longer than `within` waits: only the lost connection can end it in time.
        async move { client.request("anyone?", Duration::from_secs(600)).await }
    });
    let mut line = [0; 8];
    within("the request", held.read_exact(&mut line))
        .await
        .unwrap();
    drop(held);
    let ended = within("the request to end", request).await.unwrap();
    assert!(
        matches!(ended, Err(Error::ConnectionClosed { .. })),
        "{ended:?}"
    );
    client.close().await;
}

/// A message the client could not send owes no reply: after a send the
/// framing refused, the next request still gets its own reply.
#[tokio::test]
async fn a_refused_send_owes_no_reply() {
    // One length byte: a message over 255 bytes cannot be framed.
    let framing = || Framing::length_prefixed().prefix_len(1);
    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            .framing(framing())
            .router(quoting_server()),
    )
    .await;
    let client = within(
        "connect",
        FlexiSocket::client(running.addr)
            .framing(framing())
            .router(Router::new())
            .connect(),
    )
    .await
    .unwrap();
    let refused = client.send("x".repeat(300)).await.unwrap_err();
    assert!(matches!(refused, Error::Encode { .. }), "{refused}");
    let reply = client
        .request("STATUS", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, Message::from("re:STATUS"));
    client.close().await;
    running.stop().await;
}
