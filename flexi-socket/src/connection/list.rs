//! [`Connections`]: every open connection of a server, reachable from
//! outside handlers and from any handler: by id, by key, by group, by
//! client type.

use std::fmt;
#[cfg(feature = "nats")]
use std::sync::Weak;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::directory::{Claim, Directory};
use super::outbound::WrittenBy;
use super::outcome::{LocateOutcome, Location, SendOutcome};
use super::remote::{Audience, Remote};
use crate::client_type::ClientType;
use crate::config::{KeyPolicy, Limits};
use crate::connection::Connection;
use crate::error::Error;
use crate::message::Message;
use crate::sync;

/// The open connections of one server (all its listeners). Cheap to clone;
/// a handler can take it as an argument.
///
/// Connections are found by id, by the key one of them was given
/// ([`Connection::set_key`]), by the groups they joined
/// ([`Connection::join`]) and by client type; each of these is an index
/// kept as connections come, classify, join, leave and go, so a look-up by
/// key is one hash look-up and a broadcast to a group visits its members
/// only.
///
/// ```no_run
/// # async fn demo(server: flexi_socket::Server) -> flexi_socket::Result<()> {
/// let connections = server.connections();
/// tokio::spawn(server.serve());
/// connections.broadcast_to("001", "maintenance at noon").await;
/// connections.broadcast_to_group("floor-2", "fire drill").await;
/// connections.send_to_key("panel-42", "STATUS?").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connections {
    shared: Arc<Shared>,
}

struct Shared {
    directory: Mutex<Directory<Connection>>,
    key_policy: KeyPolicy,
    node: Arc<str>,
    /// The other nodes, once the server has joined a cluster.
    remote: OnceLock<Arc<dyn Remote>>,
}

#[cfg(feature = "nats")]
/// A [`Connections`] that does not keep the list alive (what the cluster
/// holds, the list holding the cluster).
#[derive(Clone)]
pub(crate) struct WeakConnections(Weak<Shared>);

#[cfg(feature = "nats")]
impl WeakConnections {
    pub(crate) fn upgrade(&self) -> Option<Connections> {
        self.0.upgrade().map(|shared| Connections { shared })
    }
}

#[cfg(feature = "nats")]
impl fmt::Debug for WeakConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakConnections")
    }
}

