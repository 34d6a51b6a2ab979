//! The `alarm_receiver` example's DC-09 checks 1–9 as a real process on
//! 127.0.0.1: each check's replies (ACK, NAK or DUH), and that it comes before
//! the checks after it. Frames are built and replies checked with
//! `support::dc09` (the crate's CRC helper), not with the example's code.

mod support;

use flexi_socket::checksum::Checksum;
use support::dc09::{Peer, assert_nak, frame_with, now, receiver, timestamp};

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
        ("\"NULL\"00G1L0#1234[]", "NAK"),
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
        // The data block must close.
        ("\"NULL\"0001L0#1234[", "NAK"),
        ("\"SIA-DCS\"0001L0#1234[#1234|NBA01", "NAK"),
        // Before the account check.
        ("\"NULL\"001L0#9999[]", "NAK"),
        ("\"NULL\"0001L0#9999[", "NAK"),
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
async fn check_7_only_extended_data_blocks_and_a_timestamp_after_the_data() {
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
        // Identifiers DC-09 does not define, or none.
        ("\"NULL\"0003L0#1234[][Q1]", "NAK"),
        ("\"NULL\"0003L0#1234[][X1][x2]", "NAK"),
        ("\"NULL\"0003L0#1234[][]", "NAK"),
        ("\"NULL\"0003L0#1234[][X1[Y2]", "NAK"),
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
