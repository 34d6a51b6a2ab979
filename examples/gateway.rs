//! The production-shaped example: devices connect and say who they are,
//! operators reach them by name. It runs as a service runs: SIGTERM drains
//! and exits 0, a load balancer's PROXY header names the real client, a
//! Unix socket serves local tools beside TCP, and several processes can
//! share the port.
//!
//! ```text
//! cargo run --example gateway -- 127.0.0.1:7000 [--unix PATH] [--proxy-protocol]
//!                                [--metrics ADDR] [--node NAME] [--reuse-port]
//!                                [--nats URL]
//! ```
//!
//! The line protocol, the first line deciding who is who:
//! - a device: `HELLO <id>` -> `WELCOME <id> <node>`; a later `HELLO` with
//!   the same id closes the older connection (newest wins);
//! - an operator: `OPERATOR` -> `WELCOME operator <node>`, then one reply
//!   line per command:
//!   `SEND <id> <text>` -> the device receives `<text>`; `DELIVERED <id> <node>` or `OFFLINE <id>`;
//!   `BROADCAST <text>` -> every device receives `<text>`; `BROADCAST <n>` (devices reached);
//!   `WHERE <id>` -> `AT <id> <node>` or `OFFLINE <id>`;
//!   `PEER <id>` -> `PEER <id> <addr>` (as the gateway sees it: the client
//!   behind a PROXY header, `unix:...` for a Unix peer) or `OFFLINE <id>`;
//! - anything else: closed.
//!
//! The node name is `local` unless `--node` names it.
//!
//! With `--nats URL` the gateway is one node of a cluster (every node given
//! the same NATS server and its own `--node`): `SEND`, `BROADCAST`, `WHERE`
//! and `PEER` reach the devices of every node, and a `HELLO` on one node
//! closes a connection with that id on any other. A command about a device
//! on another node may also answer `TIMEOUT <id>` (that node did not
//! answer in time) or `ERROR cluster unavailable` (this node has no NATS
//! connection; its own devices are still served).
//!
//! The gateway keeps no table of its own: a device's `HELLO` gives its
//! connection a key (`Connection::set_key`), and the operators' commands
//! go through the `Connections` their handler takes (`send_to_key`,
//! `broadcast_to` the device client type, `locate`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use flexi_socket::{
    Classifier, ClusterConfig, Connection, Connections, FlexiSocket, LocateOutcome, ProxyProtocol,
    SendOutcome, on_message,
};

/// A gateway between devices and the operators who reach them by name.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Options {
    /// The TCP address to listen on (port 0: any free port).
    addr: String,
    /// Also listen on this Unix socket (local tools; no PROXY header there).
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Require a PROXY protocol header (v1 or v2) on every TCP connection,
    /// as HAProxy's `send-proxy` / `send-proxy-v2` write it.
    #[arg(long)]
    proxy_protocol: bool,
    /// Serve Prometheus metrics at `GET /metrics` on this address.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// This node's name in replies (in a cluster: unique, of A-Z a-z 0-9 - _).
    #[arg(long, default_value = "local")]
    node: String,
    /// Join the cluster of the NATS server at this URL (`nats://host:port`).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Share the port with other processes (`SO_REUSEPORT`); the kernel
    /// spreads new connections among them.
    #[arg(long)]
    reuse_port: bool,
}

/// Who a connection is, from its first line.
#[derive(Classifier)]
enum Role {
    #[client_type = "device"]
    #[classify(prefix = "HELLO ")]
    Device,
    #[client_type = "operator"]
    #[classify(exact = "OPERATOR")]
    Operator,
    #[client_type = "stranger"]
    #[classify(default)]
    Stranger,
}

/// A device's first line names it: the id becomes its key, which the
/// framework keeps unique (a newer connection with the id closes the older)
/// and drops when the connection ends.
#[on_message(client_type = "device")]
async fn device_line(
    conn: Connection,
    line: String,
    connections: Connections,
) -> flexi_socket::Result<()> {
    let Some(id) = line.strip_prefix("HELLO ") else {
        // What a device says after its HELLO is its own business here.
        return Ok(());
    };
    if conn.key().is_some() {
        return Ok(());
    }
    conn.set_key(id).await?;
    conn.send(format!("WELCOME {id} {}", connections.node_name()))
        .await
}

