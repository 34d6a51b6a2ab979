//! What a send to a key and a look-up of a key report: every outcome
//! typed, none a silent drop. The enums are `#[non_exhaustive]`: a server
//! spread over several nodes has outcomes of its own (no answer in time,
//! cluster unreachable).

use std::fmt;
use std::sync::Arc;

use crate::client_type::ClientType;
use crate::error::Error;
use crate::peer_addr::PeerAddr;

/// What became of a message sent to a key
/// ([`Connections::send_to_key`](crate::Connections::send_to_key)).
///
/// # Examples
///
/// ```
/// use flexi_socket::{Connections, SendOutcome};
///
/// async fn open_door(connections: &Connections) -> flexi_socket::Result<String> {
///     Ok(match connections.send_to_key("door-7", "OPEN").await? {
///         SendOutcome::Delivered { node, .. } => format!("queued on {node}"),
///         SendOutcome::Offline => "door-7 is not connected".to_owned(),
///         other => format!("not sent: {other}"),
///     })
/// }
/// # let _ = open_door;
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The message is in the connection's outbound queue: it will be
    /// written before the connection closes (as `Connection::send` returning
    /// `Ok` promises), though the peer may still vanish before reading it.
    #[non_exhaustive]
    Delivered {
        /// The node whose connection holds the key (`local`, or the
        /// server's [`node_name`](crate::ServerBuilder::node_name)).
        node: Arc<str>,
        /// The connection that took it.
        connection: u64,
    },
    /// No open connection holds the key.
    Offline,
    /// The connection's queue stayed full (its slow-consumer policy said
    /// not to wait, or the wait ran out): not sent.
    QueueFull,
    /// The connection holding the key is closing: not sent.
    Closing,
    /// Cluster only: the node asked did not answer within the cluster's
    /// request timeout. The message may or may not have been delivered.
    Timeout,
    /// Cluster only: the key is not held here and this node has no
    /// connection to NATS, so no other node could be asked. Not sent.
    ClusterUnavailable,
}

impl SendOutcome {
    /// Whether the message was queued.
    pub fn is_delivered(&self) -> bool {
        matches!(self, SendOutcome::Delivered { .. })
    }

    /// The outcome of `Connection::send`'s result on `connection` of `node`;
    /// `Err` for what is not about reaching the peer (the framing refused
    /// the message, `before_send` failed).
    pub(crate) fn of_send(
        sent: Result<(), Error>,
        node: &Arc<str>,
        connection: u64,
    ) -> Result<Self, Error> {
        match sent {
            Ok(()) => Ok(SendOutcome::Delivered {
                node: Arc::clone(node),
                connection,
            }),
            Err(Error::QueueFull { .. } | Error::SendTimeout { .. }) => Ok(SendOutcome::QueueFull),
            Err(Error::ConnectionClosed { .. }) => Ok(SendOutcome::Closing),
            Err(other) => Err(other),
        }
    }
}

impl fmt::Display for SendOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendOutcome::Delivered { node, connection } => {
                write!(f, "queued on connection {connection} of node {node}")
            }
            SendOutcome::Offline => f.write_str("no connection holds the key"),
            SendOutcome::QueueFull => f.write_str("the connection's outbound queue is full"),
            SendOutcome::Closing => f.write_str("the connection is closing"),
            SendOutcome::Timeout => f.write_str("no answer from the cluster in time"),
            SendOutcome::ClusterUnavailable => f.write_str("the cluster is unavailable"),
        }
    }
}

/// Where a key is ([`Connections::locate`](crate::Connections::locate)).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocateOutcome {
    /// An open connection holds the key.
    Found(Location),
    /// No open connection holds the key.
    Offline,
    /// Cluster only: the node asked did not answer within the cluster's
    /// request timeout.
    Timeout,
    /// Cluster only: the key is not held here and this node has no
    /// connection to NATS, so no other node could be asked.
    ClusterUnavailable,
}

impl LocateOutcome {
    /// The location, if the key was found.
    pub fn found(self) -> Option<Location> {
        match self {
            LocateOutcome::Found(location) => Some(location),
            _ => None,
        }
    }
}

/// What the server knows of the connection holding a key.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The node it is connected to (`local`, or the server's
    /// [`node_name`](crate::ServerBuilder::node_name)).
    pub node: Arc<str>,
    /// Its connection id on that node.
    pub connection: u64,
    /// The peer's address (behind a PROXY header, the client it names).
    pub peer_addr: PeerAddr,
    /// Its client type, once classified.
    pub client_type: Option<ClientType>,
}
