//! Load generator for line echo servers; prints one JSON line (a `Record`).
//!
//! ```text
//! loadgen --addr 127.0.0.1:8081 [--connections 16] [--mode pingpong|pipelined|idle]
//!         [--depth 64] [--size 32] [--duration 3 | --count N] [--warmup 1]
//!         [--server-pid PID] [--threads 1] [--scenario NAME] [--server-name NAME]
//! ```
//!
//! - `pingpong`: one line in flight per connection.
//! - `pipelined`: `--depth` lines in flight per connection; whenever replies
//!   arrive, the window is refilled in one write. Each connection writes
//!   before it reads, so keep `depth × size` well below the kernel's socket
//!   buffers (hundreds of KiB; the default window is 2 KiB).
//! - `idle`: opens `--connections` connections, one echo on each so the server
//!   surely holds them, then reports the growth of the server's `VmRSS`
//!   (`--server-pid`) per connection.
//!
//! With `--server-pid`, the ping-pong and pipelined modes also report the
//! server's CPU time (user + system) per message over the measured window:
//! a figure that moves much less than messages/s when other work shares the
//! machine.
//!
//! Every reply is compared byte for byte with the line sent (each line carries
//! its connection and sequence number), so a lost, reordered or corrupted
//! reply is an error, not a fast result. `--count` is the total number of
//! messages, spread over the connections; the measured window then ends when
//! the last connection is done. Replies during `--warmup` are not measured.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use flexi_socket_bench::{Flags, Record};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// No reply for this long means the server is stuck: an error, not a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connects in flight at once in idle mode (below the listen backlog).
const CONNECT_CONCURRENCY: usize = 128;
/// Idle mode: how long the server gets to settle before its RSS is read.
const SETTLE: Duration = Duration::from_millis(500);

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("loadgen: {error}");
            std::process::exit(2);
        }
    };
    let runtime = if options.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads)
            .enable_all()
            .build()
    };
    let record = runtime
        .expect("cannot start the tokio runtime")
        .block_on(run(options));
    match record {
        Ok(record) => {
            let errors = record.errors;
            println!(
                "{}",
                serde_json::to_string(&record).expect("a record serializes")
            );
            if errors > 0 {
                std::process::exit(1);
            }
        }
        Err(error) => {
            eprintln!("loadgen: {error}");
            std::process::exit(1);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    PingPong,
    Pipelined,
    Idle,
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    Duration(Duration),
    /// Total messages over all connections.
    Count(u64),
}

#[derive(Debug, Clone)]
struct Options {
    addr: SocketAddr,
    connections: usize,
    mode: Mode,
    depth: usize,
    size: usize,
    bound: Bound,
    warmup: Duration,
    server_pid: Option<u32>,
    threads: usize,
    scenario: String,
    server_name: String,
}

impl Options {
    fn parse() -> Result<Self, String> {
        let flags = Flags::from_env()?;
        flags.only(&[
            "addr",
            "connections",
            "mode",
            "depth",
            "size",
            "duration",
            "count",
            "warmup",
            "server-pid",
            "threads",
            "scenario",
            "server-name",
        ])?;
        let mode = match flags.get_or("mode", "pingpong".to_owned())?.as_str() {
            "pingpong" => Mode::PingPong,
            "pipelined" => Mode::Pipelined,
            "idle" => Mode::Idle,
            other => {
                return Err(format!(
                    "--mode {other}: expected pingpong, pipelined or idle"
                ));
            }
        };
        let bound = match (flags.get::<f64>("duration")?, flags.get::<u64>("count")?) {
            (Some(_), Some(_)) => return Err("give --duration or --count, not both".into()),
            (None, Some(count)) => Bound::Count(count),
            (duration, None) => Bound::Duration(seconds(duration.unwrap_or(3.0), "duration")?),
        };
        let options = Self {
            addr: flags
                .get("addr")?
                .ok_or("--addr is required (the server's listen address)")?,
            connections: flags.get_or("connections", 16)?,
            depth: match mode {
                Mode::Pipelined => flags.get_or("depth", 64)?,
                Mode::PingPong | Mode::Idle => 1,
            },
            mode,
            size: flags.get_or("size", 32)?,
            bound,
            warmup: seconds(flags.get_or("warmup", 0.0)?, "warmup")?,
            server_pid: flags.get("server-pid")?,
            threads: flags.get_or("threads", 1)?,
            scenario: flags.get_or("scenario", String::new())?,
            server_name: flags.get_or("server-name", String::new())?,
        };
        if options.connections == 0 || options.depth == 0 {
            return Err("--connections and --depth must be at least 1".into());
        }
        if options.size < 2 {
            return Err("--size must be at least 2 (one byte and the newline)".into());
        }
        if options.mode == Mode::Idle && options.server_pid.is_none() {
            return Err("--mode idle needs --server-pid to read the server's memory".into());
        }
        Ok(options)
    }

    fn record(&self) -> Record {
        Record {
            scenario: self.scenario.clone(),
            server: self.server_name.clone(),
            mode: match self.mode {
                Mode::PingPong => "pingpong",
                Mode::Pipelined => "pipelined",
                Mode::Idle => "idle",
            }
            .to_owned(),
            connections: self.connections,
            depth: self.depth,
            size: self.size,
            ..Record::default()
        }
    }
}

fn seconds(value: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|e| format!("--{name} {value}: {e}"))
}

