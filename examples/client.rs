//! A client for the `classifier` example's protocol: it identifies as type
//! 001 with a `!!` first message after every (re)connect, prints every line
//! it receives, sends a ping every two seconds, and reconnects with backoff
//! when the server goes away and comes back.
//!
//! ```text
//! cargo run --example classifier -- 127.0.0.1:8081 &
//! cargo run --example client -- 127.0.0.1:8081
//! ```

use std::time::Duration;

use clap::Parser;
use flexi_socket::{
    Connection, DisconnectReason, FlexiSocket, Reconnect, on_connect, on_disconnect, on_message,
};

#[on_connect]
async fn connected(conn: Connection) {
    println!("connected to {}", conn.peer_addr());
}

#[on_message]
async fn line(msg: String) {
    println!("{msg}");
}

#[on_disconnect]
async fn lost(reason: DisconnectReason) {
    println!("disconnected: {reason}; reconnecting");
}

/// A client of the classifier example: type 001, a ping every two seconds,
/// reconnects with backoff.
#[derive(Parser)]
struct Args {
    /// The server to connect to.
    #[arg(default_value = "127.0.0.1:8081")]
    addr: String,
}

#[tokio::main]
async fn main() -> flexi_socket::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let Args { addr } = Args::parse();
    let client = FlexiSocket::client(addr)
        .handshake("!!hello from the client example")
        .reconnect(Reconnect::default().max_delay(Duration::from_secs(5)))
        .spawn()?;
    let mut ticks = tokio::time::interval(Duration::from_secs(2));
    ticks.tick().await;
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticks.tick() => {
                // While disconnected this waits in the outbox (or fails when it is full).
                if let Err(error) = client.send("!!ping").await {
                    eprintln!("ping not sent: {error}");
                }
            }
        }
    }
    client.close().await;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM, what a terminal or a service manager sends.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
