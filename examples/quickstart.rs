//! The tour in one program: a server classifies three kinds of clients by
//! their first message and routes each to its own handlers; three in-process
//! clients talk to it; then the server shuts down gracefully.
//!
//! ```text
//! cargo run --example quickstart            # any free port on 127.0.0.1
//! cargo run --example quickstart -- 127.0.0.1:8081
//! ```

use std::time::Duration;

use clap::Parser;
use flexi_socket::{
    Classifier, Connection, DisconnectReason, Error, FlexiSocket, Framing, Message, after_receive,
    before_send, on_connect, on_disconnect, on_error, on_message,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The first line a client sends decides what it is.
#[derive(Classifier, Clone, Copy, Debug, PartialEq, Eq)]
enum Panel {
    #[client_type = "001"]
    #[classify(prefix = "!!")]
    Alarm,
    #[client_type = "002"]
    #[classify(prefix = "##")]
    Sensor,
    #[classify(default)]
    Other,
}

#[on_connect]
async fn opened(conn: Connection) {
    println!(
        "[server] connection {} opened from {}",
        conn.id(),
        conn.peer_addr()
    );
}

/// Alarm panels prefix every line with `!!`: strip it before the handler sees it.
#[after_receive(client_type = Panel::Alarm)]
async fn strip_alarm_marker(conn: Connection, msg: Message) -> Message {
    if conn.is_first_message() {
        println!(
            "[server] connection {} classified as type 001 (alarm panel)",
            conn.id()
        );
    }
    msg.strip_prefix("!!").unwrap_or(msg)
}

#[after_receive(client_type = Panel::Sensor)]
async fn strip_sensor_marker(conn: Connection, msg: Message) -> Message {
    if conn.is_first_message() {
        println!(
            "[server] connection {} classified as type 002 (sensor)",
            conn.id()
        );
    }
    msg.strip_prefix("##").unwrap_or(msg)
}

#[on_message(client_type = Panel::Alarm)]
async fn alarm(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    println!("[server] alarm handler got {msg:?}");
    conn.send(format!("ACK {msg}")).await
}

#[on_message(client_type = "002")]
async fn sensor(conn: Connection, reading: &str) -> flexi_socket::Result<()> {
    println!("[server] sensor handler got {reading:?}");
    conn.send(format!("STORED {reading}")).await
}

/// No client_type: the default for every connection without a more specific handler.
#[on_message]
async fn anyone_else(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    println!(
        "[server] default handler got {msg:?} from type {}",
        type_of(&conn)
    );
    conn.send(format!("Hello stranger, you said {msg:?}")).await
}

/// Every reply to a sensor is stamped with its sequence number on the wire.
#[before_send(client_type = "002")]
async fn stamp(conn: Connection, msg: Message) -> Message {
    let sequence = conn.stats().messages_out + 1;
    Message::from(format!("{sequence}:{}", String::from_utf8_lossy(&msg)))
}

#[on_error]
async fn trouble(conn: Connection, error: Error) {
    println!("[server] connection {} error: {error}", conn.id());
}

#[on_disconnect]
async fn closed(conn: Connection, reason: DisconnectReason) {
    println!(
        "[server] connection {} (type {}) closed: {reason}",
        conn.id(),
        type_of(&conn)
    );
}

fn type_of(conn: &Connection) -> &str {
    conn.client_type().map_or("none", |t| t.as_str())
}

/// The demo: a server, three kinds of clients, and a clean shutdown.
#[derive(Parser)]
struct Args {
    /// The address to listen on (port 0: any free port).
    #[arg(default_value = "127.0.0.1:0")]
    addr: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args { addr } = Args::parse();
    let server = FlexiSocket::server(addr)
        .framing(Framing::lines().max_length(1024))
        .classifier::<Panel>()
        .bind()
        .await?;
    let listening = server.local_addr();
    println!("listening on {listening}");
    // The demo's clients connect over TCP.
    let addr = listening
        .socket_addr()
        .expect("the quickstart listens on a TCP address");
    let shutdown = server.handle();
    let serving = tokio::spawn(server.serve());

    // Clients stay connected until the server shuts down, to show that
    // shutdown closes every connection with on_disconnect.
    let mut clients = Vec::new();
    for (name, lines) in [
        ("alarm panel", ["!!ALARM zone 3", "!!RESTORE zone 3"]),
        ("sensor", ["##temperature=21.5", "##humidity=40"]),
        ("stranger", ["hello?", "anyone there?"]),
    ] {
        clients.push(talk(addr, name, &lines).await?);
    }

    println!("[main] shutting down");
    shutdown.shutdown();
    serving.await??;
    for mut client in clients {
        let mut rest = String::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), client.read_line(&mut rest)).await??;
        assert_eq!(read, 0, "the server closed every connection");
    }
    println!("[main] done");
    Ok(())
}

/// Sends each line and prints the reply; returns the still-open connection.
async fn talk(
    addr: std::net::SocketAddr,
    name: &str,
    lines: &[&str],
) -> Result<BufReader<TcpStream>, Box<dyn std::error::Error>> {
    let mut stream = BufReader::new(TcpStream::connect(addr).await?);
    for line in lines {
        println!("[{name}] sends {line:?}");
        stream
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await?;
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut reply)).await??;
        println!("[{name}] received {:?}", reply.trim_end());
    }
    Ok(stream)
}
