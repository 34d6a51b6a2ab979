//! The cluster over NATS, measured: two servers (nodes `a` and `b`) in this
//! process, joined through a nats-server that is already running, and keyed
//! devices on loopback (issue 14's numbers). Prints one line per
//! measurement. `bench/cluster.sh` starts a nats-server and runs it.
//!
//! ```text
//! cluster --nats nats://127.0.0.1:4222 [--sends 2000] [--devices 10000] [--broadcasts 5]
//! ```
//!
//! - send latency, local and cross-node: `send_to_key` on node a until the
//!   device's socket has the line, one send at a time, p50 and p99;
//! - cross-node throughput: 64 tasks on node a sending to one device on b;
//! - memory per keyed connection: this process's resident memory before and
//!   after every device's HELLO (its key, its NATS subscription and task);
//! - broadcast: `--devices` connections, half on each node, from the call
//!   on node a until the last device has the line, `--broadcasts` times.
//!
//! The broadcast's devices live in a second process, this program again
//! (`cluster devices`, see `devices.rs`): with the nodes' ends of their
//! connections, 10,000 devices are over 20,000 open files, the hard limit
//! of one process on the machine measured.

mod devices;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use flexi_socket::{
    ClusterConfig, Connection, Connections, FlexiSocket, Router, SendOutcome, Server,
};
use hdrhistogram::Histogram;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long any one wait on the device process, or one broadcast, may take.
const WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Parser)]
#[command(about = "Measures the cluster over NATS (BENCHMARKS.md)")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// The running nats-server the two nodes join through.
    #[arg(long)]
    nats: Option<String>,
    /// Sends per latency measurement (the throughput run sends ten times as many).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    sends: u64,
    /// Devices of the broadcast, half on each node (an even number, so
    /// that the last one is on node b).
    #[arg(long, default_value_t = 10_000, value_parser = even_devices)]
    devices: usize,
    /// How many times the broadcast is measured.
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    broadcasts: usize,
}

/// `--devices`: an even number, at least 2.
fn even_devices(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(devices) if devices >= 2 && devices % 2 == 0 => Ok(devices),
        _ => Err("an even number of devices, at least 2".into()),
    }
}

