//! The server: builder, listener, accept loop, shutdown.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::classifier::{ClientType, ErasedClassifier};
use crate::client_framing::{ClientFraming, FirstUnit};
use crate::connection::Connection;
use crate::connection_task;
use crate::connections::Connections;
use crate::error::{Error, Result};
use crate::framing::Framing;
use crate::limits::{Limits, PanicPolicy, SlowConsumerPolicy};
use crate::outbound;
use crate::router::RouteTable;
use crate::setup::{HandlerSetup, handler_setup_methods};
use crate::stats::{Counters, ServerStats};
use crate::udp::{self, UdpListener, UdpOptions};

/// The entry point: `FlexiSocket::server(addr)`.
#[derive(Debug, Clone, Copy)]
pub struct FlexiSocket;

impl FlexiSocket {
    /// Starts building a TCP server that will listen on `addr` (e.g.
    /// `"0.0.0.0:8081"`, or port 0 for any free port).
    pub fn server(addr: impl ToString) -> ServerBuilder {
        ServerBuilder {
            addr: addr.to_string(),
            framing: Framing::default(),
            client_framing: ClientFraming::default(),
            setup: HandlerSetup::default(),
            limits: Limits::default(),
            udp: None,
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

/// Configures a server; finish with [`bind`](Self::bind), [`serve`](Self::serve)
/// or [`start`](Self::start).
pub struct ServerBuilder {
    addr: String,
    framing: Framing,
    client_framing: ClientFraming,
    setup: HandlerSetup,
    limits: Limits,
    /// UDP settings; `None` for TCP.
    pub(crate) udp: Option<UdpOptions>,
    #[cfg(feature = "tls")]
    pub(crate) tls: crate::tls::TlsSettings,
}

impl ServerBuilder {
    handler_setup_methods!();

    /// How bytes become messages. Default: [`Framing::lines`] (64 KiB maximum).
    /// Over UDP the default is none, each datagram being one message; a
    /// framing set here splits each datagram on its own.
    #[must_use]
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        if let Some(udp) = &mut self.udp {
            udp.framed = true;
        }
        self
    }

    /// Gives connections of `client_type` their own framing: once a
    /// connection is classified, the bytes it sent after what classified it
    /// (or, with [`classify_raw`](Self::classify_raw), all of them) are
    /// decoded with `framing`, and its outbound messages are framed with it.
    /// Client types without one keep [`framing`](Self::framing)'s. Over UDP
    /// the framing splits each datagram.
    ///
    /// ```no_run
    /// use flexi_socket::{FirstUnit, FlexiSocket, Framing};
    /// # #[derive(flexi_socket::Classifier)] enum Device { #[client_type = "panel"] #[classify(prefix = "\n")] Panel, #[client_type = "other"] #[classify(default)] Other }
    ///
    /// let server = FlexiSocket::server("0.0.0.0:9000")
    ///     .classifier::<Device>()
    ///     .classify_raw(FirstUnit::until_any(b"\r\n").max_length(64))
    ///     .framing_for("panel", Framing::separator("\r"))
    ///     .framing_for("other", Framing::raw());
    /// # let _ = server;
    /// ```
    ///
    /// At start-up, [`Error::NoClassifierFor`] without a classifier and
    /// [`Error::UnknownFramingClientType`] for a client type the classifier
    /// never produces.
    #[must_use]
    pub fn framing_for(mut self, client_type: impl Into<ClientType>, framing: Framing) -> Self {
        self.client_framing.set(client_type.into(), framing);
        self
    }

    /// Classifies each connection by the raw bytes of its first `unit`,
    /// before any framing, instead of by its first frame: for servers whose
    /// clients differ in framing itself (one ends frames with CR, another
    /// with DC4, a third speaks binary). The unit is not consumed: the client
    /// type's framing (see [`framing_for`](Self::framing_for)) then decodes
    /// the connection's bytes from the first one. Over UDP the first
    /// datagram is cut the same way. The wait is bounded by the unit's
    /// length and by [`first_message_timeout`](Self::first_message_timeout).
    #[must_use]
    pub fn classify_raw(mut self, unit: FirstUnit) -> Self {
        self.client_framing.first_unit = Some(unit);
        self
    }

    /// Most connections open at once (default 10 000). At the limit the server
    /// stops accepting (new peers wait in the kernel's backlog) instead of
    /// accepting and dropping; it accepts again as connections close. Over UDP
    /// it caps the sessions: datagrams from new peers are dropped (and
    /// counted) instead, and live sessions are never evicted for them.
    ///
    /// # Panics
    ///
    /// If `connections` is 0.
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        assert!(
            connections > 0,
            "max_connections must allow at least one connection"
        );
        self.limits.max_connections = connections;
        self
    }

    /// Most connections open at once from one IP address (default: no cap, as
    /// many clients may share one address behind NAT). Over the cap, a new
    /// connection is closed at once, without events.
    #[must_use]
    pub fn max_connections_per_ip(mut self, connections: usize) -> Self {
        self.limits.max_connections_per_ip = Some(connections);
        self
    }

    /// With a classifier, how long a connection may take to send its first
    /// complete message (default 10 s), so classification cannot be held
    /// hostage. `None` waits forever.
    #[must_use]
    pub fn first_message_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.limits.first_message_timeout = timeout.into();
        self
    }

