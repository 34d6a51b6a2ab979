//! [`ClusterNode`]: this server as one node of the cluster. It holds the
//! NATS client, answers the other nodes (broadcasts, presence), and is the
//! [`Remote`] that this server's [`Connections`] ask about keys held
//! elsewhere.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, HeaderMap};
use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::config::ClusterConfig;
use super::keys::HeldKeys;
use super::members::{Admission, Members};
use super::subject::Subjects;
use super::warnings::{Warning, Warnings};
use super::wire::{Wire, WireError};
use crate::connection::{Audience, Connections, Remote, WeakConnections};
use crate::error::Error;
use crate::sync;

/// How many messages wait at most on one subscription (a key's, the
/// node's, presence) while its task is busy, e.g. with a slow device; past
/// it NATS drops them, and their senders get `Timeout`. async-nats's
/// default, 65,536, would let messages of up to 1 MiB pile up to 64 GiB
/// behind one slow device.
const SUBSCRIPTION_CAPACITY: usize = 1024;

/// How many broadcasts asked of this node by the others are answered at
/// once. Each waits for its slowest connection (bounded by that one's
/// slow-consumer policy); answered one at a time, one held up by a slow
/// device would make the others time out. Past this many, the next waits
/// for one to finish (and behind it NATS keeps [`SUBSCRIPTION_CAPACITY`]).
const CONCURRENT_BROADCASTS: usize = 64;

/// The header of a hello that names the process saying it: NATS echoes a
/// node's own hellos back to it, and a hello with its name but another
/// instance is another process given the same name.
const INSTANCE_HEADER: &str = "Flexi-Instance";

/// How often at most this node answers the hellos that ask for one. One
/// answer reaches every node (it goes to the presence subject), so the asks
/// made while it waits share the next; anyone who can publish there could
/// otherwise make every node publish once per hello sent.
const HELLO_ANSWERS_EVERY: Duration = Duration::from_secs(1);

/// This server as a node of the cluster. Dropping it leaves the cluster:
/// its tasks end and its NATS connection closes, and with it every
/// subscription of its keys.
#[derive(Debug)]
pub(crate) struct ClusterNode {
    pub(super) shared: Arc<Shared>,
    tasks: Mutex<JoinSet<()>>,
}

/// What the node's tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) client: Client,
    pub(super) name: Arc<str>,
    /// This process's node, among any others given the same name by mistake.
    instance: String,
    pub(super) subjects: Subjects,
    /// This server's connections, for what other nodes ask of them. Weak:
    /// the list holds this node (as its [`Remote`]), not the other way.
    pub(super) connections: WeakConnections,
    pub(super) keys: HeldKeys,
    /// The other nodes that said hello and not goodbye.
    members: Members,
    /// Warnings within a rate: other nodes (or anyone) decide how often.
    pub(super) warnings: Warnings,
    /// A hello asked this node to say hello too; see [`HELLO_ANSWERS_EVERY`].
    hello_asked: Notify,
}

impl ClusterNode {
    /// Joins the cluster as `name`, serving `connections`. Returns at once
    /// even when no NATS server answers yet: the client keeps trying in the
    /// background, and cross-node operations answer "cluster unavailable"
    /// until it is connected.
    ///
    /// # Errors
    ///
    /// [`Error::Cluster`] if the configuration is wrong (an invalid node
    /// name or prefix, a URL that does not parse).
    pub(crate) async fn join(
        config: &ClusterConfig,
        name: &str,
        connections: WeakConnections,
    ) -> Result<Self, Error> {
        config.check(name)?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let client = ConnectOptions::new()
            .name(format!("flexi-socket node {name}"))
            .retry_on_initial_connect()
            .ping_interval(config.ping_interval)
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .request_timeout(Some(config.request_timeout))
            .event_callback(move |event| {
                let events = events_tx.clone();
                async move {
                    let _ = events.send(event);
                }
            })
            .connect(config.urls.clone())
            .await
            .map_err(|error| Error::Cluster {
                reason: format!("cannot use the NATS servers {:?}: {error}", config.urls),
            })?;
        let shared = Arc::new(Shared {
            client,
            name: Arc::from(name),
            instance: instance(),
            subjects: Subjects::new(&config.subject_prefix),
            connections,
            keys: HeldKeys::default(),
            members: Members::default(),
            warnings: Warnings::default(),
            hello_asked: Notify::new(),
        });
        let mut tasks = JoinSet::new();
        // Subscribed before the first hello goes out, so no answer is missed.
        let presence = subscribe(&shared, shared.subjects.presence()).await?;
        let broadcasts = subscribe(&shared, shared.subjects.node(name)).await?;
        tasks.spawn(Arc::clone(&shared).answer_presence(presence));
        tasks.spawn(Arc::clone(&shared).answer_hellos());
        tasks.spawn(Arc::clone(&shared).answer_broadcasts(broadcasts));
        tasks.spawn(Arc::clone(&shared).follow_connection(events_rx));
        // Normally NATS answers at once: the node is then in the cluster,
        // its subscriptions in place, when the server starts accepting.
        // Otherwise it joins in the background when NATS comes.
        let first_contact = tokio::time::timeout(config.request_timeout, shared.client.flush());
        if matches!(first_contact.await, Ok(Ok(()))) {
            shared.say_hello().await;
            let _ = shared.client.flush().await;
        } else {
            tracing::warn!(node = name, urls = ?config.urls, "no NATS server answers yet: serving local connections only until one does");
        }
        Ok(Self {
            shared,
            tasks: Mutex::new(tasks),
        })
    }

