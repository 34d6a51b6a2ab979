//! Configuring a server: `FlexiSocket::server(addr)` (TCP) or
//! `FlexiSocket::udp(addr)`, the settings both share, then `bind`. What only
//! one transport has lives beside its transport: `tls.rs` for TCP's TLS,
//! `udp.rs` for UDP's sessions; a setting of the other transport does not
//! compile.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::accept::{StreamListener, StreamSetup};
use super::bind::{self, SocketOptions};
use super::{Listener, Server};
use crate::address::{self, Accepts};
use crate::classify::{ClientFraming, FirstUnit};
use crate::client_type::ClientType;
use crate::config::{
    HistoryLimits, KeyPolicy, Limits, PanicPolicy, SlowConsumerPolicy, history_method,
    read_buffer_method,
};
use crate::connection::setup::{HandlerSetup, handler_setup_methods};
use crate::connection::{Endpoint, ServerWide, Side};
use crate::error::{Error, Result};
use crate::framing::Framing;
use crate::transport::proxy::ProxyProtocol;

/// The entry point: `FlexiSocket::server(addr)`.
#[derive(Debug, Clone, Copy)]
pub struct FlexiSocket;

impl FlexiSocket {
    /// Starts building a TCP server that will listen on `addr` (e.g.
    /// `"0.0.0.0:8081"`, or port 0 for any free port).
    ///
    /// `"systemd"` (or `"systemd:N"`) serves the socket systemd's socket
    /// activation handed in (`LISTEN_FDS`), TCP or Unix.
    ///
    /// `"unix:/run/app.sock"` listens on a Unix domain socket instead, with
    /// the same handlers, limits and TLS; a stale socket file at the path
    /// (left by a crash) is replaced, and the file is removed at exit. Binds
    /// at one path take turns through the lock file `<path>.lock`, which stays.
    pub fn server(addr: impl ToString) -> ServerBuilder {
        ServerBuilder::new(addr.to_string(), Tcp::new())
    }

    /// Starts building a TCP server on a listener opened elsewhere: by a
    /// supervisor that passes it down, by systemd socket activation, or with
    /// socket options of your own. It is used as it is (its backlog and
    /// options were set when it was opened); the server closes it at exit.
    pub fn from_std(listener: std::net::TcpListener) -> ServerBuilder {
        let addr = listener.local_addr().map_or_else(
            |_| "a listener handed in".to_owned(),
            |addr| addr.to_string(),
        );
        let transport = Tcp {
            listener: Some(listener),
            ..Tcp::new()
        };
        ServerBuilder::new(addr, transport)
    }
}

/// What a [`ServerBuilder`] binds: [`Tcp`] or [`Udp`](crate::Udp). Lets code
/// take either builder (`ServerBuilder<impl ServerTransport>`); sealed.
pub trait ServerTransport: sealed::Sealed + Send + 'static {}

impl ServerTransport for Tcp {}

pub(super) mod sealed {
    use std::future::Future;
    use std::pin::Pin;

    use crate::config::Limits;
    use crate::connection::ServerWide;
    use crate::connection::setup::HandlerSetup;
    use crate::error::Result;
    use crate::server::{Server, ServerBuilder};

    /// Only this crate's transports are server transports; what binds each
    /// is out of users' reach.
    pub trait Sealed: Sized {
        /// Binds `builder`'s listener, as a server of its own or, `beside`
        /// another, as one more listener of that server; see
        /// [`ServerBuilder::bind`].
        fn bind_listener(
            builder: ServerBuilder<Self>,
            beside: Option<Beside>,
        ) -> Pin<Box<dyn Future<Output = Result<Server>> + Send>>;
    }

    /// What a listener added to a server takes from the server's first
    /// builder instead of its own: the handlers, the state, the limits, and
    /// the connection list, shutdown and counters the listeners share.
    #[derive(Debug)]
    pub struct Beside {
        pub(crate) setup: HandlerSetup,
        pub(crate) limits: Limits,
        pub(crate) wide: ServerWide,
    }
}

