//! Bad addresses fail at once, saying what is wrong, and a failed bind says
//! what actually happened: a malformed address never reaches the reconnect
//! loop, a port in use is not reported as anything else, and a host name
//! that does not resolve is retried by a client (DNS may answer later).

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use flexi_socket::{Error, FlexiSocket, Router};
use support::client::quick_retries;
use support::within;

fn echo() -> Router {
    Router::new().on_message(|conn: flexi_socket::Connection, msg: String| async move {
        conn.send(msg).await
    })
}

/// The parts of an `InvalidAddress`, or a panic naming what came instead.
fn invalid(result: Result<impl std::fmt::Debug, Error>) -> (String, String) {
    match result {
        Err(error @ Error::InvalidAddress { .. }) => {
            let Error::InvalidAddress { ref addr, .. } = error else {
                unreachable!()
            };
            (addr.clone(), error.to_string())
        }
        other => panic!("expected InvalidAddress, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_without_a_port_fails_at_spawn_and_connect() {
    let (addr, text) = invalid(FlexiSocket::client("127.0.0.1").router(echo()).spawn());
    assert_eq!(addr, "127.0.0.1");
    assert!(
        text.contains("no port") && text.contains("host:port") && text.contains("unix:PATH"),
        "{text}"
    );
    // connect() would otherwise wait for the reconnect policy, forever by default.
    let connecting = FlexiSocket::client("127.0.0.1").router(echo()).connect();
    let (_, text) = invalid(within("connect", connecting).await);
    assert!(text.contains("no port"), "{text}");
}

#[tokio::test]
async fn a_udp_client_without_a_port_or_with_a_unix_path_fails_at_connect() {
    let connecting = FlexiSocket::udp_client("localhost")
        .router(echo())
        .connect();
    let (_, text) = invalid(within("connect", connecting).await);
    assert!(text.contains("write localhost:PORT"), "{text}");
    let connecting = FlexiSocket::udp_client("unix:/tmp/x.sock")
        .router(echo())
        .connect();
    let (_, text) = invalid(within("connect", connecting).await);
    assert!(text.contains("no Unix sockets"), "{text}");
}

#[tokio::test]
async fn a_server_given_only_a_port_says_which_host_to_write() {
    let (addr, text) =
        invalid(within("bind", FlexiSocket::server("8081").router(echo()).bind()).await);
    assert_eq!(addr, "8081");
    assert!(
        text.contains("0.0.0.0:8081") && text.contains("127.0.0.1:8081"),
        "{text}"
    );
    assert!(!text.contains("another process"), "{text}");
    let (_, text) = invalid(within("bind", FlexiSocket::udp("8082").router(echo()).bind()).await);
    assert!(text.contains("0.0.0.0:8082"), "{text}");
}

#[tokio::test]
async fn a_port_in_use_is_reported_as_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let result = within("bind", FlexiSocket::server(addr).router(echo()).bind()).await;
    let Err(error @ Error::Bind { .. }) = result else {
        panic!(
            "expected Bind, got {:?}",
            result.map(|server| server.local_addr())
        );
    };
    let text = error.to_string();
    let Error::Bind { source, .. } = error else {
        unreachable!()
    };
    assert_eq!(source.kind(), ErrorKind::AddrInUse, "{text}");
    assert!(
        text.contains("another socket is bound to this port"),
        "{text}"
    );

    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let result = within("bind", FlexiSocket::udp(addr).router(echo()).bind()).await;
    let text = result
        .map(|server| server.local_addr())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("another socket is bound to this port"),
        "{text}"
    );
}

#[tokio::test]
async fn an_address_this_machine_lacks_is_not_called_in_use() {
    // 192.0.2.0/24 is TEST-NET-1: no interface of a test machine has it.
    let result = within(
        "bind",
        FlexiSocket::server("192.0.2.1:0").router(echo()).bind(),
    )
    .await;
    let text = result
        .map(|server| server.local_addr())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("no interface of this machine has that address"),
        "{text}"
    );
    assert!(!text.contains("another"), "{text}");
}

#[tokio::test]
async fn a_server_name_that_does_not_resolve_says_so() {
    // .invalid never resolves (RFC 6761).
    let binding = FlexiSocket::server("nothing.invalid:8081")
        .router(echo())
        .bind();
    let text = within("bind", binding)
        .await
        .map(|server| server.local_addr())
        .unwrap_err()
        .to_string();
    assert!(text.contains("does not resolve"), "{text}");
}

#[tokio::test]
async fn a_client_retries_a_name_that_does_not_resolve_under_its_policy() {
    let connecting = FlexiSocket::client("nothing.invalid:8081")
        .router(echo())
        .reconnect(quick_retries().max_attempts(2))
        .connect_timeout(Duration::from_secs(3))
        .connect();
    let error = within("giving up", connecting).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::GaveUp { .. }), "{text}");
    assert!(text.contains("after 2 attempts"), "{text}");
    // A resolver that answers says so; one that hangs runs into the timeout.
    assert!(
        text.contains("cannot resolve nothing.invalid:8081") || text.contains("took longer"),
        "{text}"
    );
}