    /// Says goodbye to the other nodes and stops answering them.
    pub(crate) async fn leave(&self) {
        let goodbye = Wire::Goodbye {
            node: self.shared.name.to_string(),
        };
        let shared = &self.shared;
        if shared.is_connected() {
            let _ = shared
                .client
                .publish(shared.subjects.presence(), goodbye.encode())
                .await;
            let _ = shared.client.flush().await;
        }
        sync::lock(&self.tasks).abort_all();
        shared.keys.release_all();
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        // The key tasks hold the shared state: end them, or they outlive the node.
        self.shared.keys.release_all();
    }
}

/// This process and this moment: unique enough among the processes that
/// could share a node name.
fn instance() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

async fn subscribe(shared: &Shared, subject: String) -> Result<async_nats::Subscriber, Error> {
    shared
        .client
        .subscribe(subject.clone())
        .await
        .map_err(|error| Error::Cluster {
            reason: format!("cannot subscribe to {subject}: {error}"),
        })
}

impl Shared {
    pub(super) fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub(super) fn connections(&self) -> Option<Connections> {
        self.connections.upgrade()
    }

    /// The other nodes known now.
    pub(super) fn members(&self) -> Vec<String> {
        self.members.list()
    }

    pub(super) fn forget(&self, node: &str) {
        if self.members.remove(node) {
            tracing::info!(node, "node left the cluster (no answer on its subject)");
        }
    }

    /// Tells every node this one is here, and asks them to say so too.
    async fn say_hello(&self) {
        self.publish_hello(true).await;
    }

    async fn publish_hello(&self, answer_back: bool) {
        let hello = Wire::Hello {
            node: self.name.to_string(),
            answer_back,
        };
        let mut headers = HeaderMap::new();
        headers.insert(INSTANCE_HEADER, self.instance.as_str());
        let _ = self
            .client
            .publish_with_headers(self.subjects.presence(), headers, hello.encode())
            .await;
    }

    /// Says hello when asked to, at most once every
    /// [`HELLO_ANSWERS_EVERY`]: the asks made meanwhile are answered
    /// together, right after.
    async fn answer_hellos(self: Arc<Self>) {
        loop {
            // A permit is kept for an ask made while this task waits below.
            self.hello_asked.notified().await;
            self.publish_hello(false).await;
            tokio::time::sleep(HELLO_ANSWERS_EVERY).await;
        }
    }

    /// A hello with this node's name: its own, echoed, or another
    /// process's. Another's is logged, and answered when it asks, so that
    /// process hears of this one too (within the warning's rate, and the
    /// answer within [`HELLO_ANSWERS_EVERY`]).
    fn same_name(&self, headers: Option<&HeaderMap>, answer_back: bool) {
        let instance = headers.and_then(|headers| headers.get(INSTANCE_HEADER));
        if instance.is_some_and(|instance| instance.as_str() == self.instance)
            || !self.warnings.admit(Warning::SameName)
        {
            return;
        }
        tracing::warn!(
            node = %self.name,
            other = instance.map(|instance| instance.as_str()),
            "another process says hello with this node's name: node names must be unique \
             in the cluster (either may answer for the other's keys and broadcasts)"
        );
        if answer_back {
            self.hello_asked.notify_one();
        }
    }