    /// With a classifier, the most bytes buffered before the first message is
    /// complete (default 64 KiB); over it the connection is closed.
    #[must_use]
    pub fn first_message_max_length(mut self, bytes: usize) -> Self {
        self.limits.first_message_max_length = bytes;
        self
    }

    /// Closes a connection that sent nothing for this long (default 5 minutes;
    /// peers with heartbeats stay). `None` never closes idle connections.
    /// UDP sessions expire after [`udp_session_idle`](Self::udp_session_idle) instead.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.limits.idle_timeout = timeout.into();
        self
    }

    /// Closes a connection whose started frame is not finished within this
    /// time (default 30 s): the slowloris defence. It does not apply to
    /// `eof`, `raw` and `idle_gap` framings. `None` disables it.
    #[must_use]
    pub fn frame_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.limits.frame_timeout = timeout.into();
        self
    }

    /// TCP keepalive idle time (default 60 s), so dead peers behind silent
    /// networks are found. `None` leaves the system default.
    #[must_use]
    pub fn tcp_keepalive(mut self, idle: impl Into<Option<Duration>>) -> Self {
        self.limits.tcp_keepalive = idle.into();
        self
    }

    /// Capacity of each connection's outbound queue, in messages (default 1024).
    ///
    /// # Panics
    ///
    /// If `messages` is 0.
    #[must_use]
    pub fn outbound_queue(mut self, messages: usize) -> Self {
        assert!(
            messages > 0,
            "the outbound queue needs room for at least one message"
        );
        self.limits.outbound_messages = messages;
        self
    }

    /// Capacity of each connection's outbound queue, in bytes (default 4 MiB),
    /// which bounds the memory a peer that does not read can cost.
    ///
    /// # Panics
    ///
    /// If `bytes` is 0.
    #[must_use]
    pub fn outbound_queue_bytes(mut self, bytes: usize) -> Self {
        assert!(
            bytes > 0,
            "the outbound queue needs room for at least one byte"
        );
        self.limits.outbound_bytes = bytes;
        self
    }

    /// What `send` does when the outbound queue is full (default: wait up to
    /// 30 s, then fail).
    #[must_use]
    pub fn slow_consumer(mut self, policy: SlowConsumerPolicy) -> Self {
        self.limits.slow_consumer = policy;
        self
    }

    /// The slow-consumer policy for one client type, overriding
    /// [`slow_consumer`](Self::slow_consumer) for it (e.g. disconnect telemetry
    /// devices that stop reading, but let operators' consoles wait).
    #[must_use]
    pub fn slow_consumer_for(
        mut self,
        client_type: impl Into<ClientType>,
        policy: SlowConsumerPolicy,
    ) -> Self {
        self.limits
            .slow_consumer_by_type
            .insert(client_type.into(), policy);
        self
    }

    /// What happens to a connection whose handler panicked (default: close it).
    #[must_use]
    pub fn on_panic(mut self, policy: PanicPolicy) -> Self {
        self.limits.on_panic = policy;
        self
    }

    /// Cancels a handler that runs longer than this (default: none); the
    /// error reaches `on_error` and the connection goes on.
    #[must_use]
    pub fn handler_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.limits.handler_timeout = timeout.into();
        self
    }

    /// How long a graceful shutdown may take before open connections are cut
    /// (default 30 s); also bounds flushing a closing connection's queue.
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.limits.shutdown_timeout = timeout;
        self
    }

    /// Checks the handlers and opens the listening socket.
    ///
    /// # Errors
    ///
    /// A start-up check failed ([`Error::NoHandlers`], [`Error::DuplicateHandler`],
    /// [`Error::UnknownClientType`], [`Error::NoClassifier`]) or the address
    /// could not be bound ([`Error::Bind`]).
    pub async fn bind(self) -> Result<Server> {
        let framing = match self.udp {
            Some(udp) => udp.framing(self.framing),
            None => self.framing,
        };
        let context = self
            .setup
            .context(framing, self.client_framing, self.limits, true, None)?;
        let bound = match self.udp {
            None => TcpListener::bind(&self.addr).await.map(Listener::Tcp),
            Some(udp) => UdpListener::bind(&self.addr, udp).await.map(Listener::Udp),
        };
        let listener = bound.map_err(|source| Error::Bind {
            addr: self.addr.clone(),
            source,
        })?;
        let local_addr = listener.local_addr()?;
        tracing::info!(%local_addr, "listening");
        #[cfg(feature = "tls")]
        let context = {
            let mut context = context;
            Arc::get_mut(&mut context)
                .expect("a fresh context is not shared yet")
                .tls = self.tls.into_server();
            context
        };
        Ok(Server {
            listener,
            local_addr,
            context,
        })
    }

    /// Binds and serves until Ctrl-C.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub async fn serve(self) -> Result<()> {
        self.bind().await?.serve().await.map(drop)
    }

    /// Binds and serves until `signal` completes, then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub async fn serve_with_shutdown(self, signal: impl Future<Output = ()> + Send) -> Result<()> {
        self.bind()
            .await?
            .serve_with_shutdown(signal)
            .await
            .map(drop)
    }

    /// Blocks the current thread: starts a multi-threaded tokio runtime and
    /// serves until Ctrl-C.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind); [`Error::InsideRuntime`] when called from
    /// async code (use [`serve`](Self::serve) there); [`Error::Io`] if the
    /// runtime cannot start.
    pub fn start(self) -> Result<()> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::InsideRuntime);
        }
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(self.serve())
    }
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("addr", &self.addr)
            .field("framing", &self.framing)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

