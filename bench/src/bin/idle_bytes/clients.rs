//! The client side, in a process of its own so that its allocations are not
//! counted: opens the connections, gets one echo on each, says `ready` on
//! stdout and holds them until stdin closes.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// Connects in flight at once (below the listen backlog).
const IN_FLIGHT: usize = 256;
/// Source addresses used in turn: the server keeps a tenth of its places
/// for other addresses than the busiest one, as it would for real clients.
const SOURCES: usize = 200;
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens `connections` to `addr`, one echo of a `line_size`-byte line on
/// each, and holds them until stdin closes.
pub(crate) fn hold(addr: SocketAddr, connections: usize, line_size: usize) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let held = runtime.block_on(open(addr, connections, line_size))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready {}", held.len()).map_err(|e| format!("stdout: {e}"))?;
    stdout.flush().map_err(|e| format!("stdout: {e}"))?;
    // Until the measuring process is done (or gone).
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(held);
    Ok(())
}

async fn open(
    addr: SocketAddr,
    connections: usize,
    line_size: usize,
) -> Result<Vec<TcpStream>, String> {
    let mut pending = JoinSet::new();
    let mut held = Vec::with_capacity(connections);
    for id in 0..connections {
        if pending.len() >= IN_FLIGHT {
            held.push(joined(pending.join_next().await)?);
        }
        pending.spawn(open_and_echo(addr, id, line_size));
    }
    while let Some(result) = pending.join_next().await {
        held.push(joined(Some(result))?);
    }
    Ok(held)
}

fn joined(
    result: Option<Result<Result<TcpStream, String>, tokio::task::JoinError>>,
) -> Result<TcpStream, String> {
    match result {
        Some(Ok(opened)) => opened,
        Some(Err(error)) => Err(format!("a client task failed: {error}")),
        None => Err("no client task left".into()),
    }
}

async fn open_and_echo(addr: SocketAddr, id: usize, line_size: usize) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    let source = u8::try_from(id % SOURCES).expect("below 256");
    socket
        .bind(SocketAddr::from(([127, 0, 1, source], 0)))
        .map_err(|e| format!("bind 127.0.1.{source}: {e}"))?;
    let mut stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let mut line = format!("{id:0>width$}", width = line_size.saturating_sub(1)).into_bytes();
    line.push(b'\n');
    stream
        .write_all(&line)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = vec![0; line.len()];
    tokio::time::timeout(REPLY_TIMEOUT, stream.read_exact(&mut reply))
        .await
        .map_err(|_| format!("no echo within {REPLY_TIMEOUT:?}"))?
        .map_err(|e| format!("read: {e}"))?;
    if reply != line {
        return Err(format!("connection {id}: the echo differs from the line"));
    }
    Ok(stream)
}