impl Connections {
    /// A server's (or a client's) list, under the key policy and node name
    /// its builder set.
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            shared: Arc::new(Shared {
                directory: Mutex::default(),
                key_policy: limits.key_policy,
                node: Arc::clone(&limits.node_name),
                remote: OnceLock::new(),
            }),
        }
    }

    #[cfg(feature = "nats")]
    pub(crate) fn downgrade(&self) -> WeakConnections {
        WeakConnections(Arc::downgrade(&self.shared))
    }

    #[cfg(feature = "nats")]
    /// From now on, what is not found here is asked of `remote` (once).
    pub(crate) fn join_cluster(&self, remote: Arc<dyn Remote>) {
        let _ = self.shared.remote.set(remote);
    }

    /// Leaves the cluster, if the server is in one (at shutdown).
    pub(crate) async fn leave_cluster(&self) {
        if let Some(remote) = self.remote() {
            remote.leave().await;
        }
    }

    fn remote(&self) -> Option<&dyn Remote> {
        self.shared.remote.get().map(|remote| &**remote)
    }

    pub(crate) fn insert(&self, connection: Connection) {
        self.lock().insert(connection.id(), connection);
    }

    /// Takes the connection `id` off the list, its key and groups with it;
    /// whether it was on it.
    pub(crate) fn remove(&self, id: u64) -> bool {
        let mut directory = self.lock();
        let key = directory.key_of(id).cloned();
        let removed = directory.remove(id);
        self.released(key.as_deref());
        removed
    }

    /// Connection `id` gives up its key, if it holds one; whether it did.
    pub(crate) fn release_key(&self, id: u64) -> bool {
        let mut directory = self.lock();
        let key = directory.release(id);
        self.released(key.as_deref());
        key.is_some()
    }

    /// Tells the cluster that no local connection holds `key` any more.
    /// Called, like the cluster's `key_claimed`, under the directory's lock:
    /// the cluster hears the claims and releases of a key in the order the
    /// directory made them. Told after the lock, a release could reach it
    /// after another connection's claim of the same key, and the cluster
    /// would stop serving a key that is held (other nodes: offline).
    /// Both calls only take the cluster's own lock and start tasks.
    fn released(&self, key: Option<&str>) {
        if let (Some(key), Some(remote)) = (key, self.remote()) {
            remote.key_released(key);
        }
    }

    /// Runs `f` on every open connection, under the list's lock (so `f`
    /// must be quick and must not touch the list).
    pub(crate) fn for_each(&self, f: impl FnMut(&Connection)) {
        self.lock().connections().for_each(f);
    }

    /// The directory, for the connection's own `set_key`, `join` and the like.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Directory<Connection>> {
        // Every update leaves the indexes consistent, so a panic elsewhere cannot poison them.
        sync::lock(&self.shared.directory)
    }

    pub(crate) fn key_policy(&self) -> KeyPolicy {
        self.shared.key_policy
    }

    /// Gives `key` to `connection` under the server's policy, and closes
    /// the connection it replaces, if any. A connection that is closing
    /// takes no key: it is about to let it go, and a replaced one would
    /// otherwise take its key back and close the one that replaced it.
    /// In a cluster, the other nodes are told: one holding the key closes
    /// its connection too.
    pub(crate) fn claim(&self, connection: &Connection, key: &str) -> Claim<Connection> {
        let mut directory = self.lock();
        // Checked, and the replaced one closed, under the lock, so no claim
        // slips in between a replacement and the close it implies. Closing
        // only sets flags and wakes a task: nothing waits here.
        if connection.is_closing() {
            return Claim::NotOpen;
        }
        let before = directory.key_of(connection.id()).cloned();
        let claim = directory.claim(connection.id(), key, self.key_policy());
        if let Claim::Taken { replaced } = &claim {
            if let Some(older) = replaced {
                older.close_with(super::DisconnectReason::Replaced);
            }
            // The cluster is told under the lock (see `released`).
            self.released(before.as_deref().filter(|before| *before != key));
            if let Some(remote) = self.remote() {
                remote.key_claimed(key);
            }
            drop(directory);
            if let Some(older) = replaced {
                tracing::info!(key, older = %older, newer = %connection, "key taken over: the older connection is closed");
            }
        }
        claim
    }

    #[cfg(feature = "nats")]
    /// Another node claimed `key`: under the directory's lock, asks
    /// `gives_up` whether this node lets the key go (the cluster compares
    /// the claims there) and, if so, closes the connection holding it here.
    /// Whether it gave up.
    ///
    /// Under the lock because a local claim of the key tells the cluster
    /// under it too: decided outside, a connection that took the key in
    /// between, with a newer claim, would be the one closed.
    pub(crate) fn give_up_key(&self, key: &str, gives_up: impl FnOnce() -> bool) -> bool {
        let directory = self.lock();
        if !gives_up() {
            return false;
        }
        if let Some(holder) = directory.by_key(key) {
            // Only sets flags and wakes its task: nothing waits under the lock.
            holder.close_with(super::DisconnectReason::Replaced);
        }
        true
    }

    /// The name this node goes by in locations and send outcomes: `local`
    /// unless the builder's [`node_name`](crate::ServerBuilder::node_name)
    /// says otherwise.
    pub fn node_name(&self) -> &str {
        &self.shared.node
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every open connection, ordered by id.
    pub fn list(&self) -> Vec<Connection> {
        let mut all: Vec<Connection> = self.lock().connections().cloned().collect();
        all.sort_by_key(Connection::id);
        all
    }

    /// The open connection with this id.
    pub fn get(&self, id: u64) -> Option<Connection> {
        self.lock().get(id).cloned()
    }

    /// The open connection holding `key` on this node (see
    /// [`Connection::set_key`]).
    pub fn by_key(&self, key: &str) -> Option<Connection> {
        self.lock().by_key(key).cloned()
    }

    /// Every key held on this node, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().keys().map(|key| key.to_string()).collect();
        keys.sort_unstable();
        keys
    }

    /// The members of `group` on this node, ordered by id.
    pub fn group(&self, group: &str) -> Vec<Connection> {
        let mut members = self.lock().in_group(group);
        members.sort_by_key(Connection::id);
        members
    }

    /// Every group with at least one member on this node, sorted.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .lock()
            .groups()
            .map(|group| group.to_string())
            .collect();
        groups.sort_unstable();
        groups
    }

    /// The open connections of one client type on this node, ordered by id.
    pub fn of_type(&self, client_type: impl Into<ClientType>) -> Vec<Connection> {
        let mut members = self.lock().of_type(&client_type.into());
        members.sort_by_key(Connection::id);
        members
    }

    /// Where `key` is: the connection holding it, its peer address, client
    /// type and node.
    ///
    /// ```
    /// use flexi_socket::{Connections, LocateOutcome};
    ///
    /// async fn where_is(connections: &Connections, id: &str) -> String {
    ///     match connections.locate(id).await {
    ///         LocateOutcome::Found(at) => format!("AT {id} {} {}", at.node, at.peer_addr),
    ///         _ => format!("OFFLINE {id}"),
    ///     }
    /// }
    /// # let _ = where_is;
    /// ```
    ///
    /// In a cluster, a key not held here is looked for on the other nodes
    /// (the crate docs' "Cluster" says what each outcome means).
    pub async fn locate(&self, key: &str) -> LocateOutcome {
        match (self.by_key(key), self.remote()) {
            (Some(connection), _) => LocateOutcome::Found(Location {
                node: Arc::clone(&self.shared.node),
                connection: connection.id(),
                peer_addr: connection.peer_addr(),
                client_type: connection.client_type().cloned(),
            }),
            (None, Some(remote)) => remote.locate(key).await,
            (None, None) => LocateOutcome::Offline,
        }
    }

    /// Sends to the connection holding `key` (through its `before_send`)
    /// and says what became of the message: queued, offline (no connection
    /// holds the key), queue full, or closing. Waits for room in the queue
    /// as that connection's slow-consumer policy says.
    ///
    /// In a cluster, a key not held here is sent to the node that holds it,
    /// whose answer is the outcome (the crate docs' "Cluster" says what
    /// each means); sends from this node to one key arrive in the order made.
    ///
    /// # Errors
    ///
    /// What is not about reaching the peer: [`Error::Encode`] if the
    /// framing refuses the message, or the error of a failing `before_send`.
    /// With a cluster also [`Error::Cluster`] when the message is too large
    /// for a cluster message, or the other node's answer cannot be read.
    pub async fn send_to_key(
        &self,
        key: &str,
        message: impl Into<Message>,
    ) -> Result<SendOutcome, Error> {
        let message = message.into();
        match (self.by_key(key), self.remote()) {
            (None, Some(remote)) => remote.send_to_key(key, message).await,
            (holder, _) => self.send_to_holder(holder, message).await,
        }
    }

    /// [`send_to_key`](Self::send_to_key) on this node only (what another
    /// node asks of this one).
    #[cfg(feature = "nats")]
    pub(crate) async fn send_to_key_here(
        &self,
        key: &str,
        message: Message,
    ) -> Result<SendOutcome, Error> {
        self.send_to_holder(self.by_key(key), message).await
    }

    /// Sends to `holder`, the connection found holding a key here (`None`:
    /// the key is offline).
    async fn send_to_holder(
        &self,
        holder: Option<Connection>,
        message: Message,
    ) -> Result<SendOutcome, Error> {
        let Some(connection) = holder else {
            return Ok(SendOutcome::Offline);
        };
        let sent = connection.send(message).await;
        SendOutcome::of_send(sent, &self.shared.node, connection.id())
    }

    /// Sends to one connection (through its `before_send`).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConnection`] if no open connection has this id, or any
    /// error of [`Connection::send`].
    pub async fn send_to(&self, id: u64, message: impl Into<Message>) -> Result<(), Error> {
        let connection = self.get(id).ok_or(Error::UnknownConnection { id })?;
        connection.send(message).await
    }

    /// Sends to every open connection at once; returns how many accepted the
    /// message. Connections that are closing are skipped, and a slow peer only
    /// delays its own send (bounded by the slow-consumer policy), not the others.
    ///
    /// In a cluster, every node's connections, counted together; a node
    /// that does not answer within the request timeout counts none and is
    /// logged (a warning naming it).
    pub async fn broadcast(&self, message: impl Into<Message>) -> usize {
        self.broadcast_everywhere(Audience::All, message.into())
            .await
    }

    /// Sends to every open connection of one client type, as
    /// [`broadcast`](Self::broadcast) does; returns how many accepted the message.
    pub async fn broadcast_to(
        &self,
        client_type: impl Into<ClientType>,
        message: impl Into<Message>,
    ) -> usize {
        let audience = Audience::ClientType(client_type.into());
        self.broadcast_everywhere(audience, message.into()).await
    }

    /// Sends to every member of `group` (see [`Connection::join`]), as
    /// [`broadcast`](Self::broadcast) does; returns how many accepted the message.
    pub async fn broadcast_to_group(&self, group: &str, message: impl Into<Message>) -> usize {
        let audience = Audience::Group(group.to_owned());
        self.broadcast_everywhere(audience, message.into()).await
    }

    /// Here and, in a cluster, on every other node at the same time.
    async fn broadcast_everywhere(&self, audience: Audience, message: Message) -> usize {
        let Some(remote) = self.remote() else {
            return self.broadcast_here(&audience, message).await;
        };
        let (here, there) = tokio::join!(
            self.broadcast_here(&audience, message.clone()),
            remote.broadcast(audience.clone(), message)
        );
        // A cluster that is unavailable is logged by the cluster, within its rate.
        here + there.reached
    }

    /// A broadcast to this node's connections only.
    pub(crate) async fn broadcast_here(&self, audience: &Audience, message: Message) -> usize {
        let targets = match audience {
            Audience::All => self.lock().connections().cloned().collect(),
            Audience::ClientType(client_type) => self.lock().of_type(client_type),
            Audience::Group(group) => self.lock().in_group(group),
        };
        self.send_each(targets, message).await
    }

    /// Sends to each of `targets`; one slow peer delays only its own send.
    /// Most find room in their queue and are done here, in one pass with no
    /// task; only a send that must wait (a full queue, a `before_send`)
    /// gets a task of its own.
    async fn send_each(&self, targets: Vec<Connection>, message: Message) -> usize {
        let mut delivered = 0;
        let mut waiting = tokio::task::JoinSet::new();
        for connection in targets.into_iter().filter(|c| !c.is_closing()) {
            // The boxed rest of a send that must wait borrows its
            // connection: dropped unpolled, and the send starts over in a task.
            // A frame that finds the connection's writer idle is written here:
            // no wake-up and poll of its task for one frame.
            let done_here = connection
                .try_send(message.clone(), None, None, WrittenBy::Sender)
                .ok();
            match done_here {
                Some(sent) => delivered += usize::from(broadcast_sent(&connection, sent)),
                None => {
                    let message = message.clone();
                    waiting.spawn(async move {
                        let sent = connection.send(message).await;
                        broadcast_sent(&connection, sent)
                    });
                }
            }
            // A system call per target: to ten thousand of them, the other
            // tasks of this worker get their turns in between.
            tokio::task::coop::consume_budget().await;
        }
        while let Some(sent) = waiting.join_next().await {
            delivered += usize::from(sent.unwrap_or(false));
        }
        delivered
    }
}

