//! A hand-written tokio line echo that answers every complete line of one
//! read with a single write, and holds no buffer while a connection is idle
//! (reads go to one buffer per worker thread; a connection keeps only an
//! incomplete line). Lines as in [`flexi_socket_bench::line_echo`].
//! The first argument is the listen address; prints `listening on <addr>`.

use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::time::Duration;

use flexi_socket_bench::line_echo::LineEcho;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    // Every read of a worker thread lands here first: an idle connection
    // costs no read buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let addr = flexi_socket_bench::server_args::listen_address(
        "baseline_batching",
        "A hand-written tokio line echo: every complete line of a read back in one write, no buffer while idle",
        "127.0.0.1:8081",
    );
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
    let mut lines = LineEcho::default();
    loop {
        stream.readable().await?;
        let read = SCRATCH.with_borrow_mut(|scratch| match stream.try_read(scratch) {
            Ok(0) => Ok(None),
            Ok(n) => {
                let mut output = Vec::new();
                lines.complete_lines(&scratch[..n], &mut output);
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
        lines.settle();
    }
}
