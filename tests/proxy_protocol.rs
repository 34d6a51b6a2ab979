//! Behind HAProxy with the PROXY protocol (`send-proxy` v1 and
//! `send-proxy-v2`): handlers see the client's address, not the balancer's;
//! header-less and untrusted connections are refused without events; the
//! balancer's health checks (LOCAL) fire no events; per-IP limits count the
//! real clients. HAProxy is started by the test and stopped by its PID.

mod support;

use std::net::{IpAddr, SocketAddr};

use flexi_socket::{Connection, FlexiSocket, ProxyProtocol, Router, ServerBuilder};
use support::haproxy::Haproxy;
use support::{Events, Running, eventually, free_port, start, within};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// HAProxy in front of `backend`: a v1 front end and a v2 one, and health
/// checks every 100 ms; `None` when haproxy is not installed.
struct Balancer {
    haproxy: Haproxy,
    v1: SocketAddr,
    v2: SocketAddr,
}

impl Balancer {
    async fn start(backend: SocketAddr, source: &str) -> Option<Self> {
        let (v1, v2) = (free_port(), free_port());
        let haproxy = Haproxy::start(&format!(
            "frontend v1\n    bind 127.0.0.1:{v1}\n    default_backend b1\n\
             backend b1\n    server s1 {backend} send-proxy source {source}\n\
             frontend v2\n    bind 127.0.0.1:{v2}\n    default_backend b2\n\
             backend b2\n    server s2 {backend} send-proxy-v2 source {source} check inter 100ms\n"
        ))
        .await?;
        Some(Self {
            haproxy,
            v1: SocketAddr::from(([127, 0, 0, 1], v1)),
            v2: SocketAddr::from(([127, 0, 0, 1], v2)),
        })
    }

    async fn stop(self) {
        self.haproxy.stop().await;
    }
}

/// Connects to `front` from `client`'s address and asks who we are.
async fn ask_from(client: IpAddr, front: SocketAddr) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(client, 0)).unwrap();
    let mut stream = within("connect", socket.connect(front)).await.unwrap();
    stream.write_all(b"who\n").await.unwrap();
    let mut reply = String::new();
    within("a reply", BufReader::new(stream).read_line(&mut reply))
        .await
        .unwrap();
    reply.trim_end().to_owned()
}

/// Answers `who` with the peer address, the PROXY version and destination;
/// reports each connection's peer as an event.
fn who_router(events: &Events) -> Router {
    let events = events.clone();
    Router::new()
        .on_connect(move |conn: Connection| {
            events.push(format!(
                "connect {}",
                conn.peer_addr().ip().expect("an IP client")
            ));
            async {}
        })
        .on_message(|conn: Connection, _msg: String| async move {
            let header = conn.proxy_header().expect("a PROXY header");
            let reply = format!(
                "{} v{} to {}",
                conn.peer_addr().ip().expect("an IP client"),
                header.version(),
                header.destination()
            );
            conn.send(reply).await
        })
}

fn behind_proxy(events: &Events, policy: ProxyProtocol) -> ServerBuilder {
    FlexiSocket::server("127.0.0.1:0")
        .router(who_router(events))
        .proxy_protocol(policy)
}

async fn started(events: &Events, policy: ProxyProtocol) -> Running {
    start(behind_proxy(events, policy)).await
}

#[tokio::test]
async fn handlers_see_the_client_behind_haproxy_v1_and_v2() {
    let (events, mut log) = Events::new();
    let running = started(&events, ProxyProtocol::new()).await;
    let Some(balancer) = Balancer::start(running.addr, "127.0.0.1").await else {
        return;
    };
    let client_2: IpAddr = "127.0.0.2".parse().unwrap();
    let client_3: IpAddr = "127.0.0.3".parse().unwrap();
    let v1 = ask_from(client_2, balancer.v1).await;
    assert_eq!(v1, format!("127.0.0.2 v1 to {}", balancer.v1));
    assert_eq!(log.next_starting("connect").await, "connect 127.0.0.2");
    let v2 = ask_from(client_3, balancer.v2).await;
    assert_eq!(v2, format!("127.0.0.3 v2 to {}", balancer.v2));
    assert_eq!(log.next_starting("connect").await, "connect 127.0.0.3");

    // Health checks (PROXY v2 LOCAL) every 100 ms: counted, no events.
    let handle = running.handle.clone();
    eventually("two health checks", || {
        handle.stats().proxy_health_checks >= 2
    })
    .await;
    assert_eq!(
        running.handle.stats().connections_total,
        2,
        "checks are not connections"
    );
    assert!(log.0.try_recv().is_err(), "no events from health checks");
    balancer.stop().await;
    running.stop().await;
}

