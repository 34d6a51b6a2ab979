//! The keys this node holds, as the cluster sees them: one NATS
//! subscription per key, on the key's own subject, and one task serving it.
//!
//! - A send or locate for the key is a NATS request on that subject: only
//!   the holder answers, and when no node holds the key the NATS server
//!   answers "no responders" at once.
//! - The task handles the subject's messages one at a time, in the order
//!   NATS delivers them, so sends from one node arrive in the order made.
//! - Taking a key publishes a claim (when, and by which node) on the same
//!   subject. A holder that hears a newer claim closes its connection; one
//!   that hears an older claim publishes its own again, so the older holder
//!   hears it and closes. Claims are ordered by (time, node name): every
//!   node decides the same, and at most one keeps the key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::task::AbortHandle;

use super::node::{Shared, unreadable};
use super::wire::{RemoteSend, Wire};
use crate::connection::{DisconnectReason, SendOutcome};
use crate::message::Message;
use crate::sync;

/// The keys held here, each with its claim time and serving task.
#[derive(Debug, Default)]
pub(crate) struct HeldKeys {
    held: Mutex<HashMap<String, Held>>,
    /// The last claim time given out: claims of one node never tie.
    last_stamp: AtomicU64,
}

#[derive(Debug)]
struct Held {
    /// Nanoseconds since the Unix epoch.
    claimed_at: u64,
    serving: AbortHandle,
}

impl HeldKeys {
    /// A claim time: now, or one more than the last one if the clock has
    /// not moved (or went back).
    fn stamp(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        let mut last = self.last_stamp.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_stamp.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    fn claimed_at(&self, key: &str) -> Option<u64> {
        sync::lock(&self.held).get(key).map(|held| held.claimed_at)
    }

    /// Stops serving `key` (its subscription ends with the task).
    pub(super) fn release(&self, key: &str) {
        if let Some(held) = sync::lock(&self.held).remove(key) {
            held.serving.abort();
        }
    }

    pub(super) fn release_all(&self) {
        for (_, held) in sync::lock(&self.held).drain() {
            held.serving.abort();
        }
    }

    /// A local connection took `key`: serve its subject (if not yet) and
    /// tell the other nodes.
    pub(super) fn claim(&self, shared: &Arc<Shared>, key: &str) {
        let claimed_at = self.stamp();
        let mut held = sync::lock(&self.held);
        if let Some(entry) = held.get_mut(key) {
            // Already subscribed (a local newest-wins): a newer claim.
            entry.claimed_at = claimed_at;
            tokio::spawn(Arc::clone(shared).publish_claim(key.to_owned(), claimed_at));
            return;
        }
        let serving = tokio::spawn(Arc::clone(shared).serve_key(key.to_owned(), claimed_at));
        held.insert(
            key.to_owned(),
            Held {
                claimed_at,
                serving: serving.abort_handle(),
            },
        );
    }

    /// After a reconnection: every key's claim again, as it was.
    pub(super) async fn claim_all_again(&self, shared: &Arc<Shared>) {
        let claims: Vec<(String, u64)> = sync::lock(&self.held)
            .iter()
            .map(|(key, held)| (key.clone(), held.claimed_at))
            .collect();
        for (key, claimed_at) in claims {
            Arc::clone(shared).publish_claim(key, claimed_at).await;
        }
    }
}

impl Shared {
    async fn publish_claim(self: Arc<Self>, key: String, claimed_at: u64) {
        let claim = Wire::Claim {
            claimed_at,
            node: self.name.to_string(),
        };
        if let Err(error) = self
            .client
            .publish(self.subjects.key(&key), claim.encode())
            .await
        {
            tracing::warn!(key, %error, "could not publish a key claim");
        }
    }

    /// Subscribes to `key`'s subject, claims it, and answers what comes
    /// there, one message at a time, until the key is released.
    async fn serve_key(self: Arc<Self>, key: String, claimed_at: u64) {
        let subject = self.subjects.key(&key);
        let mut requests = match self.client.subscribe(subject.clone()).await {
            Ok(requests) => requests,
            Err(error) => {
                tracing::warn!(key, %error, "cannot serve a key to the cluster");
                return;
            }
        };
        Arc::clone(&self)
            .publish_claim(key.clone(), claimed_at)
            .await;
        while let Some(request) = requests.next().await {
            let decoded = Wire::decode(&request.payload);
            let answer = match decoded {
                Ok(Wire::Send { body }) => Some(self.send_here(&key, body.into()).await),
                Ok(Wire::Locate) => Some(self.locate_here(&key)),
                Ok(Wire::Claim { claimed_at, node }) => {
                    if self.resolve_claim(&key, claimed_at, &node).await {
                        // This node lost the key: no more requests for it.
                        return;
                    }
                    None
                }
                other => {
                    unreadable(&subject, &other);
                    None
                }
            };
            if let (Some(answer), Some(reply)) = (answer, request.reply) {
                let _ = self.client.publish(reply, answer.encode()).await;
            }
        }
    }

    /// Sends a message another node addressed to `key`.
    async fn send_here(&self, key: &str, message: Message) -> Wire {
        let Some(connections) = self.connections() else {
            return Wire::NotHere;
        };
        let (outcome, connection) = match connections.send_to_key_here(key, message).await {
            Ok(SendOutcome::Delivered { connection, .. }) => (RemoteSend::Delivered, connection),
            Ok(SendOutcome::QueueFull) => (RemoteSend::QueueFull, 0),
            Ok(SendOutcome::Closing) => (RemoteSend::Closing, 0),
            Ok(_) => (RemoteSend::Offline, 0),
            Err(error) => {
                // The framing or `before_send` refused it: the sender
                // learns it was not sent, this node's log says why.
                tracing::warn!(key, %error, "a message from another node could not be sent");
                (RemoteSend::Closing, 0)
            }
        };
        Wire::SendReply {
            outcome,
            node: self.name.to_string(),
            connection,
        }
    }

    fn locate_here(&self, key: &str) -> Wire {
        let Some(connection) = self.connections().and_then(|list| list.by_key(key)) else {
            return Wire::NotHere;
        };
        Wire::Located {
            node: self.name.to_string(),
            connection: connection.id(),
            peer: connection.peer_addr(),
            client_type: connection.client_type().map(ToString::to_string),
        }
    }

    /// `node` claimed `key` at `claimed_at`. Returns whether this node gave
    /// the key up (its connection is closed).
    async fn resolve_claim(self: &Arc<Self>, key: &str, claimed_at: u64, node: &str) -> bool {
        if node == &*self.name {
            return false;
        }
        let Some(mine) = self.keys.claimed_at(key) else {
            return false;
        };
        if (mine, &*self.name) < (claimed_at, node) {
            tracing::info!(
                key,
                newer = node,
                "the key was taken on another node: closing it here"
            );
            self.keys.release(key);
            if let Some(connection) = self.connections().and_then(|list| list.by_key(key)) {
                connection.close_with(DisconnectReason::Replaced);
            }
            true
        } else {
            // An older claim: say ours again so that its node gives up.
            Arc::clone(self).publish_claim(key.to_owned(), mine).await;
            false
        }
    }
}
