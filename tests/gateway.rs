//! The gateway example as a real process, as a service runs it: devices and
//! operators over TCP and a Unix socket, newest-wins ids, the addresses a
//! PROXY header names, two processes sharing a port, and SIGTERM.

mod support;

use std::path::PathBuf;
use std::process::Stdio;

use support::example::{ExampleServer, example_path, send_signal};
use support::{LineClient, ask_line, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// A folder of its own for the test's Unix socket.
fn socket_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flexi-gateway-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn gateway(args: &[&str]) -> ExampleServer {
    ExampleServer::start_command(Command::new(example_path("gateway")).args(args), "gateway").await
}

#[tokio::test]
async fn devices_and_operators_over_tcp_and_a_unix_socket() {
    let dir = socket_dir("protocol");
    let path = dir.join("gateway.sock");
    let server = gateway(&["127.0.0.1:0", "--unix", path.to_str().unwrap()]).await;

    let mut device = LineClient::connect(server.addr).await;
    assert_eq!(device.ask("HELLO 42").await, "WELCOME 42 local");
    let device_addr = device.writer.local_addr().unwrap();
    let mut local_device = within("connect", tokio::net::UnixStream::connect(&path))
        .await
        .unwrap();
    assert_eq!(
        ask_line(&mut local_device, "HELLO 43").await,
        "WELCOME 43 local"
    );
    let mut operator = within("connect", tokio::net::UnixStream::connect(&path))
        .await
        .unwrap();
    assert_eq!(
        ask_line(&mut operator, "OPERATOR").await,
        "WELCOME operator local"
    );

    assert_eq!(
        ask_line(&mut operator, "SEND 42 open the door").await,
        "DELIVERED 42 local"
    );
    assert_eq!(device.recv_line().await, "open the door");
    assert_eq!(ask_line(&mut operator, "SEND 7 hello?").await, "OFFLINE 7");
    assert_eq!(ask_line(&mut operator, "WHERE 42").await, "AT 42 local");
    assert_eq!(ask_line(&mut operator, "WHERE 7").await, "OFFLINE 7");
    assert_eq!(
        ask_line(&mut operator, "PEER 42").await,
        format!("PEER 42 {device_addr}")
    );
    let peer_43 = ask_line(&mut operator, "PEER 43").await;
    assert!(peer_43.starts_with("PEER 43 unix:"), "{peer_43}");
    assert_eq!(
        ask_line(&mut operator, "BROADCAST all devices").await,
        "BROADCAST 2"
    );
    assert_eq!(device.recv_line().await, "all devices");
    assert_eq!(
        ask_line(&mut local_device, "still here").await,
        "all devices",
        "the broadcast came first"
    );

    // Newest wins: a second HELLO 42 closes the first connection.
    let mut again = LineClient::connect(server.addr).await;
    assert_eq!(again.ask("HELLO 42").await, "WELCOME 42 local");
    assert_eq!(
        device.try_recv_line().await,
        None,
        "the older one is closed"
    );
    assert_eq!(
        ask_line(&mut operator, "SEND 42 to the newest").await,
        "DELIVERED 42 local"
    );
    assert_eq!(again.recv_line().await, "to the newest");

    // Anything else as a first line: closed without a reply.
    let mut stranger = LineClient::connect(server.addr).await;
    stranger.send_line("GET / HTTP/1.1").await;
    assert_eq!(stranger.try_recv_line().await, None);

    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Behind a balancer: the PROXY header names the device, and PEER says so;
/// a connection without one is refused.
#[tokio::test]
async fn behind_a_balancer_peer_is_the_client_the_proxy_header_names() {
    let server = gateway(&["127.0.0.1:0", "--proxy-protocol"]).await;
    let mut device = LineClient::connect(server.addr).await;
    let header = format!(
        "PROXY TCP4 192.0.2.7 127.0.0.1 40001 {}\r\n",
        server.addr.port()
    );
    device.send_raw(header.as_bytes()).await;
    assert_eq!(device.ask("HELLO 42").await, "WELCOME 42 local");
    let mut operator = LineClient::connect(server.addr).await;
    operator
        .send_raw(b"PROXY TCP4 192.0.2.8 127.0.0.1 40002 7000\r\n")
        .await;
    assert_eq!(operator.ask("OPERATOR").await, "WELCOME operator local");
    assert_eq!(operator.ask("PEER 42").await, "PEER 42 192.0.2.7:40001");

    let mut headerless = LineClient::connect(server.addr).await;
    headerless.send_line("HELLO 9").await;
    assert_eq!(headerless.try_recv_line().await, None, "refused");
    server.stop().await;
}

/// SIGTERM: the gateway drains, exits 0 and removes its socket file.
#[tokio::test]
async fn sigterm_drains_exits_0_and_removes_the_socket_file() {
    let dir = socket_dir("sigterm");
    let path = dir.join("gateway.sock");
    let mut server = gateway(&["127.0.0.1:0", "--unix", path.to_str().unwrap()]).await;
    let mut device = LineClient::connect(server.addr).await;
    assert_eq!(device.ask("HELLO 1").await, "WELCOME 1 local");
    assert!(path.exists());
    send_signal(&server.child, libc::SIGTERM);
    assert_eq!(device.try_recv_line().await, None, "closed by the drain");
    let status = within("the gateway to exit", server.child.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(!path.exists(), "the socket file is removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two gateway processes share one port with `--reuse-port`, and the
/// kernel spreads connections between them; without it the second cannot
/// bind and says why.
#[tokio::test]
async fn two_processes_share_a_port_with_reuse_port() {
    let first = gateway(&["127.0.0.1:0", "--reuse-port", "--node", "a"]).await;
    let addr = first.addr.to_string();
    let second = gateway(&[&addr, "--reuse-port", "--node", "b"]).await;
    assert_eq!(second.addr, first.addr);

    let mut nodes = std::collections::BTreeSet::new();
    let mut held = Vec::new();
    // The kernel picks by a hash of each connection's addresses: both
    // processes get some of 64 connections (all to one: a 2^-63 chance).
    for id in 0..64 {
        let mut device = LineClient::connect(first.addr).await;
        let welcome = device.ask(&format!("HELLO {id}")).await;
        nodes.insert(welcome.rsplit(' ').next().unwrap().to_owned());
        held.push(device);
    }
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), ["a", "b"]);

    let refused = within(
        "a third without --reuse-port",
        Command::new(example_path("gateway"))
            .args([addr.as_str(), "--node", "c"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains(&addr), "{said}");
    drop(held);
    first.stop().await;
    second.stop().await;
}

/// `--metrics ADDR` serves the Prometheus text at `GET /metrics`: the
/// gateway's connections and messages, labelled by client type.
#[tokio::test]
async fn metrics_are_served_at_get_metrics() {
    let metrics_addr = format!("127.0.0.1:{}", support::free_port());
    let server = gateway(&["127.0.0.1:0", "--metrics", &metrics_addr]).await;
    let mut device = LineClient::connect(server.addr).await;
    assert_eq!(device.ask("HELLO 42").await, "WELCOME 42 local");
    let mut operator = LineClient::connect(server.addr).await;
    assert_eq!(operator.ask("OPERATOR").await, "WELCOME operator local");
    assert_eq!(operator.ask("WHERE 42").await, "AT 42 local");

    let mut http = within(
        "connect to /metrics",
        tokio::net::TcpStream::connect(&metrics_addr),
    )
    .await
    .unwrap();
    http.write_all(b"GET /metrics HTTP/1.0\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    within("the metrics", http.read_to_string(&mut response))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1."), "{response}");
    for expected in [
        "flexi_socket_connections_open 2",
        "flexi_socket_connections_total 2",
        "flexi_socket_messages_received_total{client_type=\"device\"} 1",
        "flexi_socket_messages_received_total{client_type=\"operator\"} 2",
        "flexi_socket_messages_sent_total{client_type=\"operator\"} 2",
    ] {
        assert!(
            response.lines().any(|line| line == expected),
            "no `{expected}` in:\n{response}"
        );
    }
    server.stop().await;
}
