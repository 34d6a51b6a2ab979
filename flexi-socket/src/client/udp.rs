//! Client mode over UDP: a socket connected to one server, served as one
//! session with the same handlers and request/reply as a TCP client.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::task::TaskTracker;

use crate::address::{self, Accepts};
use crate::classify::ClientFraming;
use crate::config::{Limits, ReplyOrder, history_method};
use crate::connection::deadlines;
use crate::connection::outbound::Transport;
use crate::connection::replies::{Expects, Replies, RequestId};
use crate::connection::setup::{HandlerSetup, handler_setup_methods};
use crate::connection::{CloseStage, Connection, DisconnectReason, Endpoint, Side};
use crate::error::{Error, Result};
use crate::framing::Framing;
use crate::message::Message;
use crate::server::FlexiSocket;
use crate::transport::datagram::{
    self, DatagramPeer, Inbound, Inbox, InboxRefused, LARGEST_DATAGRAM, MessageBuffer,
    ReceiveErrors, UdpOptions, is_refusal,
};
use crate::transport::spawn_in;

impl FlexiSocket {
    /// Starts building a UDP client that talks to the server at `addr`
    /// (e.g. `"127.0.0.1:8082"`) with the same handlers a server would run.
    ///
    /// The client is one session with the server: on_connect when it
    /// starts, the server's first datagram classifies it (with a
    /// [`classifier`](UdpClientBuilder::classifier)), each datagram is a
    /// message, and on_disconnect runs when it is closed.
    pub fn udp_client(addr: impl ToString) -> UdpClientBuilder {
        UdpClientBuilder::new(addr.to_string())
    }
}

/// Configures a UDP client; finish with [`connect`](Self::connect).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use flexi_socket::{FlexiSocket, Framing};
///
/// # async fn run() -> flexi_socket::Result<()> {
/// let client = FlexiSocket::udp_client("10.0.0.7:8082")
///     .handshake("ID sensor-17")                 // the first datagram
///     .max_datagram(1_500)                       // longer replies are reported, not delivered
///     .framing(Framing::lines())                 // optional: frames inside each datagram
///     .idle_timeout(Duration::from_secs(300))    // on_disconnect after 5 quiet minutes
///     .connect()
///     .await?;
/// client.send("temperature 21.5").await?;
/// # Ok(()) }
/// ```
pub struct UdpClientBuilder {
    addr: String,
    framing: Framing,
    setup: HandlerSetup,
    options: UdpOptions,
    /// Its idle timeout and history; datagram limits otherwise.
    limits: Limits,
    handshake: Option<Message>,
    reply_order: ReplyOrder,
}

impl UdpClientBuilder {
    handler_setup_methods!();
    history_method!();

    fn new(addr: String) -> Self {
        Self {
            addr,
            framing: Framing::default(),
            setup: HandlerSetup::default(),
            options: UdpOptions::default(),
            // A client waits for its server as long as it likes.
            limits: Limits::default().for_datagrams(None),
            handshake: None,
            reply_order: ReplyOrder::default(),
        }
    }

