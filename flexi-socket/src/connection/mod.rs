//! The connection layer: one peer, whatever carries it. [`Connection`] (the
//! handle handlers receive) with its sending ([`send`]), closing ([`close`])
//! and why it ended ([`disconnect`]), what classification decided for it
//! ([`classification`]), its typed state ([`state`]) and its message
//! [`history`]; the bounded outbound queue ([`outbound`]), the list of open
//! connections ([`list`]) over the [`directory`] of keys, groups and client
//! types, a connection's key and groups ([`membership`]), what a send to a
//! key reports ([`outcome`]), requests and their replies ([`replies`],
//! [`request`]), the read deadlines ([`deadlines`]), the [`Endpoint`] its
//! server or client shares, error reporting ([`report`](mod@report)),
//! shutdown ([`shutdown`]) and the builders' handler setup ([`setup`]).

mod classification;
mod close;
pub(crate) mod deadlines;
mod directory;
mod disconnect;
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
mod state;

pub use crate::stats::ConnectionStats;
use classification::{ClassificationStage, Classified, Sends};
use close::CloseSignal;
pub(crate) use close::CloseStage;
pub use disconnect::DisconnectReason;
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
use state::StateValues;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use once_cell::race::OnceBox;

use crate::client_type::ClientType;
use crate::error::Error;
use crate::framing::FrameEncoder;
use crate::peer_addr::PeerAddr;
use crate::proxy_header::ProxyHeader;
use deadlines::Activity;
use outbound::OutboundSender;

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
    /// The client, behind a PROXY header the client it names.
    peer: PeerAddr,
    endpoint: Arc<Endpoint>,
    /// Set once, when classified: what the client type decides, together,
    /// so no send ever mixes one type's routes with another's framing.
    /// Boxed: until then (and for good without a classifier) a pointer, not
    /// the client type, routes, encoder and counters.
    classified: OnceBox<Classified>,
    /// Where classification is (a [`ClassificationStage`]): it runs at
    /// most once.
    classification: AtomicU8,
    first_message: AtomicBool,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    /// The kinds of error it has had: its first of each is logged beyond
    /// the endpoint's budget (see `log_budget`).
    error_kinds_seen: KindsSeen,
    outbound: OutboundSender,
    close: CloseSignal,
    /// For the deadline sweeper.
    activity: Activity,
    /// The typed per-connection state (`set_state`), made by the first
    /// `set_state`: a connection without any holds a pointer, not a lock
    /// and an empty `Vec`.
    state: OnceBox<Mutex<StateValues>>,
    /// What few connections have: a null pointer until one of them is
    /// there (a connection without them checks for all of them in one load).
    extras: OnceBox<Extras>,
}

/// What few connections have, together behind one pointer: every
/// connection holds one word for them, not five (its shared state is a
/// 224-byte block in glibc's heap, not 256). Made with the connection
/// when it has one of the first four, or by its first request. Where every
/// connection has one (a PROXY listener's, a custom codec's, history on),
/// each pays this 48-byte block, and reaching it is one load more.
#[derive(Default)]
struct Extras {
    /// Its local address where it differs from the endpoint's common one
    /// (see `Endpoint::common_local_addr`).
    local: Option<Box<PeerAddr>>,
    proxy: Option<Box<ProxyHeader>>,
    /// Its own encoder, for a custom codec (a built-in codec's is shared:
    /// see `Endpoint::encoder`).
    encoder: Option<Box<FrameEncoder>>,
    /// The message history, when the builder asked for one.
    history: Option<Box<Recorder>>,
    /// Requests waiting for its replies, once it was asked (see `request.rs`).
    requests: OnceBox<replies::Replies>,
}

impl Extras {
    /// Whether it holds nothing: the connection needs none.
    fn is_empty(&self) -> bool {
        self.local.is_none()
            && self.proxy.is_none()
            && self.encoder.is_none()
            && self.history.is_none()
            && self.requests.get().is_none()
    }
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
        let Addresses { peer, local, proxy } = addrs;
        let encoder = match endpoint.encoder {
            Some(_) => None,
            None => Some(Box::new(endpoint.framing.try_encoder()?)),
        };
        let classification = AtomicU8::new(if endpoint.classifier.is_none() {
            ClassificationStage::Over
        } else {
            ClassificationStage::ToRun
        } as u8);
        let history = endpoint
            .limits
            .history_at_open(endpoint.classifier.is_some())
            .map(|limits| Box::new(Recorder::new(limits)));
        let extras = Extras {
            local: local.map(Box::new),
            proxy: proxy.map(Box::new),
            encoder,
            history,
            requests: OnceBox::new(),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                id,
                peer,
                endpoint,
                classified: OnceBox::new(),
                classification,
                first_message: AtomicBool::new(true),
                messages_in: AtomicU64::new(0),
                bytes_in: AtomicU64::new(0),
                error_kinds_seen: KindsSeen::default(),
                outbound,
                close: CloseSignal::default(),
                activity: Activity::default(),
                state: OnceBox::new(),
                extras: if extras.is_empty() {
                    OnceBox::new()
                } else {
                    OnceBox::with_value(Box::new(extras))
                },
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
        self.shared.peer.clone()
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
        match self.extras().and_then(|extras| extras.local.as_deref()) {
            Some(own) => own.clone(),
            None => self.endpoint().common_local_addr().clone(),
        }
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
        self.extras()?.proxy.as_deref()
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
    /// [`Error::ConnectionClosed`], from any task and from `on_disconnect`
    /// too: nothing sent after `close()` reaches the peer, so nothing is
    /// reported sent that was not.
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

    /// What this connection shares with the others of its server or client.
    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.shared.endpoint
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

    pub(crate) fn first_message_done(&self) {
        self.shared.first_message.store(false, Ordering::Relaxed);
    }

    /// What few connections have, if this one has any of it.
    #[inline]
    fn extras(&self) -> Option<&Extras> {
        self.shared.extras.get()
    }
}

/// Where a connection runs between.
pub(crate) struct Addresses {
    /// The peer: the client, behind a PROXY header the client it names.
    pub(crate) peer: PeerAddr,
    /// `None`: the endpoint's common one (see `Endpoint::common_local_addr`),
    /// which most connections have.
    pub(crate) local: Option<PeerAddr>,
    pub(crate) proxy: Option<ProxyHeader>,
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
        write!(f, "#{} {}", self.id(), self.shared.peer)?;
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
        // 200 since what few connections have sits behind one pointer
        // (`Extras`); 232 since the local address most connections share is
        // the endpoint's, and the queue keeps its transport (264 before;
        // 304 before what is made when first used sat behind one pointer
        // each, `OnceBox`). With the `Arc`'s 16, glibc gives it a 224-byte
        // block (256 before, 288 before that, 336 before that).
        assert!(
            size <= 200,
            "a connection's shared state grew to {size} bytes"
        );
    }
}
