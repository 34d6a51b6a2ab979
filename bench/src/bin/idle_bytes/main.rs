//! Live heap bytes per idle connection of the `echo` example's server, and
//! the sizes of the blocks they are in (issue 19: "idle ≤ 1 KiB per
//! connection; say where every byte goes").
//!
//! ```text
//! idle_bytes [--connections 10000] [--line-size 32] [--trace-size BYTES [--trace-count 1]] [--malloc-info]
//! ```
//!
//! The server runs in this process, set up as `examples/echo.rs` does it,
//! under a counting global allocator; the clients run in a second process
//! (this program again, with `--clients`), so that only the server's
//! allocations count. After a warm-up (connections opened, echoed and
//! closed, so the runtime's one-time allocations are made), the clients
//! open `--connections` connections, get one echo on each and hold them;
//! once the server lists them all and its live bytes stop moving, the
//! growth is printed per connection, by block size. Kernel memory (socket
//! buffers) is not on the heap and not counted; tokio's task and I/O
//! registration are. The allocator's own overhead per block (glibc: 8
//! bytes and rounding to 16) is shown as an estimate beside; then what
//! glibc's heap grew by, with the bytes it holds free between live blocks,
//! and the process's resident memory. (glibc's "in use" counts its blocks
//! as they are, where the estimate rounds each; its "free" counts the
//! unused top of each heap too, which the connections' blocks may use up:
//! a few bytes below zero per connection means none was left between
//! them.) What the warm-up left is printed first: a server's one-time
//! growth (code paged in, the warm-up's peak held free by malloc), which a
//! fresh server's resident memory per connection includes (the
//! benchmark's idle scenario).

mod allocator;
mod clients;
mod heap;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use flexi_socket::{Connection, Connections, FlexiSocket, Message, on_message};

#[global_allocator]
static ALLOCATOR: allocator::Counting = allocator::Counting;

/// How long the server gets to list every connection and fall quiet.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the live bytes are read while waiting for them to settle.
const SETTLE_POLL: Duration = Duration::from_millis(50);
/// Connections opened and closed before measuring.
const WARM_UP: usize = 400;

#[derive(Parser)]
#[command(about = "Live heap bytes per idle connection of the echo server, by block size")]
struct Args {
    /// Idle connections to measure.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Bytes of the one line echoed on each, newline included.
    #[arg(long, default_value_t = 32)]
    line_size: usize,
    /// Print where the first blocks of this size allocated after the warm-up
    /// were made (it names the functions: a release build has their symbols).
    #[arg(long)]
    trace_size: Option<usize>,
    /// How many blocks `--trace-size` prints.
    #[arg(long, default_value_t = 1)]
    trace_count: usize,
    /// Also print glibc's `malloc_info` report on stderr once measured: its
    /// free blocks by size, what the free bytes above are.
    #[arg(long)]
    malloc_info: bool,
    /// (Internal) be the client process: connect to this address.
    #[arg(long, hide = true)]
    clients: Option<SocketAddr>,
}

/// The echo example's handler.
#[on_message]
async fn echo(conn: Connection, msg: Message) -> flexi_socket::Result<()> {
    conn.send(msg).await
}

fn main() {
    let args = Args::parse();
    let outcome = match args.clients {
        Some(addr) => clients::hold(addr, args.connections, args.line_size),
        None => measure(&args),
    };
    if let Err(error) = outcome {
        eprintln!("idle_bytes: {error}");
        std::process::exit(1);
    }
}

fn measure(args: &Args) -> Result<(), String> {
    check_fd_limit(args.connections)?;
    // As `#[tokio::main]` in the echo example: a worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let (addr, connections) = runtime.block_on(async {
        let server = FlexiSocket::server("127.0.0.1:0")
            .bind()
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let addr = server
            .local_addr()
            .socket_addr()
            .ok_or("the server has no IP address")?;
        let connections = server.connections();
        tokio::spawn(server.serve_with_shutdown(std::future::pending()));
        Ok::<_, String>((addr, connections))
    })?;

    let cold = allocator::snapshot();
    let cold_heap = heap::Heap::now();
    let warm_up = Clients::spawn(addr, WARM_UP, args.line_size)?;
    warm_up.close()?;
    settle(&connections, 0)?;
    let warm = allocator::snapshot();
    heap::Heap::now().print_growth(&cold_heap, "once per server", 1);
    println!(
        "  (the warm-up's {WARM_UP} connections, opened and closed, left {} live bytes)",
        warm.bytes_since(&cold)
    );
    let before = allocator::snapshot();
    let heap_before = heap::Heap::now();
    if let Some(size) = args.trace_size {
        allocator::trace_next(size, args.trace_count);
    }

    let clients = Clients::spawn(addr, args.connections, args.line_size)?;
    settle(&connections, args.connections)?;
    let after = allocator::snapshot();
    let heap_after = heap::Heap::now();
    print_report(&before, &after, args.connections);
    heap_after.print_growth(&heap_before, "per connection", args.connections);
    if args.malloc_info {
        heap::print_malloc_info();
    }
    clients.close()?;
    Ok(())
}

