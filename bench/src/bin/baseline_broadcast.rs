//! The hand-written tokio side of the broadcast scenario, as fast as plain
//! tokio goes: every connection's `TcpStream` is shared (`Arc`) between its
//! reading task and one list, and a broadcast writes the line to each socket
//! right away from the task that read the request (`try_write`: one system
//! call per peer, no task hop, no queue). A socket whose buffer cannot take
//! the whole line at once gets the rest from a task of its own.
//!
//! Lines are echoed, except `broadcast <text>`, which sends `<text>` to every
//! open connection (the sender's included). The first argument is the listen
//! address; prints `listening on <addr>`.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

const PREFIX: &[u8] = b"broadcast ";
const MAX_LINE: usize = 64 * 1024;

/// Every open connection by id.
type Clients = Arc<Mutex<HashMap<u64, Arc<TcpStream>>>>;

#[tokio::main]
async fn main() -> io::Result<()> {
    let addr = flexi_socket_bench::server_args::listen_address(
        "baseline_broadcast",
        "The hand-written tokio broadcast server: a line echo, and `broadcast <text>` to every connection",
        "127.0.0.1:8081",
    );
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let clients = Clients::default();
    let ids = AtomicU64::new(0);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let stream = Arc::new(stream);
                let id = ids.fetch_add(1, Ordering::Relaxed);
                clients
                    .lock()
                    .expect("never poisoned")
                    .insert(id, Arc::clone(&stream));
                let clients = Arc::clone(&clients);
                tokio::spawn(async move {
                    let _ = serve(&stream, &clients).await;
                    clients.lock().expect("never poisoned").remove(&id);
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

async fn serve(stream: &TcpStream, clients: &Clients) -> io::Result<()> {
    let mut input = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        stream.readable().await?;
        let read = match stream.try_read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        };
        input.extend_from_slice(&chunk[..read]);
        let mut echo = Vec::new();
        let mut start = 0;
        while let Some(end) = input[start..].iter().position(|&b| b == b'\n') {
            let line = &input[start..=start + end];
            match line.strip_prefix(PREFIX) {
                Some(text) => broadcast(clients, text),
                None => echo.extend_from_slice(line),
            }
            start += end + 1;
        }
        input.drain(..start);
        if input.len() > MAX_LINE {
            return Err(io::Error::new(ErrorKind::InvalidData, "line too long"));
        }
        write_all(stream, &echo).await?;
    }
}

/// Writes `line` to every open connection.
fn broadcast(clients: &Clients, line: &[u8]) {
    let clients = clients.lock().expect("never poisoned");
    for stream in clients.values() {
        let written = match stream.try_write(line) {
            Ok(written) => written,
            Err(error) if error.kind() == ErrorKind::WouldBlock => 0,
            Err(_) => continue,
        };
        if written < line.len() {
            let (stream, rest) = (Arc::clone(stream), line[written..].to_vec());
            tokio::spawn(async move {
                let _ = write_all(&stream, &rest).await;
            });
        }
    }
}

/// `write_all` through a shared stream (its reading task and broadcasts
/// both write to it).
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
