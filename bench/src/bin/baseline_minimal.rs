//! The minimal hand-written tokio line echo, as a typical user writes it:
//! `Framed` with a bounded `LinesCodec` and one `send` (write and flush) per
//! line. The first argument is the listen address; prints `listening on <addr>`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LinesCodec};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = flexi_socket_bench::server_args::listen_address(
        "baseline_minimal",
        "The minimal hand-written tokio line echo: Framed with a LinesCodec, one send per line",
        "127.0.0.1:8081",
    );
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo(stream));
            }
            // Out of file descriptors and the like: wait instead of spinning.
            Err(error) => {
                eprintln!("accept: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn echo(stream: TcpStream) {
    // The socket options flexi-socket sets, so only the code path differs.
    let _ = stream.set_nodelay(true);
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(64 * 1024));
    while let Some(line) = lines.next().await {
        let Ok(line) = line else { break };
        if lines.send(line).await.is_err() {
            break;
        }
    }
}
