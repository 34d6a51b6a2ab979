//! Encrypted DC-09 in the `alarm_receiver` and `alarm_panel` examples, as
//! real processes on 127.0.0.1: AES-128, -192 and -256 frames built in the
//! test with RustCrypto (`support::encryption`, not the example's code), the
//! encrypted replies decrypted and read, and each refusal.

mod support;

use support::dc09::{
    FakeReceiver, Peer, assert_nak, finish_panel, now, panel_command, printed, receiver, run_panel,
    timestamp,
};
use support::encryption::{KEY_128, KEY_192, KEY_256, seal, seal_raw, unseal};

/// The receiver knowing accounts 1234 and ABC in clear, and 5678, 9ABC and
/// DEF0 with a key of each size.
async fn keyed_receiver() -> support::example::ExampleServer {
    receiver(&[
        "--key",
        &format!("5678={KEY_128}"),
        "--key",
        &format!("9ABC={KEY_192}"),
        "--key",
        &format!("DEF0={KEY_256}"),
    ])
    .await
}

/// The plaintext of an encrypted reply: padding without `[`, `]`, `|`, then
/// `|`, then `]` and a timestamp of about now.
fn assert_sealed_reply(plain: &str, what: &str) {
    let (pad, rest) = plain
        .split_once('|')
        .unwrap_or_else(|| panic!("{what}: no `|` in {plain:?}"));
    assert!(!pad.is_empty(), "{what}: padding in {plain:?}");
    assert!(
        !pad.contains(['[', ']']),
        "{what}: padding with brackets {plain:?}"
    );
    let stamp = rest
        .strip_prefix(']')
        .unwrap_or_else(|| panic!("{what}: {plain:?}"));
    let ours = now();
    assert!(
        (ours - 3..=ours + 1).any(|t| timestamp(t) == stamp),
        "{what}: reply time {stamp:?}"
    );
}

