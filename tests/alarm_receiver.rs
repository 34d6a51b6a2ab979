//! The `alarm_receiver` and `alarm_panel` examples as real processes on
//! 127.0.0.1: every rule of the receiver (DC-09 checks 1–9 in order, the
//! stream rules, Sur-Gard lines, strangers, output, UDP), and the panel
//! against the receiver and against a receiver played by the test. Frames
//! are built and replies checked here, with the crate's CRC helper, not with
//! the example's code.

mod support;

use flexi_socket::checksum::Checksum;
use support::dc09::{
    FakeReceiver, Peer, assert_nak, finish_panel, frame, frame_with, now, open, panel_command,
    printed, receiver, run_panel, split_time, timestamp,
};
use support::udp::UdpClient;
use support::within;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const SURGARD_ACK: u8 = 0x06;
const SURGARD_NAK: u8 = 0x15;
const HEARTBEAT: &[u8] = b"1011           @    \x14";

/// Sends each `(body, expected reply)` on one connection.
async fn expect_replies(panel: &mut Peer, cases: &[(&str, &str)]) {
    for (body, expected) in cases {
        let reply = panel.ask(body).await;
        if *expected == "NAK" {
            assert_nak(&reply, body);
        } else {
            assert_eq!(reply, *expected, "reply to {body:?}");
        }
    }
}

#[tokio::test]
async fn check_9_acks_each_token_and_echoes_the_header() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let ts = timestamp(now());
    let cases = [
        ("\"NULL\"0001L0#1234[]", "\"ACK\"0001L0#1234[]"),
        (
            "\"SIA-DCS\"0002R1L0#1234[#1234|Nri1/BA01]",
            "\"ACK\"0002R1L0#1234[]",
        ),
        (
            "\"ADM-CID\"0003R12ABCL3F#1234[#1234|1130 01 003]",
            "\"ACK\"0003R12ABCL3F#1234[]",
        ),
        // Accounts compare in any case; the reply echoes what was sent.
        ("\"NULL\"0004L0#abc[]", "\"ACK\"0004L0#abc[]"),
        (
            &format!("\"SIA-DCS\"9999L123456#1234[#1234|NBA01 zone 1 \"front\"][Xhome]{ts}"),
            "\"ACK\"9999L123456#1234[]",
        ),
        // Contact ID digits B-F, restore and status qualifiers.
        (
            "\"ADM-CID\"0005L0#ABC[#ABC|3B3C 0F 0DE]",
            "\"ACK\"0005L0#ABC[]",
        ),
        (
            "\"ADM-CID\"0006L0#1234[#1234|6570 99 999]",
            "\"ACK\"0006L0#1234[]",
        ),
    ];
    expect_replies(&mut panel, &cases).await;
    server.stop().await;
}

#[tokio::test]
async fn check_1_crc_and_length_fields_must_be_right() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let body = "\"NULL\"0001L0#1234[]";
    let crc = Checksum::Crc16Arc.to_hex(body.as_bytes());
    let length = format!("{:04X}", body.len());
    let wrong_crc = format!("{:04X}", Checksum::Crc16Arc.compute(body.as_bytes()) ^ 1);
    let unknown = "\"XYZ\"0001L0#9999[]";
    let frames: [(&str, Vec<u8>); 10] = [
        ("wrong CRC", frame_with(&wrong_crc, &length, body)),
        (
            "length one too many",
            frame_with(&crc, &format!("{:04X}", body.len() + 1), body),
        ),
        (
            "length one too few",
            frame_with(&crc, &format!("{:04X}", body.len() - 1), body),
        ),
        (
            "length not starting with 0",
            frame_with(&crc, &format!("1{}", &length[1..]), body),
        ),
        ("CRC not hex", frame_with("G1B2", &length, body)),
        ("length not hex", frame_with(&crc, "00x3", body)),
        ("CRC of 3 digits", frame_with(&crc[..3], &length, body)),
        ("nothing after the LF", b"\n\r".to_vec()),
        ("a short frame", b"\n12\r".to_vec()),
        // Check 1 comes first: the token and account do not matter.
        (
            "wrong CRC, unknown token and account",
            frame_with(&wrong_crc, &format!("{:04X}", unknown.len()), unknown),
        ),
    ];
    for (what, bad) in frames {
        panel.send(&bad).await;
        assert_nak(&panel.reply().await, what);
    }
    // Still open after every NAK.
    assert_eq!(panel.ask(body).await, "\"ACK\"0001L0#1234[]");
    server.stop().await;
}