#[derive(Debug, Subcommand)]
enum Role {
    /// The device process the measuring one starts (not for use by hand).
    #[command(hide = true)]
    Devices {
        /// A node's address; devices alternate between those given.
        #[arg(long = "node", required = true)]
        nodes: Vec<SocketAddr>,
        #[arg(long)]
        count: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(error) = raise_open_files_limit() {
        eprintln!("cluster: cannot raise the open-files limit: {error}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let ran = runtime.block_on(async {
        match cli.role {
            Some(Role::Devices { nodes, count }) => devices::drive(&nodes, count).await,
            None => measure(&cli).await,
        }
    });
    if let Err(error) = ran {
        eprintln!("cluster: {error}");
        std::process::exit(1);
    }
}

/// The soft limit up to the hard one (which only root could raise).
fn raise_open_files_limit() -> nix::Result<()> {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
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
        .max_connections(50_000)
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

/// Waits until the two nodes together have `count` open connections.
async fn accepted(a: &Connections, b: &Connections, count: usize) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    while a.len() + b.len() < count {
        if Instant::now() > deadline {
            return Err(format!(
                "the nodes accepted {} of {count} connections",
                a.len() + b.len()
            ));
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

async fn measure(cli: &Cli) -> Result<(), String> {
    let nats = cli.nats.as_deref().ok_or("--nats URL is required")?;
    let (sends, devices) = (cli.sends, cli.devices);
    let (a, a_addr) = node("a", nats).await?;
    // Node b serves in the background; node a asks it.
    let (b, b_addr) = node("b", nats).await?;

    let mut local = within("a device on a", device(a_addr, "local")).await??;
    let mut remote = within("a device on b", device(b_addr, "remote")).await??;
    reachable(&a, "remote").await?;
    let (p50, p99) = within("local sends", latency(&a, "local", &mut local, sends)).await??;
    println!("local send latency: p50 {p50} us, p99 {p99} us ({sends} sends)");
    let (p50, p99) = within(
        "cross-node sends",
        latency(&a, "remote", &mut remote, sends),
    )
    .await??;
    println!("cross-node send latency: p50 {p50} us, p99 {p99} us ({sends} sends)");
    throughput(&a, remote, sends * 10).await?;

    // Broadcast and memory: the devices in a process of their own.
    let mut driver = DeviceProcess::start(&[a_addr, b_addr], devices)?;
    driver.expect("connected").await?;
    // A device's connect returns once the kernel has queued the connection,
    // before the node accepts it: without this wait, connections the nodes
    // set up afterwards were counted as the keys' memory.
    accepted(&a, &b, devices + 2).await?;
    // Everything but the keys is in place: the difference is theirs (and
    // the first message's buffers).
    let before = rss_kib();
    driver.say("hello").await?;
    driver.expect("keyed").await?;
    reachable(&a, &format!("d{}", devices - 1)).await?;
    let after = rss_kib();
    println!(
        "memory per keyed connection: {:.1} KiB (key, NATS subscription, its task; {devices} devices, this process's RSS)",
        (after.saturating_sub(before)) as f64 / devices as f64
    );
    let mut took = Vec::with_capacity(cli.broadcasts);
    for round in 0..cli.broadcasts {
        let text = format!("broadcast-{round}");
        let started = Instant::now();
        let reached = within("the broadcast", a.broadcast(text.as_str())).await?;
        driver.expect(&format!("received {text}")).await?;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        println!(
            "broadcast to {devices} devices on two nodes: {millis:.1} ms until the last has it ({reached} reached, with the 2 latency devices)"
        );
        // The two devices of the latency runs are still connected.
        if reached != devices + 2 {
            return Err(format!(
                "the broadcast reached {reached} of {}",
                devices + 2
            ));
        }
        took.push(millis);
    }
    took.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (took.first(), took.last()) {
        println!(
            "broadcast to {devices} devices, {} runs: median {:.1} ms, min {first:.1} ms, max {last:.1} ms",
            took.len(),
            took[took.len() / 2]
        );
    }
    driver.stop().await
}

/// 64 senders on node a, one device on node b, every message counted there.
async fn throughput(
    a: &Connections,
    mut remote: BufReader<OwnedReadHalf>,
    total: u64,
) -> Result<(), String> {
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut line = String::new();
        for _ in 0..total {
            line.clear();
            if remote.read_line(&mut line).await.unwrap_or(0) == 0 {
                return Err("the device closed".to_owned());
            }
        }
        Ok(())
    });
    let a = Arc::new(a.clone());
    let mut senders = tokio::task::JoinSet::new();
    for task in 0..64 {
        let a = Arc::clone(&a);
        senders.spawn(async move {
            for i in (task..total).step_by(64) {
                let _ = a.send_to_key("remote", format!("t{i}")).await;
            }
        });
    }
    within("the senders", async {
        while senders.join_next().await.is_some() {}
    })
    .await?;
    within("the device's reads", reader)
        .await?
        .map_err(|e| e.to_string())??;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "cross-node throughput: {:.0} messages/s ({total} messages, 64 senders on a, one device on b)",
        total as f64 / seconds
    );
    Ok(())
}

/// `future`'s output, or an error naming `what` after [`WAIT`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(WAIT, future)
        .await
        .map_err(|_| format!("{what}: not done within {WAIT:?}"))
}

/// This program again, as the device process (`devices.rs`), spoken to
/// through its stdin and stdout, and killed by its PID at the end.
struct DeviceProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl DeviceProcess {
    fn start(nodes: &[SocketAddr], count: usize) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = Command::new(exe);
        command.arg("devices").arg("--count").arg(count.to_string());
        for node in nodes {
            command.arg("--node").arg(node.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the device process: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    async fn say(&mut self, line: &str) -> Result<(), String> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| format!("the device process: {e}"))
    }

    /// Waits for the device process to say `expected` (its next line).
    async fn expect(&mut self, expected: &str) -> Result<(), String> {
        let said = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .map_err(|_| format!("the device process did not say `{expected}` within {WAIT:?}"))?
            .map_err(|e| e.to_string())?;
        match said {
            Some(line) if line == expected => Ok(()),
            other => Err(format!(
                "the device process said {other:?}, not `{expected}`"
            )),
        }
    }

    /// Kills the device process by its PID and waits until it has exited.
    async fn stop(mut self) -> Result<(), String> {
        self.child.start_kill().map_err(|e| e.to_string())?;
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .map_err(|_| "the device process does not exit".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