async fn run(options: Options) -> Result<Record, String> {
    match options.mode {
        Mode::Idle => idle(options).await,
        Mode::PingPong | Mode::Pipelined => load(options).await,
    }
}

/// The lines of one connection: `size - 1` bytes then `\n`; the first bytes
/// spell the connection and sequence number in hex, the rest is a fixed filler.
#[derive(Debug)]
struct Lines {
    template: Vec<u8>,
    connection: u64,
}

impl Lines {
    fn new(size: usize, connection: usize) -> Self {
        let mut template: Vec<u8> = (0..size - 1)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26])
            .collect();
        template.push(b'\n');
        Self {
            template,
            connection: connection as u64,
        }
    }

    /// Appends line number `seq` to `out`.
    fn write(&self, seq: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.template);
        let id = (self.connection << 40) | (seq & ((1 << 40) - 1));
        let digits = &mut out[start..start + (self.template.len() - 1).min(16)];
        for (i, digit) in digits.iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[((id >> (60 - 4 * i)) & 0xf) as usize];
        }
    }

    fn len(&self) -> usize {
        self.template.len()
    }
}

/// Where the run is: replies are measured only in `MEASURING`.
const WARMUP: u8 = 0;
const MEASURING: u8 = 1;
const STOPPING: u8 = 2;

/// What one connection measured.
#[derive(Debug)]
struct Tally {
    histogram: Histogram<u64>,
    messages: u64,
    errors: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            // Nanoseconds, 1 ns to 1 min, 3 significant digits.
            histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("valid histogram bounds"),
            messages: 0,
            errors: 0,
        }
    }
}

