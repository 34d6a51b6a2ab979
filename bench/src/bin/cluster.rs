//! The cluster over NATS, measured in one process: two servers (nodes `a`
//! and `b`) joined through a nats-server that is already running, and
//! keyed devices on loopback (issue 14's numbers). Prints one line per
//! measurement.
//!
//! ```text
//! nats-server -a 127.0.0.1 -p 4222 &
//! cluster --nats nats://127.0.0.1:4222 [--sends 2000] [--devices 2000]
//! ```
//!
//! - send latency, local and cross-node: `send_to_key` on node a until the
//!   device's socket has the line, one send at a time, p50 and p99;
//! - cross-node throughput: 64 tasks on node a sending to one device on b;
//! - broadcast: `--devices` connections spread over both nodes, from the
//!   call on node a until the last device has the line;
//! - memory per keyed connection: the process's resident memory before and
//!   after every device's HELLO (its key, its NATS subscription and task).

use std::sync::Arc;
use std::time::{Duration, Instant};

use flexi_socket::{
    ClusterConfig, Connection, Connections, FlexiSocket, Router, SendOutcome, Server,
};
use flexi_socket_bench::Flags;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(error) = runtime.block_on(run()) {
        eprintln!("cluster: {error}");
        std::process::exit(1);
    }
}

/// A device's connection sets its key from `HELLO <id>` and answers `OK`.
fn device_router() -> Router {
    Router::new().on_message(|conn: Connection, line: String| async move {
        if let Some(id) = line.strip_prefix("HELLO ") {
            conn.set_key(id).await?;
            conn.send("OK").await?;
        }
        Ok::<(), flexi_socket::Error>(())
    })
}

async fn node(name: &str, nats: &str) -> Result<(Connections, std::net::SocketAddr), String> {
    let server: Server = FlexiSocket::server("127.0.0.1:0")
        .router(device_router())
        .node_name(name)
        .max_connections(20_000)
        .cluster(ClusterConfig::new([nats]))
        .bind()
        .await
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr().socket_addr().ok_or("an IP server")?;
    let connections = server.connections();
    tokio::spawn(server.serve_with_shutdown(std::future::pending()));
    Ok((connections, addr))
}

/// A device connected and keyed `id`; its read half, positioned after `OK`.
async fn device(addr: std::net::SocketAddr, id: &str) -> Result<BufReader<OwnedReadHalf>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("HELLO {id}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The write half stays open for the connection's life.
    std::mem::forget(write);
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.map_err(|e| e.to_string())?;
    if line != "OK\n" {
        return Err(format!("device {id} got {line:?}"));
    }
    Ok(read)
}

/// Waits until `key` is reachable from `connections` (its subscription
/// reached the NATS server).
async fn reachable(connections: &Connections, key: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections.locate(key).await.found().is_none() {
        if Instant::now() > deadline {
            return Err(format!("{key} never became reachable"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn latency(
    from: &Connections,
    key: &str,
    device: &mut BufReader<OwnedReadHalf>,
    sends: u64,
) -> Result<(f64, f64), String> {
    let mut histogram = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut line = String::new();
    for i in 0..sends {
        let started = Instant::now();
        let outcome = from
            .send_to_key(key, format!("m{i}"))
            .await
            .map_err(|e| e.to_string())?;
        if !matches!(outcome, SendOutcome::Delivered { .. }) {
            return Err(format!("send {i} to {key}: {outcome}"));
        }
        line.clear();
        device
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        histogram.record(micros).map_err(|e| e.to_string())?;
    }
    Ok((
        histogram.value_at_quantile(0.5) as f64,
        histogram.value_at_quantile(0.99) as f64,
    ))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn run() -> Result<(), String> {
    let flags = Flags::from_env()?;
    flags.only(&["nats", "sends", "devices"])?;
    let nats: String = flags.get("nats")?.ok_or("--nats URL is required")?;
    let sends: u64 = flags.get_or("sends", 2_000)?;
    let devices: usize = flags.get_or("devices", 2_000)?;

    let (a, a_addr) = node("a", &nats).await?;
    // Node b serves in the background; node a asks it.
    let (_b, b_addr) = node("b", &nats).await?;

    let mut local = device(a_addr, "local").await?;
    let mut remote = device(b_addr, "remote").await?;
    reachable(&a, "remote").await?;
    let (p50, p99) = latency(&a, "local", &mut local, sends).await?;
    println!("local send latency: p50 {p50} us, p99 {p99} us ({sends} sends)");
    let (p50, p99) = latency(&a, "remote", &mut remote, sends).await?;
    println!("cross-node send latency: p50 {p50} us, p99 {p99} us ({sends} sends)");

    // Throughput: 64 senders on a, one device on b, every message counted there.
    let total = sends * 10;
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut line = String::new();
        for _ in 0..total {
            line.clear();
            if remote.read_line(&mut line).await.unwrap_or(0) == 0 {
                return Err("the device closed".to_owned());
            }
        }
        Ok(remote)
    });
    let a_shared = Arc::new(a.clone());
    let mut senders = tokio::task::JoinSet::new();
    for task in 0..64 {
        let a = Arc::clone(&a_shared);
        senders.spawn(async move {
            for i in (task..total).step_by(64) {
                let _ = a.send_to_key("remote", format!("t{i}")).await;
            }
        });
    }
    while senders.join_next().await.is_some() {}
    reader.await.map_err(|e| e.to_string())??;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "cross-node throughput: {:.0} messages/s ({total} messages, 64 senders on a, one device on b)",
        total as f64 / seconds
    );

    // Broadcast and memory: `devices` connections, half on each node.
    let mut readers = Vec::with_capacity(devices);
    let mut writers = Vec::with_capacity(devices);
    for i in 0..devices {
        let addr = if i % 2 == 0 { a_addr } else { b_addr };
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (read, write) = stream.into_split();
        readers.push(BufReader::new(read));
        writers.push(write);
    }
    // Everything but the keys is in place: the difference is theirs (and
    // the first message's buffers on both sides).
    let before = rss_kib();
    for (i, (read, write)) in readers.iter_mut().zip(&mut writers).enumerate() {
        write
            .write_all(format!("HELLO d{i}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        read.read_line(&mut line).await.map_err(|e| e.to_string())?;
    }
    reachable(&a, &format!("d{}", devices - 1)).await?;
    let after = rss_kib();
    println!(
        "memory per keyed connection: {:.1} KiB (key, NATS subscription, its task; {devices} devices)",
        (after.saturating_sub(before)) as f64 / devices as f64
    );
    let started = Instant::now();
    let reached = a.broadcast("all").await;
    let mut waiting = tokio::task::JoinSet::new();
    for mut read in readers {
        waiting.spawn(async move {
            let mut line = String::new();
            let _ = read.read_line(&mut line).await;
        });
    }
    while waiting.join_next().await.is_some() {}
    drop(writers);
    println!(
        "broadcast to {devices} devices on two nodes: {:.1} ms until the last has it ({reached} reached; the local and remote ones counted)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
