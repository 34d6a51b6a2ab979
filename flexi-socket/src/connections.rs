//! [`Connections`]: every open connection of a server, reachable from outside handlers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::classifier::ClientType;
use crate::connection::Connection;
use crate::error::Error;
use crate::message::Message;

/// The open connections of one server. Cheap to clone.
///
/// ```no_run
/// # async fn demo(server: flexi_socket::Server) -> flexi_socket::Result<()> {
/// let connections = server.connections();
/// tokio::spawn(server.serve());
/// connections.broadcast_to(&"001".into(), "maintenance at noon").await;
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

    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Connection>> {
        // Inserts and removes cannot leave the map half-updated when a panic poisons it.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Sends to every open connection of one client type; returns how many
    /// accepted the message.
    pub async fn broadcast_to(
        &self,
        client_type: &ClientType,
        message: impl Into<Message>,
    ) -> usize {
        let targets = self
            .list()
            .into_iter()
            .filter(|c| c.client_type() == Some(client_type))
            .collect();
        self.send_each(targets, message.into()).await
    }

    async fn send_each(&self, targets: Vec<Connection>, message: Message) -> usize {
        let mut delivered = 0;
        for connection in targets {
            match connection.send(message.clone()).await {
                Ok(()) => delivered += 1,
                Err(error) => {
                    tracing::debug!(connection = connection.id(), %error, "broadcast skipped")
                }
            }
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
