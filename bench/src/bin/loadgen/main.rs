//! Load generator for echo servers; prints one JSON line (a `Record`).
//!
//! ```text
//! loadgen --addr 127.0.0.1:8081 [--connections 16]
//!         [--mode pingpong|pipelined|client|udp|idle] [--depth 64] [--size 32]
//!         [--duration 3 | --count N] [--warmup 1] [--loss-timeout 1]
//!         [--server-pid PID] [--threads 1] [--scenario NAME] [--server-name NAME]
//!         [--tls-ca FILE]
//! ```
//!
//! - `pingpong`: one line in flight per TCP connection.
//! - `pipelined`: `--depth` lines in flight per connection; whenever replies
//!   arrive, the window is refilled in one write. Each connection writes
//!   before it reads, so keep `depth × size` well below the kernel's socket
//!   buffers (hundreds of KiB; the default window is 2 KiB).
//! - `client`: `pingpong`, as the plain tokio client that `flexi_client_load`
//!   (flexi-socket's client doing the same) is compared with; the figure of
//!   interest is this process's CPU time per message.
//! - `udp`: one datagram in flight per UDP socket (`--connections` sockets);
//!   a datagram without a reply within `--loss-timeout` seconds counts as
//!   lost (see [`udp`]).
//! - `broadcast`: opens `--connections` connections, then has the server
//!   send one line to all of them (see [`broadcast`]) over and over: the
//!   round trip is the time until the last connection has the line.
//! - `idle`: opens `--connections` connections, one echo on each so the server
//!   surely holds them, then reports the growth of the server's `VmRSS`
//!   (`--server-pid`) per connection.
//!
//! With `--server-pid`, the load modes also report the server's CPU time
//! (user + system) per message over the measured window: a figure that moves
//! much less than messages/s when other work shares the machine, and the
//! growth of its `VmRSS` from before connecting to the window's end per
//! connection. They always report their own CPU time.
//!
//! With `--tls-ca FILE` (pingpong and pipelined), the connections speak TLS
//! (rustls, ring provider) to a server whose certificate `FILE` holds; the
//! record names the protocol version and cipher suite negotiated.
//!
//! Every reply is compared byte for byte with the message sent (each carries
//! its connection and sequence number), so a lost, reordered or corrupted
//! reply is an error, not a fast result. `--count` is the total number of
//! messages, spread over the connections; the measured window then ends when
//! the last connection is done. Replies during `--warmup` are not measured.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use flexi_socket_bench::Record;
use flexi_socket_bench::load::{
    Lines, LoadArgs, LoadOptions, Phase, REPLY_TIMEOUT, Stage, Tally, connect, measure,
    open_and_echo, rss_kib,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

mod broadcast;
mod udp;

/// Connects in flight at once in idle mode (below the listen backlog).
const CONNECT_CONCURRENCY: usize = 128;
/// Idle mode: how long the server gets to settle before its RSS is read.
const SETTLE: Duration = Duration::from_millis(500);

fn main() {
    let options = match Options::from_args(Args::parse()) {
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
    Record::print_and_exit("loadgen", record);
}

/// The command line (see the module's documentation).
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for echo servers; prints one JSON line"
)]
struct Args {
    #[command(flatten)]
    load: LoadArgs,
    /// What the connections do.
    #[arg(long, value_enum, default_value_t = Mode::PingPong)]
    mode: Mode,
    /// Lines in flight per connection (pipelined mode only).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    depth: u32,
    /// UDP: seconds without a reply after which a datagram counts as lost.
    #[arg(long, default_value_t = 1.0)]
    loss_timeout: f64,
    /// Runtime worker threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Speak TLS to a server whose certificate this PEM file holds
    /// (pingpong and pipelined).
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    #[value(name = "pingpong")]
    PingPong,
    Pipelined,
    Client,
    Udp,
    Broadcast,
    Idle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::PingPong => "pingpong",
            Mode::Pipelined => "pipelined",
            Mode::Client => "client",
            Mode::Udp => "udp",
            Mode::Broadcast => "broadcast",
            Mode::Idle => "idle",
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    load: LoadOptions,
    mode: Mode,
    depth: usize,
    loss_timeout: Duration,
    threads: usize,
    tls_ca: Option<std::path::PathBuf>,
}

impl Options {
    /// What `args` ask for, once checked against each other.
    fn from_args(args: Args) -> Result<Self, String> {
        let loss_timeout = args.loss_timeout;
        let options = Self {
            load: args.load.options()?,
            depth: match args.mode {
                Mode::Pipelined => args.depth as usize,
                _ => 1,
            },
            mode: args.mode,
            loss_timeout: Duration::try_from_secs_f64(loss_timeout)
                .ok()
                .filter(|timeout| !timeout.is_zero())
                .ok_or_else(|| format!("--loss-timeout {loss_timeout}: expected seconds > 0"))?,
            threads: args.threads,
            tls_ca: args.tls_ca,
        };
        if options.tls_ca.is_some() && !matches!(options.mode, Mode::PingPong | Mode::Pipelined) {
            return Err("--tls-ca works with --mode pingpong or pipelined".into());
        }
        if options.mode == Mode::Idle && options.load.server_pid.is_none() {
            return Err("--mode idle needs --server-pid to read the server's memory".into());
        }
        Ok(options)
    }