/// What every connection of one server shares.
pub(crate) struct ServerContext {
    pub(crate) routes: RouteTable,
    pub(crate) app_state: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) classifier: Option<ErasedClassifier>,
    /// The framing until a connection is classified, and of every client type without its own.
    pub(crate) framing: Framing,
    pub(crate) client_framing: ClientFraming,
    pub(crate) connections: Connections,
    /// Tells connections to close gracefully.
    pub(crate) shutdown: CancellationToken,
    /// Cuts connections still open at the shutdown deadline.
    pub(crate) abort: CancellationToken,
    pub(crate) limits: Limits,
    pub(crate) counters: Counters,
    permits: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    aborted: AtomicU64,
    closed_in_shutdown: AtomicU64,
    undelivered: AtomicU64,
    next_id: AtomicU64,
    /// Client mode only: requests waiting for their reply.
    pub(crate) replies: Option<Arc<crate::client::Replies>>,
    /// With TLS, each accepted stream does its handshake before it becomes a connection.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsServer>,
}

impl ServerContext {
    /// What a server's (or a client's) connections share.
    pub(crate) fn new(
        routes: RouteTable,
        app_state: Option<Arc<dyn Any + Send + Sync>>,
        classifier: Option<ErasedClassifier>,
        framing: Framing,
        client_framing: ClientFraming,
        limits: Limits,
        replies: Option<Arc<crate::client::Replies>>,
    ) -> Arc<Self> {
        Arc::new(ServerContext {
            routes,
            app_state,
            classifier,
            framing,
            client_framing,
            connections: Connections::new(),
            shutdown: CancellationToken::new(),
            abort: CancellationToken::new(),
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            aborted: AtomicU64::new(0),
            closed_in_shutdown: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
            limits,
            next_id: AtomicU64::new(1),
            replies,
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// A fresh connection id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A connection closed gracefully while the server was shutting down.
    pub(crate) fn note_closed_in_shutdown(&self) {
        self.closed_in_shutdown.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_aborted(&self, undelivered: u64) {
        self.aborted.fetch_add(1, Ordering::Relaxed);
        self.undelivered.fetch_add(undelivered, Ordering::Relaxed);
    }

    /// A place under the connection limits without waiting (for a datagram
    /// session), or `None` at the connection cap or the IP's cap.
    pub(crate) fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        let ip = self.claim_ip(ip)?;
        Some(Admission {
            _permit: permit,
            _ip: ip,
        })
    }

    /// Takes a per-IP slot, or `None` when the address is at its cap.
    fn claim_ip(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        if let Some(cap) = self.limits.max_connections_per_ip {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let open = per_ip.entry(ip).or_insert(0);
            if *open >= cap {
                return None;
            }
            *open += 1;
        }
        Some(IpSlot {
            context: Arc::clone(self),
            ip,
        })
    }
}

/// What an open connection holds: its place under the connection limits.
#[derive(Debug)]
pub(crate) struct Admission {
    _permit: OwnedSemaphorePermit,
    _ip: IpSlot,
}

/// One connection's share of its IP's cap, given back on drop.
struct IpSlot {
    context: Arc<ServerContext>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if self.context.limits.max_connections_per_ip.is_none() {
            return;
        }
        let mut per_ip = self
            .context
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = per_ip.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl fmt::Debug for IpSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpSlot").field("ip", &self.ip).finish()
    }
}

/// What a graceful shutdown achieved.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when shutdown began that closed gracefully.
    pub connections_closed: u64,
    /// Connections cut at the shutdown deadline.
    pub connections_aborted: u64,
    /// Messages that `send` accepted but that never reached the socket
    /// (only possible on aborted connections).
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
        let _close_all_on_drop = shutdown.clone().drop_guard();
        tokio::pin!(signal);
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
    context.shutdown.cancel();
    tasks.close();
    if tokio::time::timeout(context.limits.shutdown_timeout, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?context.limits.shutdown_timeout, "shutdown deadline passed; cutting the rest");
        context.abort.cancel();
        tasks.wait().await;
    }
    let aborted = context.aborted.load(Ordering::Relaxed);
    let report = ShutdownReport {
        // Counted by the connections themselves: some may already be closing
        // (their tokens are the shutdown token's children) before this runs.
        connections_closed: context.closed_in_shutdown.load(Ordering::Relaxed),
        connections_aborted: aborted,
        undelivered_messages: context.undelivered.load(Ordering::Relaxed),
    };
    tracing::info!(?report, "shut down");
    report
}

