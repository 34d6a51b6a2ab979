//! The server layer: listeners and the accept loop ([`accept`]), admission
//! under the connection limits ([`admission`]), the builders ([`builder`],
//! and beside their transports [`udp`] and `tls`), and serving until the
//! graceful shutdown, whose drain itself lives with the connections
//! (`connection/shutdown.rs`).

mod accept;
mod activation;
mod admission;
mod bind;
mod builder;
#[cfg(feature = "testing")]
pub(crate) mod memory;
mod signals;
#[cfg(feature = "tls")]
mod tls;
mod udp;
#[cfg(unix)]
mod unix;

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

use crate::connection::deadlines;
use crate::connection::{Connections, DisconnectReason, Endpoint, ShutdownReport};
use crate::error::Result;
use crate::peer_addr::PeerAddr;
use crate::stats::ServerStats;
use accept::{StreamListener, StreamSetup};
use admission::Admission;
pub use builder::{FlexiSocket, ServerBuilder, ServerTransport, Tcp};
use signals::StopSignals;
pub use udp::Udp;
use udp::UdpListener;

/// What a server receives on.
#[derive(Debug)]
enum Listener {
    /// TCP, or the test harness's in-memory pipes.
    Stream(StreamListener),
    Udp(UdpListener),
}

impl Listener {
    fn local_addr(&self) -> std::io::Result<PeerAddr> {
        match self {
            Listener::Stream(listener) => listener.local_addr(),
            Listener::Udp(listener) => Ok(listener.local_addr().into()),
        }
    }
}

/// One listener of a server, bound, with the endpoint of its connections.
#[derive(Debug)]
struct Bound {
    listener: Listener,
    local_addr: PeerAddr,
    endpoint: Arc<Endpoint>,
    /// What an accepted stream goes through before it is a connection.
    streams: StreamSetup,
}

impl Bound {
    fn new(listener: Listener, endpoint: Arc<Endpoint>, streams: StreamSetup) -> Result<Self> {
        let local_addr = listener.local_addr()?;
        tracing::info!(%local_addr, "listening");
        Ok(Self {
            listener,
            local_addr,
            endpoint,
            streams,
        })
    }
}

/// A bound server, ready to serve.
///
/// # Examples
///
/// A server on a free port of loopback, one client's round trip, then a
/// graceful shutdown from a [`ServerHandle`]:
///
/// ```
/// use std::time::Duration;
/// use flexi_socket::{Connection, FlexiSocket, Router};
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
/// use tokio::time::timeout;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new()
///     .on_message(|conn: Connection, msg: String| async move { conn.send(msg).await });
/// let server = FlexiSocket::server("127.0.0.1:0").router(router).bind().await?;
/// let addr = server.local_addr().socket_addr().expect("a TCP address");
/// let handle = server.handle();
/// let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));
///
/// let mut peer = BufReader::new(tokio::net::TcpStream::connect(addr).await?);
/// peer.get_mut().write_all(b"hello\n").await?;
/// let mut reply = String::new();
/// timeout(Duration::from_secs(5), peer.read_line(&mut reply)).await??;
/// assert_eq!(reply, "hello\n");
/// assert_eq!(handle.connections().len(), 1);
///
/// handle.shutdown(); // the peer gets a FIN once its replies are written
/// drop(peer);
/// let report = serving.await??;
/// assert_eq!(report.connections_closed, 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    /// The builder's own listener first, then those added with
    /// [`ServerBuilder::listener`]. Their endpoints share one connection
    /// list, one shutdown and one set of counters.
    listeners: Vec<Bound>,
    /// The first listener's: the server-wide state is reached through it.
    endpoint: Arc<Endpoint>,
    /// One `max_connections` (and per-IP table) for every listener.
    admission: Arc<Admission>,
}

impl Server {
    fn new(listener: Listener, endpoint: Arc<Endpoint>, streams: StreamSetup) -> Result<Self> {
        Ok(Self::of(vec![Bound::new(listener, endpoint, streams)?]))
    }

