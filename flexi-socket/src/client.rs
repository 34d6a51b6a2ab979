//! Client mode: the same handlers on a connection we open, reconnecting with
//! backoff, with an outbox for sends while disconnected and request/reply.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use crate::classifier::{Classifier, ErasedClassifier};
use crate::connection::Connection;
use crate::connection_task::{self, StreamReader, StreamWriter};
use crate::error::{Error, Result};
use crate::framing::Framing;
use crate::limits::Limits;
use crate::message::Message;
use crate::outbound;
use crate::reconnect::Reconnect;
use crate::router::Router;
use crate::server::ServerContext;

impl crate::FlexiSocket {
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
pub struct ClientBuilder {
    addr: String,
    framing: Framing,
    classifier: Option<ErasedClassifier>,
    router: Option<Router>,
    app_state: Option<Arc<dyn Any + Send + Sync>>,
    limits: Limits,
    reconnect: Reconnect,
    connect_timeout: Duration,
    outbox_capacity: usize,
    outbox_policy: OutboxPolicy,
    handshake: Option<Message>,
    #[cfg(feature = "tls")]
    pub(crate) tls: crate::tls::TlsClientSettings,
}

impl ClientBuilder {
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
            classifier: None,
            router: None,
            app_state: None,
            limits,
            reconnect: Reconnect::default(),
            connect_timeout: Duration::from_secs(10),
            outbox_capacity: 1024,
            outbox_policy: OutboxPolicy::Wait(Duration::from_secs(10)),
            handshake: None,
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsClientSettings::default(),
        }
    }

    /// How bytes become messages. Default: [`Framing::lines`].
    #[must_use]
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Classifies the connection by the server's first message.
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
    /// A start-up check of the handlers failed, or every attempt the
    /// [`Reconnect`] policy allows failed ([`Error::GaveUp`]).
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
    /// A start-up check of the handlers failed (duplicates, unknown client
    /// types), or TLS cannot take a server name from the address.
    pub fn spawn(self) -> Result<Client> {
        #[cfg(feature = "tls")]
        let tls = self.tls.into_client(&self.addr)?;
        // A client used only through `request` needs no handlers.
        let router = self.router.unwrap_or_else(Router::registered);
        let routes = router.resolve(self.classifier.as_ref(), false)?;
        let replies = Arc::new(Replies::default());
        let context = ServerContext::new(
            routes,
            self.app_state,
            self.classifier,
            self.framing,
            self.limits,
            Some(Arc::clone(&replies)),
        );
        let (status, _) = watch::channel(Status::Connecting);
        let shared = Arc::new(Shared {
            addr: self.addr,
            context,
            replies,
            state: Mutex::new(State {
                connection: None,
                outbox: VecDeque::new(),
            }),
            outbox_room: Notify::new(),
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
        let task = tokio::spawn(keep_connected(Arc::clone(&shared), settings));
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
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

struct Shared {
    addr: String,
    context: Arc<ServerContext>,
    replies: Arc<Replies>,
    state: Mutex<State>,
    outbox_room: Notify,
    outbox_capacity: usize,
    outbox_policy: OutboxPolicy,
    status: watch::Sender<Status>,
}

struct State {
    connection: Option<Connection>,
    outbox: VecDeque<Message>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where the client stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Connecting,
    Connected,
    /// The policy gave up; the text says why.
    GaveUp(String),
    Closed,
}

struct Settings {
    reconnect: Reconnect,
    connect_timeout: Duration,
    handshake: Option<Message>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsClient>,
}

impl Client {
    /// Waits until the client is connected.
    ///
    /// # Errors
    ///
    /// [`Error::GaveUp`] when the reconnect policy gave up, or
    /// [`Error::ClientClosed`] after [`close`](Self::close).
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
        let message = message.into();
        let patience = match self.shared.outbox_policy {
            OutboxPolicy::Wait(patience) => patience,
            OutboxPolicy::Fail => Duration::ZERO,
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let room = self.shared.outbox_room.notified();
            let connection = {
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
                    Some(connection) => Some(connection.clone()),
                    None if state.outbox.len() < self.shared.outbox_capacity => {
                        state.outbox.push_back(message);
                        return Ok(());
                    }
                    None => None,
                }
            };
            if let Some(connection) = connection {
                match connection.send(message.clone()).await {
                    // Lost the connection meanwhile: the outbox takes it.
                    Err(Error::ConnectionClosed { .. }) => {
                        self.forget(&connection);
                        continue;
                    }
                    sent => return sent,
                }
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(Error::NotConnected {
                    addr: self.shared.addr.clone(),
                });
            }
        }
    }

    /// Sends `message` and waits for the next message from the server,
    /// which goes to the caller instead of `on_message`.
    ///
    /// # Errors
    ///
    /// [`Error::RequestTimeout`] when no reply came in time, or any error of
    /// [`send`](Self::send).
    pub async fn request(&self, message: impl Into<Message>, timeout: Duration) -> Result<Message> {
        self.request_matching(message, timeout, |_| true).await
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
        let closed = self.shared.context.shutdown.cancelled();
        self.shared
            .replies
            .ask(Box::new(is_reply), timeout, self.send(message), closed)
            .await
    }

    /// Stops reconnecting, closes the connection gracefully (queued sends
    /// are flushed) and waits until it is closed. Messages still in the
    /// outbox are dropped; the number is returned.
    pub async fn close(&self) -> usize {
        self.shared.status.send_replace(Status::Closed);
        self.shared.context.shutdown.cancel();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
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

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.shared.addr)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// Connects, serves the connection until it ends, and reconnects as the
/// policy says, until closed or given up.
/// How long a connection must live for its loss to start the backoff afresh.
const STABLE_CONNECTION: Duration = Duration::from_secs(1);

async fn keep_connected(shared: Arc<Shared>, settings: Settings) {
    let shutdown = shared.context.shutdown.clone();
    let mut failures = 0_u32;
    loop {
        let opened = tokio::select! {
            () = shutdown.cancelled() => break,
            opened = open(&shared, &settings) => opened,
        };
        let stream = match opened {
            Ok(stream) => stream,
            Err(why) => {
                if !backoff(&shared, &settings.reconnect, &mut failures, why).await {
                    break;
                }
                continue;
            }
        };
        let opened_at = tokio::time::Instant::now();
        serve(&shared, &settings, stream).await;
        if shutdown.is_cancelled() {
            break;
        }
        shared.status.send_replace(Status::Connecting);
        tracing::info!(addr = %shared.addr, "connection lost; reconnecting");
        // A connection that lived a while starts the backoff afresh; one that
        // died at once (a server that accepts and closes, a TLS server that
        // refuses us after the handshake) counts as one more failed attempt,
        // so the delays grow instead of reconnecting in a tight loop.
        if opened_at.elapsed() >= STABLE_CONNECTION {
            failures = 0;
        }
        let why = "the connection was lost".to_owned();
        if !backoff(&shared, &settings.reconnect, &mut failures, why).await {
            break;
        }
    }
    if !matches!(*shared.status.borrow(), Status::GaveUp(_)) {
        shared.status.send_replace(Status::Closed);
    }
    // Senders waiting for room learn that nothing will come.
    shared.outbox_room.notify_waiters();
}

/// Waits before the next attempt; `false` when the policy gives up (or the
/// client is closed meanwhile).
async fn backoff(shared: &Shared, reconnect: &Reconnect, failures: &mut u32, why: String) -> bool {
    *failures += 1;
    let Some(delay) = reconnect.delay_after(*failures) else {
        tracing::warn!(addr = %shared.addr, attempts = *failures, reason = %why, "giving up");
        shared.status.send_replace(Status::GaveUp(format!(
            "{why} (after {failures} attempt{})",
            if *failures == 1 { "" } else { "s" }
        )));
        return false;
    };
    tracing::debug!(reason = %why, ?delay, "retrying");
    tokio::select! {
        () = shared.context.shutdown.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// A connection ready to serve: plain TCP, or TLS once its handshake is done.
enum Opened {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Opened {
    fn tcp(&self) -> &TcpStream {
        match self {
            Opened::Tcp(stream) => stream,
            #[cfg(feature = "tls")]
            Opened::Tls(stream) => stream.get_ref().0,
        }
    }
}

/// One attempt: connects under the connect timeout, then does the TLS
/// handshake if configured. The error is the sentence for the reconnect log
/// and [`Error::GaveUp`].
async fn open(shared: &Shared, settings: &Settings) -> std::result::Result<Opened, String> {
    let attempt =
        tokio::time::timeout(settings.connect_timeout, TcpStream::connect(&shared.addr)).await;
    let stream = match attempt {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            return Err(format!(
                "cannot connect to {}: {error} (is the server running and the address right?)",
                shared.addr
            ));
        }
        Err(_elapsed) => {
            return Err(format!(
                "connecting to {} took longer than {:?}",
                shared.addr, settings.connect_timeout
            ));
        }
    };
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = &settings.tls {
        let stream = tls.handshake(stream).await?;
        return Ok(Opened::Tls(Box::new(stream)));
    }
    Ok(Opened::Tcp(stream))
}

/// Splits an open connection into the halves its task runs on.
async fn serve(shared: &Arc<Shared>, settings: &Settings, stream: Opened) {
    let tcp = stream.tcp();
    let (Ok(local_addr), Ok(peer_addr)) = (tcp.local_addr(), tcp.peer_addr()) else {
        return;
    };
    let addrs = (local_addr, peer_addr);
    match stream {
        Opened::Tcp(stream) => {
            let (reader, writer) = stream.into_split();
            serve_halves(shared, settings, addrs, reader, writer).await;
        }
        #[cfg(feature = "tls")]
        Opened::Tls(stream) => {
            let (reader, writer) = crate::tls::split(*stream, &shared.context.framing);
            serve_halves(shared, settings, addrs, reader, writer).await;
        }
    }
}

/// Runs one connection: handshake and outbox first, then the usual
/// connection task until it ends.
async fn serve_halves(
    shared: &Arc<Shared>,
    settings: &Settings,
    (local_addr, peer_addr): (SocketAddr, SocketAddr),
    reader: impl StreamReader,
    writer: impl StreamWriter,
) {
    let context = &shared.context;
    let (outbound, queue) = outbound::channel(&context.limits);
    let connection = Connection::new(
        context.next_id(),
        peer_addr,
        local_addr,
        Arc::clone(context),
        outbound,
        context.shutdown.child_token(),
    );
    context.connections.insert(connection.clone());
    let (flushed, flushed_signal) = oneshot::channel();
    let handover = async {
        let ready = hand_over(shared, &connection, settings.handshake.clone()).await;
        let _ = flushed.send(ready);
    };
    let running = connection_task::run(reader, writer, connection.clone(), queue);
    tokio::join!(running, handover);
    if let Ok(false) = flushed_signal.await {
        tracing::debug!("the connection ended before the outbox was flushed");
    }
    let mut state = shared.lock();
    if state
        .connection
        .as_ref()
        .is_some_and(|c| c.id() == connection.id())
    {
        state.connection = None;
    }
}

/// Sends the handshake and the outbox in order, then makes the connection
/// the client's current one (so later sends cannot overtake the outbox).
async fn hand_over(shared: &Shared, connection: &Connection, handshake: Option<Message>) -> bool {
    if let Some(handshake) = handshake {
        if connection.send(handshake).await.is_err() {
            return false;
        }
    }
    loop {
        let next = {
            let mut state = shared.lock();
            match state.outbox.pop_front() {
                Some(message) => message,
                None => {
                    state.connection = Some(connection.clone());
                    break;
                }
            }
        };
        shared.outbox_room.notify_waiters();
        if connection.send(next.clone()).await.is_err() {
            // Not sent: it stays first in line for the next connection.
            shared.lock().outbox.push_front(next);
            return false;
        }
    }
    shared.outbox_room.notify_waiters();
    shared.status.send_replace(Status::Connected);
    tracing::info!(addr = %shared.addr, "connected");
    true
}

/// Requests waiting for their reply, in the order they were made.
#[derive(Default)]
pub(crate) struct Replies {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next_id: u64,
    list: Vec<Waiter>,
}

struct Waiter {
    id: u64,
    is_reply: Box<dyn Fn(&Message) -> bool + Send + Sync>,
    reply: oneshot::Sender<Message>,
}

impl Replies {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn wait(
        &self,
        is_reply: Box<dyn Fn(&Message) -> bool + Send + Sync>,
    ) -> (u64, oneshot::Receiver<Message>) {
        let (reply, receiver) = oneshot::channel();
        let mut waiting = self.lock();
        waiting.next_id += 1;
        let id = waiting.next_id;
        waiting.list.push(Waiter {
            id,
            is_reply,
            reply,
        });
        (id, receiver)
    }

    /// Sends with `send` and waits for the first message `is_reply` accepts,
    /// at most `timeout`, or until `closed` completes. The one request/reply
    /// routine of TCP and UDP client modes.
    pub(crate) async fn ask(
        &self,
        is_reply: Box<dyn Fn(&Message) -> bool + Send + Sync>,
        timeout: Duration,
        send: impl Future<Output = Result<()>>,
        closed: impl Future<Output = ()>,
    ) -> Result<Message> {
        // Waiting starts before sending, so a fast reply cannot slip past.
        let (waiter, reply) = self.wait(is_reply);
        let outcome = async {
            send.await?;
            tokio::select! {
                biased;
                reply = reply => reply.map_err(|_| Error::ClientClosed),
                () = closed => Err(Error::ClientClosed),
            }
        };
        let outcome = tokio::time::timeout(timeout, outcome)
            .await
            .unwrap_or(Err(Error::RequestTimeout { after: timeout }));
        if outcome.is_err() {
            // Otherwise a later message would go to a request no one waits for.
            self.cancel(waiter);
        }
        outcome
    }

    pub(crate) fn cancel(&self, id: u64) {
        self.lock().list.retain(|waiter| waiter.id != id);
    }

    /// Hands `message` to the oldest request it answers; gives it back when
    /// no request wants it.
    pub(crate) fn offer(&self, message: Message) -> Option<Message> {
        let mut waiting = self.lock();
        let Some(index) = waiting.list.iter().position(|w| (w.is_reply)(&message)) else {
            return Some(message);
        };
        let waiter = waiting.list.remove(index);
        // If the requester gave up just now, the message is nobody's reply.
        waiter.reply.send(message).err()
    }
}

impl fmt::Debug for Replies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replies")
            .field("waiting", &self.lock().list.len())
            .finish()
    }
}