async fn load(options: Options) -> Result<Record, String> {
    let options = Arc::new(options);
    let mut streams = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        streams.push(connect(options.addr).await?);
    }
    let phase = Arc::new(AtomicU8::new(if options.warmup.is_zero() {
        MEASURING
    } else {
        WARMUP
    }));
    let mut drivers = JoinSet::new();
    for (id, stream) in streams.into_iter().enumerate() {
        let share = match options.bound {
            Bound::Count(count) => {
                let n = options.connections as u64;
                Some(count / n + u64::from((id as u64) < count % n))
            }
            Bound::Duration(_) => None,
        };
        drivers.spawn(drive(
            stream,
            Lines::new(options.size, id),
            options.depth,
            share,
            Arc::clone(&phase),
        ));
    }

    tokio::time::sleep(options.warmup).await;
    phase.store(MEASURING, Ordering::Relaxed);
    let started = Instant::now();
    let cpu_before = options.server_pid.map(cpu_ticks).transpose()?;
    let mut cpu_ticks_used = None;
    let mut total = Tally::new();
    let mut ended = None;
    let deadline = match options.bound {
        Bound::Duration(duration) => Some(tokio::time::Instant::now() + duration),
        Bound::Count(_) => None,
    };
    let mut stop = std::pin::pin!(async move {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    });
    loop {
        tokio::select! {
            () = &mut stop, if ended.is_none() => {
                phase.store(STOPPING, Ordering::Relaxed);
                ended = Some(started.elapsed());
                if let (Some(pid), Some(before)) = (options.server_pid, cpu_before) {
                    cpu_ticks_used = Some(cpu_ticks(pid)?.saturating_sub(before));
                }
            }
            joined = drivers.join_next() => match joined {
                Some(tally) => {
                    let tally = tally.map_err(|e| format!("a connection task failed: {e}"))?;
                    total.histogram.add(&tally.histogram).expect("same histogram bounds");
                    total.messages += tally.messages;
                    total.errors += tally.errors;
                }
                None => break,
            }
        }
    }
    // A --count run ends when the last connection is done.
    let seconds = ended.unwrap_or_else(|| started.elapsed()).as_secs_f64();
    if let (None, Some(pid), Some(before)) = (cpu_ticks_used, options.server_pid, cpu_before) {
        cpu_ticks_used = Some(cpu_ticks(pid)?.saturating_sub(before));
    }
    let quantile_us = |q: f64| total.histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(Record {
        messages: total.messages,
        seconds,
        messages_per_s: total.messages as f64 / seconds,
        p50_us: quantile_us(0.5),
        p99_us: quantile_us(0.99),
        p999_us: quantile_us(0.999),
        max_us: total.histogram.max() as f64 / 1000.0,
        errors: total.errors,
        server_cpu_us_per_message: cpu_ticks_used
            .filter(|_| total.messages > 0)
            .map(|ticks| ticks as f64 * 1e6 / USER_HZ / total.messages as f64),
        ..options.record()
    })
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    // Same as the servers: a small write goes out now, not after an ACK.
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok(stream)
}

/// Keeps `depth` lines in flight on one connection until `phase` says stop
/// (or `share` lines were answered), then collects the replies still due.
async fn drive(
    mut stream: TcpStream,
    lines: Lines,
    depth: usize,
    share: Option<u64>,
    phase: Arc<AtomicU8>,
) -> Tally {
    let mut tally = Tally::new();
    if let Err(error) = exchange(&mut stream, &lines, depth, share, &phase, &mut tally).await {
        eprintln!("loadgen: connection {}: {error}", lines.connection);
        tally.errors += 1;
        return tally;
    }
    // Close politely so the server sees an ordinary end of stream.
    let _ = stream.shutdown().await;
    let mut rest = [0_u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut rest)).await;
    tally
}

