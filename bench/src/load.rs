//! What the load generators share (`loadgen` and `flexi_client_load`): the
//! command line, the messages, the measured window, and what `/proc` says
//! about a process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::Record;

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// Measure this long (after the warm-up).
    Duration(Duration),
    /// Total messages over all connections.
    Count(u64),
}

/// The flags every load generator takes.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The server's address.
    pub addr: SocketAddr,
    /// Connections (or UDP sockets), each with one driver task.
    pub connections: usize,
    /// Message length in bytes, newline included.
    pub size: usize,
    /// How long the run lasts.
    pub bound: Bound,
    /// Before measuring, this long under load.
    pub warmup: Duration,
    /// The server process, to read its CPU time and memory.
    pub server_pid: Option<u32>,
    /// Names copied into the [`Record`].
    pub scenario: String,
    /// See [`Record::server`].
    pub server_name: String,
}

/// The flags every load generator takes, as clap reads them; made into
/// [`LoadOptions`] by [`LoadArgs::options`].
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The server's listen address.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Connections (or UDP sockets), each with one driver task.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Message length in bytes, newline included.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(2..))]
    pub size: u32,
    /// Seconds measured, after the warm-up (3 unless --count is given).
    #[arg(long, conflicts_with = "count")]
    pub duration: Option<f64>,
    /// Total messages over all connections, instead of a timed run.
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds under load before measuring.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// The server process, to read its CPU time and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The scenario's name, copied into the record.
    #[arg(long, default_value = "")]
    pub scenario: String,
    /// The measured server's (or client's) name, copied into the record.
    #[arg(long, default_value = "")]
    pub server_name: String,
}

impl LoadArgs {
    /// The options these flags give.
    ///
    /// # Errors
    ///
    /// A duration or warm-up that is not a number of seconds.
    pub fn options(&self) -> Result<LoadOptions, String> {
        let bound = match (self.duration, self.count) {
            (_, Some(count)) => Bound::Count(count),
            (duration, None) => Bound::Duration(seconds(duration.unwrap_or(3.0), "duration")?),
        };
        Ok(LoadOptions {
            addr: self.addr,
            connections: self.connections as usize,
            size: self.size as usize,
            bound,
            warmup: seconds(self.warmup, "warmup")?,
            server_pid: self.server_pid,
            scenario: self.scenario.clone(),
            server_name: self.server_name.clone(),
        })
    }
}

impl LoadOptions {
    /// The messages connection `id` sends with a `--count` bound (its share
    /// of the total), or `None` when the run is timed.
    #[must_use]
    pub fn share(&self, id: usize) -> Option<u64> {
        match self.bound {
            Bound::Count(count) => {
                let n = self.connections as u64;
                Some(count / n + u64::from((id as u64) < count % n))
            }
            Bound::Duration(_) => None,
        }
    }

    /// A record of this run's parameters, figures left at zero.
    #[must_use]
    pub fn record(&self, mode: &str, depth: usize) -> Record {
        Record {
            scenario: self.scenario.clone(),
            server: self.server_name.clone(),
            mode: mode.to_owned(),
            connections: self.connections,
            depth,
            size: self.size,
            ..Record::default()
        }
    }
}

/// No reply for this long means the server is stuck: an error, not a hang.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects connection `id`. To an IPv4 loopback server, connections come
/// from 200 loopback addresses in turn (127.0.1.0 to 127.0.1.199), as many
/// clients would: a server keeps its last free places from any one address
/// (flexi-socket's default: a tenth of `max_connections`), and thousands of
/// connections from 127.0.0.1 alone would be turned away there.
pub async fn connect(addr: SocketAddr, id: usize) -> Result<TcpStream, String> {
    /// Source addresses used in turn.
    const SOURCES: usize = 200;
    let socket = match addr {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => {
            let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
            let source = u8::try_from(id % SOURCES).expect("below 256");
            socket
                .bind(SocketAddr::from(([127, 0, 1, source], 0)))
                .map_err(|e| format!("bind 127.0.1.{source}: {e}"))?;
            socket
        }
        SocketAddr::V4(_) => TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?,
        SocketAddr::V6(_) => TcpSocket::new_v6().map_err(|e| format!("socket: {e}"))?,
    };
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    // Same as the servers: a small write goes out now, not after an ACK.
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok(stream)
}