    /// Every (re)connection to NATS: say hello, ask the others to, and
    /// claim every key again (async-nats has already renewed the
    /// subscriptions; a claim made while we were away may have reached
    /// nobody).
    async fn follow_connection(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<Event>) {
        while let Some(event) = events.recv().await {
            match event {
                Event::Connected => {
                    tracing::info!(node = %self.name, "connected to NATS: announcing this node and its keys");
                    self.say_hello().await;
                    self.keys.claim_all_again(&self).await;
                }
                Event::Disconnected => {
                    if self.warnings.admit(Warning::Nats) {
                        tracing::warn!(node = %self.name, "lost NATS: cross-node operations answer \"cluster unavailable\" until it is back");
                    }
                }
                other => tracing::debug!(node = %self.name, event = %other, "NATS event"),
            }
        }
    }

    async fn answer_presence(self: Arc<Self>, mut presence: async_nats::Subscriber) {
        while let Some(message) = presence.next().await {
            match Wire::decode(&message.payload) {
                Ok(Wire::Hello { node, answer_back }) if *node != *self.name => {
                    match self.members.admit(&node) {
                        Admission::Joined => tracing::info!(node, "node joined the cluster"),
                        Admission::Known => {}
                        Admission::InvalidName | Admission::Full => {
                            // Not a node this one will count on: no answer either.
                            self.unreadable("presence", &Ok(Wire::Hello { node, answer_back }));
                            continue;
                        }
                    }
                    if answer_back {
                        self.hello_asked.notify_one();
                    }
                }
                Ok(Wire::Goodbye { node }) => {
                    if self.members.remove(&node) {
                        tracing::info!(node, "node said goodbye");
                    }
                }
                Ok(Wire::Hello { answer_back, .. }) => {
                    self.same_name(message.headers.as_ref(), answer_back);
                }
                other => self.unreadable("presence", &other),
            }
        }
    }

    /// Answers the broadcasts other nodes ask of this one, up to
    /// [`CONCURRENT_BROADCASTS`] at once. The answering tasks are this
    /// task's: they end with it, when the node leaves.
    async fn answer_broadcasts(self: Arc<Self>, mut broadcasts: async_nats::Subscriber) {
        let slots = Arc::new(Semaphore::new(CONCURRENT_BROADCASTS));
        let mut answering = JoinSet::new();
        while let Some(message) = broadcasts.next().await {
            while answering.try_join_next().is_some() {}
            let (Ok(Wire::Broadcast { audience, body }), Some(reply)) =
                (Wire::decode(&message.payload), message.reply)
            else {
                self.unreadable("broadcast", &Wire::decode(&message.payload));
                continue;
            };
            let Some(connections) = self.connections() else {
                return;
            };
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return; // never closed
            };
            let shared = Arc::clone(&self);
            answering.spawn(async move {
                let reached = connections.broadcast_here(&audience, body.into()).await;
                drop(slot);
                let answer = Wire::Reached {
                    count: u64::try_from(reached).unwrap_or(u64::MAX),
                };
                let _ = shared.client.publish(reply, answer.encode()).await;
            });
        }
    }

    /// Something another node sent that this one cannot use: dropped, and
    /// logged within [`Warning::Unreadable`]'s rate.
    pub(super) fn unreadable(&self, subject: &str, decoded: &Result<Wire, WireError>) {
        if !self.warnings.admit(Warning::Unreadable) {
            return;
        }
        match decoded {
            Err(error) => tracing::warn!(subject, %error, "dropped an unreadable cluster message"),
            Ok(message) => {
                tracing::warn!(
                    subject,
                    ?message,
                    "dropped a cluster message that does not belong here"
                );
            }
        }
    }
}

impl Remote for ClusterNode {
    fn send_to_key<'a>(
        &'a self,
        key: &'a str,
        message: crate::message::Message,
    ) -> crate::future::BoxFuture<'a, Result<crate::connection::SendOutcome, Error>> {
        Box::pin(super::request::send_to_key(&self.shared, key, message))
    }

    fn locate<'a>(
        &'a self,
        key: &'a str,
    ) -> crate::future::BoxFuture<'a, crate::connection::LocateOutcome> {
        Box::pin(super::request::locate(&self.shared, key))
    }

    fn broadcast(
        &self,
        audience: Audience,
        message: crate::message::Message,
    ) -> crate::future::BoxFuture<'_, crate::connection::RemoteReach> {
        Box::pin(super::request::broadcast(&self.shared, audience, message))
    }

    fn key_claimed(&self, key: &str) {
        self.shared.keys.claim(&self.shared, key);
    }

    fn key_released(&self, key: &str) {
        self.shared.keys.release(key);
    }

    fn leave(&self) -> crate::future::BoxFuture<'_, ()> {
        Box::pin(ClusterNode::leave(self))
    }
}