async fn exchange(
    stream: &mut TcpStream,
    lines: &Lines,
    depth: usize,
    share: Option<u64>,
    phase: &AtomicU8,
    tally: &mut Tally,
) -> Result<(), String> {
    let size = lines.len();
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(depth);
    let mut out = Vec::with_capacity(depth * size);
    let mut expected = Vec::with_capacity(size);
    let mut input = vec![0_u8; (depth * size).max(64 * 1024)];
    let (mut start, mut end) = (0, 0);
    let mut next = 0_u64;
    loop {
        if phase.load(Ordering::Relaxed) != STOPPING {
            out.clear();
            let now = Instant::now();
            while in_flight.len() < depth && share.is_none_or(|share| next < share) {
                lines.write(next, &mut out);
                in_flight.push_back((next, now));
                next += 1;
            }
            if !out.is_empty() {
                stream
                    .write_all(&out)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
        }
        if in_flight.is_empty() {
            return Ok(());
        }
        if end == input.len() {
            input.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        let read = tokio::time::timeout(REPLY_TIMEOUT, stream.read(&mut input[end..]))
            .await
            .map_err(|_| format!("no reply within {REPLY_TIMEOUT:?}"))?
            .map_err(|e| format!("read: {e}"))?;
        if read == 0 {
            return Err(format!(
                "the server closed with {} replies due",
                in_flight.len()
            ));
        }
        end += read;
        let now = Instant::now();
        let measuring = phase.load(Ordering::Relaxed) == MEASURING;
        while end - start >= size {
            let Some((seq, sent)) = in_flight.pop_front() else {
                return Err("a reply to a line never sent".into());
            };
            expected.clear();
            lines.write(seq, &mut expected);
            let reply = &input[start..start + size];
            if reply != expected.as_slice() {
                return Err(format!(
                    "reply {seq} differs: sent {:?}, got {:?}",
                    String::from_utf8_lossy(&expected),
                    String::from_utf8_lossy(reply)
                ));
            }
            start += size;
            if measuring {
                let nanos = u64::try_from((now - sent).as_nanos()).unwrap_or(u64::MAX);
                tally.histogram.saturating_record(nanos.max(1));
                tally.messages += 1;
            }
        }
        if start == end {
            (start, end) = (0, 0);
        }
    }
}

async fn idle(options: Options) -> Result<Record, String> {
    let pid = options.server_pid.expect("checked in Options::parse");
    let before = rss_kib(pid)?;
    let mut pending = JoinSet::new();
    let mut held = Vec::with_capacity(options.connections);
    let mut errors = 0;
    for id in 0..options.connections {
        if pending.len() >= CONNECT_CONCURRENCY {
            collect(pending.join_next().await, &mut held, &mut errors);
        }
        let (addr, size) = (options.addr, options.size);
        pending.spawn(async move { open_and_echo(addr, &Lines::new(size, id)).await });
    }
    while let Some(joined) = pending.join_next().await {
        collect(Some(joined), &mut held, &mut errors);
    }
    tokio::time::sleep(SETTLE).await;
    let after = rss_kib(pid)?;
    let growth = after.saturating_sub(before) as f64;
    Ok(Record {
        messages: held.len() as u64,
        errors,
        rss_before_kib: Some(before),
        rss_after_kib: Some(after),
        kib_per_connection: Some(growth / held.len().max(1) as f64),
        ..options.record()
    })
}

fn collect(
    joined: Option<Result<Result<TcpStream, String>, tokio::task::JoinError>>,
    held: &mut Vec<TcpStream>,
    errors: &mut u64,
) {
    match joined {
        Some(Ok(Ok(stream))) => held.push(stream),
        Some(Ok(Err(error))) => {
            if *errors == 0 {
                eprintln!("loadgen: {error}");
            }
            *errors += 1;
        }
        Some(Err(error)) => {
            eprintln!("loadgen: a connection task failed: {error}");
            *errors += 1;
        }
        None => {}
    }
}

/// Connects and gets one echo back, so the server has accepted and served it.
async fn open_and_echo(addr: SocketAddr, lines: &Lines) -> Result<TcpStream, String> {
    let mut stream = connect(addr).await?;
    let mut line = Vec::with_capacity(lines.len());
    lines.write(0, &mut line);
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
        return Err(format!(
            "echo differs: sent {:?}, got {:?}",
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&reply)
        ));
    }
    Ok(stream)
}

/// Linux reports CPU time in `/proc` in these ticks per second, whatever the kernel's HZ.
const USER_HZ: f64 = 100.0;

/// User plus system CPU time of process `pid` (all its threads), in `USER_HZ` ticks.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The name in parentheses may hold spaces: count fields after its `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15; the state after the name is field 3.
    let tick = |field: usize| fields.get(field - 3).and_then(|v| v.parse::<u64>().ok());
    match (tick(14), tick(15)) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => Err(format!("{path}: no utime/stime")),
    }
}

/// The resident set of process `pid`, KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{path}: no VmRSS line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_size_and_differ_by_connection_and_sequence() {
        let lines = Lines::new(32, 3);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        lines.write(7, &mut a);
        lines.write(8, &mut b);
        assert_eq!(a.len(), 32);
        assert_eq!(a.last(), Some(&b'\n'));
        assert_ne!(a, b);
        assert!(a.starts_with(b"0000030000000007"));
        let mut other = Vec::new();
        Lines::new(32, 4).write(7, &mut other);
        assert_ne!(a, other);
        let mut tiny = Vec::new();
        Lines::new(2, 0).write(1, &mut tiny);
        assert_eq!(tiny, b"0\n");
    }
}