/// Connects and gets one echo back, so the server has accepted and served it.
pub async fn open_and_echo(addr: SocketAddr, lines: &Lines) -> Result<TcpStream, String> {
    let id = usize::try_from(lines.connection()).unwrap_or_default();
    let mut stream = connect(addr, id).await?;
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

fn seconds(value: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|e| format!("--{name} {value}: {e}"))
}

/// The messages of one connection: `size - 1` bytes then `\n`; the first
/// bytes spell the connection and sequence number in hex, the rest is a fixed
/// filler. So a lost, reordered or corrupted reply never matches.
#[derive(Debug)]
pub struct Lines {
    template: Vec<u8>,
    connection: u64,
}

/// Bits of the id that hold the sequence number (the rest: the connection).
const SEQ_BITS: u32 = 40;
/// Hex digits of the id at the start of a message, when it is long enough.
const ID_DIGITS: usize = 16;

impl Lines {
    /// The messages of connection `connection`, each `size` bytes (at least 2).
    #[must_use]
    pub fn new(size: usize, connection: usize) -> Self {
        let mut template: Vec<u8> = (0..size - 1)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26])
            .collect();
        template.push(b'\n');
        Self {
            template,
            connection: connection as u64,
        }
    }

    /// Appends message number `seq` to `out`.
    pub fn write(&self, seq: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.template);
        let id = (self.connection << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1));
        let digits = &mut out[start..start + (self.template.len() - 1).min(ID_DIGITS)];
        for (i, digit) in digits.iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[((id >> (60 - 4 * i)) & 0xf) as usize];
        }
    }

    /// The sequence number of `message` if it is exactly one of this
    /// connection's messages (which needs a `size` of at least 17 to hold
    /// the whole id), whatever its number.
    #[must_use]
    pub fn seq_of(&self, message: &[u8]) -> Option<u64> {
        if message.len() != self.len() || message.len() <= ID_DIGITS {
            return None;
        }
        let digits = std::str::from_utf8(&message[..ID_DIGITS]).ok()?;
        let id = u64::from_str_radix(digits, 16).ok()?;
        if id >> SEQ_BITS != self.connection {
            return None;
        }
        let seq = id & ((1 << SEQ_BITS) - 1);
        let mut expected = Vec::with_capacity(self.len());
        self.write(seq, &mut expected);
        (expected == message).then_some(seq)
    }

    /// Bytes per message, newline included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.template.len()
    }

    /// Never: a message holds at least its newline.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.template.is_empty()
    }

    /// The connection these messages belong to.
    #[must_use]
    pub fn connection(&self) -> u64 {
        self.connection
    }
}

/// Where a run is: replies count only while [`Stage::Measuring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Under load, not counted.
    Warmup,
    /// Replies are counted.
    Measuring,
    /// Drivers finish the messages in flight and return.
    Stopping,
}

/// The run's [`Stage`], shared by the driver tasks.
#[derive(Debug)]
pub struct Phase(AtomicU8);

impl Phase {
    /// Starts in [`Stage::Warmup`], or [`Stage::Measuring`] without a warm-up.
    #[must_use]
    pub fn new(warmup: Duration) -> Arc<Self> {
        let stage = if warmup.is_zero() {
            Stage::Measuring
        } else {
            Stage::Warmup
        };
        Arc::new(Self(AtomicU8::new(stage as u8)))
    }

    /// The stage now.
    #[must_use]
    pub fn get(&self) -> Stage {
        match self.0.load(Ordering::Relaxed) {
            0 => Stage::Warmup,
            1 => Stage::Measuring,
            _ => Stage::Stopping,
        }
    }

    fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }
}

