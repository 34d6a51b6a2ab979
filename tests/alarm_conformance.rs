//! What real senders and receivers send, beyond the checks' own tests: hex
//! sequence numbers, every extended-data block DC-09 defines, an alarm text
//! that fills a frame to its length limit, Sur-Gard MLR2 Contact ID lines
//! with letter qualifiers, and a panel facing a receiver that echoes its
//! header wrong. Frames are built with `support::dc09` (the crate's CRC
//! helper), over 127.0.0.1.

mod support;

use support::dc09::{
    FakeReceiver, Peer, finish_panel, frame, now, panel_command, printed, receiver, split_time,
    timestamp,
};
use tokio::net::TcpListener;

const SURGARD_ACK: u8 = 0x06;
const SURGARD_NAK: u8 = 0x15;

#[tokio::test]
async fn hex_sequence_numbers_are_acked_and_echoed_as_they_came() {
    let mut server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    for sequence in ["0009", "000A", "00FF", "abcd", "FFFF"] {
        let body = format!("\"NULL\"{sequence}R1L0#1234[]");
        assert_eq!(
            panel.ask(&body).await,
            format!("\"ACK\"{sequence}R1L0#1234[]"),
            "reply to {body:?}"
        );
        let line = printed(&mut server).await;
        assert!(
            line.contains(&format!(" sequence={sequence} ")),
            "{sequence}: {line}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn every_extended_data_block_dc09_defines_is_acked() {
    let mut server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let blocks = [
        "A0123456789AB",
        "C2",
        "H14:03:07,05-21-2025",
        "IBack door opened",
        "J1",
        "K00112233",
        "LGround floor",
        "M001122AABBCC",
        "N192.0.2.7",
        "OMain building",
        "P1",
        "RServer room",
        "SWarehouse 3",
        "T1",
        "Vhttp://192.0.2.7/cam1",
        "X52.21",
        "Y5.9699",
        "Z12",
    ];
    let extended: String = blocks.iter().map(|block| format!("[{block}]")).collect();
    let ts = timestamp(now());
    let body = format!("\"SIA-DCS\"0001R1L0#1234[#1234|Nri1/BA01]{extended}{ts}");
    assert_eq!(panel.ask(&body).await, "\"ACK\"0001R1L0#1234[]");
    let line = printed(&mut server).await;
    for block in blocks {
        let field = if block.contains(' ') {
            format!("extended=\"{block}\"")
        } else {
            format!("extended={block}")
        };
        assert!(line.contains(&field), "{field} missing from {line}");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_alarm_text_that_fills_the_frame_to_its_limit_is_acked() {
    let mut server = receiver(&[]).await;
    // The first frame on the connection, so classification sees it too.
    let mut panel = Peer::connect(server.addr).await;
    let ts = timestamp(now());
    let head = "\"SIA-DCS\"0001R1L0#1234[#1234|Nri1/BA01][I";
    let text_len = 0xFFF - head.len() - "]".len() - ts.len();
    let text: String = "Intruder in the east wing, "
        .chars()
        .cycle()
        .take(text_len)
        .collect();
    let body = format!("{head}{text}]{ts}");
    assert_eq!(
        body.len(),
        0xFFF,
        "the longest body a length field can give"
    );
    assert_eq!(frame(&body).len(), 4105);
    assert_eq!(panel.ask(&body).await, "\"ACK\"0001R1L0#1234[]");
    let line = printed(&mut server).await;
    assert!(line.contains(&format!("extended=\"I{text}\"")), "{line}");
    server.stop().await;
}

#[tokio::test]
async fn sur_gard_contact_id_lines_carry_the_qualifier_as_a_letter() {
    let mut server = receiver(&[]).await;
    let mut link = Peer::connect(server.addr).await;
    for (letter, qualifier) in [("E", "new"), ("R", "restore"), ("P", "status")] {
        link.send(format!("5011 181234{letter}13001015\x14").as_bytes())
            .await;
        assert_eq!(link.byte().await, SURGARD_ACK, "qualifier {letter}");
        let line = printed(&mut server).await;
        let expected = format!(
            "protocol=surgard kind=contact-id receiver=01 line=1 account=1234 \
             qualifier={qualifier} code=130 group=01 zone=015 "
        );
        assert!(line.starts_with(&expected), "{letter}: {line}");
    }
    for line in [
        &b"5011 181234X13001015\x14"[..],
        b"5011 181234e13001015\x14",
        b"5011 181234E1300101\x14",
    ] {
        link.send(line).await;
        assert_eq!(link.byte().await, SURGARD_NAK, "{line:?}");
    }
    // Still served after the NAKs.
    link.send(b"5021 18BCDER3B30F0DE\x14").await;
    assert_eq!(link.byte().await, SURGARD_ACK);
    assert!(printed(&mut server).await.contains("qualifier=restore"));
    server.stop().await;
}

#[tokio::test]
async fn the_panel_sends_a_receiver_field_and_takes_an_ack_that_echoes_none() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let panel = panel_command(&[&addr, "--count", "2", "--timeout", "5"])
        .spawn()
        .expect("the panel starts");
    let mut fake = FakeReceiver::accept(&listener).await;
    let first = fake.frame().await;
    assert_eq!(split_time(&first).0, "\"NULL\"0001R0L0#1234[]");
    // What pysiaalarm 3.2.2 answers when a header has no R.
    fake.reply("\"ACK\"0001NoneL0#1234[]").await;
    let second = fake.frame().await;
    assert_eq!(
        split_time(&second).0,
        "\"SIA-DCS\"0002R0L0#1234[#1234|Nri1/BA01]"
    );
    fake.reply("\"ACK\"0002R0L0#1234[]").await;
    let (output, stdout) = finish_panel(panel).await;
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        stdout,
        "acknowledged: NULL sequence 0001 attempt 1\n\
         acknowledged: SIA-DCS sequence 0002 attempt 1\n\
         2 of 2 events acknowledged\n"
    );
}
