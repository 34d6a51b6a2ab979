//! A hand-written tokio line echo that answers every complete line of one
//! read with a single write, and holds no buffer while a connection is idle
//! (reads go to one buffer per worker thread; a connection keeps only an
//! incomplete line).
//! Lines are bounded like `LinesCodec::new_with_max_length(64 * 1024)`: a
//! longer one is dropped and the next line is served; `\r\n` comes back as
//! `\n`. The first argument is the listen address; prints `listening on <addr>`.

use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const MAX_LINE: usize = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    // Every read of a worker thread lands here first: an idle connection
    // costs no read buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    accept(listener).await
}

async fn accept(listener: TcpListener) -> io::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    let _ = echo(stream).await;
                });
            }
            // Out of file descriptors and the like: wait instead of spinning.
            Err(error) => {
                eprintln!("accept: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn echo(mut stream: TcpStream) -> io::Result<()> {
    // The socket options flexi-socket sets, so only the code path differs.
    stream.set_nodelay(true)?;
    // Only an incomplete line waits here between reads; usually it is empty
    // and holds no memory.
    let mut pending = BytesMut::new();
    let mut discarding = false;
    loop {
        stream.readable().await?;
        let read = SCRATCH.with_borrow_mut(|scratch| match stream.try_read(scratch) {
            Ok(0) => Ok(None),
            Ok(n) => {
                let output = complete_lines(&mut pending, &scratch[..n], &mut discarding);
                Ok(Some(output))
            }
            Err(error) => Err(error),
        });
        let output = match read {
            Ok(Some(output)) => output,
            Ok(None) => return Ok(()),
            Err(error) if error.kind() == ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        };
        if !output.is_empty() {
            stream.write_all(&output).await?;
        }
        if pending.is_empty() {
            pending = BytesMut::new();
        }
    }
}

/// Echoes every line completed by `data`, each ending in `\n`; an incomplete
/// line is kept in `pending`. `discarding` carries "inside an oversize line"
/// from one read to the next.
fn complete_lines(pending: &mut BytesMut, mut data: &[u8], discarding: &mut bool) -> Vec<u8> {
    let mut output = Vec::new();
    while let Some(end) = data.iter().position(|&b| b == b'\n') {
        let line = if pending.is_empty() {
            &data[..end]
        } else {
            pending.extend_from_slice(&data[..end]);
            &pending[..]
        };
        if !std::mem::take(discarding) && line.len() <= MAX_LINE {
            output.reserve(data.len() + line.len());
            output.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            output.push(b'\n');
        }
        pending.clear();
        data = &data[end + 1..];
    }
    if *discarding || pending.len() + data.len() > MAX_LINE {
        pending.clear();
        *discarding = true;
    } else {
        pending.extend_from_slice(data);
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_complete_lines_and_keeps_the_rest() {
        let (mut pending, mut discarding) = (BytesMut::new(), false);
        let output = complete_lines(&mut pending, b"a\r\nbc\nde", &mut discarding);
        assert_eq!(output, b"a\nbc\n");
        assert_eq!(&pending[..], b"de");
        let output = complete_lines(&mut pending, b"f\ng", &mut discarding);
        assert_eq!(output, b"def\n");
        assert_eq!(&pending[..], b"g");
    }

    #[test]
    fn drops_an_oversize_line_and_serves_the_next() {
        let (mut pending, mut discarding) = (BytesMut::new(), false);
        let long = vec![b'x'; MAX_LINE];
        assert!(complete_lines(&mut pending, &long, &mut discarding).is_empty());
        assert!(!discarding);
        assert!(complete_lines(&mut pending, b"x", &mut discarding).is_empty());
        assert!(discarding && pending.is_empty());
        let output = complete_lines(&mut pending, b"xx\nok\n", &mut discarding);
        assert_eq!(output, b"ok\n");
        let mut exact = long.clone();
        exact.push(b'\n');
        assert_eq!(complete_lines(&mut pending, &exact, &mut discarding), exact);
    }
}
