//! The `alarm_receiver` example as a real process on 127.0.0.1, beyond the
//! DC-09 checks: the TCP stream rules (split, batched, junk, lost LF, the
//! size limit), Sur-Gard lines, strangers closed without a reply, the printed
//! and JSON output, and DC-09 over UDP.

mod support;

use support::dc09::{Peer, assert_nak, frame, frame_with, now, open, printed, receiver, timestamp};
use support::udp::UdpClient;

const SURGARD_ACK: u8 = 0x06;
const SURGARD_NAK: u8 = 0x15;
const HEARTBEAT: &[u8] = b"1011           @    \x14";

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