impl ServerContext {
    fn stats(&self) -> ServerStats {
        let mut stats = self.counters.snapshot();
        let open = self.connections.list();
        stats.connections_open = open.len() as u64;
        for connection in &open {
            let traffic = connection.stats();
            stats.messages_in += traffic.messages_in;
            stats.messages_out += traffic.messages_out;
            stats.bytes_in += traffic.bytes_in;
            stats.bytes_out += traffic.bytes_out;
            stats.queued_messages += connection.queued();
        }
        stats
    }
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
    let (outbound, queue) = outbound::channel(&context.limits);
    // Creating the connection runs a custom codec's factory: user code that
    // must not take the accept loop down with it.
    let created = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Connection::new(
            id,
            peer_addr,
            local_addr,
            Arc::clone(context),
            outbound,
            context.shutdown.child_token(),
        )
    }));
    let connection = match created {
        Ok(connection) => connection,
        Err(payload) => {
            let message = crate::handler::panic_message(&*payload);
            tracing::error!(peer = %peer_addr, %message, "the framing's codec factory panicked; connection dropped");
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
        tasks.spawn(
            async move {
                tls.serve(stream, connection, queue).await;
                drop(admission);
            }
            .instrument(span),
        );
        return;
    }
    context.connections.insert(connection.clone());
    tasks.spawn(
        async move {
            let (reader, writer) = stream.into_split();
            connection_task::run(reader, writer, connection, queue).await;
            drop(admission);
        }
        .instrument(span),
    );
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
        self.context.shutdown.cancel();
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

impl fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerContext")
            .field("framing", &self.framing)
            .field("classifier", &self.classifier)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}