/// What a listener's endpoint is built from: its builder's own handler
/// `setup` and `limits`, or, for a listener added beside another, the first
/// builder's and the state shared with it. An added listener with handlers
/// of its own is refused: they would be silently ignored.
pub(super) fn handlers_beside(
    setup: HandlerSetup,
    addr: &str,
    limits: Limits,
    beside: Option<sealed::Beside>,
) -> Result<(HandlerSetup, Limits, Option<ServerWide>)> {
    let Some(beside) = beside else {
        return Ok((setup, limits, None));
    };
    if setup.router.is_some()
        || setup.classifier.is_some()
        || setup.app_state.is_some()
        || setup.scope.is_some()
    {
        return Err(Error::ListenerHandlers {
            addr: addr.to_owned(),
        });
    }
    Ok((beside.setup, beside.limits, Some(beside.wide)))
}

/// Binds a listener added with [`ServerBuilder::listener`], beside the server's first.
type AddedListener =
    Box<dyn FnOnce(sealed::Beside) -> Pin<Box<dyn Future<Output = Result<Server>> + Send>> + Send>;

/// A [`ServerBuilder`] for TCP (and TLS over TCP): what
/// [`FlexiSocket::server`] and [`FlexiSocket::from_std`] return.
#[derive(Debug)]
pub struct Tcp {
    /// A listener handed in ready-made, used instead of binding the address.
    listener: Option<std::net::TcpListener>,
    /// Every connection starts with a PROXY header.
    proxy: Option<ProxyProtocol>,
    #[cfg(feature = "tls")]
    pub(super) tls: crate::transport::tls::TlsSettings,
}

impl Tcp {
    fn new() -> Self {
        Self {
            listener: None,
            proxy: None,
            #[cfg(feature = "tls")]
            tls: crate::transport::tls::TlsSettings::default(),
        }
    }
}

/// Configures a server; finish with [`bind`](Self::bind), [`serve`](Self::serve)
/// or [`start`](Self::start). `T` is the transport, [`Tcp`] or
/// [`Udp`](crate::Udp), whose own settings only its builder has.
///
/// # Examples
///
/// Every setting has a default; set the ones your protocol needs, in any
/// order, then bind. Each group of settings has its own example below:
/// [framing](Self::framing), [connection limits](Self::max_connections),
/// [deadlines](Self::idle_timeout), [the outbound queue](Self::outbound_queue),
/// [failing handlers](Self::handler_timeout), [history](Self::history_for),
/// TCP's [PROXY protocol](Self::proxy_protocol) and [socket options](Self::backlog),
/// TLS (`tls`, with the feature `tls`), UDP's [sessions](Self::udp_session_idle),
/// and the ways to [start](Self::serve_with_shutdown).
///
/// ```no_run
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
///
/// use flexi_socket::{Connection, FlexiSocket, Framing, State, on_message};
///
/// #[derive(Clone, Default)]
/// struct Counter {
///     messages: Arc<AtomicU64>,
/// }
///
/// #[on_message]
/// async fn count(conn: Connection, msg: String, counter: State<Counter>) -> flexi_socket::Result<()> {
///     let n = counter.messages.fetch_add(1, Ordering::Relaxed) + 1;
///     conn.send(format!("{n}: {msg}")).await
/// }
///
/// #[tokio::main]
/// async fn main() -> flexi_socket::Result<()> {
///     FlexiSocket::server("0.0.0.0:8081")          // the attribute handlers, or .router(..)
///         .state(Counter::default())               // shared with every handler
///         .framing(Framing::lines().max_length(4096))
///         .max_connections(5_000)
///         .idle_timeout(Duration::from_secs(120))
///         .serve()                                 // until SIGINT or SIGTERM
///         .await
/// }
/// ```
pub struct ServerBuilder<T = Tcp> {
    pub(super) addr: String,
    /// `None`: the transport's default.
    pub(super) framing: Option<Framing>,
    pub(super) client_framing: ClientFraming,
    pub(super) setup: HandlerSetup,
    pub(super) limits: Limits,
    pub(super) socket: SocketOptions,
    pub(super) transport: T,
    /// More listeners of the same server, from [`listener`](Self::listener).
    added: Vec<AddedListener>,
    /// The cluster to join at `bind`, from [`cluster`](Self::cluster).
    #[cfg(feature = "nats")]
    cluster: Option<crate::cluster::ClusterConfig>,
}

