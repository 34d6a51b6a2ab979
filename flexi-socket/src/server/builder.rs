//! Configuring a server: `FlexiSocket::server(addr)` and the builder's
//! settings, then `bind`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::classifier::ClientType;
use crate::client_framing::{ClientFraming, FirstUnit};
use crate::error::{Error, Result};
use crate::framing::Framing;
use crate::limits::{Limits, PanicPolicy, SlowConsumerPolicy};
use crate::setup::{HandlerSetup, handler_setup_methods};
use crate::udp::{UdpListener, UdpOptions};

use super::{Listener, Server};

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
        let (framing, limits) = match self.udp {
            Some(udp) => (udp.framing(self.framing), udp.limits(self.limits)),
            None => (self.framing, self.limits),
        };
        let context = self
            .setup
            .context(framing, self.client_framing, limits, true, None)?;
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
            std::sync::Arc::get_mut(&mut context)
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
