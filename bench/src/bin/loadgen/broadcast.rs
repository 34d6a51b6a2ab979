//! Broadcast mode: `--connections` connections to a server that answers the
//! line `broadcast <text>` by sending `<text>` to every open connection
//! (`flexi_broadcast`, `baseline_broadcast`). Connection 0 asks for one
//! line at a time, each a numbered `--size`-byte line; a round ends when
//! every connection has read it (verified byte for byte), and its time,
//! from the request's write to the last connection's read, is the round
//! trip recorded. Messages are lines delivered: rounds × connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use flexi_socket_bench::Record;
use flexi_socket_bench::load::{Bound, Lines, LoadOptions, Phase, Stage, Tally, measure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use flexi_socket_bench::load::{REPLY_TIMEOUT, open_and_echo};

use super::CONNECT_CONCURRENCY;

/// What the reading tasks tell the round's driver.
#[derive(Debug)]
struct Arrivals {
    /// Connections that are to have each line.
    connections: usize,
    /// Connections that have this round's line.
    count: AtomicUsize,
    /// Set when the last one has it.
    all: Notify,
    /// Lines that differ from what was broadcast, early closes, read errors.
    errors: AtomicU64,
}

pub(crate) async fn load(options: &LoadOptions) -> Result<Record, String> {
    let streams = open_all(options.addr, options.connections, options.size).await?;
    let arrivals = Arc::new(Arrivals {
        connections: streams.len(),
        count: AtomicUsize::new(0),
        all: Notify::new(),
        errors: AtomicU64::new(0),
    });
    let mut readers = JoinSet::new();
    // Every write half is kept: dropping one would close its side.
    let mut writers = Vec::with_capacity(streams.len());
    for stream in streams {
        let (reader, writer) = stream.into_split();
        writers.push(writer);
        readers.spawn(receive(reader, options.size, Arc::clone(&arrivals)));
    }
    let mut writers = writers.into_iter();
    let requests = writers.next().expect("at least one connection");
    let phase = Phase::new(options.warmup);
    let rounds = match options.bound {
        Bound::Count(count) => Some(count),
        Bound::Duration(_) => None,
    };
    let mut drivers = JoinSet::new();
    drivers.spawn(drive(
        requests,
        options.size,
        options.connections,
        rounds,
        Arc::clone(&phase),
        Arc::clone(&arrivals),
    ));
    let measured = measure(options, &phase, drivers).await?;
    readers.abort_all();
    drop(writers);
    let mut record = measured.fill(options.record("broadcast", 1));
    record.errors += arrivals.errors.load(Ordering::Relaxed);
    Ok(record)
}

/// Opens `connections` connections, each echoed once so the server holds it.
async fn open_all(
    addr: SocketAddr,
    connections: usize,
    size: usize,
) -> Result<Vec<TcpStream>, String> {
    let mut pending = JoinSet::new();
    let mut open = Vec::with_capacity(connections);
    for id in 0..connections {
        if pending.len() >= CONNECT_CONCURRENCY {
            open.push(joined(pending.join_next().await)?);
        }
        pending.spawn(async move { open_and_echo(addr, &Lines::new(size, id)).await });
    }
    while let Some(stream) = pending.join_next().await {
        open.push(joined(Some(stream))?);
    }
    Ok(open)
}

fn joined(
    joined: Option<Result<Result<TcpStream, String>, tokio::task::JoinError>>,
) -> Result<TcpStream, String> {
    joined
        .ok_or("no connection task")?
        .map_err(|e| format!("a connection task failed: {e}"))?
}

/// Asks for one broadcast after another until `phase` says stop (or
/// `rounds` are done), each once the last one has reached everyone.
async fn drive(
    mut requests: OwnedWriteHalf,
    size: usize,
    connections: usize,
    rounds: Option<u64>,
    phase: Arc<Phase>,
    arrivals: Arc<Arrivals>,
) -> Tally {
    let mut tally = Tally::default();
    let lines = Lines::new(size, 0);
    let mut request = Vec::with_capacity(size + 16);
    let mut round = 0;
    while phase.get() != Stage::Stopping && rounds.is_none_or(|rounds| round < rounds) {
        request.clear();
        request.extend_from_slice(b"broadcast ");
        lines.write(round, &mut request);
        arrivals.count.store(0, Ordering::Relaxed);
        let sent = Instant::now();
        if let Err(error) = requests.write_all(&request).await {
            eprintln!("loadgen: broadcast request: {error}");
            tally.errors += 1;
            break;
        }
        if tokio::time::timeout(REPLY_TIMEOUT, arrivals.all.notified())
            .await
            .is_err()
        {
            eprintln!(
                "loadgen: round {round}: {} of {connections} connections had the line after {REPLY_TIMEOUT:?}",
                arrivals.count.load(Ordering::Relaxed)
            );
            tally.errors += 1;
            break;
        }
        if phase.get() == Stage::Measuring {
            tally.round(sent, Instant::now(), connections as u64);
        }
        round += 1;
    }
    let _ = requests.shutdown().await;
    tally
}

/// Reads the broadcast lines of one connection, in order, each checked.
async fn receive(mut reader: OwnedReadHalf, size: usize, arrivals: Arc<Arrivals>) {
    let lines = Lines::new(size, 0);
    let mut expected = Vec::with_capacity(size);
    let mut line = vec![0; size];
    for round in 0.. {
        // Between rounds a connection may wait as long as the whole run.
        match reader.read_exact(&mut line).await {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Err(error) => {
                eprintln!("loadgen: broadcast read: {error}");
                arrivals.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        expected.clear();
        lines.write(round, &mut expected);
        if line != expected {
            eprintln!(
                "loadgen: broadcast {round} differs: expected {:?}, got {:?}",
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&line)
            );
            arrivals.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if arrivals.count.fetch_add(1, Ordering::Relaxed) + 1 == arrivals.connections {
            arrivals.all.notify_one();
        }
    }
}
