//! The server: builder, listener, accept loop, shutdown.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::classifier::{Classifier, ErasedClassifier};
use crate::connection::Connection;
use crate::connection_task;
use crate::connections::Connections;
use crate::error::{Error, Result};
use crate::framing::Framing;
use crate::router::{RouteTable, Router};

/// Default capacity of each connection's outbound queue, in messages.
const DEFAULT_OUTBOUND_QUEUE: usize = 1024;

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
            classifier: None,
            router: None,
            app_state: None,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
        }
    }
}

/// Configures a server; finish with [`bind`](Self::bind), [`serve`](Self::serve)
/// or [`start`](Self::start).
pub struct ServerBuilder {
    addr: String,
    framing: Framing,
    classifier: Option<ErasedClassifier>,
    router: Option<Router>,
    app_state: Option<Arc<dyn Any + Send + Sync>>,
    outbound_queue: usize,
}

impl ServerBuilder {
    /// How bytes become messages. Default: [`Framing::lines`] (64 KiB maximum).
    #[must_use]
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Classifies each connection by its first message. Default: none; every
    /// connection uses the handlers without `client_type`.
    #[must_use]
    pub fn classifier<C: Classifier>(mut self) -> Self {
        self.classifier = Some(ErasedClassifier::of::<C>());
        self
    }

    /// Routes with this router instead of the handlers registered by attributes.
    #[must_use]
    pub fn router(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }

    /// Shared application state; handlers take it as [`State<T>`](crate::State).
    #[must_use]
    pub fn state<T: Send + Sync + 'static>(mut self, state: T) -> Self {
        self.app_state = Some(Arc::new(state));
        self
    }

    /// Capacity of each connection's outbound queue, in messages (default 1024):
    /// `send` waits while the queue is full, so a slow reader slows its senders
    /// instead of growing memory.
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
        self.outbound_queue = messages;
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
        let router = self.router.unwrap_or_else(Router::registered);
        let routes = router.resolve(self.classifier.as_ref())?;
        let listener = TcpListener::bind(&self.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: self.addr.clone(),
                source,
            })?;
        let local_addr = listener.local_addr()?;
        tracing::info!(%local_addr, "listening");
        let context = Arc::new(ServerContext {
            routes,
            app_state: self.app_state,
            classifier: self.classifier,
            framing: self.framing,
            connections: Connections::default(),
            shutdown: CancellationToken::new(),
            outbound_queue: self.outbound_queue,
            next_id: AtomicU64::new(1),
        });
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
        self.bind().await?.serve().await
    }

    /// Binds and serves until `signal` completes, then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub async fn serve_with_shutdown(self, signal: impl Future<Output = ()> + Send) -> Result<()> {
        self.bind().await?.serve_with_shutdown(signal).await
    }

    /// Blocks the current thread: starts a multi-threaded tokio runtime and
    /// serves until Ctrl-C.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind), or [`Error::Io`] if the runtime cannot start.
    pub fn start(self) -> Result<()> {
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
            .field("classifier", &self.classifier)
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

/// What every connection of one server shares.
pub(crate) struct ServerContext {
    pub(crate) routes: RouteTable,
    pub(crate) app_state: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) classifier: Option<ErasedClassifier>,
    pub(crate) framing: Framing,
    pub(crate) connections: Connections,
    pub(crate) shutdown: CancellationToken,
    outbound_queue: usize,
    next_id: AtomicU64,
}

/// A bound server, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    context: Arc<ServerContext>,
}

impl Server {
    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's open connections.
    pub fn connections(&self) -> Connections {
        self.context.connections.clone()
    }

    /// A handle that stops the server from anywhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            token: self.context.shutdown.clone(),
        }
    }

    /// Serves until Ctrl-C or [`ShutdownHandle::shutdown`].
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for start-up work that can fail.
    pub async fn serve(self) -> Result<()> {
        self.serve_with_shutdown(async {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::error!(%error, "cannot listen for Ctrl-C; stop the server with its ShutdownHandle");
                std::future::pending::<()>().await;
            }
        })
        .await
    }

    /// Serves until `signal` completes or [`ShutdownHandle::shutdown`] is called,
    /// then stops accepting, lets every connection handle what it has read,
    /// flushes every outbound queue and waits for all connections to close.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for start-up work that can fail.
    pub async fn serve_with_shutdown(self, signal: impl Future<Output = ()> + Send) -> Result<()> {
        let Server {
            listener, context, ..
        } = self;
        let tasks = TaskTracker::new();
        let shutdown = context.shutdown.clone();
        tokio::pin!(signal);
        let mut backoff = AcceptBackoff::default();
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = &mut signal => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer_addr)) => {
                    backoff.reset();
                    spawn_connection(&context, &tasks, stream, peer_addr);
                }
                Err(error) => backoff.wait(&error).await,
            }
        }
        drop(listener);
        tracing::info!(open = context.connections.len(), "shutting down");
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        tracing::info!("shut down");
        Ok(())
    }
}

fn spawn_connection(
    context: &Arc<ServerContext>,
    tasks: &TaskTracker,
    stream: TcpStream,
    peer_addr: SocketAddr,
) {
    // Replies are small and latency matters more than packet count: the writer
    // already coalesces what is ready.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let local_addr = stream.local_addr().unwrap_or(peer_addr);
    let id = context.next_id.fetch_add(1, Ordering::Relaxed);
    let (outbound, queue) = mpsc::channel(context.outbound_queue);
    let connection = Connection::new(
        id,
        peer_addr,
        local_addr,
        Arc::clone(context),
        outbound,
        context.shutdown.child_token(),
    );
    context.connections.insert(connection.clone());
    let span = tracing::info_span!("connection", id, peer = %peer_addr, client_type = tracing::field::Empty);
    tasks.spawn(connection_task::run(stream, connection, queue).instrument(span));
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

/// Stops a running server from anywhere; cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    token: CancellationToken,
}

impl ShutdownHandle {
    /// Starts a graceful shutdown (see [`Server::serve_with_shutdown`]).
    pub fn shutdown(&self) {
        self.token.cancel();
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
