//! The Python flexi-socket README's example: the first message decides the
//! client type, and each type has its own handler.
//!
//! ```text
//! cargo run --example classifier -- 127.0.0.1:8081
//! printf '!!hello\nagain\n' | nc -q 1 127.0.0.1 8081   # type 001
//! printf '##hello\n' | nc -q 1 127.0.0.1 8081          # type 002
//! printf 'hello\n' | nc -q 1 127.0.0.1 8081            # default
//! ```

use clap::Parser;
use flexi_socket::{
    Classifier, Connection, FlexiSocket, Framing, Message, after_receive, on_connect,
    on_disconnect, on_message,
};

#[derive(Classifier, Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    #[client_type = "001"]
    #[classify(prefix = "!!")]
    Alarm,
    #[client_type = "002"]
    #[classify(prefix = "##")]
    Sensor,
    #[client_type = "default"]
    #[classify(default)]
    Other,
}

#[on_connect]
async fn connected(conn: Connection) {
    println!("client {} connected from {}", conn.id(), conn.peer_addr());
}

/// Strips the `!!` marker: handlers see the payload only.
#[after_receive(client_type = ClientKind::Alarm)]
async fn strip_alarm_marker(msg: Message) -> Message {
    msg.strip_prefix("!!").unwrap_or(msg)
}

/// Strips the `##` marker.
#[after_receive(client_type = ClientKind::Sensor)]
async fn strip_sensor_marker(msg: Message) -> Message {
    msg.strip_prefix("##").unwrap_or(msg)
}

#[on_message(client_type = "001")]
async fn type_001(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    println!("type 001 sent {msg:?}");
    conn.send("Hello from server! You are type 001").await
}

#[on_message(client_type = "002")]
async fn type_002(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    println!("type 002 sent {msg:?}");
    conn.send("Hello from server! You are type 002").await
}

#[on_message]
async fn anyone_else(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    println!("default client sent {msg:?}");
    conn.send("Hello from server! You are type default").await
}

#[on_disconnect]
async fn disconnected(conn: Connection) {
    let kind = conn.client_type().map_or("unclassified", |t| t.as_str());
    println!("client {} ({kind}) disconnected", conn.id());
}

/// The Python README's example: the first message decides the client's type.
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
    let server = FlexiSocket::server(addr)
        .framing(Framing::lines())
        .classifier::<ClientKind>()
        .bind()
        .await?;
    println!("listening on {}", server.local_addr());
    server.serve().await?;
    Ok(())
}
