//! This node asking the others: a send to a key, a locate, a broadcast.
//! Each is one NATS request per node asked, never repeated (at most once),
//! and each ends in an outcome within the request timeout.

use std::sync::Arc;

use async_nats::RequestErrorKind;
use bytes::Bytes;
use tokio::task::JoinSet;

use super::node::Shared;
use super::warnings::Warning;
use super::wire::{MAX_BODY, RemoteSend, Wire};
use crate::client_type::ClientType;
use crate::connection::{Audience, LocateOutcome, Location, RemoteReach, SendOutcome};
use crate::error::Error;
use crate::message::Message;

/// How one request ended.
enum Answer {
    Reply(Wire),
    /// The NATS server knows no subscriber: nobody holds the key, or the
    /// node is gone.
    NoResponders,
    /// No answer within the request timeout.
    Timeout,
    /// This node has no NATS connection: nothing was sent.
    Unavailable,
    /// Anything else: an unreadable answer, a refused request.
    Failed(String),
}

async fn request(shared: &Shared, subject: String, payload: Bytes) -> Answer {
    if !shared.is_connected() {
        return Answer::Unavailable;
    }
    match shared.client.request(subject, payload).await {
        Ok(message) => match Wire::decode(&message.payload) {
            Ok(reply) => Answer::Reply(reply),
            Err(error) => Answer::Failed(format!("an unreadable answer: {error}")),
        },
        Err(error) => match error.kind() {
            RequestErrorKind::NoResponders => Answer::NoResponders,
            // Handed to NATS and not answered: maybe delivered, maybe not
            // (one handed over as the connection went down is written
            // when it comes back).
            RequestErrorKind::TimedOut => Answer::Timeout,
            _ => Answer::Failed(error.to_string()),
        },
    }
}

fn checked_body(message: Message) -> Result<Bytes, Error> {
    let body = message.into_bytes();
    if body.len() > MAX_BODY {
        return Err(Error::Cluster {
            reason: format!(
                "a message of {} bytes is over the {MAX_BODY}-byte limit of a cluster message",
                body.len()
            ),
        });
    }
    Ok(body)
}

pub(super) async fn send_to_key(
    shared: &Shared,
    key: &str,
    message: Message,
) -> Result<SendOutcome, Error> {
    let payload = Wire::Send {
        body: checked_body(message)?,
    }
    .encode();
    Ok(
        match request(shared, shared.subjects.key(key), payload).await {
            Answer::Reply(Wire::SendReply {
                outcome,
                node,
                connection,
            }) => match outcome {
                RemoteSend::Delivered => SendOutcome::Delivered {
                    node: Arc::from(node),
                    connection,
                },
                RemoteSend::Offline => SendOutcome::Offline,
                RemoteSend::QueueFull => SendOutcome::QueueFull,
                RemoteSend::Closing => SendOutcome::Closing,
            },
            Answer::Reply(Wire::NotHere) | Answer::NoResponders => SendOutcome::Offline,
            Answer::Timeout => SendOutcome::Timeout,
            Answer::Unavailable => SendOutcome::ClusterUnavailable,
            Answer::Reply(other) => return Err(unexpected(&other)),
            Answer::Failed(reason) => return Err(Error::Cluster { reason }),
        },
    )
}

pub(super) async fn locate(shared: &Shared, key: &str) -> LocateOutcome {
    let payload = Wire::Locate.encode();
    match request(shared, shared.subjects.key(key), payload).await {
        Answer::Reply(Wire::Located {
            node,
            connection,
            peer,
            client_type,
        }) => LocateOutcome::Found(Location {
            node: Arc::from(node),
            connection,
            peer_addr: peer,
            client_type: client_type.map(ClientType::from),
        }),
        Answer::Reply(Wire::NotHere) | Answer::NoResponders => LocateOutcome::Offline,
        Answer::Timeout => LocateOutcome::Timeout,
        Answer::Unavailable => LocateOutcome::ClusterUnavailable,
        Answer::Reply(other) => {
            if shared.warnings.admit(Warning::Unanswered) {
                tracing::warn!(key, error = %unexpected(&other), "locate failed");
            }
            LocateOutcome::ClusterUnavailable
        }
        Answer::Failed(reason) => {
            if shared.warnings.admit(Warning::Unanswered) {
                tracing::warn!(key, reason, "locate failed");
            }
            LocateOutcome::ClusterUnavailable
        }
    }
}

/// Asks every other node known to broadcast `message` to its matching
/// connections, all at once; adds up their answers.
pub(super) async fn broadcast(
    shared: &Arc<Shared>,
    audience: Audience,
    message: Message,
) -> RemoteReach {
    let mut reach = RemoteReach::default();
    if !shared.is_connected() {
        unavailable(shared, &audience);
        return reach;
    }
    let body = match checked_body(message) {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(%error, "broadcast not sent to the other nodes");
            return reach;
        }
    };
    let logged_audience = audience.clone();
    let payload = Wire::Broadcast { audience, body }.encode();
    let mut cluster_unavailable = false;
    let mut asked = JoinSet::new();
    for node in shared.members() {
        let (shared, payload) = (Arc::clone(shared), payload.clone());
        asked.spawn(async move {
            let answer = request(&shared, shared.subjects.node(&node), payload).await;
            (node, answer)
        });
    }
    while let Some(answered) = asked.join_next().await {
        let Ok((node, answer)) = answered else {
            continue;
        };
        match answer {
            Answer::Reply(Wire::Reached { count }) => {
                reach.reached += usize::try_from(count).unwrap_or(usize::MAX);
            }
            // Gone without a goodbye: its subscription went with its connection.
            Answer::NoResponders => shared.forget(&node),
            Answer::Unavailable => cluster_unavailable = true,
            // It counts none; the warning names it.
            Answer::Timeout | Answer::Reply(_) | Answer::Failed(_) => {
                if shared.warnings.admit(Warning::Unanswered) {
                    tracing::warn!(node, "a node did not answer a broadcast");
                }
            }
        }
    }
    if cluster_unavailable {
        unavailable(shared, &logged_audience);
    }
    reach
}

/// A broadcast that reached this node only. Logged within
/// [`Warning::Nats`]'s rate: while NATS is away, every broadcast the
/// application makes would otherwise write this line.
fn unavailable(shared: &Shared, audience: &Audience) {
    if shared.warnings.admit(Warning::Nats) {
        tracing::warn!(
            ?audience,
            "broadcast reached this node only: the cluster is unavailable"
        );
    }
}

fn unexpected(reply: &Wire) -> Error {
    Error::Cluster {
        reason: format!("an answer of the wrong kind: {reply:?}"),
    }
}
