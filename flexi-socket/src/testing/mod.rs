//! An in-memory test harness for handlers (feature `testing`): a server
//! built by the same builder as a real one, whose peers connect over
//! in-memory pipes instead of sockets. The pipes are accepted by the real
//! accept loop (same limits), and each connection runs on the real stream
//! driver (same events, deadlines, queues and shutdown). With tokio's paused
//! clock (`#[tokio::test(start_paused = true)]`), deadlines such as the idle
//! or first-message timeout pass in virtual time: instantly, and the same
//! way every run.
//!
//! ```
//! use flexi_socket::testing::TestServer;
//! use flexi_socket::{Connection, DisconnectReason, FlexiSocket, Router};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let router = Router::new()
//!     .on_message(|conn: Connection, msg: String| async move { conn.send(msg.to_uppercase()).await });
//! let server = TestServer::start(
//!     FlexiSocket::server("in memory")
//!         .router(router)
//!         .idle_timeout(Duration::from_secs(300)),
//! )
//! .unwrap();
//!
//! let mut peer = server.connect().await;
//! peer.send("hello").await.unwrap();
//! assert_eq!(peer.receive_str().await.unwrap(), "HELLO");
//! // Five minutes of silence pass at once in paused time.
//! let reason = peer.expect_closed_within(Duration::from_secs(400)).await.unwrap();
//! assert_eq!(reason, Some(DisconnectReason::IdleTimeout));
//! # }
//! ```

mod peer;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use peer::{PeerError, TestPeer};

use crate::classify::{ClientFraming, ErasedClassifier};
use crate::connection::{Connections, ShutdownReport};
use crate::error::Result;
use crate::framing::Framing;
use crate::server::memory::{Connector, Pipe};
use crate::server::{Server, ServerBuilder, ServerHandle};
use crate::stats::ServerStats;

/// How much a pipe buffers in each direction, like a socket's buffers: a
/// peer that does not read makes the server's writes wait.
const PIPE_CAPACITY: usize = 64 * 1024;

/// A server without sockets, for tests; see the [module docs](self).
pub struct TestServer {
    handle: ServerHandle,
    connector: Connector,
    framing: Framing,
    /// How the server classifies, so its peers know their own client type.
    classification: Option<(ErasedClassifier, ClientFraming)>,
    serving: JoinHandle<Result<ShutdownReport>>,
    next_port: AtomicU16,
}

impl TestServer {
    /// Builds the server `builder` describes (its handlers, classifier,
    /// framing, limits and state; its address and TLS settings do not
    /// apply) and starts serving in a task of the current runtime.
    ///
    /// # Errors
    ///
    /// The start-up checks of [`ServerBuilder::bind`] ([`Error::NoHandlers`](crate::Error::NoHandlers),
    /// [`Error::DuplicateHandler`](crate::Error::DuplicateHandler), ...).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(builder: ServerBuilder) -> Result<Self> {
        let (server, connector) = Server::in_memory(builder)?;
        let endpoint = server.endpoint();
        let framing = endpoint.framing.clone();
        let classification = endpoint
            .classifier
            .clone()
            // A raw first unit depends on framing the peer has yet to
            // choose: those peers follow the server's classification.
            .filter(|_| endpoint.client_framing.first_unit.is_none())
            .map(|classifier| (classifier, endpoint.client_framing.clone()));
        let handle = server.handle();
        // The harness shuts it down; no signal of the process's is awaited.
        let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));
        Ok(Self {
            handle,
            connector,
            framing,
            classification,
            serving,
            next_port: AtomicU16::new(40_000),
        })
    }

    /// A new peer from `127.0.0.1` (a fresh port each time).
    pub async fn connect(&self) -> TestPeer {
        let port = self.next_port.fetch_add(1, Ordering::Relaxed);
        self.connect_from(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
            .await
    }

    /// A new peer whose connection reports `peer_addr` (per-IP limits count
    /// it under that address). Like a TCP connect, it succeeds at once; the
    /// server serves it once there is room under its limits.
    pub async fn connect_from(&self, peer_addr: SocketAddr) -> TestPeer {
        let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
        let (opened, connection) = oneshot::channel();
        let pipe = Pipe {
            stream: theirs,
            peer_addr,
            opened,
        };
        // A server that has shut down drops the pipe: the peer sees it closed.
        let _ = self.connector.send(pipe);
        TestPeer::new(
            ours,
            peer_addr,
            connection,
            self.framing.clone(),
            self.classification.clone(),
        )
    }

    /// The server's open connections.
    pub fn connections(&self) -> Connections {
        self.handle.connections()
    }

    /// The server's counters now.
    pub fn stats(&self) -> ServerStats {
        self.handle.stats()
    }

    /// Shuts the server down gracefully, as on SIGINT, and reports how that went.
    ///
    /// # Panics
    ///
    /// If the server's task panicked.
    pub async fn shutdown(self) -> ShutdownReport {
        self.handle.shutdown();
        match self.serving.await {
            Ok(Ok(report)) => report,
            Ok(Err(error)) => panic!("the test server failed: {error}"),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}
