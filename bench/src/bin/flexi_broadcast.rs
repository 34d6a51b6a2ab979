//! flexi-socket's side of the broadcast scenario: a line echo whose line
//! `broadcast <text>` sends `<text>` to every open connection instead, with
//! [`Connections::broadcast`] (the sender's included). The first argument is
//! the listen address; prints `listening on <addr>`. Compared with
//! `baseline_broadcast`, which does the same by hand.

use std::sync::OnceLock;

use flexi_socket::{Connection, Connections, FlexiSocket, Message, on_message};

/// Above the scenario's largest count (10,000).
const MAX_CONNECTIONS: usize = 100_000;

/// The server's connections, known once it is bound (before it serves).
static CONNECTIONS: OnceLock<Connections> = OnceLock::new();

#[on_message]
async fn line(conn: Connection, msg: Message) -> flexi_socket::Result<()> {
    match msg.strip_prefix("broadcast ") {
        Some(text) => {
            let connections = CONNECTIONS.get().expect("set before serving");
            connections.broadcast(text).await;
            Ok(())
        }
        None => conn.send(msg).await,
    }
}

#[tokio::main]
async fn main() -> flexi_socket::Result<()> {
    let addr = flexi_socket_bench::server_args::listen_address(
        "flexi_broadcast",
        "flexi-socket's broadcast server: a line echo, and `broadcast <text>` to every connection",
        "127.0.0.1:8081",
    );
    let server = FlexiSocket::server(addr)
        // As many connections as the scenario opens (the default admits fewer).
        .max_connections(MAX_CONNECTIONS)
        .bind()
        .await?;
    CONNECTIONS
        .set(server.connections())
        .expect("set once, here");
    println!("listening on {}", server.local_addr());
    server.serve().await?;
    Ok(())
}
