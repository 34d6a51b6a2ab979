//! The server: listener, accept loop, shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::connection::Connection;
use crate::connection_task;
use crate::connections::Connections;
use crate::deadlines;
use crate::error::Result;
use crate::limits::Limits;
use crate::outbound::{self, Transport};
use crate::stats::{Counters, ServerStats};
use crate::udp::{self, UdpListener};

mod builder;
mod context;

pub use builder::{FlexiSocket, ServerBuilder};
use context::Admission;
pub(crate) use context::ServerContext;

/// What a graceful shutdown achieved.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when shutdown began that closed gracefully.
    pub connections_closed: u64,
    /// Connections cut at the shutdown deadline.
    pub connections_aborted: u64,
    /// Messages that `send` accepted but that never reached the socket: left
    /// queued on connections cut at the deadline, or on connections that
    /// closed during shutdown without writing them all (the peer reset,
    /// stopped reading until the flush timed out, or was disconnected as a
    /// slow consumer).
    pub undelivered_messages: u64,
}

/// What a server receives on.
#[derive(Debug)]
enum Listener {
    Tcp(TcpListener),
    Udp(UdpListener),
}

impl Listener {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr(),
            Listener::Udp(listener) => Ok(listener.local_addr()),
        }
    }
}

/// A bound server, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    local_addr: SocketAddr,
    context: Arc<ServerContext>,
}

impl Server {
    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's open connections.
    pub fn connections(&self) -> Connections {
        self.context.connections.clone()
    }

    /// A handle to the running server: stats, connections, shutdown.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            context: Arc::clone(&self.context),
        }
    }

    /// The server's counters now.
    pub fn stats(&self) -> ServerStats {
        self.context.stats()
    }

    /// Serves until Ctrl-C or [`ServerHandle::shutdown`].
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for start-up work that can fail.
    pub async fn serve(self) -> Result<ShutdownReport> {
        self.serve_with_shutdown(async {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::error!(%error, "cannot listen for Ctrl-C; stop the server with its ServerHandle");
                std::future::pending::<()>().await;
            }
        })
        .await
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
            listener, context, ..
        } = self;
        let tasks = TaskTracker::new();
        let shutdown = context.shutdown.clone();
        // Dropping this future (e.g. losing a select!) still closes every connection.
        let _close_all_on_drop = ShutdownOnDrop(Arc::clone(&context));
        tokio::pin!(signal);
        if context.deadlines.any() {
            tasks.spawn(deadlines::sweep(Arc::clone(&context)));
        }
        let listener = match listener {
            Listener::Tcp(listener) => listener,
            Listener::Udp(listener) => {
                let panicked = udp::serve(listener, &context, &tasks, signal).await;
                let report = shut_down(&context, tasks).await;
                if let Some(payload) = panicked {
                    std::panic::resume_unwind(payload);
                }
                return Ok(report);
            }
        };
        let mut backoff = AcceptBackoff::default();
        loop {
            // The permit comes before accept: at the limit, peers wait in the
            // backlog rather than being accepted and dropped.
            let permit = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = &mut signal => break,
                permit = Arc::clone(&context.permits).acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = &mut signal => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer_addr)) => {
                    backoff.reset();
                    admit(&context, &tasks, stream, peer_addr, permit);
                }
                Err(error) => tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = backoff.wait(&error) => {}
                },
            }
        }
        drop(listener);
        Ok(shut_down(&context, tasks).await)
    }
}

