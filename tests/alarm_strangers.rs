//! The `alarm_receiver` example tells a stranger by its first bytes: a TLS
//! hello, an unfinished HTTP request line or binary junk is closed without a
//! reply as soon as it arrives, not when its first unit would end (CR, DC4
//! or 64 bytes) or at the first-message timeout (10 s). Real devices whose
//! first bytes arrive alone are still served.

mod support;

use std::time::{Duration, Instant};

use support::dc09::{Peer, assert_nak, frame, receiver};

/// Far below the receiver's 10 s first-message timeout, so a receiver that
/// waited for it fails here; the time it took is printed, not asserted.
const PROMPTLY: Duration = Duration::from_secs(2);

const SURGARD_ACK: u8 = 0x06;

#[tokio::test]
async fn strangers_are_closed_on_their_first_bytes() {
    let server = receiver(&[]).await;
    // None of these ends a first unit: no CR, no DC4, under 64 bytes.
    let strangers: [(&str, &[u8]); 4] = [
        (
            "the start of a TLS ClientHello",
            b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03",
        ),
        ("an HTTP request line without its end", b"GET / HTTP/1.1"),
        ("binary junk", b"\x00\xff\xfe\x80"),
        ("hex digits that break a DC-09 frame's shape", b"DEADBEEFx"),
    ];
    for (what, bytes) in strangers {
        let mut peer = Peer::connect(server.addr).await;
        let sent = Instant::now();
        peer.send(bytes).await;
        tokio::time::timeout(PROMPTLY, peer.closed_without_reply())
            .await
            .unwrap_or_else(|_| panic!("{what} was not closed at once"));
        eprintln!("{what}: closed after {:?}", sent.elapsed());
    }
    server.stop().await;
}

#[tokio::test]
async fn devices_whose_first_bytes_arrive_alone_are_still_served() {
    let server = receiver(&[]).await;

    // A panel's LF alone settles DC-09; its frame then follows.
    let mut panel = Peer::connect(server.addr).await;
    let first = frame("\"NULL\"0001L0#1234[]");
    panel.send(&first[..1]).await;
    panel.send(&first[1..]).await;
    assert_eq!(panel.reply().await, "\"ACK\"0001L0#1234[]");

    // A digit may be Sur-Gard: the line's DC4 is awaited.
    let mut link = Peer::connect(server.addr).await;
    link.send(b"10").await;
    link.send(b"11           @    \x14").await;
    assert_eq!(link.byte().await, SURGARD_ACK);

    // Hex digits may be a DC-09 frame that lost its LF: it is one, answered NAK.
    let mut lost_lf = Peer::connect(server.addr).await;
    let frame = frame("\"NULL\"0002L0#1234[]");
    lost_lf.send(&frame[1..6]).await;
    lost_lf.send(&frame[6..]).await;
    assert_nak(
        &lost_lf.reply().await,
        "a frame without LF, sent in two parts",
    );
    server.stop().await;
}