    fn record(&self) -> Record {
        self.load.record(self.mode.name(), self.depth)
    }
}

async fn run(options: Options) -> Result<Record, String> {
    match options.mode {
        Mode::Idle => idle(options).await,
        Mode::Udp => udp::load(&options.load, options.loss_timeout).await,
        Mode::Broadcast => broadcast::load(&options.load).await,
        Mode::PingPong | Mode::Pipelined | Mode::Client => match &options.tls_ca {
            Some(ca) => load_tls(&options, ca).await,
            None => load(&options, connect).await,
        },
    }
}

/// `load` over TLS connections, and the protocol and cipher suite they
/// negotiated (those of the first: every one has the same configuration).
async fn load_tls(options: &Options, ca: &std::path::Path) -> Result<Record, String> {
    let connector = TlsConnector::from(flexi_socket_bench::tls::client_trusting(ca)?);
    let record = load(options, |addr, id| {
        let connector = connector.clone();
        async move {
            let stream = connect(addr, id).await?;
            let name = ServerName::try_from("localhost").expect("a valid DNS name");
            tokio::time::timeout(REPLY_TIMEOUT, connector.connect(name, stream))
                .await
                .map_err(|_| format!("no TLS handshake within {REPLY_TIMEOUT:?}"))?
                .map_err(|e| format!("TLS handshake with {addr}: {e}"))
        }
    })
    .await?;
    Ok(record)
}

/// Connects `--connections` streams with `connect`, then drives them.
async fn load<S, C, F>(options: &Options, connect: C) -> Result<Record, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Negotiated + 'static,
    C: Fn(SocketAddr, usize) -> F,
    F: Future<Output = Result<S, String>>,
{
    let rss_before = options.load.server_pid.map(rss_kib).transpose()?;
    let mut streams = Vec::with_capacity(options.load.connections);
    for id in 0..options.load.connections {
        streams.push(connect(options.load.addr, id).await?);
    }
    let negotiated = streams.first().and_then(Negotiated::negotiated);
    let phase = Phase::new(options.load.warmup);
    let mut drivers = JoinSet::new();
    for (id, stream) in streams.into_iter().enumerate() {
        drivers.spawn(drive(
            stream,
            Lines::new(options.load.size, id),
            options.depth,
            options.load.share(id),
            Arc::clone(&phase),
        ));
    }
    let measured = measure(&options.load, &phase, drivers).await?;
    let rss_after = measured.server_rss_kib();
    let mut record = measured.fill(options.record());
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        record.rss_before_kib = Some(before);
        record.rss_after_kib = Some(after);
        record.kib_per_connection =
            Some(after.saturating_sub(before) as f64 / options.load.connections as f64);
    }
    record.tls = negotiated;
    Ok(record)
}

/// What a connection negotiated: TLS's protocol version and cipher suite.
trait Negotiated {
    fn negotiated(&self) -> Option<String>;
}

impl Negotiated for TcpStream {
    fn negotiated(&self) -> Option<String> {
        None
    }
}

impl Negotiated for tokio_rustls::client::TlsStream<TcpStream> {
    fn negotiated(&self) -> Option<String> {
        let session = self.get_ref().1;
        Some(format!(
            "{:?} {:?}",
            session.protocol_version()?,
            session.negotiated_cipher_suite()?.suite()
        ))
    }
}

/// Keeps `depth` lines in flight on one connection until `phase` says stop
/// (or `share` lines were answered), then collects the replies still due.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    lines: Lines,
    depth: usize,
    share: Option<u64>,
    phase: Arc<Phase>,
) -> Tally {
    let mut tally = Tally::default();
    if let Err(error) = exchange(&mut stream, &lines, depth, share, &phase, &mut tally).await {
        eprintln!("loadgen: connection {}: {error}", lines.connection());
        tally.errors += 1;
        return tally;
    }
    // Close politely so the server sees an ordinary end of stream.
    let _ = stream.shutdown().await;
    let mut rest = [0_u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut rest)).await;
    tally
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    lines: &Lines,
    depth: usize,
    share: Option<u64>,
    phase: &Phase,
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
        if phase.get() != Stage::Stopping {
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
                // TLS may hold records back until flushed (TCP: nothing to do).
                stream.flush().await.map_err(|e| format!("write: {e}"))?;
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
        let measuring = phase.get() == Stage::Measuring;
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
                tally.reply(sent, now);
            }
        }
        if start == end {
            (start, end) = (0, 0);
        }
    }
}

async fn idle(options: Options) -> Result<Record, String> {
    let pid = options.load.server_pid.expect("checked in Options::parse");
    let before = rss_kib(pid)?;
    let mut pending = JoinSet::new();
    let mut held = Vec::with_capacity(options.load.connections);
    let mut errors = 0;
    for id in 0..options.load.connections {
        if pending.len() >= CONNECT_CONCURRENCY {
            collect(pending.join_next().await, &mut held, &mut errors);
        }
        let (addr, size) = (options.load.addr, options.load.size);
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