/// Closes every connection gracefully, cutting those still open at the
/// shutdown deadline, and reports how that went.
async fn shut_down(context: &ServerContext, tasks: TaskTracker) -> ShutdownReport {
    tracing::info!(open = context.connections.len(), "shutting down");
    context.begin_shutdown();
    tasks.close();
    if tokio::time::timeout(context.limits.shutdown_timeout, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?context.limits.shutdown_timeout, "shutdown deadline passed; cutting the rest");
        context.cut_connections();
        tasks.wait().await;
    }
    let aborted = context.aborted.load(Ordering::Relaxed);
    let report = ShutdownReport {
        // Counted by the connections themselves: some may have closed on
        // their own since shutdown began, before the list was gone through.
        connections_closed: context.closed_in_shutdown.load(Ordering::Relaxed),
        connections_aborted: aborted,
        undelivered_messages: context.undelivered.load(Ordering::Relaxed),
    };
    tracing::info!(?report, "shut down");
    report
}
fn admit(
    context: &Arc<ServerContext>,
    tasks: &TaskTracker,
    stream: TcpStream,
    peer_addr: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let Some(ip) = context.claim_ip(peer_addr.ip()) else {
        Counters::add(&context.counters.connections_refused, 1);
        tracing::info!(peer = %peer_addr, "refused: per-IP connection cap reached");
        return;
    };
    configure(&stream, &context.limits);
    let local_addr = stream.local_addr().unwrap_or(peer_addr);
    let id = context.next_id();
    Counters::add(&context.counters.connections_total, 1);
    let (outbound, queue) = outbound::channel(&context.limits, Transport::Stream);
    let created = Connection::new(id, peer_addr, local_addr, Arc::clone(context), outbound);
    let connection = match created {
        Ok(connection) => connection,
        Err(error) => {
            tracing::error!(peer = %peer_addr, %error, "connection dropped");
            return;
        }
    };
    let admission = Admission {
        _permit: permit,
        _ip: ip,
    };
    // Debug level: at the usual INFO filter the span costs nothing per poll;
    // with RUST_LOG=flexi_socket=debug every event carries id, peer and type.
    let span = tracing::debug_span!("connection", id, peer = %peer_addr, client_type = tracing::field::Empty);
    #[cfg(feature = "tls")]
    if let Some(tls) = context.tls.clone() {
        // The handshake runs in the connection's task; only a connection whose
        // handshake succeeded is listed and gets events.
        let task = async move {
            tls.serve(stream, connection, queue).await;
            drop(admission);
        };
        spawn_in(tasks, span, task);
        return;
    }
    context.register(&connection);
    let (reader, writer) = stream.into_split();
    let task = connection_task::run(reader, writer, connection, queue, admission);
    spawn_in(tasks, span, task);
}

/// Spawns a connection's task in `span`. A disabled span (the usual case:
/// it is at debug level) is left out: it would still take memory in every
/// connection's task.
pub(crate) fn spawn_in(
    tasks: &TaskTracker,
    span: tracing::Span,
    task: impl Future<Output = ()> + Send + 'static,
) {
    if span.is_disabled() {
        tasks.spawn(task);
    } else {
        tasks.spawn(task.instrument(span));
    }
}

fn configure(stream: &TcpStream, limits: &Limits) {
    // Replies are small and latency matters more than packet count: the writer
    // already coalesces what is ready.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    if let Some(idle) = limits.tcp_keepalive {
        let keepalive = socket2::TcpKeepalive::new().with_time(idle);
        if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(%error, "cannot set TCP keepalive");
        }
    }
}

/// Starts a server's shutdown when dropped.
struct ShutdownOnDrop(Arc<ServerContext>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.begin_shutdown();
    }
}

/// Waits after a failed accept (EMFILE and friends) so the loop never spins.
#[derive(Debug, Default)]
struct AcceptBackoff {
    delay: Option<Duration>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn reset(&mut self) {
        self.delay = None;
    }

    async fn wait(&mut self, error: &std::io::Error) {
        let delay = self.delay.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        if self.delay.is_none() {
            tracing::warn!(%error, "accept failed; backing off");
        }
        self.delay = Some(delay);
        tokio::time::sleep(delay).await;
    }
}

/// Reaches a running server from anywhere: its counters, its connections,
/// and its shutdown. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    context: Arc<ServerContext>,
}

impl ServerHandle {
    /// Starts a graceful shutdown (see [`Server::serve_with_shutdown`]).
    pub fn shutdown(&self) {
        self.context.begin_shutdown();
    }

    /// The server's counters now.
    pub fn stats(&self) -> ServerStats {
        self.context.stats()
    }

    /// The server's open connections.
    pub fn connections(&self) -> Connections {
        self.context.connections.clone()
    }
}
