//! The hand-written tokio UDP echo: one socket, `recv_from` then `send_to`,
//! every datagram back unchanged to where it came from. The first argument
//! is the listen address; prints `listening on <addr>`.

use std::io;

use tokio::net::UdpSocket;

#[tokio::main]
async fn main() -> io::Result<()> {
    let addr = flexi_socket_bench::server_args::listen_address(
        "baseline_udp",
        "The hand-written tokio UDP echo: one socket, recv_from then send_to",
        "127.0.0.1:8082",
    );
    let socket = UdpSocket::bind(&addr).await?;
    println!("listening on {}", socket.local_addr()?);
    // On a worker thread, like the framework's receive loop: `main` itself
    // runs outside the workers, and every datagram would cost a wake-up of
    // the main thread.
    tokio::spawn(echo(socket))
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

async fn echo(socket: UdpSocket) -> io::Result<()> {
    // The largest UDP payload: every datagram arrives whole.
    let mut buffer = vec![0; 65_535];
    loop {
        match socket.recv_from(&mut buffer).await {
            Ok((length, peer)) => {
                // A full send buffer or a vanished peer costs that datagram, as UDP does.
                if let Err(error) = socket.send_to(&buffer[..length], peer).await {
                    eprintln!("send to {peer}: {error}");
                }
            }
            // An ICMP refusal of an earlier reply (its peer closed): not this call's problem.
            Err(error) if is_refusal(&error) => {}
            Err(error) => return Err(error),
        }
    }
}

fn is_refusal(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}