#[tokio::test]
async fn a_connection_without_a_header_is_refused_without_events() {
    let (events, mut log) = Events::new();
    let running = started(&events, ProxyProtocol::new()).await;
    let mut direct = within("connect", TcpStream::connect(running.addr))
        .await
        .unwrap();
    // Longer than the shortest header: refused at once, not at the timeout.
    direct.write_all(b"hello, no header here\n").await.unwrap();
    let mut rest = Vec::new();
    let read = within("the close", direct.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "no reply: {read:?} {rest:?}");
    let handle = running.handle.clone();
    eventually("counted", || handle.stats().proxy_rejected == 1).await;
    assert_eq!(running.handle.stats().connections_total, 0);
    assert!(log.0.try_recv().is_err(), "no events");
    running.stop().await;
}

#[tokio::test]
async fn headers_from_an_untrusted_balancer_are_refused() {
    let (events, mut log) = Events::new();
    // Only 127.0.0.9 may send headers; HAProxy connects from 127.0.0.1.
    let policy = ProxyProtocol::trusting(["127.0.0.9"]).unwrap();
    let running = started(&events, policy).await;
    let Some(balancer) = Balancer::start(running.addr, "127.0.0.1").await else {
        return;
    };
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stream = within("connect", socket.connect(balancer.v1))
        .await
        .unwrap();
    stream.write_all(b"who\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = within("the close", stream.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "no reply");
    let handle = running.handle.clone();
    eventually("counted", || handle.stats().proxy_rejected >= 1).await;
    assert!(log.0.try_recv().is_err(), "no events");
    balancer.stop().await;
    running.stop().await;
}

#[tokio::test]
async fn per_ip_limits_count_the_clients_not_the_balancer() {
    let (events, mut log) = Events::new();
    let running =
        start(behind_proxy(&events, ProxyProtocol::new()).max_connections_per_ip(1)).await;
    let Some(balancer) = Balancer::start(running.addr, "127.0.0.1").await else {
        return;
    };
    // One open connection from 127.0.0.2 ...
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let _first = within("connect", socket.connect(balancer.v1))
        .await
        .unwrap();
    assert_eq!(log.next_starting("connect").await, "connect 127.0.0.2");
    // ... so a second one from it is refused, while 127.0.0.3 is served.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut second = within("connect", socket.connect(balancer.v1))
        .await
        .unwrap();
    second.write_all(b"who\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = within("the refusal", second.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "the second connection from one client is refused"
    );
    let third = ask_from("127.0.0.3".parse().unwrap(), balancer.v1).await;
    assert!(third.starts_with("127.0.0.3 v1"), "{third}");
    assert_eq!(running.handle.stats().connections_refused, 1);
    balancer.stop().await;
    running.stop().await;
}

/// The PROXY header comes before the TLS ClientHello: HAProxy in TCP mode
/// passes the client's TLS through, after its own header.
#[tokio::test]
async fn tls_comes_after_the_header() {
    let identity = support::tls::server_identity();
    let tls =
        flexi_socket::TlsServerConfig::from_pem(&identity.cert_pem, &identity.key_pem).unwrap();
    let (events, _log) = Events::new();
    let running = start(behind_proxy(&events, ProxyProtocol::new()).tls(tls)).await;
    let Some(balancer) = Balancer::start(running.addr, "127.0.0.1").await else {
        return;
    };
    let config = support::tls::client_config(&identity.cert_pem, None);
    let mut client = support::tls::TlsLineClient::connect(balancer.v2, config)
        .await
        .expect("the TLS handshake through the balancer");
    let reply = client.ask("who").await;
    assert_eq!(reply, format!("127.0.0.1 v2 to {}", balancer.v2));
    balancer.stop().await;
    running.stop().await;
}