    /// Splits each datagram with this framing (default: none, a datagram is
    /// one message); each datagram is decoded on its own.
    #[must_use]
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self.options.framed = true;
        self
    }

    /// The longest datagram accepted from the server, in bytes (default
    /// 8 KiB). A longer one is dropped whole, reported to on_error as
    /// [`Error::DatagramTooLarge`], and answers no request.
    ///
    /// # Panics
    ///
    /// If `bytes` is 0.
    #[must_use]
    #[track_caller]
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "max_datagram must allow at least one byte");
        self.options.max_datagram = bytes;
        self
    }

    /// The first datagram sent, before anything else (before what
    /// on_connect sends): the identification many device protocols expect.
    #[must_use]
    pub fn handshake(mut self, message: impl Into<Message>) -> Self {
        self.handshake = Some(message.into());
        self
    }

    /// Which of the server's datagrams answer which of ours, and so what
    /// [`UdpClient::request`] returns. Default: [`ReplyOrder::EveryMessage`].
    /// A lost datagram breaks the count until the next request times out;
    /// a protocol whose replies carry a sequence number is exact with
    /// [`UdpClient::request_matching`].
    #[must_use]
    pub fn reply_order(mut self, order: ReplyOrder) -> Self {
        self.reply_order = order;
        self
    }

    /// Ends the client when the server sends nothing for this long
    /// (default: never): on_disconnect runs with
    /// [`IdleTimeout`](crate::DisconnectReason::IdleTimeout) and later sends fail
    /// with [`Error::ClientClosed`].
    ///
    /// # Panics
    ///
    /// If the timeout is zero.
    #[must_use]
    #[track_caller]
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        let timeout = timeout.into();
        assert!(
            timeout.is_none_or(|idle| !idle.is_zero()),
            "idle_timeout must be longer than zero (or None for never)"
        );
        self.limits.idle_timeout = timeout;
        self
    }

    /// Opens a local socket of the server's address family on any free port,
    /// connects it to the server (so only the server's datagrams are
    /// accepted), sends the handshake and starts the session. UDP has no
    /// connection to wait for: this returns as soon as the socket is ready.
    ///
    /// # Errors
    ///
    /// The address is not `host:port` ([`Error::InvalidAddress`]); a
    /// start-up check of the handlers failed (duplicates, unknown client
    /// types); the address does not resolve or the socket cannot be opened
    /// ([`Error::Io`]); the handshake could not be sent (an error of
    /// [`Connection::send`]).
    pub async fn connect(self) -> Result<UdpClient> {
        address::check(&self.addr, Accepts::UDP_CLIENT)?;
        let socket = Arc::new(open_socket(&self.addr).await?);
        let (server_addr, local_addr) = (socket.peer_addr()?, socket.local_addr()?);
        let replies = Arc::new(Replies::new(self.reply_order));
        let limits = self.limits;
        let endpoint = self.setup.endpoint(
            self.options.framing(self.framing),
            ClientFraming::default(),
            limits,
            Side::Client,
            Some(Arc::clone(&replies) as _),
        )?;
        let (connection, queue) = endpoint.open(server_addr, local_addr, Transport::Datagrams)?;
        endpoint.register(&connection);
        let id = connection.id();
        // Queued before the session starts, so it leaves first.
        if let Some(handshake) = self.handshake {
            connection.send(handshake).await?;
        }
        let config = self.options.session(false);
        let peer = DatagramPeer::connected(Arc::clone(&socket));
        let (inbox, serve) = datagram::open(connection.clone(), queue, peer, config);
        let receiving = receive(socket, inbox, self.options.max_datagram, connection.clone());
        let tasks = TaskTracker::new();
        let span = tracing::debug_span!("udp_client", id, server = %server_addr, client_type = tracing::field::Empty);
        let swept = deadlines::swept(Arc::clone(&endpoint), async move {
            tokio::join!(serve, receiving);
        });
        spawn_in(&tasks, span, swept);
        tracing::info!(server = %server_addr, %local_addr, "UDP client started");
        Ok(UdpClient {
            shared: Arc::new(Shared {
                addr: self.addr,
                connection,
                endpoint,
                replies,
                sending: tokio::sync::Mutex::new(()),
                tasks,
            }),
        })
    }
}

impl fmt::Debug for UdpClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpClientBuilder")
            .field("addr", &self.addr)
            .field("framing", &self.framing)
            .field("max_datagram", &self.options.max_datagram)
            .field("idle_timeout", &self.limits.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// A socket on any free port of `addr`'s family, connected to `addr`.
async fn open_socket(addr: &str) -> io::Result<UdpSocket> {
    let context =
        |error: io::Error, what: &str| io::Error::new(error.kind(), format!("{what}: {error}"));
    let server = tokio::net::lookup_host(addr)
        .await
        .map_err(|error| context(error, &format!("cannot resolve {addr}")))?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{addr} resolves to no address"),
            )
        })?;
    let local = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|error| context(error, &format!("cannot open a UDP socket on {local}")))?;
    socket
        .connect(server)
        .await
        .map_err(|error| context(error, &format!("cannot connect a UDP socket to {server}")))?;
    Ok(socket)
}

/// Receives the server's datagrams into the session until the connection
/// closes. A receive error (an ICMP refusal: nothing listens at the
/// server's port) goes to the session's on_error and receiving goes on.
async fn receive(socket: Arc<UdpSocket>, inbox: Inbox, max: usize, connection: Connection) {
    let mut buffer = vec![0; max.max(LARGEST_DATAGRAM) + 1];
    let mut messages = MessageBuffer::new(max);
    // This loop runs in the connection's own task (joined with its session).
    let closed = connection
        .close_signal()
        .reached_by_driver(CloseStage::Closing);
    tokio::pin!(closed);
    loop {
        let received = tokio::select! {
            biased;
            () = &mut closed => break,
            received = socket.recv(&mut buffer) => received,
        };
        let (inbound, pause) = match received {
            Ok(length) => (
                Inbound::received(&buffer[..length], length, max, &mut messages),
                false,
            ),
            // Anything but a refusal may persist: pausing keeps it from spinning the loop.
            Err(error) => {
                let pause = !is_refusal(&error);
                (Inbound::Failed(error), pause)
            }
        };
        match inbox.offer(inbound) {
            Ok(()) => {}
            // A dropped datagram is reported by the session; a dropped error only logged.
            Err(InboxRefused::Full) => tracing::debug!("the session's queue is full: dropped"),
            Err(InboxRefused::Ended(_)) => break,
        }
        if pause {
            tokio::select! {
                () = &mut closed => break,
                () = tokio::time::sleep(ReceiveErrors::PAUSE) => {}
            }
        }
    }
    // Nothing more is received: requests still waiting end now. A reply
    // among the datagrams the session still handles goes to on_message.
    if let Some(replies) = &connection.endpoint().replies {
        replies.close();
    }
}