#[tokio::test]
async fn check_1_accepts_the_crc_in_lower_case() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    // A body whose CRC has letters, so that the case shows.
    let (body, crc) = (1..)
        .map(|sequence| format!("\"NULL\"{sequence:04}L0#1234[]"))
        .map(|body| {
            let crc = Checksum::Crc16Arc.to_hex(body.as_bytes());
            (body, crc)
        })
        .find(|(_, crc)| crc.bytes().filter(u8::is_ascii_alphabetic).count() >= 2)
        .unwrap();
    let length = format!("{:04x}", body.len());
    panel
        .send(&frame_with(&crc.to_ascii_lowercase(), &length, &body))
        .await;
    let sequence = &body[6..10];
    assert_eq!(panel.reply().await, format!("\"ACK\"{sequence}L0#1234[]"));
    server.stop().await;
}

#[tokio::test]
async fn check_2_a_quoted_token_must_be_there() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let cases = [
        ("SIA-DCS\"0001L0#1234[#1234|NBA01]", "NAK"),
        ("\"SIA-DCS0001L0#1234[#1234|NBA01]", "NAK"),
        ("0001L0#1234[]", "NAK"),
        ("", "NAK"),
        // Before the account check.
        ("NULL0001L0#9999[]", "NAK"),
        ("\"NULL\"0001L0#1234[]", "\"ACK\"0001L0#1234[]"),
    ];
    expect_replies(&mut panel, &cases).await;
    server.stop().await;
}

#[tokio::test]
async fn check_3_encrypted_and_unknown_tokens_get_duh() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let cases = [
        (
            "\"*SIA-DCS\"0001L0#1234[8A5F0C2D9E]",
            "\"DUH\"0001L0#1234[]",
        ),
        ("\"*ADM-CID\"0002R1L0#1234[77]", "\"DUH\"0002R1L0#1234[]"),
        (
            "\"SIA-DCX\"0003L0#1234[#1234|NBA01]",
            "\"DUH\"0003L0#1234[]",
        ),
        ("\"null\"0004L0#1234[]", "\"DUH\"0004L0#1234[]"),
        ("\"\"0005L0#1234[]", "\"DUH\"0005L0#1234[]"),
        // Before the header, account and data checks.
        ("\"XYZ\"12L0#1234[]", "\"DUH\"0000R0L0A0[]"),
        ("\"XYZ\"0006L0#9999[nonsense]", "\"DUH\"0006L0#9999[]"),
        ("\"NULL\"0007L0#1234[]", "\"ACK\"0007L0#1234[]"),
    ];
    expect_replies(&mut panel, &cases).await;
    server.stop().await;
}

#[tokio::test]
async fn check_4_a_malformed_header_gets_nak() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let cases = [
        ("\"NULL\"001L0#1234[]", "NAK"),
        ("\"NULL\"00001L0#1234[]", "NAK"),
        ("\"NULL\"00A1L0#1234[]", "NAK"),
        ("\"NULL\"0001RL0#1234[]", "NAK"),
        ("\"NULL\"0001R1234567L0#1234[]", "NAK"),
        ("\"NULL\"0001#1234[]", "NAK"),
        ("\"NULL\"0001L#1234[]", "NAK"),
        ("\"NULL\"0001L1234567#1234[]", "NAK"),
        ("\"NULL\"0001L0#12[]", "NAK"),
        ("\"NULL\"0001L0#12345678901234567[]", "NAK"),
        ("\"NULL\"0001L0#12G4[]", "NAK"),
        ("\"NULL\"0001L01234[]", "NAK"),
        ("\"NULL\"0001L0#1234", "NAK"),
        ("\"NULL\"0001L0#1234 []", "NAK"),
        // Before the account check.
        ("\"NULL\"001L0#9999[]", "NAK"),
        // The longest fields are fine.
        (
            "\"NULL\"0001RABCDEFL123456#0123456789ABCDEF[]",
            "\"DUH\"0001RABCDEFL123456#0123456789ABCDEF[]",
        ),
        ("\"NULL\"0001R1L1#ABC[]", "\"ACK\"0001R1L1#ABC[]"),
    ];
    expect_replies(&mut panel, &cases).await;
    server.stop().await;
}

