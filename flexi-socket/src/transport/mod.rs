//! Transports: the drivers that turn bytes in into a connection's events,
//! and its queued replies into bytes out.
//!
//! - [`stream`]: any byte stream (`AsyncRead + AsyncWrite`): TCP, TLS, Unix,
//!   in-memory pipes, one task per connection that reads and writes it
//!   (a server's quiet TCP or Unix connection rests without one).
//! - [`datagram`]: UDP sessions, one per peer, fed by a receive loop.
//! - [`decoder`]: the decoder both use: the wait for a raw first unit and the
//!   switch to a client type's own framing.
//! - [`proxy`]: the PROXY protocol header a load balancer puts first.
//! - `tls` (feature `tls`): configurations and the handshake; the stream
//!   driver then runs on the TLS stream.

use std::future::Future;

use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub(crate) mod datagram;
pub(crate) mod decoder;
pub(crate) mod proxy;
pub(crate) mod stream;
#[cfg(feature = "tls")]
pub(crate) mod tls;

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
