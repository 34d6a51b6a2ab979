//! The stream accept loop: a place under the connection limits is taken
//! before each accept (at the limit, peers wait in the kernel's backlog
//! rather than being accepted and dropped), failed accepts back off, and
//! each accepted stream becomes a connection run by the stream driver in a
//! task of its own. It accepts from a TCP listener, a Unix socket
//! ([`unix`](super::unix)) or, for `flexi_socket::testing`, in-memory pipes:
//! the same admission, the same connection, the same driver.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

use super::admission::{Admission, Place};
use crate::config::Limits;
use crate::connection::outbound::{OutboundReceiver, Transport};
use crate::connection::{Connection, Endpoint};
use crate::peer_addr::PeerAddr;
use crate::proxy_header::ProxyHeader;
use crate::transport::proxy::{ProxyProtocol, Received};
use crate::transport::stream::Stream;
use crate::transport::{spawn_in, stream};

/// Where streams are accepted from.
#[derive(Debug)]
pub(super) enum StreamListener {
    Tcp(TcpListener),
    /// A Unix domain socket, whose file goes with it.
    #[cfg(unix)]
    Unix(super::unix::UnixSocketListener),
    /// The test harness's pipes (feature `testing`).
    #[cfg(feature = "testing")]
    Memory(tokio::sync::mpsc::UnboundedReceiver<super::memory::Pipe>),
}

/// One accepted stream.
enum Accepted {
    Tcp(TcpStream, PeerAddr),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream, PeerAddr),
    #[cfg(feature = "testing")]
    Memory(super::memory::Pipe),
}

impl StreamListener {
    /// The next stream; `None` when no more can come.
    async fn accept(&mut self) -> io::Result<Option<Accepted>> {
        match self {
            StreamListener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok(Some(Accepted::Tcp(stream, peer.into())))
            }
            #[cfg(unix)]
            StreamListener::Unix(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok(Some(Accepted::Unix(stream, peer)))
            }
            #[cfg(feature = "testing")]
            StreamListener::Memory(pipes) => Ok(pipes.recv().await.map(Accepted::Memory)),
        }
    }

    pub(super) fn local_addr(&self) -> io::Result<PeerAddr> {
        match self {
            StreamListener::Tcp(listener) => listener.local_addr().map(PeerAddr::from),
            #[cfg(unix)]
            StreamListener::Unix(listener) => Ok(listener.local_addr()),
            #[cfg(feature = "testing")]
            StreamListener::Memory(_) => Ok(super::memory::SERVER_ADDR.into()),
        }
    }
}

/// A stream the accept loop serves, and the stream its driver runs on.
trait ServedStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn driven(self) -> impl Stream + 'static;
}

impl ServedStream for TcpStream {
    fn driven(self) -> impl Stream + 'static {
        stream::shared_tcp(self)
    }
}

#[cfg(unix)]
impl ServedStream for tokio::net::UnixStream {
    fn driven(self) -> impl Stream + 'static {
        self
    }
}

#[cfg(feature = "testing")]
impl ServedStream for tokio::io::DuplexStream {
    fn driven(self) -> impl Stream + 'static {
        self
    }
}

/// What an accepted stream goes through before it is a connection.
#[derive(Debug, Default)]
pub(super) struct StreamSetup {
    /// A PROXY protocol header first, from a trusted balancer.
    pub(super) proxy: Option<Arc<ProxyProtocol>>,
    /// Then, with TLS, the handshake.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<crate::transport::tls::TlsServer>,
}

/// What the accept loop hands each accepted stream to. Cheap to clone: a
/// stream that sends a PROXY header first is admitted from a task of its own.
#[derive(Clone)]
pub(super) struct Acceptor {
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) admission: Arc<Admission>,
    pub(super) tasks: TaskTracker,
    pub(super) streams: Arc<StreamSetup>,
}

