//! UDP servers: each datagram is a message, and each peer address a session
//! served like a TCP connection (on_connect, classification by its first
//! datagram, per-type handlers, typed state, on_disconnect once it goes idle).
//!
//! One receive loop reads the socket and hands each datagram to its peer's
//! session without ever waiting on it; sessions (`transport/datagram`) run
//! their events in order, each in its own task, or, when a session waits
//! with nothing else to do and its handler finishes at once, right in the
//! receive loop (in place), replies included.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use siphasher::sip::SipHasher13;
use tokio::net::UdpSocket;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::accept::StreamSetup;
use super::admission::Admission;
use super::bind::{self, SocketOptions};
use super::builder::{FlexiSocket, ServerBuilder, ServerTransport, handlers_beside, sealed};
use super::{Listener, Server};
use crate::address::{self, Accepts};
use crate::connection::outbound::{Frames, Transport};
use crate::connection::{Endpoint, Side};
use crate::error::{Error, Result};
use crate::sync;
use crate::transport::datagram::{
    self, DatagramPeer, Inbound, Inbox, InboxRefused, MessageBuffer, ReceiveBatch, ReceiveErrors,
    UdpOptions, Unsent,
};
use crate::transport::spawn_in;

/// A [`ServerBuilder`] for UDP: what [`FlexiSocket::udp`] returns. Its own
/// settings are the session's: `udp_session_idle`, `max_datagram`,
/// `udp_session_queue`.
#[derive(Debug)]
pub struct Udp {
    options: UdpOptions,
}

impl FlexiSocket {
    /// Starts building a UDP server that will listen on `addr` (e.g.
    /// `"0.0.0.0:8082"`, or port 0 for any free port).
    ///
    /// Each datagram is one message (set [`framing`](ServerBuilder::framing)
    /// to split datagrams further), and each peer address is a connection,
    /// its session: its first datagram runs on_connect, then classifies it;
    /// replies from `conn.send` go back to it as one datagram each. A session
    /// ends after [`udp_session_idle`](ServerBuilder::udp_session_idle)
    /// without a datagram from its peer. At
    /// [`max_connections`](ServerBuilder::max_connections) sessions,
    /// datagrams from new peers are dropped and counted
    /// ([`ServerStats::datagrams_dropped`](crate::ServerStats::datagrams_dropped));
    /// live sessions are never evicted for them.
    pub fn udp(addr: impl ToString) -> ServerBuilder<Udp> {
        ServerBuilder::new(
            addr.to_string(),
            Udp {
                options: UdpOptions::default(),
            },
        )
    }
}

impl ServerBuilder<Udp> {
    /// UDP: how long a peer's session lives without a datagram from it
    /// (default 60 s). Then on_disconnect runs with
    /// [`IdleTimeout`](crate::DisconnectReason::IdleTimeout), and the peer's
    /// next datagram opens a new session. (Replies do not keep a session alive.)
    /// The server's deadline sweeper checks it, as it does
    /// [`idle_timeout`](Self::idle_timeout) for TCP, in ticks of a sixteenth
    /// of `idle` (at least 5 ms, at most 1 s): a session ends up to two ticks
    /// late, and never while its handlers run (their time does not count).
    ///
    /// # Panics
    ///
    /// If `idle` is zero.
    ///
    /// # Examples
    ///
    /// A UDP server's own settings together:
    ///
    /// ```
    /// use std::time::Duration;
    /// use flexi_socket::FlexiSocket;
    ///
    /// let server = FlexiSocket::udp("0.0.0.0:8082")
    ///     .udp_session_idle(Duration::from_secs(30))  // then on_disconnect
    ///     .max_datagram(1_500)                        // longer ones are dropped and reported
    ///     .udp_session_queue(16)                      // datagrams waiting per peer
    ///     .max_connections(10_000);                   // sessions at once
    /// # let _ = server;
    /// ```
    #[must_use]
    #[track_caller]
    pub fn udp_session_idle(mut self, idle: Duration) -> Self {
        assert!(!idle.is_zero(), "udp_session_idle must be longer than zero");
        self.transport.options.session_idle = idle;
        self
    }