impl<T> ServerBuilder<T> {
    handler_setup_methods!();
    history_method!();

    pub(super) fn new(addr: String, transport: T) -> Self {
        Self {
            addr,
            framing: None,
            client_framing: ClientFraming::default(),
            setup: HandlerSetup::default(),
            limits: Limits::default(),
            socket: SocketOptions::default(),
            transport,
            added: Vec::new(),
            #[cfg(feature = "nats")]
            cluster: None,
        }
    }

    /// Sets `SO_REUSEPORT` on the listening socket (Unix; default off), so
    /// that several processes (or servers) can listen on the same port and
    /// the kernel spreads new connections, or UDP peers, among them.
    ///
    /// # Examples
    ///
    /// Two servers on one port, the kernel spreading peers between them:
    ///
    /// ```no_run
    /// use flexi_socket::FlexiSocket;
    ///
    /// # async fn two() -> flexi_socket::Result<()> {
    /// let first = FlexiSocket::server("0.0.0.0:8081").reuse_port(true).bind().await?;
    /// let second = FlexiSocket::server("0.0.0.0:8081").reuse_port(true).bind().await?;
    /// tokio::spawn(first.serve());
    /// second.serve().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.socket.reuse_port = reuse;
        self
    }

    /// The kernel's receive buffer of the listening socket (`SO_RCVBUF`),
    /// and of every TCP connection it accepts. Default: for UDP 4 MiB,
    /// which holds a burst from all peers while the receive loop is busy
    /// (the kernel's own default, about 208 KiB, lets one flooding peer
    /// crowd out the others); for TCP the kernel's autotuning, which a
    /// fixed size turns off. The kernel grants at most `net.core.rmem_max`
    /// and a warning says so when it grants less. Not applied to sockets
    /// handed in (`from_std`, systemd: set `ReceiveBuffer=` there).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use flexi_socket::FlexiSocket;
    ///
    /// let server = FlexiSocket::udp("0.0.0.0:12000")
    ///     .socket_receive_buffer(16 * 1024 * 1024)
    ///     .socket_send_buffer(1024 * 1024);
    /// ```
    #[must_use]
    pub fn socket_receive_buffer(mut self, bytes: usize) -> Self {
        self.socket.receive_buffer = Some(bytes);
        self
    }

    /// The kernel's send buffer of the listening socket (`SO_SNDBUF`), and
    /// of every TCP connection it accepts. Default: the kernel's (for TCP
    /// its autotuning). The kernel grants at most `net.core.wmem_max`.
    #[must_use]
    pub fn socket_send_buffer(mut self, bytes: usize) -> Self {
        self.socket.send_buffer = Some(bytes);
        self
    }

    /// How bytes become messages. Default: [`Framing::lines`] (64 KiB maximum).
    /// Over UDP the default is none, each datagram being one message; a
    /// framing set here splits each datagram on its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{FlexiSocket, Framing};
    ///
    /// // STX ... ETX frames of at most 1 KiB; longer ones are reported and skipped.
    /// let server = FlexiSocket::server("0.0.0.0:9000")
    ///     .framing(Framing::delimited("\x02", "\x03").max_length(1024));
    /// # let _ = server;
    /// ```
    #[must_use]
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = Some(framing);
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
    /// length and by [`first_message_timeout`](Self::first_message_timeout),
    /// and ends earlier where the classifier's
    /// [`classify_early`](crate::Classifier::classify_early) decides on the
    /// unit's first bytes.
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
    ///
    /// # Examples
    ///
    /// The connection limits together:
    ///
    /// ```
    /// use flexi_socket::FlexiSocket;
    ///
    /// let server = FlexiSocket::server("0.0.0.0:8081")
    ///     .max_connections(20_000)        // then the kernel's backlog holds the rest
    ///     .max_connections_per_ip(50);    // beyond it, closed at once
    /// # let _ = server;
    /// ```
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

    /// The last free places kept for other addresses (default: a tenth of
    /// [`max_connections`](Self::max_connections); 0 turns it off). A new
    /// connection that would take one of the last `places` free places is
    /// refused if its IP address already holds `places` connections or
    /// more: one host cannot take
    /// every place, however it keeps its connections alive, while a fleet
    /// behind one NAT address is not limited until the server is nearly
    /// full. A refused connection is closed at once, without events, and
    /// counted in [`ServerStats::connections_refused`](crate::ServerStats::connections_refused);
    /// a refused UDP peer's datagrams are dropped and counted.
    #[must_use]
    pub fn reserve_for_other_ips(mut self, places: usize) -> Self {
        self.limits.reserved_for_others = Some(places);
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
    /// UDP sessions expire after their own `udp_session_idle` instead.
    ///
    /// # Examples
    ///
    /// The read deadlines together (each can be `None`):
    ///
    /// ```
    /// use std::time::Duration;
    /// use flexi_socket::FlexiSocket;
    ///
    /// let server = FlexiSocket::server("0.0.0.0:8081")
    ///     .first_message_timeout(Duration::from_secs(5))  // with a classifier
    ///     .first_message_max_length(1024)
    ///     .frame_timeout(Duration::from_secs(10))         // a frame started must end
    ///     .idle_timeout(Duration::from_secs(600))         // devices with a 5-minute heartbeat
    ///     .tcp_keepalive(Duration::from_secs(30));
    /// # let _ = server;
    /// ```
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

    /// Capacity of each connection's outbound queue, in messages (default
    /// 1024; more than `u32::MAX` counts as `u32::MAX`).
    ///
    /// # Panics
    ///
    /// If `messages` is 0.
    ///
    /// # Examples
    ///
    /// The outbound queue and what happens when a peer does not read:
    ///
    /// ```
    /// use std::time::Duration;
    /// use flexi_socket::{FlexiSocket, SlowConsumerPolicy};
    ///
    /// let server = FlexiSocket::server("0.0.0.0:8081")
    ///     .outbound_queue(256)                                    // messages
    ///     .outbound_queue_bytes(1024 * 1024)                      // and bytes per connection
    ///     .slow_consumer(SlowConsumerPolicy::Wait(Duration::from_secs(5)))
    ///     .slow_consumer_for("telemetry", SlowConsumerPolicy::Disconnect);
    /// # let _ = server;
    /// ```
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

    /// [`history`](Self::history) for connections of `client_type`, from
    /// their classification on (the others keep the default history, or none).
    ///
    /// # Panics
    ///
    /// If `messages` or `bytes` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::FlexiSocket;
    ///
    /// // The last 20 messages (at most 16 KiB) of every connection; panels of
    /// // type "001" keep 200 (64 KiB). Read them with `conn.history()`.
    /// let server = FlexiSocket::server("0.0.0.0:8081")
    ///     .history(20, 16 * 1024)
    ///     .history_for("001", 200, 64 * 1024);
    /// # let _ = server;
    /// ```
    #[must_use]
    #[track_caller]
    pub fn history_for(
        mut self,
        client_type: impl Into<ClientType>,
        messages: usize,
        bytes: usize,
    ) -> Self {
        self.limits
            .history_by_type
            .insert(client_type.into(), HistoryLimits::new(messages, bytes));
        self
    }

    /// Cancels a handler that runs longer than this (default: none); the
    /// error reaches `on_error` and the connection goes on.
    ///
    /// # Examples
    ///
    /// What a failing or slow handler costs, and how long a shutdown may take:
    ///
    /// ```
    /// use std::time::Duration;
    /// use flexi_socket::{FlexiSocket, PanicPolicy};
    ///
    /// let server = FlexiSocket::server("0.0.0.0:8081")
    ///     .handler_timeout(Duration::from_secs(2))  // cancelled, reported, the connection goes on
    ///     .on_panic(PanicPolicy::Continue)          // report a panic and read on
    ///     .shutdown_timeout(Duration::from_secs(10));
    /// # let _ = server;
    /// ```
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

    /// Who keeps a key that a second connection claims with
    /// [`Connection::set_key`](crate::Connection::set_key) (default:
    /// [`KeyPolicy::NewestWins`], the older connection is closed with
    /// [`DisconnectReason::Replaced`](crate::DisconnectReason::Replaced)).
    /// Keys are unique across all the server's listeners; this builder's
    /// policy holds for all of them (a [`listener`](Self::listener)'s own is
    /// not used).
    #[must_use]
    pub fn key_policy(mut self, policy: KeyPolicy) -> Self {
        self.limits.key_policy = policy;
        self
    }

    /// The name this server goes by in
    /// [`Connections::locate`](crate::Connections::locate) and
    /// [`SendOutcome::Delivered`](crate::SendOutcome::Delivered) (default
    /// `local`). Server-wide, like [`key_policy`](Self::key_policy).
    #[must_use]
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.limits.node_name = std::sync::Arc::from(name.into());
        self
    }

    /// Joins a cluster over NATS at [`bind`](Self::bind), as the node named
    /// by [`node_name`](Self::node_name): [`Connections`](crate::Connections)'
    /// send to a key, locate and broadcasts then reach every node (the
    /// crate docs' "Cluster" says what each outcome means). `bind` does not
    /// wait for NATS longer than the request timeout: without it the server
    /// serves its own connections and joins when NATS answers.
    ///
    /// ```no_run
    /// use flexi_socket::{ClusterConfig, FlexiSocket};
    ///
    /// # async fn run() -> flexi_socket::Result<()> {
    /// FlexiSocket::server("0.0.0.0:7001")
    ///     .node_name("gateway-1")
    ///     .cluster(ClusterConfig::new(["nats://10.0.0.5:4222"]))
    ///     .serve()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "nats")]
    #[must_use]
    pub fn cluster(mut self, config: crate::cluster::ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }
}

