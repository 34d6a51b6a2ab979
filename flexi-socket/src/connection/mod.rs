//! The connection layer: one peer, whatever carries it. [`Connection`] (the
//! handle handlers receive) with its sending ([`send`]) and closing
//! ([`close`]), the bounded outbound queue ([`outbound`]), the list of open
//! connections ([`list`]) over the [`directory`] of keys, groups and client
//! types, a connection's key and groups ([`membership`]), what a send to a
//! key reports ([`outcome`]), requests and their replies ([`replies`],
//! [`request`]), the read deadlines ([`deadlines`]), the
//! [`Endpoint`] its server or client shares, error
//! reporting ([`report`](mod@report)), shutdown ([`shutdown`]) and the builders' handler
//! setup ([`setup`]).

mod close;
pub(crate) mod deadlines;
mod directory;
pub(crate) mod endpoint;
mod history;
mod list;
pub(crate) mod log_budget;
mod membership;
pub(crate) mod outbound;
mod outcome;
mod remote;
pub(crate) mod replies;
mod report;
mod request;
mod send;
pub(crate) mod setup;
pub(crate) mod shutdown;

pub use crate::stats::ConnectionStats;
use close::CloseSignal;
pub(crate) use close::CloseStage;
pub(crate) use endpoint::{Endpoint, ServerWide, Side};
use history::Recorder;
pub use history::{Direction, History, HistoryEntry};
pub use list::Connections;
#[cfg(feature = "nats")]
pub(crate) use list::WeakConnections;
use log_budget::KindsSeen;
pub use outcome::{LocateOutcome, Location, SendOutcome};
// What the cluster layer implements and calls.
#[cfg(feature = "nats")]
pub(crate) use remote::{Audience, Remote, RemoteReach};
pub(crate) use report::report;
pub use shutdown::ShutdownReport;

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use once_cell::race::OnceBox;

use crate::client_type::ClientType;
use crate::error::Error;
use crate::framing::{FrameEncoder, Framing};
use crate::handler::Routes;
use crate::peer_addr::PeerAddr;
use crate::proxy_header::ProxyHeader;
use crate::stats::Traffic;
use crate::sync;
use deadlines::Activity;
use outbound::OutboundSender;

/// Why a connection ended; `on_disconnect` handlers can take it as an argument.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer closed its side (EOF).
    PeerClosed,
    /// Reading or writing failed (connection reset, broken pipe, ...).
    Reset(String),
    /// This side closed it: [`Connection::close`], `Client::close` or
    /// `UdpClient::close` was called.
    Closed,
    /// A handler panicked.
    HandlerPanicked,
    /// The framing could not go on (a custom codec failed).
    FramingFailed,
    /// The server is shutting down.
    Shutdown,
    /// Nothing arrived for the idle timeout.
    IdleTimeout,
    /// A frame was started but not finished within the frame timeout (slowloris).
    FrameTimeout,
    /// No complete first message arrived within the first-message timeout, so
    /// the connection could not be classified.
    FirstMessageTimeout,
    /// The peer did not read what the server sent (slow-consumer policy `Disconnect`).
    SlowConsumer,
    /// A limit was hit; the text says which.
    Limit(String),
    /// Another connection took this one's key
    /// ([`Connection::set_key`] under [`KeyPolicy::NewestWins`](crate::KeyPolicy::NewestWins)).
    Replaced,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::PeerClosed => f.write_str("peer closed the connection"),
            DisconnectReason::Reset(why) => write!(f, "connection failed: {why}"),
            DisconnectReason::Closed => f.write_str("closed by the application"),
            DisconnectReason::HandlerPanicked => f.write_str("a handler panicked"),
            DisconnectReason::FramingFailed => f.write_str("framing failed"),
            DisconnectReason::Shutdown => f.write_str("server shutdown"),
            DisconnectReason::IdleTimeout => f.write_str("idle timeout"),
            DisconnectReason::FrameTimeout => f.write_str("frame not finished in time"),
            DisconnectReason::FirstMessageTimeout => f.write_str("no first message in time"),
            DisconnectReason::SlowConsumer => f.write_str("peer does not read (slow consumer)"),
            DisconnectReason::Limit(which) => write!(f, "limit: {which}"),
            DisconnectReason::Replaced => {
                f.write_str("replaced by a newer connection with its key")
            }
        }
    }
}

