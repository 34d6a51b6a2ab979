//! What a burst of peers that never read costs a server's memory, and how
//! much of it stays after they leave (issue 16: freed queue memory is not
//! given back). Prints one JSON line.
//!
//! ```text
//! burst_rss --addr 127.0.0.1:8081 --pid PID [--connections 50] [--megabytes 64]
//! ```
//!
//! Reads the server's resident memory (`VmRSS` of `/proc/PID/status`)
//! before, at the peak and after: `--connections` peers each write up to
//! `--megabytes` of lines to an echo server and never read its replies, so
//! its queues fill until it stops reading them; then every peer closes, and
//! the server's memory is read again once its connections are gone (at most
//! 10 s later).

use std::time::Duration;

use clap::Parser;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(error) = runtime.block_on(run(Args::parse())) {
        eprintln!("burst_rss: {error}");
        std::process::exit(1);
    }
}

/// The server's resident memory in KiB.
fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS line".to_owned())
}

/// The command line (see the module's documentation).
#[derive(Debug, Parser)]
#[command(
    name = "burst_rss",
    about = "What a burst of peers that never read costs a server's memory"
)]
struct Args {
    /// The echo server's address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: String,
    /// The echo server's process, whose memory is read.
    #[arg(long)]
    pid: u32,
    /// Peers that write and never read.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// What each peer writes at most, MiB.
    #[arg(long, default_value_t = 64)]
    megabytes: usize,
}

async fn run(args: Args) -> Result<(), String> {
    let Args {
        addr,
        pid,
        connections,
        megabytes,
    } = args;

    let baseline = rss_kib(pid)?;
    let mut peers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        peers.push(stream);
    }
    // 1 KiB lines; a peer stops when the server stops reading (its writes
    // stay blocked for a second) or when it has written its share.
    let line = {
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        line
    };
    let writers = peers.into_iter().map(|mut stream| {
        let line = line.clone();
        tokio::spawn(async move {
            for _ in 0..megabytes * 1024 {
                let wrote = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&line));
                if !matches!(wrote.await, Ok(Ok(()))) {
                    break;
                }
            }
            stream
        })
    });
    let mut held = Vec::new();
    for writer in writers {
        held.push(writer.await.map_err(|e| e.to_string())?);
    }
    let peak = rss_kib(pid)?;
    drop(held);
    // The server frees a connection's memory once it has closed it: give it
    // the time, then read the lowest value seen.
    let mut after = rss_kib(pid)?;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = after.min(rss_kib(pid)?);
    }
    println!(
        "{{\"connections\":{connections},\"megabytes\":{megabytes},\"rss_baseline_kib\":{baseline},\"rss_peak_kib\":{peak},\"rss_after_kib\":{after},\"residual_mib\":{:.1}}}",
        (after.saturating_sub(baseline)) as f64 / 1024.0
    );
    Ok(())
}
