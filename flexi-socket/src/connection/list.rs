//! [`Connections`]: every open connection of a server, reachable from outside handlers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::client_type::ClientType;
use crate::connection::Connection;
use crate::error::Error;
use crate::message::Message;
use crate::sync;

/// The open connections of one server. Cheap to clone.
///
/// ```no_run
/// # async fn demo(server: flexi_socket::Server) -> flexi_socket::Result<()> {
/// let connections = server.connections();
/// tokio::spawn(server.serve());
/// connections.broadcast_to("001", "maintenance at noon").await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connections {
    open: Arc<Mutex<HashMap<u64, Connection>>>,
}

impl Connections {
    pub(crate) fn new() -> Self {
        Self {
            open: Arc::default(),
        }
    }

    pub(crate) fn insert(&self, connection: Connection) {
        self.lock().insert(connection.id(), connection);
    }

    /// Takes the connection `id` off the list; whether it was on it.
    pub(crate) fn remove(&self, id: u64) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Runs `f` on every open connection, under the list's lock (so `f`
    /// must be quick and must not touch the list).
    pub(crate) fn for_each(&self, f: impl FnMut(&Connection)) {
        self.lock().values().for_each(f);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Connection>> {
        // Inserts and removes cannot leave the map half-updated when a panic poisons it.
        sync::lock(&self.open)
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Every open connection, ordered by id.
    pub fn list(&self) -> Vec<Connection> {
        let mut all: Vec<Connection> = self.lock().values().cloned().collect();
        all.sort_by_key(Connection::id);
        all
    }

    /// The open connection with this id.
    pub fn get(&self, id: u64) -> Option<Connection> {
        self.lock().get(&id).cloned()
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
    pub async fn broadcast(&self, message: impl Into<Message>) -> usize {
        self.send_each(self.list(), message.into()).await
    }

    /// Sends to every open connection of one client type, as
    /// [`broadcast`](Self::broadcast) does; returns how many accepted the message.
    pub async fn broadcast_to(
        &self,
        client_type: impl Into<ClientType>,
        message: impl Into<Message>,
    ) -> usize {
        let client_type = client_type.into();
        let targets = self
            .list()
            .into_iter()
            .filter(|c| c.client_type() == Some(&client_type))
            .collect();
        self.send_each(targets, message.into()).await
    }

    /// Sends concurrently, so one slow peer delays only its own send.
    async fn send_each(&self, targets: Vec<Connection>, message: Message) -> usize {
        let mut sends = tokio::task::JoinSet::new();
        for connection in targets.into_iter().filter(|c| !c.is_closing()) {
            let message = message.clone();
            sends.spawn(async move {
                let sent = connection.send(message).await;
                if let Err(error) = &sent {
                    tracing::debug!(connection = connection.id(), %error, "broadcast skipped");
                }
                sent.is_ok()
            });
        }
        let mut delivered = 0;
        while let Some(sent) = sends.join_next().await {
            delivered += usize::from(sent.unwrap_or(false));
        }
        delivered
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("open", &self.len())
            .finish()
    }
}
