//! The client layer: the same handlers on a connection we open. A TCP (or
//! TLS) client reconnects with backoff ([`connect`]) and keeps an outbox for
//! sends while disconnected; request/reply (the connection layer's
//! `replies`) is the hook a client installs on its endpoint; a UDP client ([`udp`]) is one datagram
//! session with its server.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::address::{self, Accepts};
use crate::classify::ClientFraming;
use crate::config::{Limits, Reconnect, ReplyOrder, history_method, read_buffer_method};
use crate::connection::deadlines;
use crate::connection::setup::{HandlerSetup, handler_setup_methods};
use crate::connection::{Connection, DisconnectReason, Endpoint, Side};
use crate::error::{Error, Result};
use crate::framing::Framing;
use crate::message::Message;
use crate::server::FlexiSocket;
use crate::sync;

mod connect;
#[cfg(feature = "tls")]
mod tls;
mod udp;

use crate::connection::replies::{Expects, Replies, RequestId};
pub use udp::{UdpClient, UdpClientBuilder};

impl FlexiSocket {
    /// Starts building a TCP client that connects to `addr` (e.g.
    /// `"127.0.0.1:8081"`) and runs the same handlers as a server would.
    pub fn client(addr: impl ToString) -> ClientBuilder {
        ClientBuilder::new(addr.to_string())
    }
}

/// What `send` does while the client is disconnected and its outbox is full.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxPolicy {
    /// Wait for room (or a connection) at most this long, then fail with
    /// [`Error::NotConnected`]. The default, with 10 s.
    Wait(Duration),
    /// Fail at once with [`Error::NotConnected`].
    Fail,
}

/// Configures a client; finish with [`connect`](Self::connect) or
/// [`spawn`](Self::spawn).
///
/// # Examples
///
/// A device that identifies itself on every connection and keeps trying:
///
/// ```no_run
/// use std::time::Duration;
/// use flexi_socket::{FlexiSocket, Framing, OutboxPolicy, Reconnect, ReplyOrder, on_message};
///
/// #[on_message]
/// async fn from_server(msg: String) {
///     println!("server says {msg}");
/// }
///
/// #[tokio::main]
/// async fn main() -> flexi_socket::Result<()> {
///     let client = FlexiSocket::client("10.0.0.7:8081")
///         .framing(Framing::separator("\r"))
///         .handshake("ID panel-1234")                      // first, on every connection
///         .reconnect(Reconnect::default().max_delay(Duration::from_secs(10)))
///         .connect_timeout(Duration::from_secs(3))
///         .outbox(100)                                     // sends kept while disconnected
///         .outbox_policy(OutboxPolicy::Fail)
///         .idle_timeout(Duration::from_secs(90))           // the server heartbeats every 60 s,
///         .reply_order(ReplyOrder::RequestsOnly)           //   unasked: not every message is a reply
///         .spawn()?;                                       // or .connect().await?
///     client.send("EVENT zone 3").await?;                  // goes out once connected
///     client.close().await;
///     Ok(())
/// }
/// ```
pub struct ClientBuilder {
    addr: String,
    framing: Framing,
    setup: HandlerSetup,
    limits: Limits,
    reconnect: Reconnect,
    connect_timeout: Duration,
    outbox_capacity: usize,
    outbox_policy: OutboxPolicy,
    handshake: Option<Message>,
    reply_order: ReplyOrder,
    #[cfg(feature = "tls")]
    tls: crate::transport::tls::TlsClientSettings,
}

impl ClientBuilder {
    handler_setup_methods!();
    history_method!();
    read_buffer_method!();

    pub(crate) fn new(addr: String) -> Self {
        let limits = Limits {
            // A client waits for its server as long as it likes; the server's
            // limits protect the server.
            idle_timeout: None,
            first_message_timeout: None,
            ..Limits::default()
        };
        Self {
            addr,
            framing: Framing::default(),
            setup: HandlerSetup::default(),
            limits,
            reconnect: Reconnect::default(),
            connect_timeout: Duration::from_secs(10),
            outbox_capacity: 1024,
            outbox_policy: OutboxPolicy::Wait(Duration::from_secs(10)),
            handshake: None,
            reply_order: ReplyOrder::default(),
            #[cfg(feature = "tls")]
            tls: crate::transport::tls::TlsClientSettings::default(),
        }
    }