    /// A server of `listeners`, the first of which is the builder's own.
    fn of(listeners: Vec<Bound>) -> Self {
        let endpoint = Arc::clone(&listeners[0].endpoint);
        Self {
            listeners,
            admission: Admission::new(&endpoint.limits),
            endpoint,
        }
    }

    /// Takes the listeners of `added`, bound beside this server's first.
    fn add(&mut self, added: Server) {
        self.listeners.extend(added.listeners);
    }

    /// What its connections share.
    #[cfg(feature = "testing")]
    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// The address the server listens on: `ip:port` (with the real port
    /// when bound to port 0), or `unix:PATH`. With several listeners, the
    /// first one's (the builder's own); see [`local_addrs`](Self::local_addrs).
    pub fn local_addr(&self) -> PeerAddr {
        self.listeners[0].local_addr.clone()
    }

    /// The address of every listener, the builder's own first, then those
    /// added with [`ServerBuilder::listener`] in order.
    pub fn local_addrs(&self) -> Vec<PeerAddr> {
        self.listeners
            .iter()
            .map(|bound| bound.local_addr.clone())
            .collect()
    }

    /// The server's open connections.
    pub fn connections(&self) -> Connections {
        self.endpoint.connections.clone()
    }

    /// A handle to the running server: stats, connections, shutdown.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            endpoint: Arc::clone(&self.endpoint),
        }
    }

    /// The server's counters now.
    pub fn stats(&self) -> ServerStats {
        self.endpoint.stats()
    }

    /// Serves until SIGINT (Ctrl-C), SIGTERM or [`ServerHandle::shutdown`],
    /// then shuts down gracefully (see
    /// [`serve_with_shutdown`](Self::serve_with_shutdown)). A second SIGINT
    /// or SIGTERM during the shutdown cuts the connections still open at
    /// once, as the shutdown timeout would.
    ///
    /// From its start on, the process keeps tokio's handlers for SIGINT and
    /// SIGTERM, also after `serve` returns: code that runs on afterwards is
    /// not ended by them any more (see `tokio::signal`).
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for start-up work that can fail.
    pub async fn serve(self) -> Result<ShutdownReport> {
        let endpoint = Arc::clone(&self.endpoint);
        let (first, first_signal) = tokio::sync::oneshot::channel();
        // Before anything is served: no connection runs while a signal
        // would still take its default action (ending the process).
        let listening = StopSignals::listen();
        // Polled beside the server in this task, so it ends with it.
        let signals = async move {
            let mut signals = match listening {
                Ok(signals) => signals,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGINT or SIGTERM; stop the server with its ServerHandle");
                    return std::future::pending().await;
                }
            };
            let signal = signals.next().await;
            tracing::info!(
                signal,
                "shutting down gracefully; send it again to stop at once"
            );
            let _ = first.send(());
            let signal = signals.next().await;
            tracing::warn!(
                signal,
                "second stop signal: cutting the connections still open"
            );
            endpoint.cut_connections();
            std::future::pending::<Result<ShutdownReport>>().await
        };
        let serving = self.serve_with_shutdown(async {
            // Unsent for good when the signals cannot be listened for (the
            // sender then waits forever): serve until ServerHandle::shutdown.
            let _ = first_signal.await;
        });
        tokio::select! {
            report = serving => report,
            never = signals => never,
        }
    }

    /// Serves until `signal` completes or [`ServerHandle::shutdown`] is
    /// called, then shuts down gracefully: stop accepting, stop reading, let
    /// running handlers finish and every frame already read be handled, flush
    /// every outbound queue, send FIN and drain what the peer still sends, then
    /// close. Connections still open after the shutdown timeout are cut; the
    /// report says how many and what they left undelivered.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for start-up work that can fail.
    pub async fn serve_with_shutdown(
        self,
        signal: impl Future<Output = ()> + Send,
    ) -> Result<ShutdownReport> {
        let Server {
            listeners,
            endpoint,
            admission,
        } = self;
        let tasks = TaskTracker::new();
        // Dropping this future (e.g. losing a select!) still closes every connection.
        let _close_all_on_drop = ShutdownOnDrop(Arc::clone(&endpoint));
        let mut listening = JoinSet::new();
        for bound in listeners {
            // With no deadline too: its clock tells which peers went quiet,
            // whose connections then rest (see `transport::stream::rest`).
            tasks.spawn(deadlines::sweep(Arc::clone(&bound.endpoint)));
            listening.spawn(listen(bound, Arc::clone(&admission), tasks.clone()));
        }
        activation::notify(activation::Notify::Ready);
        // Every listener stops when the shared shutdown begins; the signal begins it.
        let stopped = tokio::select! {
            () = signal => None,
            stopped = listening.join_next() => stopped,
        };
        endpoint.shutdown.stop_accepting();
        // The other nodes stop counting on this one before its connections go.
        endpoint.connections.leave_cluster().await;
        let mut panicked = stopped.and_then(stopped_with_panic);
        while let Some(stopped) = listening.join_next().await {
            if let Some(payload) = stopped_with_panic(stopped) {
                panicked.get_or_insert(payload);
            }
        }
        activation::notify(activation::Notify::Stopping);
        tracing::info!(open = endpoint.connections.len(), "shutting down");
        tasks.close();
        let report = endpoint
            .drain(DisconnectReason::Shutdown, tasks.wait())
            .await;
        tracing::info!(?report, "shut down");
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
        Ok(report)
    }
}