/// One peer. Cheap to clone; every clone is the same connection.
///
/// Handlers receive it as their first argument; [`Connections`]
/// hands it out to code outside handlers.
///
/// # Examples
///
/// ```
/// use flexi_socket::{Connection, DisconnectReason, on_connect, on_disconnect};
///
/// #[on_connect]
/// async fn hello(conn: Connection) -> flexi_socket::Result<()> {
///     println!("#{} {} connected to {}", conn.id(), conn.peer_addr(), conn.local_addr());
///     conn.send("welcome").await
/// }
///
/// #[on_disconnect]
/// async fn bye(conn: Connection, reason: DisconnectReason) {
///     let stats = conn.stats();
///     println!("#{} left ({reason}) after {} messages", conn.id(), stats.messages_in);
/// }
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

struct Shared {
    id: u64,
    addrs: Addresses,
    endpoint: Arc<Endpoint>,
    /// Set once, when classified: what the client type decides, together,
    /// so no send ever mixes one type's routes with another's framing.
    /// Boxed: until then (and for good without a classifier) a pointer, not
    /// the client type, routes, encoder and counters.
    classified: OnceBox<Classified>,
    /// Classification ran (or needs not run): it runs at most once.
    classification_done: AtomicBool,
    first_message: AtomicBool,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    /// The kinds of error it has had: its first of each is logged beyond
    /// the endpoint's budget (see `log_budget`).
    error_kinds_seen: KindsSeen,
    /// This connection's own encoder, for a custom codec (a built-in codec's
    /// is shared: see `Endpoint::encoder`).
    encoder: Option<Box<FrameEncoder>>,
    outbound: OutboundSender,
    close: CloseSignal,
    /// For the deadline sweeper.
    activity: Activity,
    /// The typed per-connection state (`set_state`), made by the first
    /// `set_state`: a connection without any holds a pointer, not a lock
    /// and an empty `Vec`.
    state: OnceBox<Mutex<StateValues>>,
    /// The message history, when the builder asked for one.
    history: Option<Box<Recorder>>,
    /// Requests waiting for this connection's replies, once it was asked
    /// (see `request.rs`): until then a null pointer, one load per message.
    requests: OnceBox<replies::Replies>,
}

impl Connection {
    /// A new connection of `endpoint`; [`Endpoint::open`] is the one place
    /// connections are made.
    fn new(
        id: u64,
        addrs: Addresses,
        endpoint: Arc<Endpoint>,
        outbound: OutboundSender,
    ) -> Result<Self, Error> {
        let encoder = match endpoint.encoder {
            Some(_) => None,
            None => Some(Box::new(endpoint.framing.try_encoder()?)),
        };
        let classification_done = AtomicBool::new(endpoint.classifier.is_none());
        let history = endpoint
            .limits
            .history_at_open(endpoint.classifier.is_some())
            .map(|limits| Box::new(Recorder::new(limits)));
        Ok(Self {
            shared: Arc::new(Shared {
                id,
                addrs,
                endpoint,
                classified: OnceBox::new(),
                classification_done,
                first_message: AtomicBool::new(true),
                messages_in: AtomicU64::new(0),
                bytes_in: AtomicU64::new(0),
                error_kinds_seen: KindsSeen::default(),
                encoder,
                outbound,
                close: CloseSignal::default(),
                activity: Activity::default(),
                state: OnceBox::new(),
                history,
                requests: OnceBox::new(),
            }),
        })
    }

    /// The server-wide unique id of this connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, Connections};
    ///
    /// // Keep the id, not the connection, to reach the peer later.
    /// async fn remind(connections: &Connections, conn: &Connection) -> flexi_socket::Result<()> {
    ///     connections.send_to(conn.id(), "still there?").await
    /// }
    /// ```
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The peer's address.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_connect};
    ///
    /// #[on_connect]
    /// async fn where_from(conn: Connection) {
    ///     let peer = conn.peer_addr(); // shown as `ip:port`, or `unix:PATH`
    ///     match peer.ip() {
    ///         Some(ip) if ip.is_loopback() => println!("{peer}: this machine"),
    ///         Some(ip) => println!("{peer}: from {ip}"),
    ///         None => println!("{peer}: a Unix socket peer"),
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn peer_addr(&self) -> PeerAddr {
        self.shared.addrs.peer.clone()
    }