    /// How bytes become messages. Default: [`Framing::lines`].
    #[must_use]
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// How to reconnect after the connection is lost or cannot be opened
    /// (default: [`Reconnect::default`], forever with backoff).
    #[must_use]
    pub fn reconnect(mut self, reconnect: Reconnect) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// How long one connection attempt may take (default 10 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The first message on every (re)connection, before anything else:
    /// the identification many device protocols expect.
    #[must_use]
    pub fn handshake(mut self, message: impl Into<Message>) -> Self {
        self.handshake = Some(message.into());
        self
    }

    /// Which of the server's messages answer which of ours, and so what
    /// [`Client::request`] returns. Default:
    /// [`ReplyOrder::EveryMessage`], one reply to each message, in order.
    #[must_use]
    pub fn reply_order(mut self, order: ReplyOrder) -> Self {
        self.reply_order = order;
        self
    }

    /// How many messages `send` keeps while disconnected (default 1024); they
    /// go out in order, after the handshake, once connected.
    ///
    /// # Panics
    ///
    /// If `messages` is 0.
    #[must_use]
    pub fn outbox(mut self, messages: usize) -> Self {
        assert!(
            messages > 0,
            "the outbox needs room for at least one message"
        );
        self.outbox_capacity = messages;
        self
    }

    /// What `send` does when the outbox is full (default: wait up to 10 s).
    #[must_use]
    pub fn outbox_policy(mut self, policy: OutboxPolicy) -> Self {
        self.outbox_policy = policy;
        self
    }

    /// Closes the connection when the server sends nothing for this long
    /// (default: never); the client then reconnects.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.limits.idle_timeout = timeout.into();
        self
    }

    /// Starts the client and waits until it is connected the first time.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn), or every attempt the [`Reconnect`] policy
    /// allows failed ([`Error::GaveUp`]).
    pub async fn connect(self) -> Result<Client> {
        let client = self.spawn()?;
        client.connected().await?;
        Ok(client)
    }

    /// Starts the client in the background and returns at once; see
    /// [`Client::connected`].
    ///
    /// # Errors
    ///
    /// The address is not `host:port` or `unix:PATH`
    /// ([`Error::InvalidAddress`]; a host name that does not resolve is
    /// retried under the [`Reconnect`] policy instead, as DNS may answer
    /// later), a start-up check of the handlers failed (duplicates, unknown
    /// client types), or TLS cannot take a server name from the address.
    pub fn spawn(self) -> Result<Client> {
        address::check(&self.addr, Accepts::TCP_CLIENT)?;
        #[cfg(feature = "tls")]
        let tls = self.tls.into_client(&self.addr)?;
        let replies = Arc::new(Replies::new(self.reply_order));
        let endpoint = self.setup.endpoint(
            self.framing,
            ClientFraming::default(),
            self.limits,
            Side::Client,
            Some(Arc::clone(&replies) as _),
        )?;
        let (status, _) = watch::channel(Status::Connecting);
        let shared = Arc::new(Shared {
            addr: self.addr,
            endpoint,
            replies,
            state: Mutex::new(State {
                connection: None,
                outbox: VecDeque::new(),
            }),
            outbox_room: Notify::new(),
            sending: tokio::sync::Mutex::new(()),
            outbox_capacity: self.outbox_capacity,
            outbox_policy: self.outbox_policy,
            status,
        });
        let settings = Settings {
            reconnect: self.reconnect,
            connect_timeout: self.connect_timeout,
            handshake: self.handshake,
            #[cfg(feature = "tls")]
            tls,
        };
        let endpoint = Arc::clone(&shared.endpoint);
        let running = connect::keep_connected(Arc::clone(&shared), settings);
        // The read deadlines are kept while the client runs.
        let task = tokio::spawn(deadlines::swept(endpoint, running));
        Ok(Client {
            shared,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("addr", &self.addr)
            .field("framing", &self.framing)
            .field("reconnect", &self.reconnect)
            .finish_non_exhaustive()
    }
}

/// A running client. Cheap to clone; every clone is the same client.
///
/// # Examples
///
/// A client of an echo server on loopback: what the server sends reaches the
/// client's `on_message` handler.
///
/// ```
/// use std::time::Duration;
/// use flexi_socket::{Connection, FlexiSocket, Router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let echo = Router::new().on_message(|conn: Connection, msg: String| async move { conn.send(msg).await });
/// # let server = FlexiSocket::server("127.0.0.1:0").router(echo).bind().await?;
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
/// let client = FlexiSocket::client(&addr).router(router).connect().await?;
/// client.send("ping").await?;
/// let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv()).await?;
/// assert_eq!(reply.as_deref(), Some("ping"));
/// assert!(client.is_connected());
/// client.close().await;
/// # handle.shutdown();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

pub(super) struct Shared {
    pub(super) addr: String,
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) replies: Arc<Replies>,
    pub(super) state: Mutex<State>,
    pub(super) outbox_room: Notify,
    /// Held while one of the client's own sends is queued: the order in which
    /// replies are owed is then the order in which messages were queued.
    pub(super) sending: tokio::sync::Mutex<()>,
    pub(super) outbox_capacity: usize,
    pub(super) outbox_policy: OutboxPolicy,
    pub(super) status: watch::Sender<Status>,
}