/// A running UDP client. Cheap to clone; every clone is the same client.
/// It runs until [`close`](Self::close), its idle timeout, or a handler's
/// panic ends its session; dropping the handle does not stop it.
///
/// # Examples
///
/// Against a UDP echo server on loopback:
///
/// ```
/// use std::time::Duration;
/// use flexi_socket::{Connection, FlexiSocket, Message, Router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let echo = Router::new().on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await });
/// # let server = FlexiSocket::udp("127.0.0.1:0").router(echo).bind().await?;
/// # let addr = server.local_addr().to_string();
/// # let handle = server.handle();
/// # tokio::spawn(server.serve_with_shutdown(std::future::pending()));
/// let (heard, mut replies) = tokio::sync::mpsc::unbounded_channel();
/// let router = Router::new().on_message(move |_conn: Connection, msg: String| {
///     let heard = heard.clone();
///     async move {
///         let _ = heard.send(msg);
///     }
/// });
/// let client = FlexiSocket::udp_client(&addr).router(router).connect().await?;
/// client.send("ping").await?;
/// let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv()).await?;
/// assert_eq!(reply.as_deref(), Some("ping"));
/// client.close().await; // on_disconnect runs
/// # handle.shutdown();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct UdpClient {
    shared: Arc<Shared>,
}

struct Shared {
    addr: String,
    connection: Connection,
    endpoint: Arc<Endpoint>,
    replies: Arc<Replies>,
    /// Held while one of the client's own sends is queued.
    sending: tokio::sync::Mutex<()>,
    tasks: TaskTracker,
}

impl UdpClient {
    /// The session with the server: addresses, client type, counters,
    /// typed state.
    pub fn connection(&self) -> Connection {
        self.shared.connection.clone()
    }

    /// Whether the client has ended (closed, idle, or its session ended
    /// after a handler's panic).
    pub fn is_closed(&self) -> bool {
        self.shared.connection.is_closing()
    }

    /// Sends a message as one datagram (through `before_send` and the
    /// framing, if one is set).
    ///
    /// # Errors
    ///
    /// [`Error::ClientClosed`] once the client has ended; any other error of
    /// [`Connection::send`]. A datagram that the network loses, or that
    /// nothing receives, is no error: an ICMP refusal goes to on_error.
    pub async fn send(&self, message: impl Into<Message>) -> Result<()> {
        self.send_for(message.into(), None).await
    }

    /// [`send`](Self::send) of the message `request` is waiting on, if any.
    async fn send_for(&self, message: Message, request: Option<RequestId>) -> Result<()> {
        let connection = &self.shared.connection;
        if connection.is_closing() {
            return Err(Error::ClientClosed);
        }
        // The order in which replies are owed is the order of queueing.
        let _in_order = self.shared.sending.lock().await;
        let sent = connection.send_for(message, request, None).await;
        sent.map_err(|error| match error {
            Error::ConnectionClosed { .. } => Error::ClientClosed,
            other => other,
        })
    }

    /// Sends `message` and waits for the server's reply to it, which goes
    /// to the caller instead of `on_message`: under the default
    /// [`ReplyOrder::EveryMessage`] the datagram in its place, replies
    /// still owed to earlier datagrams going to `on_message`; under
    /// [`ReplyOrder::RequestsOnly`] the first datagram after it.
    ///
    /// # Errors
    ///
    /// [`Error::RequestTimeout`] when no reply came in time (UDP may lose
    /// the request or the reply: retrying is the caller's choice),
    /// [`Error::ClientClosed`] when the client ends meanwhile, or any error
    /// of [`send`](Self::send).
    pub async fn request(&self, message: impl Into<Message>, timeout: Duration) -> Result<Message> {
        let replies = &self.shared.replies;
        let send = |id| self.send_for(message.into(), Some(id));
        replies.ask(replies.request_expects(), timeout, send).await
    }

    /// Like [`request`](Self::request), but the reply is the first message
    /// for which `is_reply` says yes (e.g. the same sequence number); other
    /// messages go to `on_message` as usual.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    pub async fn request_matching(
        &self,
        message: impl Into<Message>,
        timeout: Duration,
        is_reply: impl Fn(&Message) -> bool + Send + Sync + 'static,
    ) -> Result<Message> {
        let expects = Expects::Matching(Box::new(is_reply));
        // Its message owes its reply too, whichever message it turns out to be.
        let send = |id| self.send_for(message.into(), Some(id));
        self.shared.replies.ask(expects, timeout, send).await
    }

    /// Ends the client: receiving stops, datagrams already received are
    /// handled, on_disconnect runs, queued sends are flushed; then waits
    /// until all that is done (cut after 30 s, the shutdown timeout).
    pub async fn close(&self) {
        let shared = &self.shared;
        // Closed, not shut down: on_disconnect sees that this side ended it.
        // Not `Connection::close`, which would refuse on_disconnect's sends.
        shared.connection.close_because(DisconnectReason::Closed);
        shared.tasks.close();
        let closed = DisconnectReason::Closed;
        shared.endpoint.drain(closed, shared.tasks.wait()).await;
    }
}

impl fmt::Debug for UdpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpClient")
            .field("addr", &self.shared.addr)
            .field("local_addr", &self.shared.connection.local_addr())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