    /// The local address the peer connected to.
    ///
    /// # Examples
    ///
    /// A server listening on several addresses tells them apart:
    ///
    /// ```
    /// use flexi_socket::{Connection, on_message};
    ///
    /// #[on_message]
    /// async fn answer(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     let port = conn.local_addr().socket_addr().map(|addr| addr.port());
    ///     conn.send(format!("port {port:?} got {msg}")).await
    /// }
    /// # fn main() {}
    /// ```
    pub fn local_addr(&self) -> PeerAddr {
        self.shared.addrs.local.clone()
    }

    /// What the load balancer's PROXY header said, on a server with
    /// [`proxy_protocol`](crate::ServerBuilder::proxy_protocol): the address
    /// the client connected to, and the header's extensions. `None` for a
    /// connection without one. ([`peer_addr`](Self::peer_addr) is already the
    /// client's address.)
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_connect};
    ///
    /// #[on_connect]
    /// async fn through_balancer(conn: Connection) {
    ///     if let Some(header) = conn.proxy_header() {
    ///         println!("{} connected to {} (PROXY v{})", conn.peer_addr(), header.destination(), header.version());
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn proxy_header(&self) -> Option<&ProxyHeader> {
        self.shared.addrs.proxy.as_deref()
    }

    /// The client type, once the first message classified the connection;
    /// `None` before that or when the server has no classifier.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_message};
    ///
    /// #[on_message]
    /// async fn anything(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     match conn.client_type() {
    ///         Some(kind) if *kind == "001" => conn.send(format!("ACK {msg}")).await,
    ///         Some(kind) => conn.send(format!("{kind}: {msg}")).await,
    ///         None => conn.send("who are you?").await,
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn client_type(&self) -> Option<&ClientType> {
        self.shared
            .classified
            .get()
            .map(|classified| &classified.client_type)
    }

    /// Whether the message being handled is the connection's first one (the
    /// one that classified it).
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_message};
    ///
    /// #[on_message]
    /// async fn login_then_data(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     if conn.is_first_message() {
    ///         return conn.send(format!("hello {msg}")).await; // the first line names the device
    ///     }
    ///     conn.send("ok").await
    /// }
    /// # fn main() {}
    /// ```
    pub fn is_first_message(&self) -> bool {
        self.shared.first_message.load(Ordering::Relaxed)
    }

    /// Message and byte counters.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_message};
    ///
    /// #[on_message]
    /// async fn status(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     let stats = conn.stats();
    ///     let line = format!("{} in ({} bytes), {} out", stats.messages_in, stats.bytes_in, stats.messages_out);
    ///     conn.send(if msg == "stats" { line } else { msg }).await
    /// }
    /// # fn main() {}
    /// ```
    pub fn stats(&self) -> ConnectionStats {
        let (messages_out, bytes_out) = self.shared.outbound.queued();
        ConnectionStats {
            messages_in: self.shared.messages_in.load(Ordering::Relaxed),
            messages_out,
            bytes_in: self.shared.bytes_in.load(Ordering::Relaxed),
            bytes_out,
        }
    }

    /// Closes the connection: reading stops, messages already read are still
    /// handled, `on_disconnect` runs (with [`DisconnectReason::Closed`]),
    /// what was sent before is flushed, then the socket closes (FIN, then the
    /// peer's leftovers are drained).
    ///
    /// From the moment it is called, [`send`](Self::send) fails with
    /// [`Error::ConnectionClosed`](crate::Error::ConnectionClosed), from any
    /// task and from `on_disconnect` too: nothing sent after `close()` reaches
    /// the peer, so nothing is reported sent that was not.
    ///
    /// It returns at once, so that a handler or any synchronous code can
    /// call it; [`closed`](Self::closed) waits for the end.
    ///
    /// ```
    /// use flexi_socket::{Connection, Error};
    ///
    /// async fn bye(conn: Connection) {
    ///     conn.send("BYE").await.ok(); // written before the socket closes
    ///     conn.close();
    ///     assert!(matches!(conn.send("late").await, Err(Error::ConnectionClosed { .. })));
    /// }
    /// # let _ = bye;
    /// ```
    pub fn close(&self) {
        self.close_with(DisconnectReason::Closed);
    }

    /// [`close`](Self::close) for `reason`: sends are refused from now on,
    /// what the queue holds is still written.
    pub(crate) fn close_with(&self, reason: DisconnectReason) {
        self.shared.outbound.refuse_more();
        self.close_because(reason);
    }

    /// Waits until the connection has ended, whatever ends it: its
    /// `on_disconnect` has run, its queue was flushed (or given up at the
    /// shutdown deadline) and its socket is closed. Completes at once for a
    /// connection that already ended.
    ///
    /// For code outside the connection's own handlers (a handler of another
    /// connection, a task holding a [`Connections`] entry): those handlers
    /// run in the connection's own task, which waits for them.
    ///
    /// # Panics
    ///
    /// If awaited in the connection's own task, where it would wait for
    /// itself forever (caught like any handler's panic: `on_error` is told).
    /// A UDP session's `on_connect` is not caught: there it hangs the session.
    ///
    /// ```
    /// use flexi_socket::Connections;
    ///
    /// /// Closes the connection with `id` and returns once it is gone.
    /// async fn kick(connections: &Connections, id: u64) {
    ///     if let Some(conn) = connections.get(id) {
    ///         conn.close();
    ///         conn.closed().await;
    ///     }
    /// }
    /// # let _ = kick;
    /// ```
    pub async fn closed(&self) {
        let close = &self.shared.close;
        if close.has_ended() {
            return;
        }
        std::future::poll_fn(|cx| {
            assert!(
                !close.polled_by_driver(cx),
                "Connection::closed() was awaited in the connection's own task (one of its \
                 handlers), where it would wait for itself forever; call close() and return"
            );
            std::task::Poll::Ready(())
        })
        .await;
        close.ended().await;
    }

    /// Closes with `reason` unless the connection is already closing for another.
    pub(crate) fn close_because(&self, reason: DisconnectReason) {
        self.shared.close.close(reason);
    }

    /// Cuts the connection at the shutdown deadline: its task stops where
    /// it is (the stream driver's `abort`, or `pipeline::until_aborted`).
    pub(crate) fn abort(&self) {
        self.shared.close.abort();
    }

    /// Notes an error of kind `kind` (an index of `ERROR_KINDS`); whether
    /// it is the connection's first of that kind.
    pub(crate) fn first_error_of_kind(&self, kind: usize) -> bool {
        self.shared.error_kinds_seen.first(kind)
    }

    /// Why the connection is closing, once it is.
    pub(crate) fn close_reason(&self) -> Option<DisconnectReason> {
        self.shared.close.reason()
    }

    /// What the deadline sweeper needs to know of this connection.
    pub(crate) fn activity(&self) -> &Activity {
        &self.shared.activity
    }

    /// The close signal, for the connection's own task and its waiters.
    pub(crate) fn close_signal(&self) -> &CloseSignal {
        &self.shared.close
    }

    /// Frames sent and not yet written to the socket.
    pub(crate) fn queued(&self) -> u64 {
        self.shared.outbound.pending()
    }

    /// Whether the connection is closing or closed, for whatever reason.
    ///
    /// # Examples
    ///
    /// A long answer stops early when the peer is going away:
    ///
    /// ```
    /// use flexi_socket::{Connection, on_message};
    ///
    /// #[on_message]
    /// async fn dump(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     for line in msg.split(',') {
    ///         if conn.is_closing() {
    ///             break;
    ///         }
    ///         conn.send(line.to_owned()).await?;
    ///     }
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    pub fn is_closing(&self) -> bool {
        self.shared.close.reached(CloseStage::Closing)
    }

    /// Stores typed per-connection state, replacing any earlier value of the type.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_message};
    ///
    /// #[derive(Clone)]
    /// struct Account(String);
    ///
    /// #[on_message]
    /// async fn login(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     match conn.state::<Account>() {
    ///         None => {
    ///             conn.set_state(Account(msg)); // the first line is the account
    ///             conn.send("logged in").await
    ///         }
    ///         Some(Account(account)) => conn.send(format!("{account}: {msg}")).await,
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn set_state<T: Send + 'static>(&self, value: T) {
        let mut state = sync::lock(self.shared.state.get_or_init(Box::default));
        let slot = (TypeId::of::<T>(), Box::new(value) as Box<dyn Any + Send>);
        match state.iter_mut().find(|(id, _)| *id == TypeId::of::<T>()) {
            Some(existing) => *existing = slot,
            None => state.push(slot),
        }
    }

    /// A clone of the per-connection state of type `T`, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_message};
    ///
    /// #[derive(Clone, Copy)]
    /// struct Zone(u8);
    ///
    /// #[on_message]
    /// async fn report(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     let zone = conn.state::<Zone>().map_or(0, |Zone(zone)| zone); // a copy
    ///     conn.send(format!("zone {zone}: {msg}")).await
    /// }
    /// # fn main() {}
    /// ```
    pub fn state<T: Clone + Send + 'static>(&self) -> Option<T> {
        self.with_state(|value: &mut T| value.clone())
    }

    /// Runs `f` on the per-connection state of type `T`, if set.
    ///
    /// # Examples
    ///
    /// Change the state in place (no `Clone` needed):
    ///
    /// ```
    /// use flexi_socket::{Connection, on_connect, on_message};
    ///
    /// struct Seen(Vec<String>);
    ///
    /// #[on_connect]
    /// async fn start(conn: Connection) {
    ///     conn.set_state(Seen(Vec::new()));
    /// }
    ///
    /// #[on_message]
    /// async fn remember(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     let count = conn.with_state(|seen: &mut Seen| {
    ///         seen.0.push(msg);
    ///         seen.0.len()
    ///     });
    ///     conn.send(format!("{} messages so far", count.unwrap_or(0))).await
    /// }
    /// # fn main() {}
    /// ```
    pub fn with_state<T: Send + 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut state = self.lock_state()?;
        state
            .iter_mut()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, value)| value.downcast_mut::<T>())
            .map(f)
    }

    /// Removes and returns the per-connection state of type `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_disconnect};
    ///
    /// struct Session(Vec<String>);
    ///
    /// #[on_disconnect]
    /// async fn flush(conn: Connection) {
    ///     if let Some(Session(lines)) = conn.take_state::<Session>() {
    ///         println!("{} sent {} lines", conn.peer_addr(), lines.len());
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn take_state<T: Send + 'static>(&self) -> Option<T> {
        let mut state = self.lock_state()?;
        let index = state.iter().position(|(id, _)| *id == TypeId::of::<T>())?;
        state.swap_remove(index).1.downcast::<T>().ok().map(|b| *b)
    }

    /// The typed state, locked, once a value was ever set.
    fn lock_state(&self) -> Option<std::sync::MutexGuard<'_, StateValues>> {
        // A panic while holding the lock cannot leave the Vec half-updated.
        self.shared.state.get().map(sync::lock)
    }

    /// The server's shared application state of type `T` (see
    /// [`ServerBuilder::state`](crate::ServerBuilder::state)), if that is its type.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, FlexiSocket, on_message};
    ///
    /// struct Config {
    ///     greeting: String,
    /// }
    ///
    /// #[on_message]
    /// async fn greet(conn: Connection, name: String) -> flexi_socket::Result<()> {
    ///     let greeting = conn.app_state::<Config>().map_or("hello", |c| c.greeting.as_str());
    ///     conn.send(format!("{greeting}, {name}")).await
    /// }
    ///
    /// # async fn run() -> flexi_socket::Result<()> {
    /// FlexiSocket::server("127.0.0.1:8081")
    ///     .state(Config { greeting: "welcome".into() })
    ///     .serve()
    ///     .await
    /// # }
    /// # fn main() {}
    /// ```
    ///
    /// (A handler may also take [`State<Config>`](crate::State) as an argument:
    /// the same value, cloned for the handler.)
    pub fn app_state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.shared
            .endpoint
            .app_state
            .as_deref()?
            .downcast_ref::<T>()
    }

    /// What this connection shares with the others of its server or client.
    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.shared.endpoint
    }

    /// The routes for this connection's client type (the defaults until classified).
    pub(crate) fn routes(&self) -> &Arc<Routes> {
        self.shared
            .classified
            .get()
            .map_or_else(|| self.default_routes(), |classified| &classified.routes)
    }

    /// What a send needs from classification, from one look at it (it may
    /// happen meanwhile): how sends go, the routes they take, and the encoder.
    #[inline]
    fn sending(&self) -> (Sends, &Arc<Routes>, &FrameEncoder) {
        match self.shared.classified.get() {
            Some(classified) => (
                classified.sends,
                &classified.routes,
                classified
                    .encoder
                    .as_deref()
                    .unwrap_or_else(|| self.default_encoder()),
            ),
            None => (
                self.shared.endpoint.unclassified_sends,
                self.default_routes(),
                self.default_encoder(),
            ),
        }
    }

    /// The encoder until classified, and for client types without their own framing.
    fn default_encoder(&self) -> &FrameEncoder {
        match &self.shared.encoder {
            Some(own) => own,
            None => self
                .shared
                .endpoint
                .encoder
                .as_ref()
                .expect("a connection without an encoder of its own shares the endpoint's"),
        }
    }

    fn default_routes(&self) -> &Arc<Routes> {
        self.shared.endpoint.routes.default_routes()
    }

    /// The framing this connection's bytes are decoded with now: its client
    /// type's own, once classified, or the endpoint's.
    pub(crate) fn framing(&self) -> &Framing {
        self.own_framing().unwrap_or(&self.shared.endpoint.framing)
    }

    /// The framing of this connection's client type, if it has its own.
    pub(crate) fn own_framing(&self) -> Option<&Framing> {
        self.shared
            .endpoint
            .client_framing
            .for_type(self.client_type()?)
    }

    /// Whether classification ran and is over, whatever its outcome (it may
    /// have failed and left the connection unclassified for good).
    pub(crate) fn classification_over(&self) -> bool {
        self.shared.classification_done.load(Ordering::Relaxed)
    }

    /// Whether classification is still to run; true once at most, for the
    /// caller that is to run it.
    pub(crate) fn take_classification(&self) -> bool {
        // Asked for every inbound frame: a plain load answers all but the
        // first, without a locked read-modify-write per message.
        !self.classification_over()
            && !self
                .shared
                .classification_done
                .swap(true, Ordering::Relaxed)
    }

    /// Gives the connection its client type, that type's routes and, if the
    /// type has its own framing, that framing's `encoder`.
    pub(crate) fn classify_as(&self, client_type: ClientType, encoder: Option<FrameEncoder>) {
        let routes = Arc::clone(self.shared.endpoint.routes.routes_for(&client_type));
        // Filed under its type once, so a broadcast to the type visits its members only.
        self.shared
            .endpoint
            .connections
            .lock()
            .classified(self.id(), &client_type);
        if let Some(history) = &self.shared.history {
            history.set_limits(self.shared.endpoint.limits.history_for(&client_type));
        }
        // Classification runs once (take_classification): this cannot be set twice.
        let _ = self.shared.classified.set(Box::new(Classified {
            sends: Sends::of(&routes, self.keeps_history()),
            traffic: self.shared.endpoint.counters.traffic(Some(&client_type)),
            client_type,
            routes,
            encoder: encoder.map(Box::new),
        }));
    }

    /// The last messages in and out, with their raw and processed forms,
    /// when the builder keeps a history
    /// ([`history`](crate::ServerBuilder::history)); empty otherwise. In
    /// `on_disconnect` it holds the connection's last words.
    ///
    /// ```no_run
    /// # use flexi_socket::{Connection, DisconnectReason};
    /// async fn gone(conn: Connection, reason: DisconnectReason) {
    ///     eprintln!("{} left ({reason}); last messages:\n{}", conn.peer_addr(), conn.history());
    /// }
    /// ```
    pub fn history(&self) -> History {
        self.shared
            .history
            .as_ref()
            .map_or_else(History::default, |history| history.snapshot())
    }

    /// Records an inbound message as decoded (`raw`) and as handed to the
    /// handler (`None`: `after_receive` dropped it), if history is on.
    pub(crate) fn record_inbound(&self, raw: &[u8], processed: Option<&[u8]>) {
        if let Some(history) = &self.shared.history {
            history.record(Direction::Inbound, raw, processed, self.client_type());
        }
    }

    /// Records an outbound message as given to `send` and as written
    /// (`None`: `before_send` dropped it), if history is on.
    pub(crate) fn record_outbound(&self, given: &[u8], written: Option<&[u8]>) {
        if let Some(history) = &self.shared.history {
            history.record(Direction::Outbound, given, written, self.client_type());
        }
    }

    /// Whether the history is on (a sender keeps the given message aside).
    pub(crate) fn keeps_history(&self) -> bool {
        self.shared.history.is_some()
    }

    /// Classification failed (the classifier panicked): the connection
    /// stays unclassified, and keeps the default history, if any.
    pub(crate) fn classification_failed(&self) {
        if let Some(history) = &self.shared.history {
            let unclassified = self
                .shared
                .endpoint
                .limits
                .history_for(&ClientType::DEFAULT);
            history.set_limits(unclassified);
        }
    }

    /// Counts one inbound message. Only the connection's own task calls this,
    /// so a plain load and store do, without a locked add per message.
    pub(crate) fn count_inbound(&self, bytes: usize) {
        let shared = &self.shared;
        let messages = shared.messages_in.load(Ordering::Relaxed);
        shared.messages_in.store(messages + 1, Ordering::Relaxed);
        let total = shared.bytes_in.load(Ordering::Relaxed);
        shared
            .bytes_in
            .store(total + bytes as u64, Ordering::Relaxed);
    }

    /// Records one inbound message of `bytes` in the exported metrics, under
    /// the connection's client type (so the first message is recorded once
    /// it classified the connection). Nothing without the `metrics` feature.
    #[inline]
    pub(crate) fn meter_received(&self, bytes: usize) {
        #[cfg(feature = "metrics")]
        self.traffic().received(bytes);
        #[cfg(not(feature = "metrics"))]
        let _ = bytes;
    }

    /// Records one queued outbound frame of `bytes` in the exported
    /// metrics. Nothing without the `metrics` feature.
    #[inline]
    pub(crate) fn meter_sent(&self, bytes: usize) {
        #[cfg(feature = "metrics")]
        self.traffic().sent(bytes);
        #[cfg(not(feature = "metrics"))]
        let _ = bytes;
    }

    /// The exported traffic counters for this connection's client type now.
    #[cfg(feature = "metrics")]
    fn traffic(&self) -> &Traffic {
        match self.shared.classified.get() {
            Some(classified) => &classified.traffic,
            None => self.shared.endpoint.counters.unclassified(),
        }
    }

    pub(crate) fn first_message_done(&self) {
        self.shared.first_message.store(false, Ordering::Relaxed);
    }
}

