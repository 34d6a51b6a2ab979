//! Running under systemd: the echo example serves the socket that
//! `systemd-socket-activate` hands in (address `systemd`), and tells a
//! `NOTIFY_SOCKET` READY=1 once serving and STOPPING=1 on SIGTERM. The
//! programs are started by the test and stopped by their PID.

mod support;

use std::process::Stdio;

use support::example::{ExampleServer, example_path};
use support::{free_port, missing_tool, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixDatagram};
use tokio::process::Command;

fn sigterm(child: &tokio::process::Child) {
    let pid = libc::pid_t::try_from(child.id().expect("running")).expect("a pid");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
}

#[tokio::test]
async fn the_echo_example_serves_the_socket_systemd_hands_in() {
    if std::process::Command::new("systemd-socket-activate")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        missing_tool("systemd-socket-activate", ".ci/run installs systemd");
        return;
    }
    let addr = format!("127.0.0.1:{}", free_port());
    // It listens, and execs the server (same PID) at the first connection.
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&addr)
        .arg(example_path("echo"))
        .arg("systemd")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stream = within("systemd-socket-activate listens", async {
        loop {
            if let Ok(stream) = TcpStream::connect(&addr).await {
                return stream;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut stdout = BufReader::new(activator.stdout.take().unwrap()).lines();
    let listening = within("`listening on`", stdout.next_line()).await.unwrap();
    assert_eq!(
        listening,
        Some(format!("listening on {addr}")),
        "the handed-in socket"
    );
    let (reader, mut writer) = stream.into_split();
    writer.write_all(b"activated\n").await.unwrap();
    let mut lines = BufReader::new(reader).lines();
    let reply = within("the echo", lines.next_line()).await.unwrap();
    assert_eq!(reply.as_deref(), Some("activated"));
    sigterm(&activator);
    let status = within("the exit", activator.wait()).await.unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_notify_service_is_told_ready_and_stopping() {
    let dir = std::env::temp_dir().join(format!("flexi-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let notify_path = dir.join("notify.sock");
    let notifications = UnixDatagram::bind(&notify_path).unwrap();
    let mut command = Command::new(example_path("echo"));
    command
        .arg("127.0.0.1:0")
        .env("NOTIFY_SOCKET", &notify_path);
    let server = ExampleServer::start_command(&mut command, "echo").await;
    let mut message = vec![0; 256];
    let length = within("READY=1", notifications.recv(&mut message))
        .await
        .unwrap();
    assert_eq!(&message[..length], b"READY=1\n");
    sigterm(&server.child);
    let length = within("STOPPING=1", notifications.recv(&mut message))
        .await
        .unwrap();
    assert_eq!(&message[..length], b"STOPPING=1\n");
    let mut child = server.child;
    let status = within("the exit", child.wait()).await.unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