/// Whether a broadcast's send to `connection` was accepted; a refusal is
/// only worth a debug line (the count says how many were reached).
fn broadcast_sent(connection: &Connection, sent: Result<(), Error>) -> bool {
    if let Err(error) = &sent {
        tracing::debug!(connection = connection.id(), %error, "broadcast skipped");
    }
    sent.is_ok()
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("open", &self.len())
            .field("node", &self.node_name())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "nats"))]
mod tests {
    use std::collections::HashSet;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::connection::Endpoint;
    use crate::connection::outbound::Transport;
    use crate::connection::remote::RemoteReach;
    use crate::future::BoxFuture;
    use crate::handler::Router;

    /// The cluster's view of the keys this node holds, as the list tells it.
    /// Its `key_released` waits (a little) for a claim made meanwhile on
    /// another thread: the moment where the two calls can cross.
    #[derive(Debug)]
    struct Held {
        keys: Mutex<HashSet<String>>,
        claimed_elsewhere: Mutex<Option<mpsc::Receiver<()>>>,
    }

    impl Held {
        /// A cluster that knows nothing yet, joined by `list`.
        fn joined(list: &Connections) -> Arc<Self> {
            let remote = Arc::new(Self {
                keys: Mutex::default(),
                claimed_elsewhere: Mutex::new(None),
            });
            list.join_cluster(Arc::clone(&remote) as Arc<dyn Remote>);
            remote
        }
    }

