//! The TCP accept loop: a place under the connection limits is taken before
//! each accept (at the limit, peers wait in the kernel's backlog rather
//! than being accepted and dropped), failed accepts back off, and each
//! accepted stream becomes a connection with a task of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

use super::admission::Admission;
use crate::config::Limits;
use crate::connection::Endpoint;
use crate::connection::outbound::Transport;
use crate::stats::Counters;
use crate::transport::{spawn_in, stream};

/// What the accept loop hands each accepted stream to.
pub(super) struct Acceptor<'a> {
    pub(super) endpoint: &'a Arc<Endpoint>,
    pub(super) admission: &'a Arc<Admission>,
    pub(super) tasks: &'a TaskTracker,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<&'a crate::transport::tls::TlsServer>,
}

impl Acceptor<'_> {
    /// Accepts until `signal` completes or the endpoint shuts down.
    pub(super) async fn run(
        &self,
        listener: TcpListener,
        mut signal: Pin<&mut impl Future<Output = ()>>,
    ) {
        let shutdown = self.endpoint.shutdown.begun();
        tokio::pin!(shutdown);
        let mut backoff = AcceptBackoff::default();
        loop {
            // The permit comes before accept: at the limit, peers wait in the
            // backlog rather than being accepted and dropped.
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = &mut signal => break,
                permit = self.admission.permit() => permit,
            };
            let Some(permit) = permit else { break };
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = &mut signal => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer_addr)) => {
                    backoff.reset();
                    self.admit(stream, peer_addr, permit);
                }
                Err(error) => tokio::select! {
                    () = &mut shutdown => break,
                    () = backoff.wait(&error) => {}
                },
            }
        }
    }

    /// Makes `stream` a connection and spawns its task, unless its address
    /// is at the per-IP cap.
    fn admit(&self, stream: TcpStream, peer_addr: SocketAddr, permit: OwnedSemaphorePermit) {
        let endpoint = self.endpoint;
        let Some(place) = self.admission.admit(permit, peer_addr.ip()) else {
            Counters::add(&endpoint.counters.connections_refused, 1);
            tracing::info!(peer = %peer_addr, "refused: per-IP connection cap reached");
            return;
        };
        configure(&stream, &endpoint.limits);
        let local_addr = stream.local_addr().unwrap_or(peer_addr);
        let (connection, queue) = match endpoint.open(peer_addr, local_addr, Transport::Stream) {
            Ok(opened) => opened,
            Err(error) => {
                tracing::error!(peer = %peer_addr, %error, "connection dropped");
                return;
            }
        };
        // Debug level: at the usual INFO filter the span costs nothing per poll;
        // with RUST_LOG=flexi_socket=debug every event carries id, peer and type.
        let span = tracing::debug_span!("connection", id = connection.id(), peer = %peer_addr, client_type = tracing::field::Empty);
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.cloned() {
            // The handshake runs in the connection's task; only a connection whose
            // handshake succeeded is listed and gets events.
            let task = async move {
                super::tls::serve(&tls, stream, connection, queue).await;
                drop(place);
            };
            spawn_in(self.tasks, span, task);
            return;
        }
        endpoint.register(&connection);
        let (reader, writer) = stream.into_split();
        let task = stream::run(reader, writer, connection, queue, place);
        spawn_in(self.tasks, span, task);
    }
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
