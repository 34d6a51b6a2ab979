//! The client side, in a process of its own so that its allocations are not
//! counted: opens the connections, gets one echo on each, says `ready` on
//! stdout and holds them until stdin closes.

use flexi_socket_bench::load::{Lines, open_and_echo};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Connects in flight at once (below the listen backlog).
const IN_FLIGHT: usize = 256;

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
        pending.spawn(async move { open_and_echo(addr, &Lines::new(line_size, id)).await });
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