impl sealed::Sealed for Tcp {
    fn bind_listener(
        builder: ServerBuilder<Self>,
        beside: Option<sealed::Beside>,
    ) -> Pin<Box<dyn Future<Output = Result<Server>> + Send>> {
        Box::pin(async move {
            let options = builder.socket;
            if builder.transport.listener.is_none() {
                address::check(&builder.addr, Accepts::STREAM_SERVER)?;
            }
            let (endpoint, addr, mut tcp) = builder.into_endpoint(beside)?;
            let listener = open_stream_listener(&addr, tcp.listener.take(), options)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            let streams = StreamSetup {
                proxy: tcp.proxy.map(Arc::new),
                #[cfg(feature = "tls")]
                tls: tcp.tls.into_server(),
            };
            Server::new(Listener::Stream(listener), endpoint, streams)
        })
    }
}

/// The listener a stream server's address names: one handed in, one
/// systemd handed in (`systemd`, `systemd:N`), a Unix socket (`unix:PATH`),
/// or TCP (`host:port`).
async fn open_stream_listener(
    addr: &str,
    handed_in: Option<std::net::TcpListener>,
    options: SocketOptions,
) -> std::io::Result<StreamListener> {
    if let Some(listener) = handed_in {
        listener.set_nonblocking(true)?;
        return TcpListener::from_std(listener).map(StreamListener::Tcp);
    }
    if let Some(index) = super::activation::socket_index(addr) {
        return super::activation::stream_listener(index?);
    }
    #[cfg(unix)]
    if let Some(path) = addr.strip_prefix(crate::peer_addr::UNIX_PREFIX) {
        let path = std::path::Path::new(path);
        return super::unix::UnixSocketListener::bind(path, options.backlog)
            .await
            .map(StreamListener::Unix);
    }
    bind::tcp(addr, options).await.map(StreamListener::Tcp)
}

