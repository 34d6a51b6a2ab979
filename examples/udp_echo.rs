//! A UDP echo server: every datagram comes back unchanged, to the address it
//! came from. Each peer address is a session with its own on_connect and
//! on_disconnect (after 60 s without a datagram).
//!
//! ```text
//! cargo run --example udp_echo -- 127.0.0.1:8082
//! nc -u 127.0.0.1 8082
//! ```

use clap::Parser;
use flexi_socket::{Connection, FlexiSocket, Message, on_message};

#[on_message]
async fn echo(conn: Connection, msg: Message) -> flexi_socket::Result<()> {
    conn.send(msg).await
}

/// Every datagram comes back.
#[derive(Parser)]
struct Args {
    /// The address to listen on (port 0: any free port).
    #[arg(default_value = "127.0.0.1:8082")]
    addr: String,
}

#[tokio::main]
async fn main() -> flexi_socket::Result<()> {
    // Errors (oversize datagrams, ...) and the routing table, on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let Args { addr } = Args::parse();
    let server = FlexiSocket::udp(addr).bind().await?;
    println!("listening on {}", server.local_addr());
    server.serve().await?;
    Ok(())
}