impl Acceptor {
    /// Accepts until `signal` completes or the endpoint shuts down.
    pub(super) async fn run(
        &self,
        mut listener: StreamListener,
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
                Ok(Some(accepted)) => {
                    backoff.reset();
                    self.admit(accepted, permit);
                }
                Ok(None) => break,
                Err(error) => tokio::select! {
                    () = &mut shutdown => break,
                    () = backoff.wait(&error) => {}
                },
            }
        }
    }

    /// Makes the accepted stream a connection and spawns its task, unless
    /// its address is at the per-IP cap; with the PROXY protocol, once its
    /// header has named the client.
    fn admit(&self, accepted: Accepted, permit: OwnedSemaphorePermit) {
        match accepted {
            Accepted::Tcp(stream, peer_addr) => {
                configure(&stream, &self.endpoint.limits);
                let local_addr = stream
                    .local_addr()
                    .map_or_else(|_| peer_addr.clone(), PeerAddr::from);
                self.admit_or_read_proxy(stream, permit, peer_addr, local_addr);
            }
            #[cfg(unix)]
            Accepted::Unix(stream, peer_addr) => {
                let local_addr = stream
                    .local_addr()
                    .ok()
                    .and_then(|addr| addr.as_pathname().map(PeerAddr::unix))
                    .unwrap_or(PeerAddr::Unix(None));
                self.admit_or_read_proxy(stream, permit, peer_addr, local_addr);
            }
            #[cfg(feature = "testing")]
            Accepted::Memory(pipe) => {
                let local_addr = PeerAddr::from(super::memory::SERVER_ADDR);
                let peer_addr = PeerAddr::from(pipe.peer_addr);
                let opened = pipe.opened;
                if let Some(connection) =
                    self.admit_stream(pipe.stream, permit, peer_addr, local_addr, None)
                {
                    // Once listed: the test's peer learns which connection it is.
                    let _ = opened.send(connection);
                }
            }
        }
    }

    /// Admits `stream` now, or, with the PROXY protocol, from a task of its
    /// own once its header has named the client.
    fn admit_or_read_proxy(
        &self,
        stream: impl ServedStream,
        permit: OwnedSemaphorePermit,
        peer_addr: PeerAddr,
        local_addr: PeerAddr,
    ) {
        match self.streams.proxy.clone() {
            None => {
                self.admit_stream(stream, permit, peer_addr, local_addr, None);
            }
            Some(proxy) => {
                let acceptor = self.clone();
                self.tasks.spawn(async move {
                    acceptor
                        .admit_proxied(&proxy, stream, permit, peer_addr, local_addr)
                        .await;
                });
            }
        }
    }

    /// Reads the PROXY header `balancer` sends first, then admits the
    /// client it names; anything else closes the stream without events.
    async fn admit_proxied(
        &self,
        proxy: &ProxyProtocol,
        mut stream: impl ServedStream,
        permit: OwnedSemaphorePermit,
        balancer: PeerAddr,
        local_addr: PeerAddr,
    ) {
        // On a Unix socket the balancer is local: the file's permissions decide.
        if balancer.ip().is_some_and(|ip| !proxy.trusts(ip)) {
            self.proxy_rejected(&balancer, "not from a trusted network");
            return;
        }
        let received = tokio::select! {
            biased;
            () = self.endpoint.shutdown.begun() => return,
            received = proxy.read(&mut stream) => received,
        };
        match received {
            Received::Proxied(header) => {
                let client = PeerAddr::from(header.source());
                self.admit_stream(stream, permit, client, local_addr, Some(header));
            }
            Received::Unknown => {
                self.admit_stream(stream, permit, balancer, local_addr, None);
            }
            Received::Local => {
                self.endpoint.counters.proxy_health_checks.add(1);
                tracing::debug!(%balancer, "PROXY LOCAL (a health check): closed");
            }
            Received::Rejected(why) => self.proxy_rejected(&balancer, &why),
        }
    }

    fn proxy_rejected(&self, balancer: &PeerAddr, why: &str) {
        self.endpoint.counters.proxy_rejected.add(1);
        tracing::info!(%balancer, why, "PROXY header refused: connection closed");
    }

    /// Makes `stream` from `peer_addr` a connection and spawns its task;
    /// the connection, unless refused.
    fn admit_stream(
        &self,
        stream: impl ServedStream,
        permit: OwnedSemaphorePermit,
        peer_addr: PeerAddr,
        local_addr: PeerAddr,
        proxy: Option<ProxyHeader>,
    ) -> Option<Connection> {
        let place = self.place(permit, &peer_addr)?;
        let (connection, queue) = self.open(peer_addr, local_addr, proxy)?;
        #[cfg(feature = "tls")]
        if let Some(tls) = self.streams.tls.clone() {
            // The handshake runs in the connection's task; only a connection
            // whose handshake succeeded is listed and gets events.
            let span = span(&connection);
            let served = connection.clone();
            let task = async move {
                super::tls::serve(&tls, stream, served, queue).await;
                drop(place);
            };
            spawn_in(&self.tasks, span, task);
            return Some(connection);
        }
        self.serve(stream.driven(), connection.clone(), queue, place);
        Some(connection)
    }

    /// The place under the limits of a connection from `peer_addr`, or
    /// `None` (counted and logged) at its address's cap.
    fn place(&self, permit: OwnedSemaphorePermit, peer_addr: &PeerAddr) -> Option<Place> {
        match self.admission.admit(permit, peer_addr.ip()) {
            Ok(place) => Some(place),
            Err(refusal) => {
                self.endpoint.counters.connections_refused.add(1);
                tracing::info!(peer = %peer_addr, "refused: {refusal}");
                None
            }
        }
    }

    fn open(
        &self,
        peer_addr: PeerAddr,
        local_addr: PeerAddr,
        proxy: Option<ProxyHeader>,
    ) -> Option<(Connection, OutboundReceiver)> {
        let peer = peer_addr.clone();
        match self
            .endpoint
            .open_with(peer_addr, local_addr, Transport::Stream, proxy)
        {
            Ok(opened) => Some(opened),
            Err(error) => {
                tracing::error!(%peer, %error, "connection dropped");
                None
            }
        }
    }

    /// Lists `connection` and runs it on the stream driver in its own task.
    fn serve(
        &self,
        stream: impl Stream + 'static,
        connection: Connection,
        queue: OutboundReceiver,
        place: Place,
    ) {
        self.endpoint.register(&connection);
        let span = span(&connection);
        let task = stream::run_resting(stream, connection, queue, place, &self.tasks, &span);
        spawn_in(&self.tasks, span, task);
    }
}

/// A connection's tracing span. Debug level: at the usual INFO filter it
/// costs nothing per poll; with RUST_LOG=flexi_socket=debug every event
/// carries id, peer and type.
fn span(connection: &Connection) -> tracing::Span {
    tracing::debug_span!("connection", id = connection.id(), peer = %connection.peer_addr(), client_type = tracing::field::Empty)
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
