//! The UDP client against the UDP server on loopback: the same handlers,
//! request and reply, the handshake first, classification by the server's
//! first datagram, oversize replies reported, and ICMP refusals reported
//! without ending the client.

mod support;

use std::time::Duration;

use flexi_socket::{
    Classifier, ClientType, Connection, DisconnectReason, Error, FlexiSocket, Message, Router,
    UdpClient, UdpClientBuilder,
};
use support::{Events, Running, start, within};

/// A UDP server that answers "re:<msg>" (and 1,000 bytes to "big"), and
/// reports every message it gets.
async fn server(addr: &str, events: &Events) -> Running {
    let seen = events.clone();
    let router = Router::new().on_message(move |conn: Connection, msg: String| {
        let seen = seen.clone();
        async move {
            seen.push(format!("server got {msg}"));
            let reply = if msg == "big" {
                "x".repeat(1_000)
            } else {
                format!("re:{msg}")
            };
            conn.send(reply).await
        }
    });
    start(FlexiSocket::udp(addr).router(router)).await
}

/// A client that reports its connects, messages, errors and disconnects.
fn observed(events: &Events) -> Router {
    let (connects, messages) = (events.clone(), events.clone());
    let (errors, disconnects) = (events.clone(), events.clone());
    Router::new()
        .on_connect(move |_conn: Connection| {
            let events = connects.clone();
            async move { events.push("client connected") }
        })
        .on_message(move |_conn: Connection, msg: String| {
            let events = messages.clone();
            async move { events.push(format!("client got {msg}")) }
        })
        .on_error(move |_conn: Connection, error: Error| {
            let events = errors.clone();
            async move { events.push(format!("client error {error}")) }
        })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let events = disconnects.clone();
            async move { events.push(format!("client disconnected: {reason}")) }
        })
}

async fn connect(builder: UdpClientBuilder) -> UdpClient {
    within("the client to start", builder.connect())
        .await
        .expect("the client should start")
}

const REPLY: Duration = support::WAIT;

/// The README's UDP client shape: the handshake and a send, then a
/// request. The request's reply is the one quoting it; the replies owed to
/// the earlier datagrams reach on_message.
#[tokio::test]
async fn a_request_after_the_handshake_and_a_send_gets_its_own_reply() {
    let (server_events, _server_log) = Events::new();
    let running = server("127.0.0.1:0", &server_events).await;
    for _ in 0..10 {
        let (events, mut log) = Events::new();
        let client = connect(
            FlexiSocket::udp_client(running.addr)
                .router(observed(&events))
                .handshake("!!panel 1234"),
        )
        .await;
        client.send("!!ALARM zone 3").await.unwrap();
        let status = client.request("!!STATUS", REPLY).await.unwrap();
        assert_eq!(status, Message::from("re:!!STATUS"));
        assert_eq!(log.next().await, "client connected");
        assert_eq!(log.next().await, "client got re:!!panel 1234");
        assert_eq!(log.next().await, "client got re:!!ALARM zone 3");
        within("close", client.close()).await;
    }
    running.stop().await;
}

#[tokio::test]
async fn round_trip_by_request_and_by_on_message() {
    let (server_events, mut server_log) = Events::new();
    let running = server("127.0.0.1:0", &server_events).await;
    let (events, mut log) = Events::new();
    let client = connect(FlexiSocket::udp_client(running.addr).router(observed(&events))).await;
    // on_connect runs when the client starts, before any datagram.
    assert_eq!(log.next().await, "client connected");
    let session = client.connection();
    assert_eq!(session.peer_addr(), running.addr);
    assert!(session.local_addr().ip().is_some_and(|ip| ip.is_loopback()));

    let reply = client.request("question", REPLY).await.unwrap();
    assert_eq!(reply, Message::from("re:question"));
    client.send("plain").await.unwrap();
    assert_eq!(log.next().await, "client got re:plain");
    // A reply that does not match goes to on_message; the matching one to the caller.
    client.send("unrelated").await.unwrap();
    let reply = client
        .request_matching("second", REPLY, |m| m.starts_with(b"re:second"))
        .await
        .unwrap();
    assert_eq!(reply, Message::from("re:second"));
    assert_eq!(log.next().await, "client got re:unrelated");
    for expected in ["question", "plain", "unrelated", "second"] {
        assert_eq!(server_log.next().await, format!("server got {expected}"));
    }

    within("close", client.close()).await;
    assert_eq!(
        log.next().await,
        "client disconnected: closed by the application"
    );
    assert!(client.is_closed());
    assert!(matches!(
        client.send("late").await,
        Err(Error::ClientClosed)
    ));
    assert!(matches!(
        client.request("late", REPLY).await,
        Err(Error::ClientClosed)
    ));
    running.stop().await;
}

#[tokio::test]
async fn the_handshake_is_the_first_datagram() {
    let (server_events, mut server_log) = Events::new();
    let running = server("127.0.0.1:0", &server_events).await;
    // on_connect sends too; the handshake still goes first.
    let router = Router::new().on_connect(|conn: Connection| async move {
        let _ = conn.send("from on_connect").await;
    });
    let client = connect(
        FlexiSocket::udp_client(running.addr)
            .router(router)
            .handshake("HELLO"),
    )
    .await;
    assert_eq!(server_log.next().await, "server got HELLO");
    assert_eq!(server_log.next().await, "server got from on_connect");
    // The replies to those two may still be on their way: pick this one's.
    let reply = client
        .request_matching("after", REPLY, |m| *m == Message::from("re:after"))
        .await;
    assert_eq!(reply.unwrap(), Message::from("re:after"));
    within("close", client.close()).await;
    running.stop().await;
}