    /// UDP: the longest datagram accepted, in bytes (default 8 KiB: several
    /// times what fits one Ethernet frame, which is what UDP protocols use).
    /// A longer datagram is dropped whole, never delivered cut, and reported
    /// to its session's on_error as [`Error::DatagramTooLarge`]; the session
    /// goes on. At most 65 507 bytes fit in an IPv4 datagram.
    ///
    /// # Panics
    ///
    /// If `bytes` is 0.
    #[must_use]
    #[track_caller]
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "max_datagram must allow at least one byte");
        self.transport.options.max_datagram = bytes;
        self
    }

    /// UDP: how many datagrams may wait for one session's handlers (default
    /// 64), which with [`max_datagram`](Self::max_datagram) bounds the memory
    /// a fast peer can cost: each waiting datagram holds at most
    /// `max_datagram` bytes (a short one, the whole buffer of up to 4 KiB it
    /// shares with the datagrams received around it: see
    /// [`Message`](crate::Message)). When
    /// it is full, further datagrams from that peer are dropped, counted, and
    /// reported to its on_error as [`Error::DatagramsDropped`].
    ///
    /// # Panics
    ///
    /// If `datagrams` is 0.
    #[must_use]
    #[track_caller]
    pub fn udp_session_queue(mut self, datagrams: usize) -> Self {
        assert!(
            datagrams > 0,
            "udp_session_queue needs room for at least one datagram"
        );
        self.transport.options.session_queue = datagrams;
        self
    }
}

impl ServerTransport for Udp {}

impl sealed::Sealed for Udp {
    fn bind_listener(
        builder: ServerBuilder<Self>,
        beside: Option<sealed::Beside>,
    ) -> Pin<Box<dyn Future<Output = Result<Server>> + Send>> {
        Box::pin(async move {
            address::check(&builder.addr, Accepts::UDP_SERVER)?;
            let mut options = builder.transport.options;
            options.framed = builder.framing.is_some();
            let framing = options.framing(builder.framing.unwrap_or_default());
            let (setup, limits, wide) =
                handlers_beside(builder.setup, &builder.addr, builder.limits, beside)?;
            let limits = options.limits(limits);
            let endpoint = setup.endpoint_in(
                framing,
                builder.client_framing,
                limits,
                Side::Server,
                None,
                wide,
            )?;
            let listener = UdpListener::bind(&builder.addr, options, builder.socket)
                .await
                .map_err(|source| Error::Bind {
                    addr: builder.addr.clone(),
                    source,
                })?;
            Server::new(Listener::Udp(listener), endpoint, StreamSetup::default())
        })
    }
}

/// A bound UDP socket and how to serve it.
#[derive(Debug)]
pub(super) struct UdpListener {
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    options: UdpOptions,
}