impl ServerBuilder<Tcp> {
    read_buffer_method!();

    /// Expects a PROXY protocol header (v1 or v2, as HAProxy's `send-proxy`
    /// and `send-proxy-v2` write them) before each connection's first byte,
    /// as a server behind an L4 load balancer gets: the connection's
    /// `peer_addr()`, its tracing span, per-IP limits and every handler
    /// then see the client's address, and
    /// [`Connection::proxy_header`](crate::Connection::proxy_header) the
    /// rest of the header. The header is read before TLS, in the
    /// connection's own task, under its own timeout. A connection without
    /// a valid header, or from a network the policy does not trust, is
    /// closed without events and counted in
    /// [`ServerStats::proxy_rejected`](crate::ServerStats::proxy_rejected);
    /// a LOCAL header (the balancer's health check) is closed without events.
    ///
    /// # Examples
    ///
    /// Behind HAProxy on 10.0.0.0/8 (`server app 10.0.0.5:8081 send-proxy-v2`):
    ///
    /// ```
    /// use std::time::Duration;
    /// use flexi_socket::{FlexiSocket, ProxyProtocol};
    ///
    /// let server = FlexiSocket::server("0.0.0.0:8081").proxy_protocol(
    ///     ProxyProtocol::new()                        // trusts loopback
    ///         .trust("10.0.0.0/8")?
    ///         .header_timeout(Duration::from_secs(2)),
    /// );
    /// # let _ = server;
    /// # Ok::<(), flexi_socket::Error>(())
    /// ```
    #[must_use]
    pub fn proxy_protocol(mut self, policy: ProxyProtocol) -> Self {
        self.transport.proxy = Some(policy);
        self
    }