    impl Remote for Held {
        fn send_to_key<'a>(
            &'a self,
            _: &'a str,
            _: Message,
        ) -> BoxFuture<'a, Result<SendOutcome, Error>> {
            Box::pin(async { Ok(SendOutcome::Offline) })
        }
        fn locate<'a>(&'a self, _: &'a str) -> BoxFuture<'a, LocateOutcome> {
            Box::pin(async { LocateOutcome::Offline })
        }
        fn broadcast(&self, _: Audience, _: Message) -> BoxFuture<'_, RemoteReach> {
            Box::pin(async { RemoteReach::default() })
        }
        fn key_claimed(&self, key: &str) {
            sync::lock(&self.keys).insert(key.to_owned());
        }
        fn key_released(&self, key: &str) {
            if let Some(claimed) = sync::lock(&self.claimed_elsewhere).take() {
                let _ = claimed.recv_timeout(Duration::from_millis(300));
            }
            sync::lock(&self.keys).remove(key);
        }
        fn leave(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    fn endpoint() -> Arc<Endpoint> {
        Endpoint::for_tests(Router::new(), Limits::default())
    }

    fn open(endpoint: &Arc<Endpoint>) -> Connection {
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (connection, _receiver) = Arc::clone(endpoint)
            .open(addr, addr, Transport::Stream)
            .unwrap();
        endpoint.register(&connection);
        connection
    }

    /// A connection leaves with its key while another takes the same key:
    /// whatever the order, the cluster must end up told that the key is
    /// held (the directory holds it), or the other nodes find it offline.
    #[test]
    fn a_key_taken_as_its_holder_leaves_stays_claimed_in_the_cluster() {
        let endpoint = endpoint();
        let list = endpoint.connections.clone();
        let (claimed, claimed_elsewhere) = mpsc::channel();
        let remote = Held::joined(&list);
        let (old, new) = (open(&endpoint), open(&endpoint));
        assert!(matches!(list.claim(&old, "42"), Claim::Taken { .. }));
        *sync::lock(&remote.claimed_elsewhere) = Some(claimed_elsewhere);
        std::thread::scope(|scope| {
            scope.spawn(|| list.remove(old.id()));
            scope.spawn(|| {
                // Once the old one is off the list (its release may be on
                // its way to the cluster).
                while list.by_key("42").is_some() {
                    std::thread::yield_now();
                }
                assert!(matches!(list.claim(&new, "42"), Claim::Taken { .. }));
                let _ = claimed.send(());
            });
        });
        assert_eq!(list.by_key("42").map(|c| c.id()), Some(new.id()));
        assert!(
            sync::lock(&remote.keys).contains("42"),
            "the directory holds the key, the cluster was told it is released"
        );
    }

    /// Another node's claim, newer than the key's holder here, is being
    /// decided when a local connection, newer still, takes the key: the
    /// decision was made on the older holder, so the older one is closed,
    /// never the newer.
    #[test]
    fn a_key_given_up_to_another_node_closes_the_holder_it_was_decided_on() {
        let endpoint = endpoint();
        let list = endpoint.connections.clone();
        Held::joined(&list);
        let (old, new) = (open(&endpoint), open(&endpoint));
        assert!(matches!(list.claim(&old, "42"), Claim::Taken { .. }));
        std::thread::scope(|scope| {
            let gave_up = list.give_up_key("42", || {
                // The claims are compared here (the older holder's loses);
                // meanwhile the newer connection takes the key.
                let (claimed, claimed_here) = mpsc::channel();
                let (list, new) = (&list, &new);
                scope.spawn(move || {
                    assert!(matches!(list.claim(new, "42"), Claim::Taken { .. }));
                    let _ = claimed.send(());
                });
                // Taken under the same lock, the claim waits for this
                // decision; the wait is only long enough to see it did not.
                let _ = claimed_here.recv_timeout(Duration::from_millis(300));
                true
            });
            assert!(gave_up);
        });
        assert!(old.is_closing(), "the holder the decision was made on");
        assert!(!new.is_closing(), "the newer connection was closed");
        assert_eq!(list.by_key("42").map(|c| c.id()), Some(new.id()));
    }
}
