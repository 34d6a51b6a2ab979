//! The smallest server: every line comes back (`\r\n` arrives as `\n`; a
//! last line without a newline is not a complete message and gets no reply).
//!
//! ```text
//! cargo run --example echo -- 127.0.0.1:8081
//! nc 127.0.0.1 8081
//! ```

use clap::Parser;
use flexi_socket::{Connection, FlexiSocket, Message, on_message};

#[on_message]
async fn echo(conn: Connection, msg: Message) -> flexi_socket::Result<()> {
    conn.send(msg).await
}

/// The smallest server: every line comes back.
#[derive(Parser)]
struct Args {
    /// The address to listen on (port 0: any free port).
    #[arg(default_value = "127.0.0.1:8081")]
    addr: String,
}

#[tokio::main]
async fn main() -> flexi_socket::Result<()> {
    // Errors (oversize lines, invalid UTF-8, ...) and the routing table, on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let Args { addr } = Args::parse();
    let server = FlexiSocket::server(addr).bind().await?;
    println!("listening on {}", server.local_addr());
    server.serve().await?;
    Ok(())
}