/// Classifies the client by the server's first datagram: "!!" is an alarm
/// centre, anything else a plain server.
struct Peer(&'static str);

impl Classifier for Peer {
    fn classify(first_frame: &[u8]) -> Self {
        if first_frame.starts_with(b"!!") {
            Peer("001")
        } else {
            Peer("plain")
        }
    }

    fn client_type(&self) -> ClientType {
        ClientType::from_static(self.0)
    }

    fn client_types() -> Option<Vec<ClientType>> {
        Some(vec!["001".into(), "plain".into()])
    }
}

#[tokio::test]
async fn the_servers_first_datagram_classifies_the_client() {
    // The server echoes, so the client's first message decides the server's first datagram.
    let echo = Router::new()
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await });
    let running = start(FlexiSocket::udp("127.0.0.1:0").router(echo)).await;
    let (events, mut log) = Events::new();
    let (alarms, others) = (events.clone(), events.clone());
    let router = Router::new()
        .on_message_for("001", move |_conn: Connection, msg: String| {
            let events = alarms.clone();
            async move { events.push(format!("as 001: {msg}")) }
        })
        .on_message(move |_conn: Connection, msg: String| {
            let events = others.clone();
            async move { events.push(format!("as default: {msg}")) }
        });
    let client = connect(
        FlexiSocket::udp_client(running.addr)
            .classifier::<Peer>()
            .router(router),
    )
    .await;
    assert_eq!(client.connection().client_type(), None);
    client.send("!!centre").await.unwrap();
    assert_eq!(log.next().await, "as 001: !!centre");
    // The type sticks: later datagrams without the marker keep it.
    client.send("no marker").await.unwrap();
    assert_eq!(log.next().await, "as 001: no marker");
    assert_eq!(
        client.connection().client_type(),
        Some(&ClientType::from("001"))
    );
    within("close", client.close()).await;
    running.stop().await;
}

#[tokio::test]
async fn an_oversize_reply_is_reported_and_not_delivered() {
    let (server_events, _server_log) = Events::new();
    let running = server("127.0.0.1:0", &server_events).await;
    let (events, mut log) = Events::new();
    let client = connect(
        FlexiSocket::udp_client(running.addr)
            .router(observed(&events))
            .max_datagram(100),
    )
    .await;
    assert_eq!(log.next().await, "client connected");
    // The 1,000-byte reply answers no request and reaches no handler.
    let error = client
        .request("big", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RequestTimeout { .. }), "{error}");
    assert_eq!(
        log.next().await,
        "client error discarded a datagram of 1000 bytes: the limit is 100 bytes \
         (raise it with `.max_datagram(n)` if such datagrams are legitimate)"
    );
    // The client goes on: the next reply arrives, and one of exactly the limit too.
    let reply = client.request("small", REPLY).await.unwrap();
    assert_eq!(reply, Message::from("re:small"));
    let exactly = "y".repeat(97);
    client.send(exactly.as_str()).await.unwrap();
    assert_eq!(log.next().await, format!("client got re:{exactly}"));
    within("close", client.close()).await;
    running.stop().await;
}

#[tokio::test]
async fn nothing_listening_times_out_and_reports_then_a_server_appears_on_the_port() {
    // Bind then drop: a port on which nothing listens.
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (events, mut log) = Events::new();
    let client = connect(FlexiSocket::udp_client(addr).router(observed(&events))).await;
    assert_eq!(log.next().await, "client connected");
    let error = client
        .request("anyone?", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RequestTimeout { .. }), "{error}");
    // The ICMP refusal is reported, and does not end the client.
    let refusal = log.next().await;
    assert!(
        refusal.starts_with("client error I/O error:") && refusal.contains("refused"),
        "{refusal}"
    );
    assert!(!client.is_closed());

    let (server_events, mut server_log) = Events::new();
    let running = server(&addr.to_string(), &server_events).await;
    let reply = client.request("back", REPLY).await.unwrap();
    assert_eq!(reply, Message::from("re:back"));
    assert_eq!(server_log.next().await, "server got back");
    within("close", client.close()).await;
    assert_eq!(
        log.next().await,
        "client disconnected: closed by the application"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_request_still_waiting_when_the_client_closes_ends_with_client_closed() {
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client = connect(FlexiSocket::udp_client(silent.local_addr().unwrap())).await;
    // Far longer than `within` waits: only the close can end it in time.
    let request = tokio::spawn({
        let client = client.clone();
        async move { client.request("anyone?", Duration::from_secs(600)).await }
    });
    let mut datagram = [0; 16];
    let length = within("the request", silent.recv(&mut datagram))
        .await
        .unwrap();
    assert_eq!(&datagram[..length], b"anyone?");
    within("close", client.close()).await;
    let ended = within("the request to end", request).await.unwrap();
    assert!(matches!(ended, Err(Error::ClientClosed)), "{ended:?}");
}

#[tokio::test]
async fn an_idle_timeout_ends_the_client() {
    let (server_events, _server_log) = Events::new();
    let running = server("127.0.0.1:0", &server_events).await;
    let (events, mut log) = Events::new();
    let client = connect(
        FlexiSocket::udp_client(running.addr)
            .router(observed(&events))
            .idle_timeout(Duration::from_millis(200)),
    )
    .await;
    assert_eq!(log.next().await, "client connected");
    // Each datagram from the server restarts the idle clock.
    assert_eq!(
        client.request("ping", REPLY).await.unwrap(),
        Message::from("re:ping")
    );
    assert_eq!(log.next().await, "client disconnected: idle timeout");
    assert!(client.is_closed());
    assert!(matches!(
        client.send("late").await,
        Err(Error::ClientClosed)
    ));
    within("close", client.close()).await;
    running.stop().await;
}