#[tokio::test]
async fn each_key_size_takes_encrypted_frames_and_answers_encrypted() {
    let mut server = keyed_receiver().await;
    let mut panel = Peer::connect(server.addr).await;
    for (account, key) in [("5678", KEY_128), ("9ABC", KEY_192), ("DEF0", KEY_256)] {
        let events = [
            ("NULL", String::new()),
            ("SIA-DCS", format!("#{account}|Nri1/BA01")),
            ("ADM-CID", format!("#{account}|1130 01 003")),
        ];
        for (n, (token, data)) in events.iter().enumerate() {
            let sequence = format!("{:04}", n + 1);
            let header = format!("{sequence}R1L0#{account}");
            let content = format!("{data}][Xsite 7]{}", timestamp(now()));
            let body = format!("\"*{token}\"{header}[{}", seal(key, &content));
            let reply = panel.ask(&body).await;
            let what = format!("{token} for {account}");
            let sealed = reply
                .strip_prefix(&format!("\"*ACK\"{header}["))
                .unwrap_or_else(|| panic!("{what}: expected an encrypted ACK, got {reply:?}"));
            assert_sealed_reply(&unseal(key, sealed), &what);
            let line = printed(&mut server).await;
            let expected = format!(
                "protocol=dc09 token=*{token} account={account} sequence={sequence} receiver=1 \
                 line=0 data="
            );
            assert!(line.starts_with(&expected), "{what}: {line}");
            assert!(line.contains("extended=\"Xsite 7\""), "{what}: {line}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn encrypted_frames_are_refused_as_the_standard_says() {
    let server = keyed_receiver().await;
    let mut panel = Peer::connect(server.addr).await;
    let fresh = || format!("]{}", timestamp(now()));
    let null = |account: &str, key: &str, content: &str| {
        format!("\"*NULL\"0001L0#{account}[{}", seal(key, content))
    };
    // No key for the account, or no such account: DUH in clear.
    assert_eq!(
        panel.ask(&null("1234", KEY_128, &fresh())).await,
        "\"DUH\"0001L0#1234[]"
    );
    assert_eq!(
        panel.ask(&null("9999", KEY_128, &fresh())).await,
        "\"DUH\"0001L0#9999[]"
    );
    // An account with a key takes nothing in clear.
    assert_eq!(
        panel
            .ask(&format!("\"NULL\"0001L0#5678[]{}", timestamp(now())))
            .await,
        "\"DUH\"0001L0#5678[]"
    );
    let sealed = seal(KEY_128, &fresh());
    let naks = [
        ("no timestamp inside", null("5678", KEY_128, "]")),
        (
            "a stale timestamp inside",
            null("5678", KEY_128, &format!("]{}", timestamp(now() - 3600))),
        ),
        (
            "not whole blocks",
            format!("\"*NULL\"0001L0#5678[{}", &sealed[2..]),
        ),
        (
            "not hex",
            format!("\"*NULL\"0001L0#5678[{}", "Z".repeat(32)),
        ),
        ("nothing encrypted", "\"*NULL\"0001L0#5678[".to_owned()),
        (
            "no `|` after the padding",
            format!(
                "\"*NULL\"0001L0#5678[{}",
                seal_raw(KEY_128, b"################")
            ),
        ),
        (
            "the data block never closes",
            null("5678", KEY_128, &"#".repeat(20)),
        ),
        (
            "something other than extended data after the data",
            null("5678", KEY_128, &format!("]junk{}", timestamp(now()))),
        ),
    ];
    for (what, body) in naks {
        assert_nak(&panel.ask(&body).await, what);
    }
    // Decrypts, but the data does not fit the token: DUH, encrypted.
    let body = format!(
        "\"*ADM-CID\"0002R1L0#5678[{}",
        seal(KEY_128, &format!("#5678|9999]{}", timestamp(now())))
    );
    let reply = panel.ask(&body).await;
    let sealed = reply
        .strip_prefix("\"*DUH\"0002R1L0#5678[")
        .unwrap_or_else(|| panic!("expected an encrypted DUH, got {reply:?}"));
    assert_sealed_reply(&unseal(KEY_128, sealed), "DUH");
    // Still served.
    let reply = panel.ask(&null("5678", KEY_128, &fresh())).await;
    assert!(reply.starts_with("\"*ACK\"0001L0#5678["), "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn the_panel_sends_encrypted_with_each_key_size() {
    let mut server = keyed_receiver().await;
    let addr = server.addr.to_string();
    for (account, key) in [("5678", KEY_128), ("9ABC", KEY_192), ("DEF0", KEY_256)] {
        let args = [&addr, "--account", account, "--key", key, "--count", "3"];
        let (output, stdout) = run_panel(&args).await;
        assert!(output.status.success(), "{account}: {stdout}");
        assert!(stdout.ends_with("3 of 3 events acknowledged\n"), "{stdout}");
        for token in ["*NULL", "*SIA-DCS", "*ADM-CID"] {
            let line = printed(&mut server).await;
            let expected = format!("protocol=dc09 token={token} account={account} ");
            assert!(line.starts_with(&expected), "{line}");
        }
    }
    // With a key the account does not have, the panel is refused.
    let (output, stdout) = run_panel(&[&addr, "--key", KEY_128, "--count", "1"]).await;
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("refused (DUH)"), "{stdout}");
    server.stop().await;
}

/// A panel that encrypts takes only an ACK encrypted with its key: one in
/// clear, or under another key, is no answer.
#[tokio::test]
async fn the_panel_takes_only_an_ack_encrypted_with_its_key() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let panel = panel_command(&[&addr, "--key", KEY_128, "--count", "1", "--timeout", "0.5"])
        .spawn()
        .expect("the panel starts");
    let mut fake = FakeReceiver::accept(&listener).await;
    let header = "0001R0L0#1234";
    for attempt in 1..=2 {
        let frame = fake.frame().await;
        let sealed = frame
            .strip_prefix(&format!("\"*NULL\"{header}["))
            .unwrap_or_else(|| panic!("attempt {attempt}: {frame:?}"));
        assert_sealed_reply(&unseal(KEY_128, sealed), "the panel's content");
        let content = format!("]{}", timestamp(now()));
        if attempt == 1 {
            fake.reply(&format!("\"ACK\"{header}[]")).await;
            fake.reply(&format!("\"*ACK\"{header}[{}", seal(KEY_256, &content)))
                .await;
        } else {
            fake.reply(&format!("\"*ACK\"{header}[{}", seal(KEY_128, &content)))
                .await;
        }
    }
    let (output, stdout) = finish_panel(panel).await;
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        stdout,
        "no reply: NULL sequence 0001 attempt 1\n\
         acknowledged: NULL sequence 0001 attempt 2\n\
         1 of 1 events acknowledged\n"
    );
}

#[tokio::test]
async fn a_key_of_the_wrong_length_is_refused_at_start() {
    let (output, _) = run_panel(&["127.0.0.1:1", "--key", "0011"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = receiver_refuses(&["--key", "1234=0011"]).await;
    assert!(stderr.contains("32, 48 or 64 hex digits"), "{stderr}");
}

/// What the receiver printed when it refused to start with `args` (clap's
/// usage error, exit status 2).
async fn receiver_refuses(args: &[&str]) -> String {
    let output = tokio::process::Command::new(support::example::example_path("alarm_receiver"))
        .arg("127.0.0.1:0")
        .args(args)
        .output();
    let output = support::within("the receiver to refuse", output)
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Keys read from a file serve as keys given with `--key`; a bad line is
/// refused at start with its line number.
#[tokio::test]
async fn keys_come_from_a_key_file_and_a_bad_line_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = dir.path().join("keys");
    std::fs::write(
        &keys,
        format!("# panels\n\n5678={KEY_128}\n  DEF0={KEY_256}\n"),
    )
    .unwrap();
    let keys = keys.to_str().unwrap();
    let mut server = receiver(&["--key-file", keys]).await;
    let addr = server.addr.to_string();
    for (account, key) in [("5678", KEY_128), ("DEF0", KEY_256)] {
        let (output, stdout) =
            run_panel(&[&addr, "--account", account, "--key", key, "--count", "1"]).await;
        assert!(output.status.success(), "{account}: {stdout}");
        let line = printed(&mut server).await;
        assert!(
            line.starts_with(&format!("protocol=dc09 token=*NULL account={account} ")),
            "{line}"
        );
    }
    // An account with a key in the file takes nothing in clear.
    let (output, stdout) = run_panel(&[&addr, "--account", "5678", "--count", "1"]).await;
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    server.stop().await;

    let bad = dir.path().join("bad");
    std::fs::write(&bad, format!("5678={KEY_128}\n1234=0011\n")).unwrap();
    let readable_by_all = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&bad, readable_by_all).unwrap();
    let stderr = receiver_refuses(&["--key-file", bad.to_str().unwrap()]).await;
    assert!(stderr.contains("can be read by others"), "{stderr}");
    assert!(
        stderr.contains("line 2: ") && stderr.contains("32, 48 or 64 hex digits"),
        "{stderr}"
    );
    // One account, two keys: which one the panel has would be a guess.
    let key = format!("5678={KEY_256}");
    let stderr = receiver_refuses(&["--key", &key, "--key-file", keys]).await;
    assert!(
        stderr.contains("account 5678 is given two keys"),
        "{stderr}"
    );
}
