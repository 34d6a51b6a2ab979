//! How a server's listening socket is opened: a backlog that holds a storm
//! of connects while the server is at its connection limit, `SO_REUSEPORT`
//! for servers sharing a port, and a listener handed in ready-made.

mod support;

use flexi_socket::{Connection, Error, FlexiSocket, Message, Router};
use support::{start, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
    stream
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    within("a reply", BufReader::new(stream).read_line(&mut reply))
        .await
        .unwrap();
    reply.trim_end().to_owned()
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
