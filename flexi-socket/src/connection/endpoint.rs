//! [`Endpoint`]: what every connection of one server or one client shares
//! (routes, framing, limits, counters, the connection list, the deadlines,
//! the shutdown state), and the one place where a connection is created.
//!
//! A connection knows its endpoint, never the server or client around it:
//! what only a server has (accept permits, the per-IP table, listeners, TLS)
//! stays in `server/`, what only a client has (reconnecting, the outbox) in
//! `client/`; a client's waiting requests reach inbound messages through
//! the [`ReplyHook`] it installs here.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::Handle;

use super::deadlines::Deadlines;
use super::list::Connections;
use super::log_budget::LogBudget;
use super::outbound::{self, OutboundReceiver, Transport};
use super::shutdown::Shutdown;
use super::{Addresses, Connection, Sends};
use crate::classify::{ClientFraming, ErasedClassifier};
use crate::config::Limits;
use crate::error::Error;
use crate::framing::{FrameEncoder, Framing};
use crate::handler::RouteTable;
use crate::message::Message;
use crate::peer_addr::PeerAddr;
use crate::proxy_header::ProxyHeader;
use crate::stats::{Counters, ServerStats};

/// Takes inbound messages before `on_message` does: a client's requests
/// waiting for their reply. It sees every message the client's connections
/// send, too, for replies are counted against what was sent.
pub(crate) trait ReplyHook: Send + Sync + fmt::Debug {
    /// A message is being queued on `connection`; `request` names the
    /// waiting request it was sent for, if any.
    fn sending(&self, connection: u64, request: Option<u64>);
    /// Takes `message`, which arrived on `connection`, if a waiting request
    /// wants it; gives it back otherwise.
    fn offer(&self, connection: u64, message: Message) -> Option<Message>;
    /// No reply will come any more: every waiting request ends.
    fn close(&self);
}

/// What every connection of one server (or one client) shares.
pub(crate) struct Endpoint {
    pub(crate) routes: RouteTable,
    pub(crate) app_state: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) classifier: Option<ErasedClassifier>,
    /// The framing until a connection is classified, and of every client type without its own.
    pub(crate) framing: Framing,
    /// That framing's encoder, when connections can share it (built-in codecs).
    pub(crate) encoder: Option<FrameEncoder>,
    /// How a connection's sends go until classified (see [`Sends`]): the
    /// same for all of them, so decided here rather than per connection.
    pub(super) unclassified_sends: Sends,
    pub(crate) client_framing: ClientFraming,
    pub(crate) connections: Connections,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) limits: Limits,
    /// The read deadlines of its connections, kept by `deadlines::sweep`.
    pub(crate) deadlines: Deadlines,
    pub(crate) counters: Arc<Counters>,
    /// How many connection errors of each kind are logged.
    pub(crate) log_budget: Arc<LogBudget>,
    next_id: Arc<AtomicU64>,
    /// Client mode only: requests waiting for their reply.
    pub(crate) replies: Option<Arc<dyn ReplyHook>>,
    /// The runtime its connections' tasks run on, set when the first of
    /// them rests: a resting connection's task comes back there, woken
    /// perhaps on a thread outside it (see `transport::stream::rest`).
    pub(crate) runtime: OnceLock<Handle>,
    /// The local address of its first connection, the one most have (a
    /// listener's own, unless it listens on a wildcard address): a
    /// connection with this one does not keep it itself.
    common_local_addr: OnceLock<PeerAddr>,
}

/// What the endpoints of one server's listeners share: one connection list,
/// one shutdown, one set of counters, one log budget, one sequence of
/// connection ids. Each
/// listener has an endpoint of its own for what differs (its framing, a UDP
/// listener's session limits); a server with one listener, or a client, has
/// all of this to itself.
#[derive(Clone, Debug)]
pub(crate) struct ServerWide {
    connections: Connections,
    shutdown: Arc<Shutdown>,
    counters: Arc<Counters>,
    /// One budget: a flood through any listener logs ten lines a second.
    log_budget: Arc<LogBudget>,
    next_id: Arc<AtomicU64>,
}

impl ServerWide {
    /// A server's (or a client's) own, counting into `counters`.
    fn new(counters: Counters, limits: &Limits) -> Self {
        Self {
            connections: Connections::new(limits),
            shutdown: Arc::default(),
            counters: Arc::new(counters),
            log_budget: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }
}

/// Which end of its connections an endpoint is: a server must have
/// handlers and exports metrics (feature `metrics`); a client needs no
/// handler (it may only `request`) and records no metrics, which would
/// otherwise add into the series of a server in the same process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// The handler side of an endpoint: what [`Endpoint::new`] is built from.
pub(crate) struct Handlers {
    pub(crate) routes: RouteTable,
    pub(crate) app_state: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) classifier: Option<ErasedClassifier>,
}

impl Endpoint {
    /// What a server's (or a client's) connections share.
    pub(crate) fn new(
        handlers: Handlers,
        framing: Framing,
        client_framing: ClientFraming,
        limits: Limits,
        side: Side,
        replies: Option<Arc<dyn ReplyHook>>,
        wide: Option<ServerWide>,
    ) -> Arc<Self> {
        let Handlers {
            routes,
            app_state,
            classifier,
        } = handlers;
        let deadlines = Deadlines::new(&limits, classifier.is_some());
        // One more listener of a server shares its counters; otherwise they
        // are made here, with the classifier's client types to label.
        let wide = wide.unwrap_or_else(|| {
            let counters = Counters::new(
                side == Side::Server,
                classifier
                    .as_ref()
                    .and_then(|classifier| classifier.client_types.as_deref())
                    .unwrap_or_default(),
            );
            ServerWide::new(counters, &limits)
        });
        let encoder = framing.shared_encoder();
        let unclassified_sends = Sends::of(
            routes.default_routes(),
            limits.history_at_open(classifier.is_some()).is_some(),
        );
        Arc::new(Endpoint {
            routes,
            app_state,
            classifier,
            framing,
            encoder,
            unclassified_sends,
            client_framing,
            connections: wide.connections,
            shutdown: wide.shutdown,
            counters: wide.counters,
            log_budget: wide.log_budget,
            deadlines,
            limits,
            next_id: wide.next_id,
            replies,
            runtime: OnceLock::new(),
            common_local_addr: OnceLock::new(),
        })
    }

