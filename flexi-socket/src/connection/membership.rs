//! A connection's key and groups: what makes it addressable through
//! [`Connections`](super::Connections) by name rather than by id. They live
//! in the server's directory, not in the connection, and leave it with the
//! connection (see `Endpoint::unregister`): a keyless connection carries
//! nothing for them and pays nothing per message.

use super::Connection;
use super::directory::Claim;
use crate::error::Error;

impl Connection {
    /// Gives this connection `key` (a device id, an account), unique among
    /// the server's open connections, across all its listeners: from now on
    /// [`Connections::send_to_key`](super::Connections::send_to_key),
    /// [`locate`](super::Connections::locate) and
    /// [`by_key`](super::Connections::by_key) find it by that key. A key it
    /// held before is released. The key goes when the connection ends, after
    /// its `on_disconnect` (which still sees it; a connection closed as
    /// `Replaced` has lost it already). A closing connection takes no key.
    ///
    /// When another open connection holds `key`, the builder's
    /// [`key_policy`](crate::ServerBuilder::key_policy) decides:
    /// [`NewestWins`](crate::KeyPolicy::NewestWins) (the default) hands it
    /// to this one and closes the other with
    /// [`DisconnectReason::Replaced`](crate::DisconnectReason::Replaced);
    /// [`OldestWins`](crate::KeyPolicy::OldestWins) refuses.
    ///
    /// # Errors
    ///
    /// [`Error::KeyTaken`] when the policy keeps the key with the other
    /// connection; [`Error::ConnectionClosed`] when this connection is
    /// closing (replaced, say, or closed) or has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_message};
    ///
    /// #[on_message]
    /// async fn hello(conn: Connection, line: String) -> flexi_socket::Result<()> {
    ///     if let Some(id) = line.strip_prefix("HELLO ") {
    ///         conn.set_key(id).await?;
    ///         conn.join("devices")?;
    ///     }
    ///     conn.send("OK").await
    /// }
    /// # fn main() {}
    /// ```
    pub async fn set_key(&self, key: impl Into<String>) -> Result<(), Error> {
        let key = key.into();
        match self.endpoint().connections.claim(self, &key) {
            Claim::Taken { .. } => Ok(()),
            Claim::Refused => Err(Error::KeyTaken { key }),
            Claim::NotOpen => Err(Error::ConnectionClosed { id: self.id() }),
        }
    }

    /// The key this connection holds, if any (see [`set_key`](Self::set_key)).
    pub fn key(&self) -> Option<String> {
        let directory = self.endpoint().connections.lock();
        directory.key_of(self.id()).map(|key| key.to_string())
    }

    /// Gives up this connection's key, if it holds one; whether it did.
    pub fn clear_key(&self) -> bool {
        self.endpoint().connections.release_key(self.id())
    }

    /// Adds this connection to `group`, for
    /// [`Connections::broadcast_to_group`](super::Connections::broadcast_to_group)
    /// and [`Connections::group`](super::Connections::group). Joining a group
    /// twice is joining it once. The connection leaves every group when it ends.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionClosed`] when this connection has already ended.
    pub fn join(&self, group: &str) -> Result<(), Error> {
        if self.endpoint().connections.lock().join(self.id(), group) {
            Ok(())
        } else {
            Err(Error::ConnectionClosed { id: self.id() })
        }
    }

    /// Takes this connection out of `group`; whether it was in it.
    pub fn leave(&self, group: &str) -> bool {
        self.endpoint().connections.lock().leave(self.id(), group)
    }

    /// The groups this connection is in, sorted.
    pub fn groups(&self) -> Vec<String> {
        let directory = self.endpoint().connections.lock();
        let mut groups: Vec<String> = directory
            .groups_of(self.id())
            .iter()
            .map(|group| group.to_string())
            .collect();
        groups.sort_unstable();
        groups
    }
}