    /// The listen backlog: how many connections the kernel completes and
    /// keeps waiting for `accept` (default 1024; the kernel caps it at
    /// `net.core.somaxconn`). A storm of connects beyond it waits a SYN
    /// retry (a second or more); so do peers at
    /// [`max_connections`](Self::max_connections) beyond it.
    ///
    /// # Panics
    ///
    /// If `connections` is 0.
    ///
    /// # Examples
    ///
    /// The TCP socket's own settings:
    ///
    /// ```
    /// use flexi_socket::FlexiSocket;
    ///
    /// let server = FlexiSocket::server("0.0.0.0:8081")
    ///     .backlog(4096)                  // capped by net.core.somaxconn
    ///     .read_buffer_size(64 * 1024)    // peers that send a lot at once
    ///     .reuse_port(true);              // several processes on one port
    /// # let _ = server;
    /// ```
    #[must_use]
    pub fn backlog(mut self, connections: u32) -> Self {
        assert!(
            connections > 0,
            "the backlog must hold at least one connection"
        );
        self.socket.backlog = connections;
        self
    }

    /// Checks the handlers and builds the endpoint (`beside` another
    /// listener's, when it is one more listener of that server); what is
    /// left of the builder is the address and the TCP settings.
    pub(super) fn into_endpoint(
        self,
        beside: Option<sealed::Beside>,
    ) -> Result<(Arc<Endpoint>, String, Tcp)> {
        let framing = self.framing.unwrap_or_default();
        let (setup, limits, wide) = handlers_beside(self.setup, &self.addr, self.limits, beside)?;
        let endpoint = setup.endpoint_in(
            framing,
            self.client_framing,
            limits,
            Side::Server,
            None,
            wide,
        )?;
        Ok((endpoint, self.addr, self.transport))
    }
}

impl<T: ServerTransport> ServerBuilder<T> {
    /// Checks the handlers and opens the listening socket.
    ///
    /// # Errors
    ///
    /// The address has none of the forms the transport takes
    /// ([`Error::InvalidAddress`]), a start-up check failed
    /// ([`Error::NoHandlers`], [`Error::DuplicateHandler`],
    /// [`Error::UnknownClientType`], [`Error::UnhandledClientType`],
    /// [`Error::NoClassifier`]) or the address
    /// could not be bound ([`Error::Bind`], saying why: in use, permission,
    /// no such interface, a name that does not resolve).
    ///
    /// # Examples
    ///
    /// Bind first to learn the address (here a free port) before serving:
    ///
    /// ```no_run
    /// use flexi_socket::FlexiSocket;
    ///
    /// # async fn run() -> flexi_socket::Result<()> {
    /// let server = FlexiSocket::server("127.0.0.1:0").bind().await?;
    /// println!("listening on {}", server.local_addr());
    /// let report = server.serve().await?;
    /// println!("{} connections closed", report.connections_closed);
    /// # Ok(()) }
    /// ```
    pub async fn bind(mut self) -> Result<Server> {
        #[cfg(feature = "nats")]
        let cluster = self.cluster.take();
        let added = std::mem::take(&mut self.added);
        let (setup, limits) = (self.setup.clone(), self.limits.clone());
        let mut server = <T as sealed::Sealed>::bind_listener(self, None).await?;
        for bind_added in added {
            let beside = sealed::Beside {
                setup: setup.clone(),
                limits: limits.clone(),
                wide: server.endpoint.server_wide(),
            };
            server.add(bind_added(beside).await?);
        }
        #[cfg(feature = "nats")]
        if let Some(config) = cluster {
            let connections = server.connections();
            let node = crate::cluster::ClusterNode::join(
                &config,
                connections.node_name(),
                connections.downgrade(),
            )
            .await?;
            connections.join_cluster(std::sync::Arc::new(node));
        }
        Ok(server)
    }

