//! flexi-socket's TCP client as a load generator: `--connections` clients,
//! each its own `Client` with its own connection, each keeping one line in
//! flight against a line echo server. Prints one JSON line (a `Record`) like
//! `loadgen --mode client`, the plain tokio client it is compared with.
//!
//! ```text
//! flexi_client_load --addr 127.0.0.1:8081 [--connections 16] [--mode client]
//!                   [--api request|handler] [--size 32] [--duration 3 | --count N]
//!                   [--warmup 1] [--server-pid PID] [--scenario NAME] [--server-name NAME]
//! ```
//!
//! - `--api request` (default): `client.request(line, timeout)`, which sends
//!   and waits for the next message: the request/reply API.
//! - `--api handler`: `client.send(line)`, the reply arriving at an
//!   `on_message` handler that hands it to the waiting driver.
//!
//! Each line carries its client and sequence number, and every reply is
//! compared with it byte for byte. The figure of interest is this process's
//! CPU time per message (`client_cpu_us_per_message`): the server is the
//! same hand-written echo for both clients. Runs on one current-thread
//! runtime, as `loadgen` does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use flexi_socket::{Client, Connection, FlexiSocket, Message, Reconnect, Router};
use flexi_socket_bench::Record;
use flexi_socket_bench::load::{Lines, LoadArgs, LoadOptions, Phase, Stage, Tally, measure};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// No reply for this long means the server is stuck: an error, not a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let options = match Options::from_args(Args::parse()) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("flexi_client_load: {error}");
            std::process::exit(2);
        }
    };
    let record = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
        .block_on(run(options));
    Record::print_and_exit("flexi_client_load", record);
}

/// The command line (see the module's documentation).
#[derive(Debug, Parser)]
#[command(
    name = "flexi_client_load",
    about = "flexi-socket's TCP client as a load generator; prints one JSON line"
)]
struct Args {
    #[command(flatten)]
    load: LoadArgs,
    /// Accepted so that run.sh gives both clients the same arguments: only
    /// `client` (ping-pong) is supported.
    #[arg(long, default_value = "client", value_parser = ["client"])]
    mode: String,
    /// How each client waits for its reply.
    #[arg(long, value_enum, default_value_t = Api::Request)]
    api: Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Api {
    /// `client.request(line, timeout)`.
    Request,
    /// `client.send(line)`, the reply arriving at an `on_message` handler.
    Handler,
}

#[derive(Debug)]
struct Options {
    load: LoadOptions,
    api: Api,
}

impl Options {
    fn from_args(args: Args) -> Result<Self, String> {
        Ok(Self {
            load: args.load.options()?,
            api: args.api,
        })
    }
}

async fn run(options: Options) -> Result<Record, String> {
    let mut clients = Vec::with_capacity(options.load.connections);
    for _ in 0..options.load.connections {
        clients.push(open(&options).await?);
    }
    let phase = Phase::new(options.load.warmup);
    let mut drivers = JoinSet::new();
    for (id, (client, replies)) in clients.into_iter().enumerate() {
        drivers.spawn(drive(
            client,
            replies,
            Lines::new(options.load.size, id),
            options.load.share(id),
            Arc::clone(&phase),
        ));
    }
    let measured = measure(&options.load, &phase, drivers).await?;
    Ok(measured.fill(options.load.record("client", 1)))
}

/// A connected client; with `--api handler`, also where its `on_message`
/// handler puts the replies.
async fn open(
    options: &Options,
) -> Result<(Client, Option<mpsc::UnboundedReceiver<Message>>), String> {
    // A lost connection is an error here, not something to ride out.
    let builder = FlexiSocket::client(options.load.addr).reconnect(Reconnect::never());
    let (builder, replies) = match options.api {
        Api::Request => (builder, None),
        Api::Handler => {
            let (sender, receiver) = mpsc::unbounded_channel();
            let router = Router::new().on_message(move |_conn: Connection, reply: Message| {
                let sender = sender.clone();
                async move {
                    let _ = sender.send(reply);
                }
            });
            (builder.router(router), Some(receiver))
        }
    };
    let client = builder
        .connect()
        .await
        .map_err(|e| format!("connect {}: {e}", options.load.addr))?;
    Ok((client, replies))
}

async fn drive(
    client: Client,
    replies: Option<mpsc::UnboundedReceiver<Message>>,
    lines: Lines,
    share: Option<u64>,
    phase: Arc<Phase>,
) -> Tally {
    let mut tally = Tally::default();
    if let Err(error) = exchange(&client, replies, &lines, share, &phase, &mut tally).await {
        eprintln!("flexi_client_load: client {}: {error}", lines.connection());
        tally.errors += 1;
    }
    client.close().await;
    tally
}

async fn exchange(
    client: &Client,
    mut replies: Option<mpsc::UnboundedReceiver<Message>>,
    lines: &Lines,
    share: Option<u64>,
    phase: &Phase,
    tally: &mut Tally,
) -> Result<(), String> {
    let mut line = Vec::with_capacity(lines.len());
    let mut seq = 0_u64;
    while phase.get() != Stage::Stopping && share.is_none_or(|share| seq < share) {
        line.clear();
        lines.write(seq, &mut line);
        // The framing adds the newline and takes it off the reply.
        let body = &line[..line.len() - 1];
        let sent = Instant::now();
        let reply = match &mut replies {
            None => client
                .request(body, REPLY_TIMEOUT)
                .await
                .map_err(|e| format!("request {seq}: {e}"))?,
            Some(replies) => {
                client
                    .send(body)
                    .await
                    .map_err(|e| format!("send {seq}: {e}"))?;
                tokio::time::timeout(REPLY_TIMEOUT, replies.recv())
                    .await
                    .map_err(|_| format!("no reply to {seq} within {REPLY_TIMEOUT:?}"))?
                    .ok_or("the client stopped")?
            }
        };
        let arrived = Instant::now();
        if reply.as_bytes() != body {
            return Err(format!(
                "reply {seq} differs: sent {:?}, got {:?}",
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(reply.as_bytes())
            ));
        }
        if phase.get() == Stage::Measuring {
            tally.reply(sent, arrived);
        }
        seq += 1;
    }
    Ok(())
}
