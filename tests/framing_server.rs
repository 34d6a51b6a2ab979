//! Every framing driven through a real server over loopback: what the client
//! writes is split into the messages the framing promises, and replies are
//! framed the same way.

mod support;

use std::time::Duration;

use flexi_socket::{FlexiSocket, Framing};
use support::servers::{
    bracket_router, factory_failing_calls_1_and_3, one_byte_length_prefix, unpadding_echo,
};
use support::{EventLog, Events, Running, read_exact, read_to_end, start};
use tokio::io::AsyncWriteExt;

/// Replies `<message>` to every message and reports errors to the log.
async fn bracket_server(framing: Framing) -> (Running, EventLog) {
    let (events, log) = Events::new();
    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            .framing(framing)
            .router(bracket_router(events)),
    )
    .await;
    (running, log)
}

#[tokio::test]
async fn separator_of_several_bytes_split_across_writes() {
    let (running, _log) = bracket_server(Framing::separator("\r\n\r\n")).await;
    let mut stream = running.connect().await;
    stream.write_all(b"one\r\n").await.unwrap();
    stream.write_all(b"\r\ntwo\r").await.unwrap();
    stream.write_all(b"\n\r\n").await.unwrap();
    assert_eq!(
        read_exact(&mut stream, 18).await,
        b"<one>\r\n\r\n<two>\r\n\r\n"
    );
    running.stop().await;
}

#[tokio::test]
async fn fixed_length_frames_and_padded_replies() {
    let (running, mut log) = bracket_server(Framing::fixed(6)).await;
    let mut stream = running.connect().await;
    stream.write_all(b"abcdefghij").await.unwrap();
    // "<abcdef>" is 8 bytes: longer than a frame, so the send fails and
    // nothing is written; "ghij" stays buffered until two more bytes arrive.
    stream.write_all(b"kl").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut stream).await, b"");
    // Both frames were read: each reply was refused by the encoder.
    for reply in ["<abcdef>", "<ghijkl>"] {
        let error = log.next().await;
        assert!(
            error.contains("cannot frame the outbound message")
                && error.contains("8 bytes, more than the fixed frame length of 6"),
            "{reply}: {error}"
        );
    }
    running.stop().await;

    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            .framing(Framing::fixed(6))
            .router(unpadding_echo()),
    )
    .await;
    let mut stream = running.connect().await;
    stream.write_all(b"abcd  xyz123").await.unwrap();
    // "abcd" is padded back to six bytes with spaces.
    assert_eq!(read_exact(&mut stream, 12).await, b"abcd  xyz123");
    running.stop().await;
}

#[tokio::test]
async fn length_prefixed_recovers_after_an_oversize_frame() {
    let framing = Framing::length_prefixed().prefix_len(2).max_length(8);
    let (running, mut log) = bracket_server(framing).await;
    let mut stream = running.connect().await;
    let mut input = vec![0, 20];
    input.extend([b'x'; 20]);
    input.extend([0, 3, b'a', b'b', b'c']);
    stream.write_all(&input).await.unwrap();
    assert_eq!(
        read_exact(&mut stream, 7).await,
        [0, 5, b'<', b'a', b'b', b'c', b'>']
    );
    let error = log.next().await;
    assert!(
        error.contains("20 bytes") && error.contains("limit is 8"),
        "{error}"
    );
    running.stop().await;
}

#[tokio::test]
async fn eof_framing_delivers_the_whole_stream_and_replies_before_closing() {
    let (running, _log) = bracket_server(Framing::eof()).await;
    let mut stream = running.connect().await;
    stream.write_all(b"the whole\nstream").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut stream).await, b"<the whole\nstream>");
    running.stop().await;
}

#[tokio::test]
async fn raw_delivers_chunks_as_they_arrive() {
    let (running, _log) = bracket_server(Framing::raw()).await;
    let mut stream = running.connect().await;
    stream.write_all(b"chunk").await.unwrap();
    assert_eq!(read_exact(&mut stream, 7).await, b"<chunk>");
    running.stop().await;
}

#[tokio::test]
async fn idle_gap_ends_a_message_after_silence() {
    // Long enough that a busy machine pausing between the two writes does
    // not split the burst.
    let (running, _log) = bracket_server(Framing::idle_gap(Duration::from_millis(200))).await;
    let mut stream = running.connect().await;
    stream.write_all(b"first ").await.unwrap();
    stream.write_all(b"burst").await.unwrap();
    // The reply only comes once the server has seen 200 ms of silence.
    assert_eq!(read_exact(&mut stream, 13).await, b"<first burst>");
    stream.write_all(b"second").await.unwrap();
    assert_eq!(read_exact(&mut stream, 8).await, b"<second>");
    running.stop().await;
}

#[tokio::test]
async fn idle_gap_recovers_after_an_oversize_burst() {
    let gap = Duration::from_millis(50);
    let (running, mut log) = bracket_server(Framing::idle_gap(gap).max_length(8)).await;
    let mut stream = running.connect().await;
    stream.write_all(&[b'x'; 20]).await.unwrap();
    // Reported as soon as the burst goes over the limit, before its gap.
    let error = log.next().await;
    assert!(error.contains("the limit is 8 bytes"), "{error}");
    // Only silence ends a burst, and keeping it is the sender's part of the
    // protocol: bytes sent sooner would be dropped with the oversize burst.
    tokio::time::sleep(gap * 4).await;
    stream.write_all(b"ok").await.unwrap();
    assert_eq!(read_exact(&mut stream, 4).await, b"<ok>");
    running.stop().await;
}

#[tokio::test]
async fn custom_tokio_util_codec() {
    let (running, _log) = bracket_server(one_byte_length_prefix()).await;
    let mut stream = running.connect().await;
    stream.write_all(&[2, b'h', b'i']).await.unwrap();
    assert_eq!(
        read_exact(&mut stream, 5).await,
        [4, b'<', b'h', b'i', b'>']
    );
    running.stop().await;
}

#[tokio::test]
async fn a_codec_factory_that_panics_costs_one_connection() {
    let (running, mut log) = bracket_server(factory_failing_calls_1_and_3()).await;
    let mut never_opened = running.connect().await;
    assert_eq!(read_to_end(&mut never_opened).await, b"");
    let mut no_decoder = running.connect().await;
    assert_eq!(read_to_end(&mut no_decoder).await, b"");
    let error = log.next().await;
    assert!(
        error.starts_with("framing failed: the codec factory panicked: factory call 3 fails"),
        "{error}"
    );
    let mut served = running.connect().await;
    served.write_all(b"hi").await.unwrap();
    assert_eq!(read_exact(&mut served, 4).await, b"<hi>");
    running.stop().await;
}

#[tokio::test]
async fn stx_etx_frames_skip_junk_and_restart_on_a_second_start() {
    let (running, mut log) = bracket_server(Framing::delimited("\x02", "\x03")).await;
    let mut stream = running.connect().await;
    stream.write_all(b"junk\x02hel").await.unwrap();
    stream.write_all(b"lo\x03\x02cut\x02ne").await.unwrap();
    stream.write_all(b"w\x03").await.unwrap();
    assert_eq!(
        read_exact(&mut stream, 16).await,
        b"\x02<hello>\x03\x02<new>\x03"
    );
    // The stray bytes, then the frame cut by the second start.
    let stray = log.next().await;
    assert!(
        stray.starts_with("discarded 4 bytes outside any frame"),
        "{stray}"
    );
    let cut = log.next().await;
    assert!(cut.contains("3 bytes were not delivered"), "{cut}");
    running.stop().await;
}