pub(super) struct State {
    pub(super) connection: Option<Connection>,
    pub(super) outbox: VecDeque<Outgoing>,
}

/// A message waiting in the outbox, and the request it is sent for.
#[derive(Clone)]
pub(super) struct Outgoing {
    pub(super) message: Message,
    pub(super) request: Option<RequestId>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        sync::lock(&self.state)
    }
}

/// Where the client stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Status {
    Connecting,
    Connected,
    /// The policy gave up; the text says why.
    GaveUp(String),
    Closed,
}

pub(super) struct Settings {
    pub(super) reconnect: Reconnect,
    pub(super) connect_timeout: Duration,
    pub(super) handshake: Option<Message>,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<crate::transport::tls::TlsClient>,
}

impl Client {
    /// Waits until the client is connected.
    ///
    /// # Errors
    ///
    /// [`Error::GaveUp`] when the reconnect policy gave up, or
    /// [`Error::ClientClosed`] after [`close`](Self::close).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use flexi_socket::FlexiSocket;
    ///
    /// # async fn run() -> flexi_socket::Result<()> {
    /// let client = FlexiSocket::client("127.0.0.1:8081").spawn()?; // returns at once
    /// client.send("queued until connected").await?;
    /// client.connected().await?; // or an error once the reconnect policy gives up
    /// # Ok(()) }
    /// ```
    pub async fn connected(&self) -> Result<()> {
        let mut status = self.shared.status.subscribe();
        let reached = status
            .wait_for(|s| !matches!(s, Status::Connecting))
            .await
            .map_err(|_| Error::ClientClosed)?;
        match &*reached {
            Status::Connected => Ok(()),
            Status::GaveUp(why) => Err(Error::GaveUp {
                addr: self.shared.addr.clone(),
                reason: why.clone(),
            }),
            Status::Connecting | Status::Closed => Err(Error::ClientClosed),
        }
    }