/// Where a connection runs between.
pub(crate) struct Addresses {
    /// The peer: the client, behind a PROXY header the client it names.
    pub(crate) peer: PeerAddr,
    pub(crate) local: PeerAddr,
    /// Boxed: most connections have none, and pay a pointer.
    pub(crate) proxy: Option<Box<ProxyHeader>>,
}

/// A connection's typed state: one value per type.
type StateValues = Vec<(TypeId, Box<dyn Any + Send>)>;

/// How a connection's sends go: what every send would otherwise ask of
/// its routes and history, decided once per connection (when it opens, and
/// again when classified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sends {
    /// Straight to the framing and the queue, in the sender's poll.
    Plain,
    /// Through `before_send`, or kept in the history: the boxed way.
    Filtered,
}

impl Sends {
    fn of(routes: &Routes, keeps_history: bool) -> Self {
        if routes.before_send.is_some() || keeps_history {
            Sends::Filtered
        } else {
            Sends::Plain
        }
    }
}

/// What classification decided for a connection.
struct Classified {
    client_type: ClientType,
    routes: Arc<Routes>,
    sends: Sends,
    /// The client type's own encoder (see `framing_for`); boxed, so
    /// connections without one pay a pointer.
    encoder: Option<Box<FrameEncoder>>,
    /// The client type's exported traffic counters (empty, and unused,
    /// without the `metrics` feature).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    traffic: Traffic,
}