/// Accepts (or receives) on one listener until the server shuts down;
/// returns the UDP receive loop's panic, if it panicked.
async fn listen(
    bound: Bound,
    admission: Arc<Admission>,
    tasks: TaskTracker,
) -> Option<Box<dyn Any + Send>> {
    // The shared shutdown, which the signal begins, ends every listener.
    let signal = std::pin::pin!(std::future::pending::<()>());
    match bound.listener {
        Listener::Stream(listener) => {
            let acceptor = accept::Acceptor {
                endpoint: bound.endpoint,
                admission,
                tasks,
                streams: Arc::new(bound.streams),
            };
            acceptor.run(listener, signal).await;
            None
        }
        Listener::Udp(listener) => {
            udp::serve(listener, &bound.endpoint, &admission, &tasks, signal).await
        }
    }
}

/// The panic a listener's task ended with, if any.
fn stopped_with_panic(
    stopped: std::result::Result<Option<Box<dyn Any + Send>>, tokio::task::JoinError>,
) -> Option<Box<dyn Any + Send>> {
    match stopped {
        Ok(panicked) => panicked,
        Err(error) if error.is_panic() => Some(error.into_panic()),
        Err(_) => None,
    }
}

/// Starts a server's shutdown when dropped.
struct ShutdownOnDrop(Arc<Endpoint>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.begin_shutdown(DisconnectReason::Shutdown);
    }
}

/// Reaches a running server from anywhere: its counters, its connections,
/// and its shutdown. Cheap to clone.
///
/// # Examples
///
/// From another task: look at the server, then stop it.
///
/// ```no_run
/// use std::time::Duration;
/// use flexi_socket::FlexiSocket;
///
/// # async fn run() -> flexi_socket::Result<()> {
/// let server = FlexiSocket::server("0.0.0.0:8081").bind().await?;
/// let handle = server.handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_secs(3600)).await; // a maintenance window
///     println!("{} connections open", handle.connections().len());
///     handle.shutdown(); // serve() below returns once they are closed
/// });
/// let report = server.serve().await?;
/// println!("{} connections closed", report.connections_closed);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServerHandle {
    endpoint: Arc<Endpoint>,
}

impl ServerHandle {
    /// Starts a graceful shutdown (see [`Server::serve_with_shutdown`]).
    pub fn shutdown(&self) {
        self.endpoint.begin_shutdown(DisconnectReason::Shutdown);
    }

    /// The server's counters now.
    pub fn stats(&self) -> ServerStats {
        self.endpoint.stats()
    }

    /// The server's open connections.
    pub fn connections(&self) -> Connections {
        self.endpoint.connections.clone()
    }
}
