//! `read_buffer_size`: how much room each read asks for. The framings work
//! the same at both ends of the range that matter: 512 bytes (a frame spans
//! many reads) and 256 KiB (a read holds many frames).

mod support;

use flexi_socket::{Connection, FlexiSocket, Framing, Message, Router};
use support::{read_to_end, start, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SIZES: [usize; 2] = [512, 256 * 1024];

fn echo() -> Router {
    Router::new().on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await })
}

#[tokio::test]
async fn lines_arrive_whole_whatever_the_read_size() {
    for size in SIZES {
        let running = start(
            FlexiSocket::server("127.0.0.1:0")
                .router(echo())
                .framing(Framing::lines().max_length(64 * 1024))
                .read_buffer_size(size),
        )
        .await;
        let mut stream = within("connect", TcpStream::connect(running.addr))
            .await
            .unwrap();
        // Many short lines in one write, a line of 40 KB, a line cut in two writes.
        let mut sent = String::new();
        for n in 0..1_000 {
            sent.push_str(&format!("line {n:04} of many\n"));
        }
        sent.push_str(&"x".repeat(40_000));
        sent.push('\n');
        stream.write_all(sent.as_bytes()).await.unwrap();
        stream.write_all(b"cut in ").await.unwrap();
        stream.write_all(b"two\n").await.unwrap();
        sent.push_str("cut in two\n");
        stream.shutdown().await.unwrap();
        let echoed = read_to_end(&mut stream).await;
        assert_eq!(String::from_utf8(echoed).unwrap(), sent, "read size {size}");
        running.stop().await;
    }
}

#[tokio::test]
async fn length_prefixed_frames_arrive_whole_whatever_the_read_size() {
    for size in SIZES {
        let running = start(
            FlexiSocket::server("127.0.0.1:0")
                .router(echo())
                .framing(Framing::length_prefixed())
                .read_buffer_size(size),
        )
        .await;
        let mut stream = within("connect", TcpStream::connect(running.addr))
            .await
            .unwrap();
        let mut sent = Vec::new();
        for length in [1_usize, 300, 100_000, 7] {
            sent.extend_from_slice(&u32::try_from(length).unwrap().to_be_bytes());
            sent.extend(std::iter::repeat_n(b'a' + (length % 26) as u8, length));
        }
        stream.write_all(&sent).await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(read_to_end(&mut stream).await, sent, "read size {size}");
        running.stop().await;
    }
}

#[test]
#[should_panic(expected = "read_buffer_size must be from 512 bytes to 16 MiB, not 100")]
fn a_read_size_outside_the_range_is_refused() {
    let _ = FlexiSocket::server("127.0.0.1:0").read_buffer_size(100);
}
