//! The examples, run as real processes the way a user runs them: started on
//! 127.0.0.1:0, driven over loopback (also with plain `nc` when installed),
//! then stopped by their PID.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;

use support::example::ExampleServer;
use support::example::example_path;
use support::udp::UdpClient;
use support::{LineClient, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Pipes `input` through `nc -N` (close after stdin ends) and returns what came back,
/// or `None` when nc is not installed.
async fn through_nc(addr: SocketAddr, input: &[u8]) -> Option<String> {
    let spawned = Command::new("nc")
        .args(["-N", &addr.ip().to_string(), &addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut nc) = spawned else {
        support::missing_tool("nc", ".ci/run installs netcat-openbsd");
        return None;
    };
    let mut stdin = nc.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let output = within("nc", nc.wait_with_output()).await.unwrap();
    Some(String::from_utf8(output.stdout).unwrap())
}

#[tokio::test]
async fn echo_replies_every_line_unchanged() {
    let server = ExampleServer::start("echo").await;
    let mut client = LineClient::connect(server.addr).await;
    assert_eq!(client.ask("hello").await, "hello");
    assert_eq!(client.ask("second line").await, "second line");
    if let Some(output) = through_nc(server.addr, b"from nc\nand more\n").await {
        assert_eq!(output, "from nc\nand more\n");
    }
    server.stop().await;
}

#[tokio::test]
async fn udp_echo_sends_every_datagram_back_unchanged() {
    let server = ExampleServer::start("udp_echo").await;
    let client = UdpClient::connect(server.addr).await;
    assert_eq!(client.ask("hello").await, "hello");
    client.send(b"two\nlines\n\0binary").await;
    assert_eq!(client.recv().await, b"two\nlines\n\0binary");
    let other = UdpClient::connect(server.addr).await;
    assert_eq!(other.ask("another peer").await, "another peer");
    server.stop().await;
}

#[tokio::test]
async fn classifier_answers_per_client_type() {
    let mut server = ExampleServer::start("classifier").await;
    let mut alarm = LineClient::connect(server.addr).await;
    let mut sensor = LineClient::connect(server.addr).await;
    let mut other = LineClient::connect(server.addr).await;
    assert_eq!(
        alarm.ask("!!hi").await,
        "Hello from server! You are type 001"
    );
    assert_eq!(
        sensor.ask("##hi").await,
        "Hello from server! You are type 002"
    );
    assert_eq!(
        other.ask("hi").await,
        "Hello from server! You are type default"
    );
    // Once per message, and the type sticks to the connection.
    assert_eq!(
        alarm.ask("no marker now").await,
        "Hello from server! You are type 001"
    );
    if let Some(output) = through_nc(server.addr, b"##one\ntwo\n").await {
        assert_eq!(output, "Hello from server! You are type 002\n".repeat(2));
    }
    // after_receive stripped the marker before the handler printed it.
    let mut printed = String::new();
    loop {
        printed.clear();
        within("server output", server.stdout.read_line(&mut printed))
            .await
            .unwrap();
        if printed.starts_with("type 001 sent") {
            assert_eq!(printed.trim_end(), "type 001 sent \"hi\"");
            break;
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn quickstart_runs_to_completion() {
    let output = within(
        "quickstart",
        Command::new(example_path("quickstart"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "quickstart failed:\n{stdout}");
    for expected in [
        "[alarm panel] received \"ACK ALARM zone 3\"",
        "[sensor] received \"1:STORED temperature=21.5\"",
        "[stranger] received \"Hello stranger, you said \\\"hello?\\\"\"",
        "classified as type 001",
        "closed: server shutdown",
        "[main] done",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert_eq!(
        stdout.matches("closed: server shutdown").count(),
        3,
        "{stdout}"
    );
}

#[tokio::test]
async fn client_identifies_as_001_and_prints_replies() {
    let server = ExampleServer::start("classifier").await;
    let mut client = Command::new(example_path("client"))
        .arg(server.addr.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("client starts");
    let mut stdout = tokio::io::BufReader::new(client.stdout.take().unwrap());
    let mut printed = String::new();
    within("the client's first lines", async {
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            printed.push_str(&line);
            if line.trim_end() == "Hello from server! You are type 001" {
                break;
            }
        }
    })
    .await;
    assert!(printed.starts_with("connected to "), "{printed}");
    assert!(
        printed.ends_with("Hello from server! You are type 001\n"),
        "{printed}"
    );
    client.start_kill().expect("kill by PID");
    within("client exit", client.wait()).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn every_example_prints_its_usage_and_refuses_an_unknown_flag() {
    // Every file examples/NAME.rs (examples/alarm/ holds modules).
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name()?.to_str()?.strip_suffix(".rs")?;
            Some(name.to_owned())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 9, "{names:?}");
    for name in &names {
        let run = |arg: &'static str| {
            within(
                "the example's command line",
                Command::new(example_path(name))
                    .arg(arg)
                    .kill_on_drop(true)
                    .output(),
            )
        };
        let help = run("--help").await.unwrap();
        let usage = String::from_utf8(help.stdout).unwrap();
        assert!(help.status.success(), "{name} --help failed: {usage}");
        assert!(usage.contains("Usage: "), "{name} --help printed {usage:?}");
        let refused = run("--no-such-flag").await.unwrap();
        assert_eq!(refused.status.code(), Some(2), "{name} took --no-such-flag");
        let complaint = String::from_utf8(refused.stderr).unwrap();
        assert!(
            complaint.contains("--no-such-flag"),
            "{name} said {complaint:?}"
        );
    }
}