    /// A server's endpoint with `router`'s handlers, line framing, no
    /// classifier and `limits`: what the crate's unit tests open
    /// connections of.
    #[cfg(test)]
    pub(crate) fn for_tests(router: crate::handler::Router, limits: Limits) -> Arc<Self> {
        let handlers = Handlers {
            routes: router.resolve(None, Side::Client, &[]).unwrap(),
            app_state: None,
            classifier: None,
        };
        Endpoint::new(
            handlers,
            Framing::lines(),
            ClientFraming::default(),
            limits,
            Side::Server,
            None,
            None,
        )
    }

    /// A stream connection of a [`for_tests`](Self::for_tests) endpoint
    /// without handlers: what unit tests that need just a connection use
    /// (its outbound queue's reader is dropped).
    #[cfg(test)]
    pub(crate) fn connection_for_tests() -> Connection {
        let endpoint = Endpoint::for_tests(crate::handler::Router::new(), Limits::default());
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        endpoint.open(addr, addr, Transport::Stream).unwrap().0
    }

    /// What this endpoint shares with the other listeners of its server.
    pub(crate) fn server_wide(&self) -> ServerWide {
        ServerWide {
            connections: self.connections.clone(),
            shutdown: Arc::clone(&self.shutdown),
            counters: Arc::clone(&self.counters),
            log_budget: Arc::clone(&self.log_budget),
            next_id: Arc::clone(&self.next_id),
        }
    }

    /// A new connection with `peer_addr` on `local_addr`, and the receiving
    /// end of its outbound queue, which its transport writes from. Not listed
    /// yet: see [`register`](Self::register).
    ///
    /// # Errors
    ///
    /// [`Error::Framing`] if a custom codec's factory panicked building the
    /// connection's encoder: user code, which costs this connection only.
    pub(crate) fn open(
        self: &Arc<Self>,
        peer_addr: impl Into<PeerAddr>,
        local_addr: impl Into<PeerAddr>,
        transport: Transport,
    ) -> Result<(Connection, OutboundReceiver), Error> {
        self.open_with(peer_addr.into(), local_addr.into(), transport, None)
    }

    /// [`open`](Self::open) for a client a load balancer's PROXY `header` named.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub(crate) fn open_with(
        self: &Arc<Self>,
        peer_addr: PeerAddr,
        local_addr: PeerAddr,
        transport: Transport,
        proxy: Option<ProxyHeader>,
    ) -> Result<(Connection, OutboundReceiver), Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.counters.connections_total.add(1);
        let (sender, receiver) = outbound::channel(&self.limits, transport);
        let common = self.common_local_addr.get_or_init(|| local_addr.clone());
        let addrs = Addresses {
            peer: peer_addr,
            local: (local_addr != *common).then_some(local_addr),
            proxy,
        };
        let connection = Connection::new(id, addrs, Arc::clone(self), sender)?;
        Ok((connection, receiver))
    }

    /// The local address most of its connections have (see
    /// `Addresses::local`); set when the first one opened.
    pub(crate) fn common_local_addr(&self) -> &PeerAddr {
        self.common_local_addr
            .get()
            .expect("set when the first connection opened")
    }

    /// Lists `connection` among the open ones, where shutdown reaches it.
    /// One listed while shutdown is under way is told at once: shutdown
    /// sets its flag before it goes through the list, so a connection is
    /// either in the list when it does, or sees the flag here.
    pub(crate) fn register(&self, connection: &Connection) {
        self.connections.insert(connection.clone());
        self.counters.connections_open.increment();
        self.shutdown.tell(connection);
    }

    /// Takes `connection`, which has ended, off the list of open ones, with
    /// its key and groups; requests waiting for its replies end.
    pub(crate) fn unregister(&self, connection: &Connection) {
        if self.connections.remove(connection.id()) {
            self.counters.connections_open.decrement();
        }
        connection.end_requests();
    }

    /// The endpoint's counters now, its open connections' traffic included.
    pub(crate) fn stats(&self) -> ServerStats {
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

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("framing", &self.framing)
            .field("classifier", &self.classifier)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::handler::Router;

    /// A listener on a wildcard address is reached at several: each
    /// connection says its own, whether it is the common one (which it does
    /// not keep itself) or another (which it does).
    #[test]
    fn a_connection_knows_the_local_address_it_was_reached_at() {
        let endpoint = Endpoint::for_tests(Router::new(), Limits::default());
        let peer: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let first: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let other: SocketAddr = "127.0.0.2:7000".parse().unwrap();
        for local in [first, other, first, other] {
            let (connection, _queue) = endpoint.open(peer, local, Transport::Stream).unwrap();
            assert_eq!(connection.local_addr(), local);
            assert_eq!(
                connection
                    .extras()
                    .is_some_and(|extras| extras.local.is_some()),
                local == other,
                "only an address other than the common one is kept"
            );
        }
    }
}
