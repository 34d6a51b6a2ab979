//! How a server's listening socket is opened: a backlog that holds a storm
//! of connects while the server is at its connection limit, `SO_REUSEPORT`
//! for servers sharing a port, and a listener handed in ready-made.

mod support;

use flexi_socket::{Connection, DisconnectReason, Error, FlexiSocket, Message, Router};
use support::{start, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Answers every line with `<name> <line>`.
fn named(name: &'static str) -> Router {
    Router::new().on_message(move |conn: Connection, msg: String| async move {
        conn.send(format!("{name} {msg}")).await
    })
}

async fn ask(addr: std::net::SocketAddr, line: &str) -> String {
    let mut stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    support::ask_line(&mut stream, line).await
}

/// At `max_connections` the server stops accepting; the kernel completes
/// the handshakes of up to a backlog of peers meanwhile. 300 connects fit
/// the default backlog (1024); tokio's own `bind` (128) would leave the
/// rest retrying their SYN for seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_backlog_holds_a_storm_of_connects_at_the_connection_limit() {
    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            .router(named("storm"))
            .max_connections(1),
    )
    .await;
    let _holding = within("the one connection", TcpStream::connect(running.addr))
        .await
        .unwrap();
    // The kernel caps any backlog at net.core.somaxconn (4096 today, 128
    // on old kernels and some containers): the storm stays under it.
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(4096);
    let storm_size = 300.min(somaxconn.saturating_sub(2));
    let mut storm = JoinSet::new();
    for _ in 0..storm_size {
        let addr = running.addr;
        storm.spawn(async move { TcpStream::connect(addr).await });
    }
    let mut connected = Vec::new();
    while let Some(joined) = within("every connect completes", storm.join_next()).await {
        connected.push(joined.unwrap().expect("connect"));
    }
    assert_eq!(connected.len(), storm_size);
    running.stop().await;
}

#[tokio::test]
async fn servers_with_reuse_port_share_a_port_and_others_cannot_bind_it() {
    let first = start(
        FlexiSocket::server("127.0.0.1:0")
            .router(named("first"))
            .reuse_port(true),
    )
    .await;
    let addr = first.addr;
    let second = start(
        FlexiSocket::server(addr)
            .router(named("second"))
            .reuse_port(true),
    )
    .await;
    assert_eq!(second.addr, addr);
    let refused = FlexiSocket::server(addr)
        .router(named("third"))
        .bind()
        .await;
    assert!(
        matches!(refused, Err(Error::Bind { .. })),
        "a socket without SO_REUSEPORT cannot join: {refused:?}"
    );
    for n in 0..10 {
        let reply = ask(addr, &n.to_string()).await;
        assert!(
            reply == format!("first {n}") || reply == format!("second {n}"),
            "{reply}"
        );
    }
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn udp_servers_with_reuse_port_share_a_port() {
    let echo = || {
        Router::new()
            .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await })
    };
    let first = start(
        FlexiSocket::udp("127.0.0.1:0")
            .router(echo())
            .reuse_port(true),
    )
    .await;
    let second = start(FlexiSocket::udp(first.addr).router(echo()).reuse_port(true)).await;
    assert_eq!(second.addr, first.addr);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_listener_handed_in_is_served_as_it_is() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let running = start(FlexiSocket::from_std(listener).router(named("handed-in"))).await;
    assert_eq!(running.addr, addr);
    assert_eq!(ask(addr, "hi").await, "handed-in hi");
    running.stop().await;
}

/// Reports each connection's open and close (with its id and why) to `events`.
fn observed(router: Router, events: &support::Events) -> Router {
    let (connects, disconnects) = (events.clone(), events.clone());
    router
        .on_connect(move |conn: Connection| {
            let events = connects.clone();
            async move { events.push(format!("connect {}", conn.id())) }
        })
        .on_disconnect(move |conn: Connection, reason: DisconnectReason| {
            let events = disconnects.clone();
            async move { events.push(format!("disconnect {} {reason}", conn.id())) }
        })
}