/// What one driver task measured.
#[derive(Debug)]
pub struct Tally {
    /// Round trips in the measured window, nanoseconds.
    pub histogram: Histogram<u64>,
    /// Replies received and verified in the measured window.
    pub messages: u64,
    /// See [`Record::errors`].
    pub errors: u64,
    /// UDP: datagrams without a reply in time, over the whole run.
    pub lost: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            // Nanoseconds, 1 ns to 1 min, 3 significant digits.
            histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("valid histogram bounds"),
            messages: 0,
            errors: 0,
            lost: 0,
        }
    }
}

impl Tally {
    /// Counts a reply to a message sent at `sent` that arrived at `arrived`.
    pub fn reply(&mut self, sent: Instant, arrived: Instant) {
        let nanos = u64::try_from((arrived - sent).as_nanos()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(nanos.max(1));
        self.messages += 1;
    }

    /// Counts one broadcast round: a line sent at `sent` reached
    /// `deliveries` connections, the last at `last_arrived`.
    pub fn round(&mut self, sent: Instant, last_arrived: Instant, deliveries: u64) {
        self.reply(sent, last_arrived);
        self.messages += deliveries.saturating_sub(1);
    }

    fn add(&mut self, other: &Tally) {
        self.histogram
            .add(&other.histogram)
            .expect("same histogram bounds");
        self.messages += other.messages;
        self.errors += other.errors;
        self.lost += other.lost;
    }
}

/// A run's figures, before they go into a [`Record`].
#[derive(Debug)]
pub struct Measured {
    tally: Tally,
    seconds: f64,
    /// Spent in the measured window.
    cpu: CpuTime,
    /// The server's `VmRSS` at the window's end (with `--server-pid`), KiB.
    server_rss_kib: Option<u64>,
}

impl Measured {
    /// Fills `record`'s figures.
    #[must_use]
    pub fn fill(self, record: Record) -> Record {
        let Self {
            tally,
            seconds,
            cpu,
            server_rss_kib: _,
        } = self;
        let quantile_us = |q: f64| tally.histogram.value_at_quantile(q) as f64 / 1000.0;
        let per_message = |ticks: Option<u64>| {
            ticks
                .filter(|_| tally.messages > 0)
                .map(|ticks| ticks as f64 * 1e6 / USER_HZ / tally.messages as f64)
        };
        Record {
            messages: tally.messages,
            seconds,
            messages_per_s: tally.messages as f64 / seconds,
            p50_us: quantile_us(0.5),
            p99_us: quantile_us(0.99),
            p999_us: quantile_us(0.999),
            max_us: tally.histogram.max() as f64 / 1000.0,
            errors: tally.errors,
            server_cpu_us_per_message: per_message(cpu.server),
            client_cpu_us_per_message: per_message(Some(cpu.own)),
            ..record
        }
    }

    /// The server's `VmRSS` at the end of the window, KiB (with `--server-pid`).
    #[must_use]
    pub fn server_rss_kib(&self) -> Option<u64> {
        self.server_rss_kib
    }

    /// Datagrams lost over the whole run (UDP).
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.tally.lost
    }
}

/// Warms up, measures, and collects the drivers' tallies: the drivers
/// (one task per connection) run until `phase` says stop, or until their
/// share of a `--count` bound is done; the window then ends when the last
/// one is. The server's CPU time (with `--server-pid`) and this process's
/// are read at the window's ends.
///
/// # Errors
///
/// A driver task panicked, or `/proc` could not be read.
pub async fn measure(
    options: &LoadOptions,
    phase: &Phase,
    mut drivers: JoinSet<Tally>,
) -> Result<Measured, String> {
    tokio::time::sleep(options.warmup).await;
    phase.set(Stage::Measuring);
    let started = Instant::now();
    let before = CpuTime::now(options.server_pid)?;
    let mut ended = None;
    let mut rss = None;
    let mut total = Tally::default();
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
                phase.set(Stage::Stopping);
                ended = Some((started.elapsed(), CpuTime::now(options.server_pid)?));
                // Every connection is still open here.
                rss = options.server_pid.map(rss_kib).transpose()?;
            }
            joined = drivers.join_next() => match joined {
                Some(tally) => {
                    total.add(&tally.map_err(|e| format!("a driver task failed: {e}"))?);
                }
                None => break,
            }
        }
    }
    // A --count run ends when the last driver is done.
    let (elapsed, after) = match ended {
        Some(ended) => ended,
        None => (started.elapsed(), CpuTime::now(options.server_pid)?),
    };
    Ok(Measured {
        tally: total,
        seconds: elapsed.as_secs_f64(),
        cpu: after.since(before),
        server_rss_kib: rss,
    })
}

