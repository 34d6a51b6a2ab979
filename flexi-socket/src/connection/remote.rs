//! [`Remote`]: what [`Connections`](super::Connections) asks of the other
//! nodes when a cluster is configured. The cluster layer implements it; this
//! layer only holds it, so it never imports the cluster. Without the
//! feature `nats` nothing implements it.
#![cfg_attr(not(feature = "nats"), allow(dead_code))]

use std::fmt;

use super::outcome::{LocateOutcome, SendOutcome};
use crate::client_type::ClientType;
use crate::error::Error;
use crate::future::BoxFuture;
use crate::message::Message;

/// Which connections a broadcast is for (also what a cluster's broadcast
/// carries to the other nodes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Every connection.
    All,
    /// The connections of one client type.
    ClientType(ClientType),
    /// The members of one group.
    Group(String),
}

/// What a broadcast reached on the other nodes.
#[derive(Debug, Default)]
pub(crate) struct RemoteReach {
    /// Connections that took the message, on every node that answered.
    pub(crate) reached: usize,
}

/// The other nodes of a cluster, as this node's connection list sees them.
/// Every method reaches other nodes only: the list does the local part.
pub(crate) trait Remote: Send + Sync + fmt::Debug {
    /// Sends to `key`, which no local connection holds.
    fn send_to_key<'a>(
        &'a self,
        key: &'a str,
        message: Message,
    ) -> BoxFuture<'a, Result<SendOutcome, Error>>;

    /// Finds `key`, which no local connection holds.
    fn locate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, LocateOutcome>;

    /// Sends to `audience` on every other node.
    fn broadcast(&self, audience: Audience, message: Message) -> BoxFuture<'_, RemoteReach>;

    /// A local connection took `key` (after the local newest-wins).
    fn key_claimed(&self, key: &str);

    /// No local connection holds `key` any more.
    fn key_released(&self, key: &str);

    /// The server is shutting down: tell the other nodes, stop answering.
    fn leave(&self) -> BoxFuture<'_, ()>;
}
