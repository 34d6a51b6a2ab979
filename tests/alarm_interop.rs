//! The alarm examples against real third-party DC-09 software from PyPI,
//! driven by the scripts in `tests/interop/`: dc09-spt 0.0.4 sends to
//! `alarm_receiver`, and `alarm_panel` sends to pysiaalarm 3.2.2's receiver.
//! Plain and encrypted (AES-128, AES-256) frames over TCP on 127.0.0.1; each
//! program runs as a process, stopped by its PID, every wait under a timeout. Without the
//! packages the tests skip, or fail under `.ci/run` (`FLEXI_REQUIRE_TOOLS`).

mod support;

use std::process::Stdio;

use support::dc09::{printed, receiver, run_panel};
use support::encryption::{KEY_128, KEY_256};
use support::example::ExampleServer;
use support::python::{driver, python_with};
use support::within;
use tokio::process::Command;

#[tokio::test]
async fn dc09_spt_delivers_every_event_and_its_link_test_to_the_receiver() {
    dc09_spt_sends_to_the_receiver("1234", None).await;
}

#[tokio::test]
async fn dc09_spt_delivers_with_aes_128() {
    dc09_spt_sends_to_the_receiver("5678", Some(KEY_128)).await;
}

#[tokio::test]
async fn dc09_spt_delivers_with_aes_256() {
    dc09_spt_sends_to_the_receiver("DEF0", Some(KEY_256)).await;
}

/// Twelve events, so that dc09-spt's hex numbering reaches `000A`-`000C`,
/// then its link test (NULL, sequence 0000), for `account`, encrypted with
/// `key` when there is one.
async fn dc09_spt_sends_to_the_receiver(account: &str, key: Option<&str>) {
    let Some(python) = python_with(&["dc09_spt", "Crypto"]).await else {
        return;
    };
    let mut server = receiver(&[
        "--key",
        &format!("5678={KEY_128}"),
        "--key",
        &format!("DEF0={KEY_256}"),
    ])
    .await;
    let port = server.addr.port().to_string();
    let sender = Command::new(python)
        .arg(driver("dc09_spt_sender.py"))
        .args(["127.0.0.1", &port, account, "12"])
        .args(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = within("dc09-spt to send every event", sender)
        .await
        .expect("the sender runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected: String = (1..=12)
        .map(|n| format!("acknowledged {n}\n"))
        .chain(["acknowledged poll\n".to_owned()])
        .collect();
    assert_eq!(
        stdout,
        expected,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success());

    // Each once, in order: a NAKed or unrecognised reply would have been
    // followed by the same sequence again.
    for n in 1..=12_u32 {
        let sequence = format!("{n:04X}");
        let line = printed(&mut server).await;
        let (token, data) = if n % 2 == 1 {
            ("SIA-DCS", format!("data=\"#{account}|NBA01|ABack door\""))
        } else {
            ("ADM-CID", format!("data=\"#{account}|"))
        };
        let star = if key.is_some() { "*" } else { "" };
        let head = format!(
            "protocol=dc09 token={star}{token} account={account} sequence={sequence} receiver=1 \
             line=2 {data}"
        );
        assert!(line.starts_with(&head), "message {n}: {line}");
        let extended = "extended=X52.21 extended=Y5.9699 extended=M0011AABBCCDD \
                        extended=Vhttp://192.0.2.7/cam1 ";
        assert_eq!(line.contains(extended), n % 3 == 0, "message {n}: {line}");
    }
    let poll = printed(&mut server).await;
    let star = if key.is_some() { "*" } else { "" };
    let expected =
        format!("protocol=dc09 token={star}NULL account={account} sequence=0000 receiver=1 line=2");
    assert!(poll.starts_with(&expected), "{poll}");
    server.stop().await;
}

#[tokio::test]
async fn pysiaalarm_acks_every_event_of_the_panel_on_the_first_attempt() {
    panel_sends_to_pysiaalarm(None).await;
}

#[tokio::test]
async fn pysiaalarm_acks_the_panel_with_aes_128() {
    panel_sends_to_pysiaalarm(Some("0123456789ABCDEF")).await;
}

#[tokio::test]
async fn pysiaalarm_acks_the_panel_with_aes_256() {
    panel_sends_to_pysiaalarm(Some("0123456789ABCDEF0123456789ABCDEF")).await;
}

/// Six events to pysiaalarm, encrypted with `key` when there is one: its key
/// is text whose bytes are the AES key, so the panel gets their hex.
async fn panel_sends_to_pysiaalarm(key: Option<&str>) {
    let Some(python) = python_with(&["pysiaalarm"]).await else {
        return;
    };
    let mut sia = ExampleServer::start_command(
        Command::new(python)
            .arg(driver("pysiaalarm_receiver.py"))
            .arg("1234")
            .args(key),
        "pysiaalarm_receiver.py",
    )
    .await;
    let addr = sia.addr.to_string();
    let hex_key: Option<String> =
        key.map(|text| text.bytes().map(|b| format!("{b:02X}")).collect());
    let mut args = vec![addr.as_str(), "--account", "1234", "--count", "6"];
    if let Some(hex_key) = &hex_key {
        args.extend(["--key", hex_key.as_str()]);
    }
    let (output, stdout) = run_panel(&args).await;
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        stdout,
        "acknowledged: NULL sequence 0001 attempt 1\n\
         acknowledged: SIA-DCS sequence 0002 attempt 1\n\
         acknowledged: ADM-CID sequence 0003 attempt 1\n\
         acknowledged: NULL sequence 0004 attempt 1\n\
         acknowledged: SIA-DCS sequence 0005 attempt 1\n\
         acknowledged: ADM-CID sequence 0006 attempt 1\n\
         6 of 6 events acknowledged\n"
    );
    // pysiaalarm took each once, in order, with the receiver field the panel sent.
    let encrypted = if key.is_some() { "True" } else { "False" };
    for (sequence, kind, code) in [
        ("0001", "NULL", "RP"),
        ("0002", "SIA-DCS", "BA"),
        ("0003", "ADM-CID", "BA"),
        ("0004", "NULL", "RP"),
        ("0005", "SIA-DCS", "BA"),
        ("0006", "ADM-CID", "BA"),
    ] {
        assert_eq!(
            printed(&mut sia).await,
            format!(
                "event encrypted={encrypted} sequence={sequence} type={kind} receiver=R0 line=L0 \
                 account=1234 code={code}"
            )
        );
    }
    sia.stop().await;
}
