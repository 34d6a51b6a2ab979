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
//! - A key's claims are published by its task too, the latest only: a
//!   device saying HELLO again and again while NATS is away leaves one
//!   claim waiting for NATS, not one task per HELLO.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::node::Shared;
use super::warnings::Warning;
use super::wire::{RemoteSend, Wire};
use crate::connection::SendOutcome;
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
    /// The latest claim, in nanoseconds since the Unix epoch; the serving
    /// task publishes it when it changes (a newer one replaces one it has
    /// not published yet).
    claim: watch::Sender<u64>,
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
        sync::lock(&self.held)
            .get(key)
            .map(|held| *held.claim.borrow())
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
            // Already served (a local newest-wins): its task publishes the
            // newer claim, replacing one still waiting for NATS.
            entry.claim.send_replace(claimed_at);
            return;
        }
        let (claim, claims) = watch::channel(claimed_at);
        let serving = tokio::spawn(Arc::clone(shared).serve_key(key.to_owned(), claims));
        held.insert(
            key.to_owned(),
            Held {
                claim,
                serving: serving.abort_handle(),
            },
        );
    }

    /// After a reconnection: every key's claim again, as it was.
    pub(super) async fn claim_all_again(&self, shared: &Arc<Shared>) {
        let claims: Vec<(String, u64)> = sync::lock(&self.held)
            .iter()
            .map(|(key, held)| (key.clone(), *held.claim.borrow()))
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
            && self.warnings.admit(Warning::Nats)
        {
            tracing::warn!(key, %error, "could not publish a key claim");
        }
    }

    /// Subscribes to `key`'s subject, claims it, and answers what comes
    /// there, one message at a time, until the key is released. A newer
    /// claim of the key here is published between two messages.
    async fn serve_key(self: Arc<Self>, key: String, mut claims: watch::Receiver<u64>) {
        let subject = self.subjects.key(&key);
        let mut requests = match self.client.subscribe(subject.clone()).await {
            Ok(requests) => requests,
            Err(error) => {
                if self.warnings.admit(Warning::Nats) {
                    tracing::warn!(key, %error, "cannot serve a key to the cluster");
                }
                return;
            }
        };
        let claimed_at = *claims.borrow_and_update();
        Arc::clone(&self)
            .publish_claim(key.clone(), claimed_at)
            .await;
        loop {
            let request = tokio::select! {
                request = requests.next() => request,
                // Err: the key was released, and this task is being aborted.
                Ok(()) = claims.changed() => {
                    let claimed_at = *claims.borrow_and_update();
                    Arc::clone(&self).publish_claim(key.clone(), claimed_at).await;
                    continue;
                }
            };
            let Some(request) = request else {
                return;
            };
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
                    self.unreadable(&subject, &other);
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
                if self.warnings.admit(Warning::Refused) {
                    tracing::warn!(key, %error, "a message from another node could not be sent");
                }
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
    ///
    /// Decided under the connection list's lock, which a local claim of the
    /// key also holds while it tells this node: a local connection taking
    /// the key in between could otherwise be the one closed, for a claim
    /// older than its own.
    async fn resolve_claim(self: &Arc<Self>, key: &str, claimed_at: u64, node: &str) -> bool {
        if node == &*self.name {
            return false;
        }
        let Some(connections) = self.connections() else {
            return false;
        };
        let mut mine = None;
        let gave_up = connections.give_up_key(key, || {
            mine = self.keys.claimed_at(key);
            let older = mine.is_some_and(|mine| (mine, &*self.name) < (claimed_at, node));
            if older {
                self.keys.release(key);
            }
            older
        });
        if gave_up {
            tracing::info!(
                key,
                newer = node,
                "the key was taken on another node: closing it here"
            );
        } else if let Some(mine) = mine {
            // An older claim: say ours again so that its node gives up.
            Arc::clone(self).publish_claim(key.to_owned(), mine).await;
        }
        gave_up
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::ClusterConfig;
    use super::super::node::ClusterNode;
    use super::*;
    use crate::config::Limits;
    use crate::connection::Connections;

    /// A device saying HELLO again and again while NATS is away: each HELLO
    /// is a newer claim of a key this node serves already. Publishing waits
    /// for NATS, so a task per claim would pile up; one waits, holding the
    /// latest claim.
    #[tokio::test]
    async fn claims_of_a_held_key_while_nats_is_away_do_not_pile_up() {
        // Accepts TCP, never speaks NATS: the node never gets connected.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = ClusterConfig::new([format!("nats://{}", silent.local_addr().unwrap())])
            .request_timeout(Duration::from_millis(20));
        let connections = Connections::new(&Limits::default());
        let node = ClusterNode::join(&config, "a", connections.downgrade())
            .await
            .unwrap();
        let shared = &node.shared;
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        shared.keys.claim(shared, "42");
        let serving = alive();
        for _ in 0..10_000 {
            shared.keys.claim(shared, "42");
        }
        assert_eq!(alive(), serving, "a task started per claim");
        let latest = shared.keys.last_stamp.load(Ordering::Relaxed);
        assert_eq!(shared.keys.claimed_at("42"), Some(latest));
    }
}