#[on_message(client_type = "operator")]
async fn operator_line(
    conn: Connection,
    line: String,
    connections: Connections,
) -> flexi_socket::Result<()> {
    let reply = command(&line, &connections).await;
    conn.send(reply).await
}

/// The reply to one operator line.
async fn command(line: &str, connections: &Connections) -> String {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "OPERATOR" => format!("WELCOME operator {}", connections.node_name()),
        "SEND" => {
            let (id, text) = rest.split_once(' ').unwrap_or((rest, ""));
            match connections.send_to_key(id, text).await {
                Ok(SendOutcome::Delivered { node, .. }) => format!("DELIVERED {id} {node}"),
                Ok(SendOutcome::Timeout) => format!("TIMEOUT {id}"),
                Ok(SendOutcome::ClusterUnavailable) => CLUSTER_UNAVAILABLE.to_owned(),
                Err(error) => format!("ERROR {error}"),
                // The protocol has no word for a full queue or a device on
                // its way out: to the operator it is not reachable now.
                Ok(outcome) => {
                    tracing::debug!(id, ?outcome, "not delivered");
                    format!("OFFLINE {id}")
                }
            }
        }
        // Devices only: the client type's index, not every connection.
        "BROADCAST" => format!(
            "BROADCAST {}",
            connections.broadcast_to("device", rest).await
        ),
        "WHERE" => match connections.locate(rest).await {
            LocateOutcome::Found(at) => format!("AT {rest} {}", at.node),
            other => not_found(rest, &other),
        },
        "PEER" => match connections.locate(rest).await {
            LocateOutcome::Found(at) => format!("PEER {rest} {}", at.peer_addr),
            other => not_found(rest, &other),
        },
        _ => format!("ERROR unknown command {verb:?}: SEND, BROADCAST, WHERE or PEER"),
    }
}

/// What an operator hears when this node cannot reach NATS.
const CLUSTER_UNAVAILABLE: &str = "ERROR cluster unavailable";

/// The reply to `WHERE` or `PEER` for a device that was not found.
fn not_found(id: &str, outcome: &LocateOutcome) -> String {
    match outcome {
        LocateOutcome::Timeout => format!("TIMEOUT {id}"),
        LocateOutcome::ClusterUnavailable => CLUSTER_UNAVAILABLE.to_owned(),
        _ => format!("OFFLINE {id}"),
    }
}

/// Neither a device nor an operator: not worth a reply.
#[on_message(client_type = "stranger")]
async fn stranger(conn: Connection) {
    conn.close();
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let options = Options::parse();
    match serve(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gateway: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(addr) = options.metrics {
        metrics::serve(addr)?;
    }
    let mut server = FlexiSocket::server(&options.addr)
        .classifier::<Role>()
        .node_name(options.node)
        .reuse_port(options.reuse_port);
    if options.proxy_protocol {
        server = server.proxy_protocol(ProxyProtocol::new());
    }
    if let Some(path) = &options.unix {
        server = server.listener(FlexiSocket::server(format!("unix:{}", path.display())));
    }
    if let Some(url) = options.nats {
        server = server.cluster(ClusterConfig::new([url]));
    }
    let server = server.bind().await?;
    println!("listening on {}", server.local_addr());
    server.serve().await?;
    Ok(())
}

/// `--metrics ADDR`: the Prometheus text at `GET /metrics` on `ADDR`, from
/// the exporter's own HTTP listener (the series are recorded when the
/// `metrics` feature is on, as it is by default).
mod metrics {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    pub(crate) fn serve(addr: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
        PrometheusBuilder::new()
            .with_http_listener(addr)
            // Buckets make the handler durations a histogram; without them
            // the exporter keeps a summary, much dearer per sample.
            .set_buckets_for_metric(
                Matcher::Full("flexi_socket_handler_duration_seconds".into()),
                &[0.0001, 0.001, 0.01, 0.1, 1.0],
            )?
            .install()?;
        Ok(())
    }
}