#[tokio::test]
async fn check_5_an_unknown_account_gets_duh() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let stale = timestamp(now() - 3600);
    let cases = [
        ("\"NULL\"0001L0#9999[]", "\"DUH\"0001L0#9999[]"),
        (
            "\"SIA-DCS\"0002R5L0#5678[#5678|NBA01]",
            "\"DUH\"0002R5L0#5678[]",
        ),
        ("\"NULL\"0003L0#12345[]", "\"DUH\"0003L0#12345[]"),
        // Before the data, trailer and time checks.
        ("\"ADM-CID\"0004L0#9999[garbage]", "\"DUH\"0004L0#9999[]"),
        ("\"NULL\"0005L0#9999[]junk", "\"DUH\"0005L0#9999[]"),
        (
            &format!("\"NULL\"0006L0#9999[]{stale}"),
            "\"DUH\"0006L0#9999[]",
        ),
        ("\"NULL\"0007L0#1234[]", "\"ACK\"0007L0#1234[]"),
    ];
    expect_replies(&mut panel, &cases).await;
    server.stop().await;
}

#[tokio::test]
async fn check_6_data_must_fit_the_token() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let stale = timestamp(now() - 3600);
    let mut cases = Vec::new();
    for data in [
        "NBA01",
        "#1234NBA01",
        "#1234|BA01",
        "#1234|N",
        "#12|NBA01",
        "#1234|NBA\u{1}01",
    ] {
        cases.push(format!("\"SIA-DCS\"0001L0#1234[{data}]"));
    }
    for data in [
        "#1234|2130 01 003",
        "#1234|1A30 01 003",
        "#1234|1130 01 03",
        "#1234|1130 01 0031",
        "#1234|113001003",
        "#1234|1130  01 003",
        "#1234|1130 01 00a",
        "1130 01 003",
        "",
    ] {
        cases.push(format!("\"ADM-CID\"0001L0#1234[{data}]"));
    }
    cases.push("\"NULL\"0001L0#1234[x]".into());
    cases.push("\"NULL\"0001L0#1234[".into());
    // Before the trailer and time checks.
    cases.push("\"NULL\"0001L0#1234[x]junk".into());
    cases.push(format!("\"NULL\"0001L0#1234[x]{stale}"));
    for body in &cases {
        assert_eq!(
            panel.ask(body).await,
            "\"DUH\"0001L0#1234[]",
            "reply to {body:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn check_7_only_x_blocks_and_a_timestamp_after_the_data() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let ts = timestamp(now());
    let year = &ts[ts.len() - 4..];
    let cases = [
        ("\"NULL\"0001L0#1234[][Xsite 7]", "\"ACK\"0001L0#1234[]"),
        (
            &format!("\"NULL\"0002L0#1234[][X1][X][X3]{ts}"),
            "\"ACK\"0002L0#1234[]",
        ),
        ("\"NULL\"0003L0#1234[][Y1]", "NAK"),
        ("\"NULL\"0003L0#1234[][X1][H2]", "NAK"),
        ("\"NULL\"0003L0#1234[]junk", "NAK"),
        ("\"NULL\"0003L0#1234[] ", "NAK"),
        ("\"NULL\"0003L0#1234[][X1", "NAK"),
        (&format!("\"NULL\"0003L0#1234[]{ts}[X1]"), "NAK"),
        (&format!("\"NULL\"0003L0#1234[]{ts}{ts}"), "NAK"),
        (
            &format!("\"NULL\"0003L0#1234[]_24:00:00,01-01-{year}"),
            "NAK",
        ),
        (
            &format!("\"NULL\"0003L0#1234[]_12:60:00,01-01-{year}"),
            "NAK",
        ),
        (
            &format!("\"NULL\"0003L0#1234[]_12:00:00,13-01-{year}"),
            "NAK",
        ),
        (
            &format!("\"NULL\"0003L0#1234[]_12:00:00,02-30-{year}"),
            "NAK",
        ),
        (
            &format!("\"NULL\"0003L0#1234[]_12:00:00,1-01-{year}"),
            "NAK",
        ),
        (
            &format!("\"NULL\"0003L0#1234[]12:00:00,01-01-{year}"),
            "NAK",
        ),
        ("\"NULL\"0004L0#1234[][X2]", "\"ACK\"0004L0#1234[]"),
    ];
    expect_replies(&mut panel, &cases).await;
    server.stop().await;
}

#[tokio::test]
async fn check_8_the_timestamp_must_be_recent() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    // Margins of a second or two against the clock ticking during the test;
    // the receiver's window is 40 s back to 20 s ahead.
    for (offset, expected) in [
        (0, "ACK"),
        (-38, "ACK"),
        (-41, "NAK"),
        (-3600, "NAK"),
        (19, "ACK"),
        (22, "NAK"),
        (86_400, "NAK"),
    ] {
        let body = format!("\"NULL\"0001L0#1234[]{}", timestamp(now() + offset));
        let reply = panel.ask(&body).await;
        if expected == "ACK" {
            assert_eq!(reply, "\"ACK\"0001L0#1234[]", "{offset} s");
        } else {
            assert_nak(&reply, &format!("{offset} s"));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn frames_split_across_reads_or_batched_in_one_write() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let frames: Vec<Vec<u8>> = (1..=6)
        .map(|sequence| frame(&format!("\"NULL\"{sequence:04}L0#1234[]")))
        .collect();
    let ack = |sequence: u32| format!("\"ACK\"{sequence:04}L0#1234[]");
    // Each write ends inside a frame; the rest follows only after the
    // receiver answered, so it must have read the first part on its own.
    let (f1, f2, f3) = (&frames[0], &frames[1], &frames[2]);
    panel.send(&[&f1[..], &f2[..3]].concat()).await;
    assert_eq!(panel.reply().await, ack(1));
    panel.send(&[&f2[3..12], &f2[12..]].concat()).await;
    assert_eq!(panel.reply().await, ack(2));
    panel.send(&f3[..f3.len() - 1]).await;
    panel
        .send(&[&f3[f3.len() - 1..], &frames[3][..1]].concat())
        .await;
    assert_eq!(panel.reply().await, ack(3));
    // The rest of frame 4 and two more frames in one write: three replies.
    panel
        .send(&[&frames[3][1..], &frames[4][..], &frames[5][..]].concat())
        .await;
    for sequence in 4..=6 {
        assert_eq!(panel.reply().await, ack(sequence));
    }
    server.stop().await;
}

#[tokio::test]
async fn junk_before_an_lf_is_skipped_and_a_second_lf_restarts_the_frame() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    assert_eq!(
        panel.ask("\"NULL\"0001L0#1234[]").await,
        "\"ACK\"0001L0#1234[]"
    );
    let second = frame("\"NULL\"0002L0#1234[]");
    panel
        .send(&[&b"noise \x00\xff\x14"[..], &second].concat())
        .await;
    assert_eq!(panel.reply().await, "\"ACK\"0002L0#1234[]");
    // An abandoned frame, then a whole one: only the whole one counts.
    let third = frame("\"NULL\"0003L0#1234[]");
    panel
        .send(&[&b"\n1A2B0020\"SIA-DCS\"00"[..], &third].concat())
        .await;
    assert_eq!(panel.reply().await, "\"ACK\"0003L0#1234[]");
    server.stop().await;
}

#[tokio::test]
async fn a_cr_before_any_lf_gets_nak() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    assert_eq!(
        panel.ask("\"NULL\"0001L0#1234[]").await,
        "\"ACK\"0001L0#1234[]"
    );
    panel.send(b"junk\r").await;
    assert_nak(&panel.reply().await, "junk then CR");
    panel.send(b"\r").await;
    assert_nak(&panel.reply().await, "a lone CR");
    // A whole frame without its LF.
    panel.send(&frame("\"NULL\"0002L0#1234[]")[1..]).await;
    assert_nak(&panel.reply().await, "a frame without its LF");
    assert_eq!(
        panel.ask("\"NULL\"0003L0#1234[]").await,
        "\"ACK\"0003L0#1234[]"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_frame_of_4105_bytes_is_taken_and_more_without_cr_closes() {
    let server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let head = "\"NULL\"0001L0#1234[][X";
    let body = format!("{head}{}]", "a".repeat(0xFFF - head.len() - 1));
    let longest = frame(&body);
    assert_eq!(longest.len(), 4105);
    panel.send(&longest).await;
    assert_eq!(panel.reply().await, "\"ACK\"0001L0#1234[]");
    // 4105 bytes from the LF and still no CR: not a panel.
    let mut endless = b"\n".to_vec();
    endless.resize(4105, b'7');
    panel.send(&endless).await;
    panel.closed_without_reply().await;
    // On a fresh connection, long after the classification.
    let mut panel = Peer::connect(server.addr).await;
    let mut endless = frame("\"NULL\"0002L0#1234[]");
    endless.pop();
    endless.resize(6000, b'X');
    panel.send(&endless).await;
    panel.closed_without_reply().await;
    server.stop().await;
}

#[tokio::test]
async fn a_first_frame_that_lost_its_lf_gets_nak() {
    let server = receiver(&[]).await;
    // Short: the first unit ends at its CR.
    let mut panel = Peer::connect(server.addr).await;
    panel.send(&frame("\"NULL\"0001L0#1234[]")[1..]).await;
    assert_nak(&panel.reply().await, "a short frame without LF");
    assert_eq!(
        panel.ask("\"NULL\"0002L0#1234[]").await,
        "\"ACK\"0002L0#1234[]"
    );
    // Long: the first unit is cut at 64 bytes, before the CR.
    let mut panel = Peer::connect(server.addr).await;
    let long = format!("\"SIA-DCS\"0003L0#1234[#1234|NBA01][X{}]", "z".repeat(100));
    let lowercase_crc = frame(&long)[1..].to_ascii_lowercase();
    panel.send(&lowercase_crc).await;
    assert_nak(&panel.reply().await, "a long frame without LF");
    assert_eq!(panel.ask(&long).await, "\"ACK\"0003L0#1234[]");
    server.stop().await;
}

#[tokio::test]
async fn surgard_lines_get_one_byte_each() {
    let server = receiver(&[]).await;
    let mut link = Peer::connect(server.addr).await;
    let cases: [(&[u8], u8); 12] = [
        (HEARTBEAT, SURGARD_ACK),
        (b"1011 @\x14", SURGARD_ACK),
        (b"5011 181234113001003\x14", SURGARD_ACK),
        (b"5021 18BCDE3B3C0F0DE\x14", SURGARD_ACK),
        (b"3011 [#1234|Nri1/BA01]\x14", SURGARD_ACK),
        (b"5011 181234213001003\x14", SURGARD_NAK),
        (b"5011 18123411300100\x14", SURGARD_NAK),
        (b"5011 281234113001003\x14", SURGARD_NAK),
        (b"1011@\x14", SURGARD_NAK),
        (b"3011 \x14", SURGARD_NAK),
        (b"hello\x14", SURGARD_NAK),
        (b"\x14", SURGARD_NAK),
    ];
    for (line, expected) in cases {
        link.send(line).await;
        assert_eq!(
            link.byte().await,
            expected,
            "reply to {:?}",
            String::from_utf8_lossy(line)
        );
    }
    // Several in one write, one split across writes.
    link.send(&[HEARTBEAT, b"9\x14", &HEARTBEAT[..5]].concat())
        .await;
    assert_eq!(link.byte().await, SURGARD_ACK);
    assert_eq!(link.byte().await, SURGARD_NAK);
    link.send(&HEARTBEAT[5..]).await;
    assert_eq!(link.byte().await, SURGARD_ACK);
    server.stop().await;
}

#[tokio::test]
async fn anything_else_is_closed_without_a_reply() {
    let server = receiver(&[]).await;
    let mut tls_hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    tls_hello.extend((0..150u8).map(|b| b.wrapping_mul(7) | 0x80));
    let binary: Vec<u8> = (0..=255u8).collect();
    let strangers: [(&str, Vec<u8>); 6] = [
        ("HTTP", b"GET / HTTP/1.1\r\nHost: alarms\r\n\r\n".to_vec()),
        ("a TLS hello", tls_hello),
        ("binary", binary),
        ("64 bytes without CR or DC4", vec![b'A'; 64]),
        (
            "a digit line ended by CR",
            b"1011           @    \r".to_vec(),
        ),
        // Junk is skipped only once a client is known to be a panel.
        (
            "junk before the first LF",
            [&b"xx"[..], &frame("\"NULL\"0001L0#1234[]")].concat(),
        ),
    ];
    for (what, bytes) in strangers {
        let mut peer = Peer::connect(server.addr).await;
        peer.send(&bytes).await;
        eprintln!("stranger: {what}");
        peer.closed_without_reply().await;
    }
    // Empty: connected, and closed without a byte.
    let mut peer = Peer::connect(server.addr).await;
    peer.client.finish_writing().await;
    peer.closed_without_reply().await;
    // The receiver still serves panels.
    let mut panel = Peer::connect(server.addr).await;
    assert_eq!(
        panel.ask("\"NULL\"0001L0#1234[]").await,
        "\"ACK\"0001L0#1234[]"
    );
    server.stop().await;
}

#[tokio::test]
async fn every_accepted_event_is_one_printed_line() {
    let mut server = receiver(&[]).await;
    let mut panel = Peer::connect(server.addr).await;
    let peer = panel.addr();
    assert_nak(&panel.ask("\"NULL\"01L0#1234[]").await, "bad header");
    assert_eq!(
        panel.ask("\"NULL\"0001L0#9999[]").await,
        "\"DUH\"0001L0#9999[]"
    );
    let ts = timestamp(now());
    assert_eq!(
        panel
            .ask(&format!(
                "\"ADM-CID\"0002R1L0#1234[#1234|1130 01 003][Xa][Xb c]{ts}"
            ))
            .await,
        "\"ACK\"0002R1L0#1234[]"
    );
    // Only the accepted frame was printed.
    assert_eq!(
        printed(&mut server).await,
        format!(
            "protocol=dc09 token=ADM-CID account=1234 sequence=0002 receiver=1 line=0 \
             data=\"#1234|1130 01 003\" qualifier=new code=130 group=01 zone=003 \
             extended=Xa extended=\"Xb c\" timestamp={} peer={peer}",
            &ts[1..]
        )
    );
    assert_eq!(
        panel.ask("\"NULL\"0003L0#ABC[]").await,
        "\"ACK\"0003L0#ABC[]"
    );
    assert_eq!(
        printed(&mut server).await,
        format!("protocol=dc09 token=NULL account=ABC sequence=0003 line=0 data=\"\" peer={peer}")
    );
    let mut link = Peer::connect(server.addr).await;
    let link_addr = link.addr();
    link.send(b"5011 181234113001003\x14").await;
    assert_eq!(link.byte().await, SURGARD_ACK);
    assert_eq!(
        printed(&mut server).await,
        format!(
            "protocol=surgard kind=contact-id receiver=01 line=1 account=1234 qualifier=new \
             code=130 group=01 zone=003 peer={link_addr}"
        )
    );
    link.send(b"6\x14").await;
    assert_eq!(link.byte().await, SURGARD_NAK);
    link.send(HEARTBEAT).await;
    assert_eq!(link.byte().await, SURGARD_ACK);
    assert_eq!(
        printed(&mut server).await,
        format!("protocol=surgard kind=heartbeat peer={link_addr}")
    );
    server.stop().await;
}

#[tokio::test]
async fn json_lines_escape_quotes_backslashes_and_control_characters() {
    let mut server = receiver(&["--json"]).await;
    let mut panel = Peer::connect(server.addr).await;
    let peer = panel.addr();
    let body = "\"SIA-DCS\"0001L0#1234[#1234|NBA01 \"front\\door\"][Xtab\there\u{1}][X\u{e9}]";
    assert_eq!(panel.ask(body).await, "\"ACK\"0001L0#1234[]");
    assert_eq!(
        printed(&mut server).await,
        format!(
            r##"{{"protocol":"dc09","token":"SIA-DCS","account":"1234","sequence":"0001","line":"0","data":"#1234|NBA01 \"front\\door\"","extended":["Xtab\there\u0001","X{}"],"peer":"{peer}"}}"##,
            '\u{e9}'
        )
    );
    let mut link = Peer::connect(server.addr).await;
    let link_addr = link.addr();
    link.send(b"3011 [#1234|NBA01\"\\]\x14").await;
    assert_eq!(link.byte().await, SURGARD_ACK);
    assert_eq!(
        printed(&mut server).await,
        format!(
            r##"{{"protocol":"surgard","kind":"sia","receiver":"01","line":"1","data":"[#1234|NBA01\"\\]","peer":"{link_addr}"}}"##
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn over_udp_each_datagram_is_a_frame() {
    let mut server = receiver(&["--udp"]).await;
    let panel = UdpClient::connect(server.addr).await;
    let ask = |body: &str| {
        let datagram = frame(body);
        let panel = &panel;
        async move {
            panel.send(&datagram).await;
            open(&panel.recv().await)
        }
    };
    assert_eq!(
        ask("\"SIA-DCS\"0001L0#1234[#1234|NBA01]").await,
        "\"ACK\"0001L0#1234[]"
    );
    assert_eq!(
        printed(&mut server).await,
        format!(
            "protocol=dc09 token=SIA-DCS account=1234 sequence=0001 line=0 data=#1234|NBA01 peer={}",
            panel.addr()
        )
    );
    let body = "\"NULL\"0002L0#1234[]";
    panel
        .send(frame_with("0000", &format!("{:04X}", body.len()), body))
        .await;
    assert_nak(&open(&panel.recv().await), "a bad CRC over UDP");
    assert_eq!(ask("\"NULL\"0003L0#9999[]").await, "\"DUH\"0003L0#9999[]");
    assert_nak(
        &ask(&format!("\"NULL\"0004L0#1234[]{}", timestamp(now() - 60))).await,
        "a stale timestamp over UDP",
    );
    // Another peer is a session of its own, and a Sur-Gard link works too.
    let link = UdpClient::connect(server.addr).await;
    link.send(HEARTBEAT).await;
    assert_eq!(link.recv().await, [SURGARD_ACK]);
    assert_eq!(ask("\"NULL\"0005L0#1234[]").await, "\"ACK\"0005L0#1234[]");
    server.stop().await;
}

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
                "protocol=dc09 token={token} account=1234 sequence={sequence} line=0 {data}"
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
    assert_eq!(message, "\"NULL\"0001L0#ABC[]");
    let ours = now();
    assert!((ours - 3..=ours).any(|t| timestamp(t) == time), "{time}");
    // A NAK from a receiver whose clock is an hour ahead.
    let theirs = now() + 3600;
    fake.reply(&format!("\"NAK\"0000R0L0A0[]{}", timestamp(theirs)))
        .await;
    let again = fake.frame().await;
    let (message, time) = split_time(&again);
    assert_eq!(message, "\"NULL\"0001L0#ABC[]", "the same sequence");
    assert!(
        (theirs - 1..=theirs + 3).any(|t| timestamp(t) == time),
        "the panel took the receiver's time: {time}"
    );
    // Silence: the panel sends it once more after its timeout.
    let third = fake.frame().await;
    assert_eq!(split_time(&third).0, "\"NULL\"0001L0#ABC[]");
    fake.reply("\"ACK\"0001L0#ABC[]").await;

    let next = fake.frame().await;
    assert_eq!(split_time(&next).0, "\"SIA-DCS\"0002L0#ABC[#ABC|Nri1/BA01]");
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
    assert_eq!(split_time(&first).0, "\"NULL\"0001L0#1234[]");
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
    assert_eq!(split_time(&second).0, "\"NULL\"0001L0#1234[]");
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

/// The tests' own timestamps are right, or every time check above means little.
#[test]
fn the_tests_timestamps_count_days_right() {
    assert_eq!(timestamp(0), "_00:00:00,01-01-1970");
    // 2024-02-29 and 2000-02-29 are leap days (2000: a leap century).
    assert_eq!(timestamp(1_709_164_800 + 3_661), "_01:01:01,02-29-2024");
    assert_eq!(timestamp(951_782_400), "_00:00:00,02-29-2000");
    assert_eq!(timestamp(1_735_689_599), "_23:59:59,12-31-2024");
    assert_eq!(timestamp(1_735_689_600), "_00:00:00,01-01-2025");
}