    /// Whether a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().connection.is_some()
    }

    /// The current connection, if connected.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: flexi_socket::Client) {
    /// if let Some(conn) = client.connection() {
    ///     println!("connected from {} to {}", conn.local_addr(), conn.peer_addr());
    /// }
    /// # }
    /// ```
    pub fn connection(&self) -> Option<Connection> {
        self.shared.lock().connection.clone()
    }

    /// Sends a message: at once when connected (through `before_send`),
    /// otherwise into the outbox, sent in order after the next (re)connect.
    ///
    /// # Errors
    ///
    /// [`Error::NotConnected`] when disconnected and the outbox stays full
    /// under the outbox policy; [`Error::ClientClosed`] after `close`; any
    /// error of [`Connection::send`].
    pub async fn send(&self, message: impl Into<Message>) -> Result<()> {
        self.send_for(message.into(), None).await
    }

    /// [`send`](Self::send) of the message `request` is waiting on, if any.
    async fn send_for(&self, message: Message, request: Option<RequestId>) -> Result<()> {
        let _in_order = self.shared.sending.lock().await;
        let patience = match self.shared.outbox_policy {
            OutboxPolicy::Wait(patience) => patience,
            OutboxPolicy::Fail => Duration::ZERO,
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let next = {
                let mut state = self.shared.lock();
                if self.is_closed() {
                    return Err(Error::ClientClosed);
                }
                if state
                    .connection
                    .as_ref()
                    .is_some_and(Connection::is_closing)
                {
                    state.connection = None;
                }
                match &state.connection {
                    Some(connection) => Next::Send(connection.clone()),
                    None if state.outbox.len() < self.shared.outbox_capacity => {
                        state.outbox.push_back(Outgoing { message, request });
                        return Ok(());
                    }
                    // Made under the lock: room made once it is released is not missed.
                    None => Next::WaitForRoom(self.shared.outbox_room.notified()),
                }
            };
            let room = match next {
                Next::Send(connection) => {
                    match connection.send_for(message.clone(), request, None).await {
                        // Lost the connection meanwhile: the outbox takes it.
                        Err(Error::ConnectionClosed { .. }) => {
                            self.forget(&connection);
                            continue;
                        }
                        sent => return sent,
                    }
                }
                Next::WaitForRoom(room) => room,
            };
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(Error::NotConnected {
                    addr: self.shared.addr.clone(),
                });
            }
        }
    }

    /// Sends `message` and waits for the server's reply to it, which goes
    /// to the caller instead of `on_message`.
    ///
    /// Which message is the reply depends on the client's
    /// [`ReplyOrder`]. By default the server answers every message, in
    /// order: the reply is the message in this request's place, so replies
    /// still owed to the handshake or earlier sends go to `on_message`,
    /// never here. Under [`ReplyOrder::RequestsOnly`] it is the first
    /// message after the request.
    ///
    /// Call it from ordinary code, not from this client's own handlers:
    /// replies are handed over by the same connection task that runs the
    /// handler, so a request made inside one can only time out.
    ///
    /// # Examples
    ///
    /// Against a server that answers every line with one quoting it, the
    /// request gets its own reply, not the handshake's or the send's:
    ///
    /// ```
    /// use std::time::Duration;
    /// use flexi_socket::{Connection, FlexiSocket, Message, Router};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flexi_socket::Result<()> {
    /// let quoting = Router::new().on_message(|conn: Connection, line: String| async move {
    ///     conn.send(format!("re: {line}")).await
    /// });
    /// let server = FlexiSocket::server("127.0.0.1:0").router(quoting).bind().await?;
    /// let addr = server.local_addr().to_string();
    /// let handle = server.handle();
    /// let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));
    ///
    /// let client = FlexiSocket::client(addr)
    ///     // The replies owed to the handshake and the send land here.
    ///     .router(Router::new().on_message(|_conn: Connection, _reply: String| async {}))
    ///     .handshake("HELLO panel 7")
    ///     .connect()
    ///     .await?;
    /// client.send("EVENT door open").await?;
    /// let status = client.request("STATUS", Duration::from_secs(5)).await?;
    /// assert_eq!(status, Message::from("re: STATUS"));
    ///
    /// client.close().await;
    /// handle.shutdown();
    /// serving.await.expect("the server task")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::RequestTimeout`] when no reply came in time,
    /// [`Error::ConnectionClosed`] when the connection the request went out
    /// on dropped before its reply, or any error of [`send`](Self::send).
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
    ///
    /// # Examples
    ///
    /// Replies carry the request's sequence number:
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # async fn run(client: flexi_socket::Client) -> flexi_socket::Result<()> {
    /// let reply = client
    ///     .request_matching("0042 STATUS", Duration::from_secs(2), |reply| {
    ///         reply.starts_with(b"0042 ")
    ///     })
    ///     .await?;
    /// println!("{}", String::from_utf8_lossy(&reply));
    /// # Ok(()) }
    /// ```
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

    /// Stops reconnecting, closes the connection gracefully (queued sends
    /// are flushed) and waits until it is closed. Messages still in the
    /// outbox are dropped; the number is returned.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: flexi_socket::Client) {
    /// let dropped = client.close().await; // on_disconnect has run when this returns
    /// if dropped > 0 {
    ///     eprintln!("{dropped} messages were never sent");
    /// }
    /// # }
    /// ```
    pub async fn close(&self) -> usize {
        self.shared.status.send_replace(Status::Closed);
        let task = sync::lock(&self.task).take();
        // Like a server's shutdown: graceful first, cut at the deadline.
        let finished = async {
            if let Some(task) = task {
                let _ = task.await;
            }
        };
        // Closed, not shut down: on_disconnect sees that this side ended it.
        let closed = DisconnectReason::Closed;
        self.shared.endpoint.drain(closed, finished).await;
        self.shared.outbox_room.notify_waiters();
        let mut state = self.shared.lock();
        state.connection = None;
        std::mem::take(&mut state.outbox).len()
    }

    fn is_closed(&self) -> bool {
        *self.shared.status.borrow() == Status::Closed
    }

    fn forget(&self, lost: &Connection) {
        let mut state = self.shared.lock();
        if state
            .connection
            .as_ref()
            .is_some_and(|c| c.id() == lost.id())
        {
            state.connection = None;
        }
    }
}

/// What [`Client::send`] does after looking at the client's state.
enum Next<'a> {
    Send(Connection),
    /// The outbox is full: wait until a connection takes from it.
    WaitForRoom(Notified<'a>),
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.shared.addr)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}