impl UdpListener {
    async fn bind(addr: &str, options: UdpOptions, socket: SocketOptions) -> io::Result<Self> {
        let socket = match super::activation::socket_index(addr) {
            Some(index) => index.and_then(super::activation::udp_socket)?,
            None => bind::udp(addr, socket).await?,
        };
        Ok(Self {
            local_addr: socket.local_addr()?,
            socket: Arc::new(socket),
            options,
        })
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Serves `listener` until `signal` completes or the server shuts down;
/// the server's shutdown is then started. The receive loop runs as a task
/// of its own, on a worker: run in this future it would be on the caller's
/// thread (often main, under `block_on`), and every datagram would cross
/// threads to reach its session. Returns the loop's panic, if it panicked,
/// for the caller to resume once the sessions are shut down.
pub(super) async fn serve(
    listener: UdpListener,
    endpoint: &Arc<Endpoint>,
    admission: &Arc<Admission>,
    tasks: &TaskTracker,
    signal: Pin<&mut impl Future<Output = ()>>,
) -> Option<Box<dyn Any + Send>> {
    let receiver = Receiver {
        socket: listener.socket,
        local_addr: listener.local_addr,
        options: listener.options,
        endpoint: Arc::clone(endpoint),
        admission: Arc::clone(admission),
        tasks: tasks.clone(),
        sessions: Sessions::default(),
        refusing: false,
    };
    let mut receiving = tokio::spawn(receiver.receive().in_current_span());
    let ended_early = tokio::select! {
        () = endpoint.shutdown.begun() => None,
        () = signal => None,
        joined = &mut receiving => Some(joined),
    };
    endpoint.shutdown.stop_accepting();
    let joined = match ended_early {
        Some(joined) => joined,
        None => receiving.await,
    };
    match joined {
        Ok(()) => None,
        Err(error) if error.is_panic() => Some(error.into_panic()),
        Err(error) => {
            tracing::error!(%error, "the UDP receive loop was cancelled");
            None
        }
    }
}

/// The receive loop's state.
struct Receiver {
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    options: UdpOptions,
    endpoint: Arc<Endpoint>,
    admission: Arc<Admission>,
    tasks: TaskTracker,
    sessions: Sessions,
    /// Whether new peers are being turned away (logged once per streak).
    refusing: bool,
}

impl Receiver {
    /// Receives until the server shuts down, opening a session (a task in
    /// `tasks`) for each new peer. Nothing a peer sends ends the loop.
    async fn receive(mut self) {
        let max_datagram = self.options.max_datagram;
        let mut batch = ReceiveBatch::new(max_datagram);
        let mut messages = MessageBuffer::new(max_datagram);
        // The replies of datagrams handled in place, reused.
        let mut replies = Frames::default();
        let mut errors = ReceiveErrors::default();
        let endpoint = Arc::clone(&self.endpoint);
        // Made once, not per datagram: each new one registers with the token anew.
        let shutdown = endpoint.shutdown.begun();
        tokio::pin!(shutdown);
        loop {
            let received = tokio::select! {
                biased;
                () = &mut shutdown => break,
                received = batch.receive(&self.socket) => received,
            };
            match received {
                Ok(()) => {
                    errors.reset();
                    // Behind: datagrams are only handed on, so that a flood is
                    // shed at its session's queue, not at the socket's buffer.
                    let behind = batch.is_full();
                    for (datagram, length, peer) in batch.datagrams() {
                        let inbound =
                            Inbound::received(datagram, length, max_datagram, &mut messages);
                        let replies = (!behind).then_some(&mut replies);
                        if let Some(unsent) = self.deliver(peer, inbound, replies) {
                            unsent.send().await;
                        }
                    }
                }
                Err(error) => errors.note(&endpoint, error).await,
            }
        }
    }

    /// Hands `inbound` to `peer`'s session, opening one if there is none;
    /// returns the replies left to send when it was handled in place.
    /// `replies`: where the replies go if it is handled in place (`None`: not).
    fn deliver(
        &mut self,
        peer: SocketAddr,
        inbound: Inbound,
        replies: Option<&mut Frames>,
    ) -> Option<Unsent> {
        let inbound = match self.sessions.deliver(peer, inbound, replies) {
            Ok(unsent) => return unsent,
            Err(InboxRefused::Full) => {
                // The session reports the drop to its on_error when it catches up.
                self.dropped(peer, "its session's queue is full");
                return None;
            }
            Err(InboxRefused::Ended(inbound)) => inbound,
        };
        self.open(peer, inbound);
        None
    }

    fn open(&mut self, peer: SocketAddr, inbound: Inbound) {
        let endpoint = &self.endpoint;
        // The loop may be mid-datagram when shutdown starts: no new sessions then.
        if endpoint.shutdown.has_begun() {
            self.dropped(peer, "the server is shutting down");
            return;
        }
        let Some(place) = self.admission.try_admit(peer.ip()) else {
            if !self.refusing {
                tracing::warn!(
                    max_connections = endpoint.limits.max_connections,
                    "at the session cap (max_connections, the per-IP cap or the places reserved for other addresses): dropping datagrams from new peers"
                );
                self.refusing = true;
            }
            self.dropped(peer, "at the session cap");
            return;
        };
        self.refusing = false;
        let (connection, queue) = match endpoint.open(peer, self.local_addr, Transport::Datagrams) {
            Ok(opened) => opened,
            Err(error) => {
                tracing::error!(%peer, %error, "datagram dropped");
                self.dropped(peer, "the codec factory panicked");
                return;
            }
        };
        endpoint.register(&connection);
        let id = connection.id();
        let target = DatagramPeer::new(Arc::clone(&self.socket), peer);
        let (inbox, serve) = datagram::open(connection, queue, target, self.options.session(true));
        // A fresh inbox has room for the datagram that opened it.
        let _ = inbox.offer(inbound);
        self.sessions.insert(peer, inbox);
        let sessions = self.sessions.clone();
        // Debug level, like a TCP connection's: an enabled span costs every
        // datagram an enter and an exit through the subscriber.
        let span =
            tracing::debug_span!("udp_session", id, %peer, client_type = tracing::field::Empty);
        let task = async move {
            serve.await;
            sessions.remove(peer, id);
            drop(place);
        };
        spawn_in(&self.tasks, span, task);
    }

    fn dropped(&self, peer: SocketAddr, why: &str) {
        self.endpoint.counters.datagrams_dropped.add(1);
        tracing::debug!(%peer, why, "datagram dropped");
    }
}

/// The open sessions by peer address. A session holds its place under the
/// connection limits until it has left this table, so the table is bounded
/// by `max_connections`. Each inbox is shared, so that a datagram is
/// delivered outside the table's lock (see [`deliver`](Self::deliver)).
#[derive(Clone, Default)]
struct Sessions(Arc<Mutex<HashMap<Peer, Arc<Inbox>, PeerHashing>>>);

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<Peer, Arc<Inbox>, PeerHashing>> {
        // Inserts and removes cannot leave the map half-updated when a panic poisons it.
        sync::lock(&self.0)
    }

    /// Hands `inbound` to `peer`'s inbox, with the table unlocked: a
    /// datagram handled in place runs its handler there, and a session
    /// leaving the table from another worker would otherwise block that
    /// worker's thread until the handler is done. Only the receive loop
    /// inserts, so the inbox found is still `peer`'s; and a session closes
    /// its inbox before it leaves the table, so if it ends meanwhile, the
    /// inbox refuses the datagram as ended (and a new session gets it).
    fn deliver(
        &self,
        peer: SocketAddr,
        inbound: Inbound,
        replies: Option<&mut Frames>,
    ) -> Result<Option<Unsent>, InboxRefused> {
        let inbox = self.lock().get(&Peer(peer)).map(Arc::clone);
        match inbox {
            Some(inbox) => inbox.deliver(inbound, replies),
            None => Err(InboxRefused::Ended(inbound)),
        }
    }

    fn insert(&self, peer: SocketAddr, inbox: Inbox) {
        self.lock().insert(Peer(peer), Arc::new(inbox));
    }

    /// Removes the session `id` of `peer`, unless a newer one took its place.
    fn remove(&self, peer: SocketAddr, id: u64) {
        let removed = {
            let mut sessions = self.lock();
            let peer = Peer(peer);
            if sessions.get(&peer).is_some_and(|inbox| inbox.id() == id) {
                sessions.remove(&peer)
            } else {
                None
            }
        };
        // Dropped after the table's lock: dropping an inbox takes its own
        // lock and wakes its session.
        drop(removed);
    }
}

/// A peer's address as the key of its session, hashed in one write (IPv4)
/// or two (IPv6), where `SocketAddr`'s own `Hash` feeds the hasher field by
/// field, each write a step of its own. Equal addresses hash alike, as
/// `Eq` needs; the IPv6 flow label and scope, left out of the hash, still
/// tell addresses apart in `Eq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peer(SocketAddr);

impl Hash for Peer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.0 {
            SocketAddr::V4(addr) => {
                state.write_u64(u64::from(addr.ip().to_bits()) << 16 | u64::from(addr.port()));
            }
            SocketAddr::V6(addr) => {
                state.write_u128(addr.ip().to_bits());
                state.write_u16(addr.port());
            }
        }
    }
}

/// How the sessions' table hashes peer addresses: SipHash-1-3 under secret
/// keys drawn at random for each server, as std's `HashMap` does, so a
/// flood of datagrams from chosen (spoofed) addresses cannot aim at one
/// bucket. `siphasher`'s, because it takes an IPv4 peer's one `u64` in a
/// single step where std's goes through its path for any bytes: 94
/// instructions per datagram against 158 (callgrind, the UDP echo).
#[derive(Clone)]
struct PeerHashing {
    keys: (u64, u64),
}

impl Default for PeerHashing {
    fn default() -> Self {
        // std's keys are random per thread and differ for each
        // `RandomState`; they are not exposed, but what they hash is as
        // unpredictable.
        let random = std::hash::RandomState::new();
        Self {
            keys: (random.hash_one(0_u8), random.hash_one(1_u8)),
        }
    }
}

impl BuildHasher for PeerHashing {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.keys.0, self.keys.1)
    }
}
