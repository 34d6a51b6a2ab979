//! What every connection of one server shares, and the admission of a
//! new connection under the connection limits.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::classifier::ErasedClassifier;
use crate::client_framing::ClientFraming;
use crate::connection::Connection;
use crate::connections::Connections;
use crate::deadlines::Deadlines;
use crate::framing::{FrameEncoder, Framing};
use crate::limits::Limits;
use crate::router::RouteTable;
use crate::stats::{Counters, ServerStats};
use crate::sync;

/// What every connection of one server shares.
pub(crate) struct ServerContext {
    pub(crate) routes: RouteTable,
    pub(crate) app_state: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) classifier: Option<ErasedClassifier>,
    /// The framing until a connection is classified, and of every client type without its own.
    pub(crate) framing: Framing,
    /// That framing's encoder, when connections can share it (built-in codecs).
    pub(crate) encoder: Option<FrameEncoder>,
    pub(crate) client_framing: ClientFraming,
    pub(crate) connections: Connections,
    /// Tells the accept loop and the reconnect loop to stop; see
    /// [`begin_shutdown`](Self::begin_shutdown).
    pub(crate) shutdown: CancellationToken,
    /// The shutdown deadline passed: connections still open are cut.
    cutting: AtomicBool,
    pub(crate) limits: Limits,
    /// The read deadlines of its connections, kept by `deadlines::sweep`.
    pub(crate) deadlines: Deadlines,
    pub(crate) counters: Counters,
    pub(super) permits: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub(super) aborted: AtomicU64,
    pub(super) closed_in_shutdown: AtomicU64,
    pub(super) undelivered: AtomicU64,
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
        let deadlines = Deadlines::new(&limits, classifier.is_some());
        let encoder = framing.shared_encoder();
        Arc::new(ServerContext {
            routes,
            app_state,
            classifier,
            framing,
            encoder,
            client_framing,
            connections: Connections::new(),
            shutdown: CancellationToken::new(),
            cutting: AtomicBool::new(false),
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            aborted: AtomicU64::new(0),
            closed_in_shutdown: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
            deadlines,
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

    /// Lists `connection` among the open ones, where shutdown reaches it.
    /// One listed while shutdown is under way is told at once: shutdown
    /// sets its flag before it goes through the list, so a connection is
    /// either in the list when it does, or sees the flag here.
    pub(crate) fn register(&self, connection: &Connection) {
        self.connections.insert(connection.clone());
        if self.shutdown.is_cancelled() {
            connection.close_because(crate::DisconnectReason::Shutdown);
        }
        if self.cutting.load(Ordering::Acquire) {
            connection.abort();
        }
    }

    /// Stops accepting (or reconnecting) and tells every open connection to
    /// close gracefully.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.cancel();
        // A client's requests still waiting: no reply will come now.
        if let Some(replies) = &self.replies {
            replies.close();
        }
        for connection in self.connections.list() {
            connection.close_because(crate::DisconnectReason::Shutdown);
        }
    }

    /// Cuts every connection still open (the shutdown deadline passed).
    pub(crate) fn cut_connections(&self) {
        self.cutting.store(true, Ordering::Release);
        for connection in self.connections.list() {
            connection.abort();
        }
    }

    /// A connection closed, not cut, while the server was shutting down,
    /// with `undelivered` frames it could not write.
    pub(crate) fn note_closed_in_shutdown(&self, undelivered: u64) {
        self.closed_in_shutdown.fetch_add(1, Ordering::Relaxed);
        self.undelivered.fetch_add(undelivered, Ordering::Relaxed);
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
    pub(super) fn claim_ip(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        if let Some(cap) = self.limits.max_connections_per_ip {
            let mut per_ip = sync::lock(&self.per_ip);
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
    pub(super) _permit: OwnedSemaphorePermit,
    pub(super) _ip: IpSlot,
}

/// One connection's share of its IP's cap, given back on drop.
pub(super) struct IpSlot {
    context: Arc<ServerContext>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if self.context.limits.max_connections_per_ip.is_none() {
            return;
        }
        let mut per_ip = sync::lock(&self.context.per_ip);
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

impl ServerContext {
    pub(super) fn stats(&self) -> ServerStats {
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

impl fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerContext")
            .field("framing", &self.framing)
            .field("classifier", &self.classifier)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}
