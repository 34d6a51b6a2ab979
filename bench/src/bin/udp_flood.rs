//! One peer floods a UDP server while another pings it: how much of the
//! good peer's traffic survives (issue 18: one flooding peer must not cost
//! the others). Prints one JSON line.
//!
//! ```text
//! udp_flood --addr 127.0.0.1:8082 [--flood 1000000] [--size 32] [--interval-ms 2]
//! ```
//!
//! The flood is `--flood` datagrams of `--size` bytes from one socket, sent
//! as fast as a thread can (it never reads the echoes). Meanwhile the good
//! peer sends a numbered ping every `--interval-ms` and counts the replies;
//! after the flood it waits at most a second for late ones. Loss is the
//! share of pings never answered.

use std::collections::HashSet;
use std::net::UdpSocket as StdUdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::net::UdpSocket;

/// The command line (see the module's documentation).
#[derive(Debug, Parser)]
#[command(
    name = "udp_flood",
    about = "One peer floods a UDP server while another pings it"
)]
struct Args {
    /// The UDP echo server's address.
    #[arg(long, default_value = "127.0.0.1:8082")]
    addr: String,
    /// Datagrams the flooding peer sends.
    #[arg(long, default_value_t = 1_000_000)]
    flood: u64,
    /// Bytes per datagram.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Milliseconds between the good peer's pings.
    #[arg(long, default_value_t = 2)]
    interval_ms: u64,
}

struct Options {
    addr: String,
    flood: u64,
    size: usize,
    interval: Duration,
}

fn main() {
    let options = Options::from(Args::parse());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(error) = runtime.block_on(run(options)) {
        eprintln!("udp_flood: {error}");
        std::process::exit(1);
    }
}

impl From<Args> for Options {
    fn from(args: Args) -> Self {
        Self {
            addr: args.addr,
            flood: args.flood,
            size: args.size,
            interval: Duration::from_millis(args.interval_ms),
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    let error = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let good = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| error("bind", e))?;
    good.connect(&options.addr)
        .await
        .map_err(|e| error("connect", e))?;
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let (addr, flooding) = (options.addr.clone(), Arc::clone(&flooding));
        let (count, size) = (options.flood, options.size);
        std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
            let socket = StdUdpSocket::bind("127.0.0.1:0")?;
            socket.connect(addr)?;
            let datagram = vec![b'f'; size];
            let started = Instant::now();
            let mut sent = 0;
            for _ in 0..count {
                // A refused or dropped datagram is the flood's own loss.
                if socket.send(&datagram).is_ok() {
                    sent += 1;
                }
            }
            flooding.store(false, Ordering::Relaxed);
            Ok((sent, started.elapsed()))
        })
    };
    let mut ticks = tokio::time::interval(options.interval);
    let mut answered = HashSet::new();
    let mut pings = 0u64;
    let mut buffer = [0; 64];
    while flooding.load(Ordering::Relaxed) {
        tokio::select! {
            _ = ticks.tick() => {
                // A full socket buffer here is the good peer's loss too.
                let _ = good.try_send(format!("ping {pings}").as_bytes());
                pings += 1;
            }
            received = good.recv(&mut buffer) => note(&mut answered, received, &buffer),
        }
    }
    // Late replies: at most a second, and none after the last ping's.
    let last_call = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(last_call);
    while answered.len() < usize::try_from(pings).unwrap_or(usize::MAX) {
        tokio::select! {
            () = &mut last_call => break,
            received = good.recv(&mut buffer) => note(&mut answered, received, &buffer),
        }
    }
    let (flood_sent, flood_time) = flood
        .join()
        .map_err(|_| "the flood thread panicked".to_owned())?
        .map_err(|e| error("flood", e))?;
    let replies = answered.len() as u64;
    let loss = if pings == 0 {
        0.0
    } else {
        100.0 * (pings - replies) as f64 / pings as f64
    };
    println!(
        "{{\"flood_sent\":{flood_sent},\"flood_seconds\":{:.3},\"pings\":{pings},\"replies\":{replies},\"loss_percent\":{loss:.2}}}",
        flood_time.as_secs_f64()
    );
    Ok(())
}

/// Counts a reply to one of our pings (by its number, once).
fn note(answered: &mut HashSet<u64>, received: std::io::Result<usize>, buffer: &[u8]) {
    let Ok(length) = received else { return };
    let number = std::str::from_utf8(&buffer[..length])
        .ok()
        .and_then(|text| text.strip_prefix("ping "))
        .and_then(|number| number.parse().ok());
    if let Some(number) = number {
        answered.insert(number);
    }
}