/// `#id peer`, and the client type once classified: `#7 192.0.2.7:4000
/// (001)`. The id tells apart connections from one address (NAT, a client
/// that reconnects); the client type says which handlers serve it.
///
/// ```
/// use flexi_socket::{Connection, Message};
///
/// async fn log(conn: Connection, msg: Message) {
///     println!("{conn}: {msg}"); // #7 192.0.2.7:4000 (001): hello
/// }
/// # let _ = log;
/// ```
impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.id(), self.shared.addrs.peer)?;
        match self.client_type() {
            Some(client_type) => write!(f, " ({client_type})"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id())
            .field("peer_addr", &self.peer_addr())
            .field("client_type", &self.client_type())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    /// Every connection holds one, idle or not: what only some connections
    /// use (typed state, waiters for the end, what classification decided)
    /// is made when first used.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_connections_shared_state_stays_small() {
        let size = std::mem::size_of::<super::Shared>();
        eprintln!("shared state {size} bytes");
        // 264 since what is made when first used sits behind one pointer
        // each (`OnceBox`, not `OnceLock<Box>`: 304 before). With the
        // `Arc`'s 16, glibc gives it a 288-byte block (336 before).
        assert!(
            size <= 264,
            "a connection's shared state grew to {size} bytes"
        );
    }
}