    /// Adds another listener to this server, described by a builder of its
    /// own transport: TCP, TLS, Unix or UDP, e.g. DC-09 over TCP and UDP on
    /// one port. Every listener's connections run this builder's handlers,
    /// classifier, state and limits, are in one connection list
    /// ([`Server::connections`]), count in one [`ServerStats`](crate::ServerStats)
    /// and shut down together; the added builder contributes its address,
    /// its framing and its transport's settings (PROXY protocol, TLS,
    /// backlog, socket buffers, UDP sessions). Its limits (timeouts, sizes,
    /// queues, policies) are not used, nor listeners added to it: set those
    /// on this builder.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use flexi_socket::{FlexiSocket, ProxyProtocol};
    ///
    /// # async fn run() -> flexi_socket::Result<()> {
    /// FlexiSocket::server("0.0.0.0:12000")
    ///     .proxy_protocol(ProxyProtocol::default()) // behind the balancer
    ///     .listener(FlexiSocket::udp("0.0.0.0:12000"))
    ///     .listener(FlexiSocket::server("unix:/run/alarm.sock")) // local, no PROXY
    ///     .serve()
    ///     .await
    /// # }
    /// ```
    ///
    /// `bind` fails with [`Error::ListenerHandlers`] when the added builder
    /// sets handlers, a classifier or state of its own.
    #[must_use]
    pub fn listener<U: ServerTransport>(mut self, other: ServerBuilder<U>) -> Self {
        self.added.push(Box::new(move |beside| {
            <U as sealed::Sealed>::bind_listener(other, Some(beside))
        }));
        self
    }

    /// Binds and serves until SIGINT (Ctrl-C) or SIGTERM; see [`Server::serve`].
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
    ///
    /// # Examples
    ///
    /// Shut down when another part of the program says so, here a channel:
    ///
    /// ```no_run
    /// use flexi_socket::FlexiSocket;
    ///
    /// # async fn run() -> flexi_socket::Result<()> {
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let server = tokio::spawn(
    ///     FlexiSocket::server("0.0.0.0:8081").serve_with_shutdown(async {
    ///         let _ = stopped.await;
    ///     }),
    /// );
    /// // ... later:
    /// let _ = stop.send(());
    /// server.await.expect("the server task ran to its end")?;
    /// # Ok(()) }
    /// ```
    pub async fn serve_with_shutdown(self, signal: impl Future<Output = ()> + Send) -> Result<()> {
        self.bind()
            .await?
            .serve_with_shutdown(signal)
            .await
            .map(drop)
    }

    /// Blocks the current thread: starts a multi-threaded tokio runtime and
    /// serves until SIGINT (Ctrl-C) or SIGTERM.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind); [`Error::InsideRuntime`] when called from
    /// async code (use [`serve`](Self::serve) there); [`Error::Io`] if the
    /// runtime cannot start.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use flexi_socket::{Connection, FlexiSocket, on_message};
    ///
    /// #[on_message]
    /// async fn echo(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     conn.send(msg).await
    /// }
    ///
    /// fn main() -> flexi_socket::Result<()> {
    ///     FlexiSocket::server("0.0.0.0:8081").start()
    /// }
    /// ```
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

impl<T> fmt::Debug for ServerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("addr", &self.addr)
            .field("framing", &self.framing)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}
