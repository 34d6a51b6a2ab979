//! The `alarm_panel` example as a real process: against the `alarm_receiver`
//! example over TCP and UDP, and against a receiver played by the test, which
//! answers with NAKs, silence, stale ACKs and bad CRCs.

mod support;

use support::dc09::{
    FakeReceiver, finish_panel, frame_with, now, panel_command, printed, receiver, run_panel,
    split_time, timestamp,
};
use support::within;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::test]
async fn the_panel_delivers_every_event_to_the_receiver() {
    for transport in [&[][..], &["--udp"][..]] {
        let mut server = receiver(transport).await;
        let addr = server.addr.to_string();
        let mut args = vec![addr.as_str(), "--account", "1234", "--count", "4"];
        args.extend_from_slice(transport);
        let (output, stdout) = run_panel(&args).await;
        assert!(output.status.success(), "{transport:?}: {stdout}");
        assert_eq!(
            stdout,
            "acknowledged: NULL sequence 0001 attempt 1\n\
             acknowledged: SIA-DCS sequence 0002 attempt 1\n\
             acknowledged: ADM-CID sequence 0003 attempt 1\n\
             acknowledged: NULL sequence 0004 attempt 1\n\
             4 of 4 events acknowledged\n",
            "{transport:?}"
        );
        for (sequence, token, data) in [
            ("0001", "NULL", "data=\"\""),
            ("0002", "SIA-DCS", "data=#1234|Nri1/BA01"),
            (
                "0003",
                "ADM-CID",
                "data=\"#1234|1130 01 003\" qualifier=new",
            ),
            ("0004", "NULL", "data=\"\""),
        ] {
            let line = printed(&mut server).await;
            let expected = format!(
                "protocol=dc09 token={token} account=1234 sequence={sequence} receiver=0 line=0 {data}"
            );
            assert!(line.starts_with(&expected), "{transport:?}: {line}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn the_panel_fails_when_the_receiver_refuses() {
    let server = receiver(&[]).await;
    let addr = server.addr.to_string();
    let (output, stdout) = run_panel(&[&addr, "--account", "9999", "--count", "1"]).await;
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "refused (DUH): NULL sequence 0001 attempt 1; not sending it again\n\
         0 of 1 events acknowledged\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_panel_repeats_the_sequence_after_a_nak_or_silence() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let panel = panel_command(&[
        &addr,
        "--account",
        "ABC",
        "--count",
        "2",
        "--timeout",
        "0.5",
    ])
    .spawn()
    .expect("the panel starts");
    let mut fake = FakeReceiver::accept(&listener).await;

    let first = fake.frame().await;
    let (message, time) = split_time(&first);
    assert_eq!(message, "\"NULL\"0001R0L0#ABC[]");
    let ours = now();
    assert!((ours - 3..=ours).any(|t| timestamp(t) == time), "{time}");
    // A NAK from a receiver whose clock is an hour ahead.
    let theirs = now() + 3600;
    fake.reply(&format!("\"NAK\"0000R0L0A0[]{}", timestamp(theirs)))
        .await;
    let again = fake.frame().await;
    let (message, time) = split_time(&again);
    assert_eq!(message, "\"NULL\"0001R0L0#ABC[]", "the same sequence");
    assert!(
        (theirs - 1..=theirs + 3).any(|t| timestamp(t) == time),
        "the panel took the receiver's time: {time}"
    );
    // Silence: the panel sends it once more after its timeout.
    let third = fake.frame().await;
    assert_eq!(split_time(&third).0, "\"NULL\"0001R0L0#ABC[]");
    fake.reply("\"ACK\"0001L0#ABC[]").await;

    let next = fake.frame().await;
    assert_eq!(
        split_time(&next).0,
        "\"SIA-DCS\"0002R0L0#ABC[#ABC|Nri1/BA01]"
    );
    // A stale ACK for another sequence is no answer; the right one is.
    fake.reply("\"ACK\"0001L0#ABC[]").await;
    fake.reply("\"ACK\"0002L0#ABC[]").await;

    let (output, stdout) = finish_panel(panel).await;
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        stdout,
        "NAK: NULL sequence 0001 attempt 1\n\
         no reply: NULL sequence 0001 attempt 2\n\
         acknowledged: NULL sequence 0001 attempt 3\n\
         acknowledged: SIA-DCS sequence 0002 attempt 1\n\
         2 of 2 events acknowledged\n"
    );
}

#[tokio::test]
async fn the_panel_gives_up_after_its_attempts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let panel = panel_command(&[&addr, "--count", "1", "--timeout", "0.2", "--attempts", "2"])
        .spawn()
        .expect("the panel starts");
    let mut fake = FakeReceiver::accept(&listener).await;
    let first = fake.frame().await;
    assert_eq!(split_time(&first).0, "\"NULL\"0001R0L0#1234[]");
    // A reply with a bad CRC is as good as none.
    let body = "\"ACK\"0001L0#1234[]";
    within(
        "write",
        fake.writer
            .write_all(&frame_with("0000", &format!("{:04X}", body.len()), body)),
    )
    .await
    .unwrap();
    let second = fake.frame().await;
    assert_eq!(split_time(&second).0, "\"NULL\"0001R0L0#1234[]");
    let (output, stdout) = finish_panel(panel).await;
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "no reply: NULL sequence 0001 attempt 1\n\
         no reply: NULL sequence 0001 attempt 2\n\
         gave up: NULL sequence 0001\n\
         0 of 1 events acknowledged\n"
    );
}
