//! Who keeps a key when a second connection of the server claims it.

/// What [`Connection::set_key`](crate::Connection::set_key) does when
/// another open connection of the server already holds the key (a device
/// that reconnected before its old connection timed out, or two devices
/// configured with one id).
///
/// Set with [`ServerBuilder::key_policy`](crate::ServerBuilder::key_policy).
///
/// # Examples
///
/// ```no_run
/// use flexi_socket::{FlexiSocket, KeyPolicy};
///
/// // A second login with the same account is refused, not the first one cut.
/// let server = FlexiSocket::server("127.0.0.1:9000").key_policy(KeyPolicy::OldestWins);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyPolicy {
    /// The new connection takes the key; the older one is closed with
    /// [`DisconnectReason::Replaced`](crate::DisconnectReason::Replaced).
    /// The default: a device that reconnects is usually the same device,
    /// and its old connection a half-open leftover.
    #[default]
    NewestWins,
    /// The connection holding the key keeps it; `set_key` on the new one
    /// fails with [`Error::KeyTaken`](crate::Error::KeyTaken) and leaves it
    /// open, keyless.
    OldestWins,
}