/// CPU time (user + system) of the server, when its PID is known, and of
/// this process, in `USER_HZ` ticks.
#[derive(Debug, Clone, Copy)]
struct CpuTime {
    server: Option<u64>,
    own: u64,
}

impl CpuTime {
    fn now(server_pid: Option<u32>) -> Result<Self, String> {
        Ok(Self {
            server: server_pid.map(cpu_ticks).transpose()?,
            own: cpu_ticks(std::process::id())?,
        })
    }

    /// What was spent from `before` to `self`.
    fn since(self, before: Self) -> Self {
        Self {
            server: self
                .server
                .zip(before.server)
                .map(|(now, then)| now.saturating_sub(then)),
            own: self.own.saturating_sub(before.own),
        }
    }
}

/// Linux reports CPU time in `/proc` in these ticks per second, whatever the kernel's HZ.
const USER_HZ: f64 = 100.0;

/// User plus system CPU time of process `pid` (all its threads), in `USER_HZ` ticks.
///
/// # Errors
///
/// `/proc/<pid>/stat` cannot be read or parsed.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
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
///
/// # Errors
///
/// `/proc/<pid>/status` cannot be read or has no `VmRSS` line.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
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

    #[test]
    fn seq_of_knows_only_this_connection_s_intact_messages() {
        let lines = Lines::new(32, 3);
        let mut message = Vec::new();
        lines.write(41, &mut message);
        assert_eq!(lines.seq_of(&message), Some(41));
        assert_eq!(Lines::new(32, 4).seq_of(&message), None);
        message[20] ^= 1;
        assert_eq!(lines.seq_of(&message), None);
        assert_eq!(lines.seq_of(b"short"), None);
        let short = Lines::new(16, 0);
        let mut message = Vec::new();
        short.write(1, &mut message);
        assert_eq!(short.seq_of(&message), None);
    }

    /// The load flags alone, as a tool that flattens them reads them.
    #[derive(clap::Parser)]
    struct Tool {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn options(args: &[&str]) -> Result<LoadOptions, String> {
        use clap::Parser;
        let args = ["tool"].iter().chain(args);
        Tool::try_parse_from(args)
            .map_err(|error| error.to_string())?
            .load
            .options()
    }

    #[test]
    fn a_count_is_shared_out_over_the_connections() {
        let options = options(&[
            "--addr",
            "127.0.0.1:1",
            "--count",
            "10",
            "--connections",
            "4",
        ])
        .unwrap();
        let shares: Vec<_> = (0..4).map(|id| options.share(id).unwrap()).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
    }

    #[test]
    fn flags_out_of_range_or_unknown_are_refused() {
        assert!(options(&["--addr", "127.0.0.1:1"]).is_ok());
        assert!(options(&[]).is_err(), "--addr is required");
        assert!(options(&["--addr", "127.0.0.1:1", "--connections", "0"]).is_err());
        assert!(options(&["--addr", "127.0.0.1:1", "--size", "1"]).is_err());
        assert!(options(&["--addr", "127.0.0.1:1", "--count", "5", "--duration", "1"]).is_err());
        assert!(options(&["--addr", "127.0.0.1:1", "--duration", "-1"]).is_err());
        assert!(options(&["--addr", "127.0.0.1:1", "--depht", "8"]).is_err());
    }
}
