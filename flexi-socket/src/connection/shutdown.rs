//! Graceful shutdown of an endpoint, in one place: tell every connection
//! to close (each then stops reading, handles what it read, flushes its
//! queue and sends FIN), wait for them under the shutdown deadline, cut
//! those still open, and report what that left undelivered. A server's
//! `serve`, a client's `close` and a UDP client's `close` all go through
//! [`Endpoint::drain`].

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use super::endpoint::Endpoint;
use super::{Connection, DisconnectReason};

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

/// An endpoint's shutdown state.
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    /// Tells the accept loop, the UDP receive loop and the reconnect loop to stop.
    token: CancellationToken,
    /// What on_disconnect is told: `Shutdown` for a server, `Closed` for a
    /// client closed by its application.
    reason: OnceLock<DisconnectReason>,
    /// The shutdown deadline passed: connections still open are cut.
    cutting: AtomicBool,
    aborted: AtomicU64,
    closed: AtomicU64,
    undelivered: AtomicU64,
}

impl Shutdown {
    /// Whether shutdown has begun.
    pub(crate) fn has_begun(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once shutdown begins.
    pub(crate) fn begun(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Stops the accept and receive loops, before [`Endpoint::drain`] tells
    /// the connections.
    pub(crate) fn stop_accepting(&self) {
        self.token.cancel();
    }

    /// Tells a connection listed just now what shutdown already told the others.
    pub(super) fn tell(&self, connection: &Connection) {
        if self.has_begun() {
            connection.close_because(self.reason());
        }
        if self.cutting.load(Ordering::Acquire) {
            connection.abort();
        }
    }

    /// A connection closed, not cut, with `undelivered` frames it could not
    /// write; counted if shutdown was under way.
    pub(crate) fn note_closed(&self, undelivered: u64) {
        if self.has_begun() {
            self.closed.fetch_add(1, Ordering::Relaxed);
            self.undelivered.fetch_add(undelivered, Ordering::Relaxed);
        }
    }

    /// A connection was cut at the deadline with `undelivered` frames queued.
    pub(crate) fn note_aborted(&self, undelivered: u64) {
        self.aborted.fetch_add(1, Ordering::Relaxed);
        self.undelivered.fetch_add(undelivered, Ordering::Relaxed);
    }

    /// Why its connections close: `Shutdown` unless the shutdown began for
    /// another reason.
    pub(crate) fn reason(&self) -> DisconnectReason {
        self.reason
            .get()
            .cloned()
            .unwrap_or(DisconnectReason::Shutdown)
    }

    fn report(&self) -> ShutdownReport {
        ShutdownReport {
            // Counted by the connections themselves: some may have closed on
            // their own since shutdown began, before the list was gone through.
            connections_closed: self.closed.load(Ordering::Relaxed),
            connections_aborted: self.aborted.load(Ordering::Relaxed),
            undelivered_messages: self.undelivered.load(Ordering::Relaxed),
        }
    }
}

impl Endpoint {
    /// Stops accepting (or reconnecting) and tells every open connection to
    /// close gracefully, for `reason`.
    pub(crate) fn begin_shutdown(&self, reason: DisconnectReason) {
        // Set before the token: a connection listed once it is cancelled is
        // told this reason (`Shutdown::tell`). The first caller's reason stays.
        let _ = self.shutdown.reason.set(reason);
        self.shutdown.token.cancel();
        // A client's requests still waiting: no reply will come now.
        if let Some(replies) = &self.replies {
            replies.close();
        }
        let reason = self.shutdown.reason();
        for connection in self.connections.list() {
            connection.close_because(reason.clone());
        }
    }

    /// Cuts every connection still open (the shutdown deadline passed).
    pub(crate) fn cut_connections(&self) {
        self.shutdown.cutting.store(true, Ordering::Release);
        for connection in self.connections.list() {
            connection.abort();
        }
    }

    /// Shuts down gracefully: begins (for `reason`), waits for `finished`
    /// (every connection task of the endpoint has ended) at most the shutdown
    /// timeout, then cuts the connections still open and waits for them to end.
    pub(crate) async fn drain(
        &self,
        reason: DisconnectReason,
        finished: impl Future<Output = ()>,
    ) -> ShutdownReport {
        self.begin_shutdown(reason);
        let mut finished = pin!(finished);
        let timeout = self.limits.shutdown_timeout;
        if tokio::time::timeout(timeout, finished.as_mut())
            .await
            .is_err()
        {
            tracing::warn!(?timeout, "shutdown deadline passed; cutting the rest");
            self.cut_connections();
            finished.await;
        }
        self.shutdown.report()
    }
}