/// DC-09's shape: TCP and UDP on one port, one server. Both listeners'
/// connections run the same handlers, sit in one connection list with
/// distinct ids, count in one set of stats, and shut down together.
#[tokio::test]
async fn tcp_and_udp_on_one_port_share_handlers_connections_and_shutdown() {
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let (events, mut log) = support::Events::new();
    let server = FlexiSocket::server(&addr)
        .router(observed(named("one server:"), &events))
        .listener(FlexiSocket::udp(&addr))
        .bind()
        .await
        .unwrap();
    let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    assert_eq!(addrs, [addr.clone(), addr.clone()]);
    let (connections, handle) = (server.connections(), server.handle());
    let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));

    let mut tcp = within("connect", TcpStream::connect(&addr)).await.unwrap();
    let reply = support::ask_line(&mut tcp, "over tcp").await;
    assert_eq!(reply, "one server: over tcp");
    let udp = support::udp::UdpClient::connect(addr.parse().unwrap()).await;
    // UDP's framing is its own listener's: the datagram is the message.
    assert_eq!(udp.ask("over udp").await, "one server: over udp");

    let opened = [log.next().await, log.next().await];
    assert_ne!(opened[0], opened[1], "distinct ids in one list: {opened:?}");
    assert_eq!(connections.len(), 2);
    assert_eq!(handle.stats().connections_total, 2);
    assert_eq!(handle.stats().messages_in, 2);

    handle.shutdown();
    let report = within("shutdown", serving).await.unwrap().unwrap();
    assert_eq!(report.connections_closed, 2, "{report:?}");
    for _ in 0..2 {
        assert!(log.next().await.ends_with("server shutdown"));
    }
}

/// Each listener has its own PROXY setting: the public TCP listener behind
/// a balancer requires the header, the local Unix socket does not.
#[cfg(unix)]
#[tokio::test]
async fn each_listener_has_its_own_proxy_setting() {
    let dir = std::env::temp_dir().join(format!("flexi-listeners-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("local.sock");
    let server = FlexiSocket::server("127.0.0.1:0")
        .proxy_protocol(flexi_socket::ProxyProtocol::default())
        .router(named("served"))
        .listener(FlexiSocket::server(format!("unix:{}", path.display())))
        .bind()
        .await
        .unwrap();
    let tcp_addr = server.local_addr().socket_addr().unwrap();
    let handle = server.handle();
    let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));

    let mut local = within("connect", tokio::net::UnixStream::connect(&path))
        .await
        .unwrap();
    let reply = support::ask_line(&mut local, "no header").await;
    assert_eq!(reply, "served no header");

    let mut headerless = within("connect", TcpStream::connect(tcp_addr))
        .await
        .unwrap();
    headerless.write_all(b"no header\n").await.unwrap();
    let mut rest = Vec::new();
    let read = within("the refusal", headerless.read_to_end(&mut rest)).await;
    assert!(read.is_err() || rest.is_empty(), "refused: {rest:?}");
    assert_eq!(handle.stats().proxy_rejected, 1);

    handle.shutdown();
    within("shutdown", serving).await.unwrap().unwrap();
    assert!(!path.exists(), "the Unix listener removed its socket file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An added listener takes the first builder's handlers; one that brings
/// its own is refused instead of silently ignored.
#[tokio::test]
async fn an_added_listener_with_its_own_router_is_refused() {
    let refused = FlexiSocket::server("127.0.0.1:0")
        .router(named("first"))
        .listener(FlexiSocket::udp("127.0.0.1:0").router(named("second")))
        .bind()
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::ListenerHandlers { .. }),
        "{refused}"
    );
}

/// Each listener's deadlines judge its own connections: a TCP connection
/// beside a UDP listener whose sessions idle out after 200 ms stays open
/// through a longer quiet spell (TCP's idle timeout is minutes).
#[tokio::test]
async fn a_tcp_connection_is_not_idled_out_by_a_udp_listeners_deadline() {
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let server = FlexiSocket::server(&addr)
        .router(named("still"))
        .listener(FlexiSocket::udp(&addr).udp_session_idle(std::time::Duration::from_millis(200)))
        .bind()
        .await
        .unwrap();
    let handle = server.handle();
    let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));
    let mut stream = within("connect", TcpStream::connect(&addr)).await.unwrap();
    for round in 0..2 {
        let reply = support::ask_line(&mut stream, &format!("round {round}")).await;
        assert_eq!(reply, format!("still round {round}"));
        // Quiet for three UDP idle timeouts: the scenario, not a wait for something.
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    }
    assert_eq!(handle.stats().connections_open, 1);
    handle.shutdown();
    within("shutdown", serving).await.unwrap().unwrap();
}