/// Waits until the server lists `count` connections and its live bytes
/// are the same on two reads in a row.
fn settle(connections: &Connections, count: usize) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = None;
    loop {
        let bytes = allocator::live_bytes();
        if connections.len() == count && last == Some(bytes) {
            return Ok(());
        }
        last = Some(bytes);
        if Instant::now() > deadline {
            return Err(format!(
                "the server lists {} connections, not {count}, or its memory still moves after {SETTLE_TIMEOUT:?}",
                connections.len()
            ));
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// The client process and its pipes.
struct Clients {
    child: Child,
    stdin: ChildStdin,
}

impl Clients {
    /// Starts the client process and waits until it holds `connections`, each echoed once.
    fn spawn(addr: SocketAddr, connections: usize, line_size: usize) -> Result<Self, String> {
        let program = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(program)
            .args(["--clients", &addr.to_string()])
            .args(["--connections", &connections.to_string()])
            .args(["--line-size", &line_size.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("the client process: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let mut clients = Self { child, stdin };
        match wait_ready(stdout) {
            Ok(held) if held == connections => Ok(clients),
            Ok(held) => {
                clients.kill();
                Err(format!(
                    "the clients hold {held} connections, not {connections}"
                ))
            }
            Err(error) => {
                clients.kill();
                Err(error)
            }
        }
    }

    /// Closes its stdin: it closes its connections and exits.
    fn close(self) -> Result<(), String> {
        let Self { mut child, stdin } = self;
        drop(stdin);
        let status = child
            .wait()
            .map_err(|e| format!("the client process: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("the client process failed: {status}"))
    }

    fn kill(&mut self) {
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the client process's `ready N`; it prints it once every connection is echoed.
fn wait_ready(stdout: ChildStdout) -> Result<usize, String> {
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("the client process's output: {e}"))?;
    line.trim()
        .strip_prefix("ready ")
        .and_then(|held| held.parse().ok())
        .ok_or_else(|| "the client process ended before it was ready (see its error above)".into())
}

fn check_fd_limit(connections: usize) -> Result<(), String> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok());
    match soft {
        Some(soft) if soft < connections + 100 => Err(format!(
            "the open-file limit is {soft}, too low for {connections} connections: `ulimit -n $(ulimit -Hn)` first"
        )),
        _ => Ok(()),
    }
}

fn print_report(before: &allocator::Snapshot, after: &allocator::Snapshot, connections: usize) {
    let per_connection = |value: i64| value as f64 / connections as f64;
    let grown = after.grown_since(before);
    println!("live heap growth per idle connection, {connections} connections:");
    println!(
        "{:>10} {:>10} {:>10} {:>12}",
        "block", "blocks", "bytes", "with malloc"
    );
    let mut with_malloc = 0.0;
    let mut rest = (0.0, 0.0);
    for size in &grown {
        let bytes = per_connection(size.bytes);
        // A range's blocks are few (tables, not structs): counted as they are.
        let chunk = if size.at_least {
            bytes
        } else {
            per_connection(size.blocks * malloc_chunk(size.size) as i64)
        };
        let blocks = per_connection(size.blocks);
        if blocks.abs() < 0.05 && !size.at_least {
            rest.0 += bytes;
            rest.1 += chunk;
            with_malloc += chunk;
            continue;
        }
        let label = if size.at_least {
            format!(">={}", size.size)
        } else {
            size.size.to_string()
        };
        println!("{label:>10} {blocks:>10.3} {bytes:>10.1} {chunk:>12.1}");
        with_malloc += chunk;
    }
    println!(
        "{:>10} {:>10} {:>10.1} {:>12.1}",
        "rest", "", rest.0, rest.1
    );
    let total = per_connection(after.bytes_since(before));
    println!(
        "total: {total:.1} bytes per connection (about {:.1} with malloc's overhead)",
        with_malloc
    );
}

/// What glibc's malloc takes for a block of `size` bytes: a word of header,
/// rounded up to 16, at least 32.
fn malloc_chunk(size: usize) -> usize {
    (size + 8).next_multiple_of(16).max(32)
}
