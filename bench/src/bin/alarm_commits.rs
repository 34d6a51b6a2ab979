//! Durable events per second through the `alarm_receiver` example:
//! `--panels` DC-09 panels, each on its own TCP connection, each sending
//! `--events` SIA-DCS events one after the other and waiting for every
//! ACK, which the receiver sends only once the event is committed to SQLite
//! with `synchronous = FULL`. Prints the rate and the ACK latencies.
//!
//! `--fsync-probe DIR` measures instead what one durable write costs on the
//! disk under DIR (4 KiB appended, then `fdatasync`), the floor under one
//! commit.
//!
//! ```text
//! alarm_receiver 127.0.0.1:9000 --accounts 1234 --db /tmp/x.db [--max-batch 1]
//! alarm_commits --addr 127.0.0.1:9000 --panels 64 --events 100
//! alarm_commits --fsync-probe /tmp
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use flexi_socket::checksum::Checksum;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// No ACK for this long means the receiver is stuck: an error, not a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
struct Options {
    /// The receiver, serving account 1234.
    #[arg(long, required_unless_present = "fsync_probe")]
    addr: Option<SocketAddr>,
    /// Panels sending at the same time, each on its own connection (at most
    /// 0xFFFFFF: each panel is a line of its own).
    #[arg(long, default_value_t = 64)]
    panels: u32,
    /// Events each panel sends (at most 9999: one sequence number each).
    #[arg(long, default_value_t = 100)]
    events: u32,
    /// Measures the cost of a durable 4 KiB write in this directory instead.
    #[arg(long, value_name = "DIR")]
    fsync_probe: Option<PathBuf>,
}

fn main() {
    let options = Options::parse();
    if let Some(dir) = options.fsync_probe {
        fsync_probe(&dir);
        return;
    }
    let addr = options.addr.expect("clap requires --addr");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(load(addr, options.panels, options.events));
}

async fn load(addr: SocketAddr, panels: u32, events: u32) {
    assert!(events <= 9999, "--events is at most 9999");
    let started = Instant::now();
    let mut running = JoinSet::new();
    for line in 1..=panels {
        running.spawn(panel(addr, line, events));
    }
    let mut latencies = Histogram::<u64>::new(3).expect("a histogram");
    while let Some(panel) = running.join_next().await {
        latencies
            .add(panel.expect("a panel task"))
            .expect("histograms of one precision add");
    }
    let elapsed = started.elapsed();
    let total = u64::from(panels) * u64::from(events);
    println!(
        "panels={panels} events={total} seconds={:.2} events_per_second={:.0} \
         ack_p50_ms={:.2} ack_p99_ms={:.2} ack_max_ms={:.2}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
        latencies.max() as f64 / 1000.0,
    );
}

/// One panel: line `line` of account 1234. Returns its ACK latencies in µs.
async fn panel(addr: SocketAddr, line: u32, events: u32) -> Histogram<u64> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut latencies = Histogram::<u64>::new(3).expect("a histogram");
    let mut reply = Vec::new();
    for sequence in 1..=events {
        let header = format!("{sequence:04}R1L{line:X}#1234");
        let body = format!("\"SIA-DCS\"{header}[#1234|Nri1/BA{sequence:03}]");
        let crc = Checksum::Crc16Arc.to_hex(body.as_bytes());
        let frame = format!("\n{crc}{:04X}{body}\r", body.len());
        let sent = Instant::now();
        writer.write_all(frame.as_bytes()).await.expect("write");
        reply.clear();
        tokio::time::timeout(REPLY_TIMEOUT, reader.read_until(b'\r', &mut reply))
            .await
            .expect("an ACK within the timeout")
            .expect("read");
        let expected = format!("\"ACK\"{header}[]\r");
        assert!(
            reply.ends_with(expected.as_bytes()),
            "line {line:X} sequence {sequence}: {}",
            String::from_utf8_lossy(&reply)
        );
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        latencies.record(micros.max(1)).expect("a latency in range");
    }
    latencies
}

/// Writes 4 KiB and `fdatasync`s, 200 times, in a file under `dir`: first
/// appending (the file grows: the file system's journal is flushed too),
/// then overwriting the same pages (as a WAL that was reset after a
/// checkpoint is written).
fn fsync_probe(dir: &std::path::Path) {
    const WRITES: u32 = 200;
    let path = dir.join(format!("alarm-commits-probe-{}", std::process::id()));
    let page = [0x5a_u8; 4096];
    let mut report = format!("dir={}", dir.display());
    for (mode, options) in [
        (
            "append",
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .clone(),
        ),
        ("overwrite", OpenOptions::new().write(true).clone()),
    ] {
        let mut file = options.open(&path).expect("a probe file");
        let started = Instant::now();
        for _ in 0..WRITES {
            file.write_all(&page).expect("write");
            file.sync_data().expect("fdatasync");
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(WRITES);
        report.push_str(&format!(" fdatasync_4k_{mode}_us={micros:.0}"));
    }
    let _ = std::fs::remove_file(&path);
    println!("{report} ({WRITES} writes each)");
}
