//! An error with no `on_error` handler and no tracing subscriber is printed
//! to stderr anyway, the first of each kind, with a hint: a program that
//! set up neither still learns that its messages go nowhere. The test runs
//! itself as a child process (this binary installs no subscriber) and reads
//! the child's stderr.

mod support;

use std::process::Stdio;

use flexi_socket::{Connection, FlexiSocket, Router};
use support::{eventually, start, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::Command;

const CHILD: &str = "FLEXI_UNSEEN_ERRORS_CHILD";
const NAME: &str = "an_error_nobody_sees_is_printed_once_per_kind";

/// In the child: a server whose messages have no handler, three of them.
async fn send_unroutable_messages() {
    // Only on_connect: every message is unrouted.
    let router = Router::new().on_connect(|_conn: Connection| async {});
    let running = start(FlexiSocket::server("127.0.0.1:0").router(router)).await;
    let mut client = within("connect", TcpStream::connect(running.addr))
        .await
        .unwrap();
    client.write_all(b"one\ntwo\nthree\n").await.unwrap();
    let handle = running.handle.clone();
    eventually("three unrouted messages", || {
        handle.stats().errors.unrouted == 3
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn an_error_nobody_sees_is_printed_once_per_kind() {
    if std::env::var_os(CHILD).is_some() {
        send_unroutable_messages().await;
        return;
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = within("the child", child.wait_with_output()).await.unwrap();
    assert!(output.status.success(), "the child failed: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("flexi-socket: connection").count(),
        1,
        "one line for three unrouted messages: {stderr}"
    );
    assert!(stderr.contains("no on_message handler"), "{stderr}");
    assert!(stderr.contains("#[on_error]"), "{stderr}");
}
