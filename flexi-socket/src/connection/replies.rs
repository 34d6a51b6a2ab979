//! Request/reply: requests waiting for their reply, the replies a
//! connection still owes, and the one routine every requester uses to ask:
//! both client modes (one book for the client, across its reconnections)
//! and a server asking one of its connections (one book per connection
//! that was ever asked, matching replies only).
//!
//! Under [`ReplyOrder::EveryMessage`] every message the client sends owes
//! one reply, in order. The book keeps a queue of what the current
//! connection owes: an arriving message pays the oldest debt, and it is a
//! request's reply only when that debt is the request's. So a reply owed to
//! the handshake or an earlier `send` never reaches a later request.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::endpoint::ReplyHook;
use crate::config::ReplyOrder;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::sync;

/// A waiting request's number, which a message sent on its behalf carries.
pub(crate) type RequestId = u64;

/// Decides whether a message is a `request_matching` caller's reply.
type IsReply = Box<dyn Fn(&Message) -> bool + Send + Sync>;

/// Requests waiting for their reply, and the replies owed to the client.
pub(crate) struct Replies {
    order: ReplyOrder,
    book: Mutex<Book>,
    /// A server connection's own book: when it ends, its requests end
    /// with `ConnectionClosed` (a client's, with `ClientClosed`).
    connection: Option<u64>,
}

#[derive(Default)]
struct Book {
    next_id: RequestId,
    waiters: Vec<Waiter>,
    /// [`ReplyOrder::EveryMessage`]: the replies `owed_by` still owes, oldest first.
    owed: VecDeque<Owed>,
    owed_by: Option<u64>,
    /// The client has ended: no reply will come to anyone.
    closed: bool,
}

struct Waiter {
    id: RequestId,
    expects: Expects,
    /// How many replies were owed to earlier messages when this request's
    /// message was queued: what a timeout reports.
    owed_ahead: usize,
    reply: oneshot::Sender<Result<Message>>,
}

/// How a request recognises its reply.
pub(crate) enum Expects {
    /// The first message the predicate accepts (`request_matching`, and
    /// `request` under [`ReplyOrder::RequestsOnly`]).
    Matching(IsReply),
    /// The message in its request's place in the owed queue.
    InPlace,
}

/// One reply a connection owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// To a message no one waits on: its reply goes to `on_message`.
    Message,
    Request(RequestId),
}

impl Replies {
    pub(crate) fn new(order: ReplyOrder) -> Self {
        Self {
            order,
            book: Mutex::default(),
            connection: None,
        }
    }

    /// The book of server connection `id`, whose requests recognise their
    /// replies (nothing is counted).
    pub(crate) fn of_connection(id: u64) -> Self {
        Self {
            connection: Some(id),
            ..Self::new(ReplyOrder::RequestsOnly)
        }
    }

    /// What a request gets when no reply can come any more.
    fn ended(&self) -> Error {
        match self.connection {
            Some(id) => Error::ConnectionClosed { id },
            None => Error::ClientClosed,
        }
    }

    /// How a plain `request` recognises its reply under the client's order:
    /// by its place, or (requests only) as the first message to come.
    pub(crate) fn request_expects(&self) -> Expects {
        match self.order {
            ReplyOrder::EveryMessage => Expects::InPlace,
            ReplyOrder::RequestsOnly => Expects::Matching(Box::new(|_| true)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        sync::lock(&self.book)
    }

    /// Starts waiting for a reply: before the request is sent, so a fast
    /// reply cannot slip past.
    pub(crate) fn wait(&self, expects: Expects) -> (RequestId, oneshot::Receiver<Result<Message>>) {
        let (reply, receiver) = oneshot::channel();
        let mut book = self.lock();
        if book.closed {
            // Dropping `reply` tells the receiver at once.
            return (0, receiver);
        }
        book.next_id += 1;
        let id = book.next_id;
        book.waiters.push(Waiter {
            id,
            expects,
            owed_ahead: 0,
            reply,
        });
        (id, receiver)
    }

    /// Sends with `send` (given the request's id, which the message carries
    /// to the connection) and waits for the reply `expects` describes, at
    /// most `timeout`, or until the client ends ([`close`](Self::close)).
    /// The one request/reply routine of TCP and UDP client modes.
    pub(crate) async fn ask<F>(
        &self,
        expects: Expects,
        timeout: Duration,
        send: impl FnOnce(RequestId) -> F,
    ) -> Result<Message>
    where
        F: Future<Output = Result<()>>,
    {
        let (id, reply) = self.wait(expects);
        // However the caller lets go (its future dropped too), the waiter
        // goes: a dead one would take the next matching reply and lose it.
        let _waiting = Waiting { replies: self, id };
        let outcome = async {
            send(id).await?;
            // The sender is dropped unanswered only when the client (or the
            // server's connection) ends.
            reply.await.unwrap_or_else(|_| Err(self.ended()))
        };
        match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => {
                // Not sent (or the connection ended): its own place only.
                self.forget(id);
                Err(error)
            }
            Err(_) => Err(Error::RequestTimeout {
                after: timeout,
                owed_before: self.timed_out(id, timeout),
            }),
        }
    }

    /// Request `id`'s caller stopped waiting: the waiter goes, its place
    /// stays (a reply still owed to its message goes to `on_message`).
    fn abandon(&self, id: RequestId) {
        self.lock().waiters.retain(|waiter| waiter.id != id);
    }

    /// Request `id` ends without its reply: it and its place go.
    fn forget(&self, id: RequestId) {
        let mut book = self.lock();
        book.waiters.retain(|waiter| waiter.id != id);
        if let Some(place) = book.owed.iter().position(|&owed| owed == Owed::Request(id)) {
            book.owed.remove(place);
        }
    }

    /// Request `id` timed out. Its place goes, and with it every older debt:
    /// a reply that did not come in time means the count no longer says
    /// which message answers what, so it starts afresh. The requests whose
    /// places were older end too (with a timeout: which reply would be
    /// theirs can no longer be told). Returns how many replies to earlier
    /// messages were owed when the request was sent.
    fn timed_out(&self, id: RequestId, after: Duration) -> usize {
        let mut book = self.lock();
        let index = book.waiters.iter().position(|waiter| waiter.id == id);
        let owed_ahead = index.map_or(0, |index| book.waiters.remove(index).owed_ahead);
        let Some(place) = book.owed.iter().position(|&owed| owed == Owed::Request(id)) else {
            return owed_ahead;
        };
        let older: Vec<Owed> = book.owed.drain(..=place).collect();
        for owed in older {
            let Owed::Request(other) = owed else { continue };
            let in_place = book
                .waiters
                .iter()
                .position(|w| w.id == other && matches!(w.expects, Expects::InPlace));
            if let Some(index) = in_place {
                let waiter = book.waiters.remove(index);
                let _ = waiter.reply.send(Err(Error::RequestTimeout {
                    after,
                    owed_before: waiter.owed_ahead,
                }));
            }
        }
        owed_ahead
    }

    /// A message is being queued on `connection`; `request` when it is a
    /// request's. Under [`ReplyOrder::EveryMessage`] it owes a reply.
    pub(crate) fn sending(&self, connection: u64, request: Option<RequestId>) {
        if self.order != ReplyOrder::EveryMessage {
            return;
        }
        let mut book = self.lock();
        match book.owed_by {
            // Connection ids only grow: a send on an older connection's
            // handle (its queue still open) must not wipe the current one's.
            Some(current) if connection < current => return,
            Some(current) if connection == current => {}
            _ => {
                // A new connection: what an earlier one owed never comes.
                book.owed.clear();
                book.owed_by = Some(connection);
            }
        }
        let owed_ahead = book.owed.len();
        let waiter = request.and_then(|id| book.waiters.iter_mut().find(|waiter| waiter.id == id));
        let owed = match waiter {
            Some(waiter) => {
                waiter.owed_ahead = owed_ahead;
                Owed::Request(waiter.id)
            }
            None => Owed::Message,
        };
        book.owed.push_back(owed);
    }

    /// Hands `message`, which arrived on `connection`, to the request it
    /// answers; gives it back when it answers none.
    pub(crate) fn offer(&self, connection: u64, message: Message) -> Option<Message> {
        let mut book = self.lock();
        let debt = if book.owed_by == Some(connection) {
            book.owed.pop_front()
        } else {
            None
        };
        let matching = book
            .waiters
            .iter()
            .position(|waiter| match &waiter.expects {
                Expects::Matching(is_reply) => is_reply(&message),
                Expects::InPlace => false,
            });
        let index = match (matching, debt) {
            (Some(index), debt) => {
                // A reply that names its request pays that request's own
                // debt, wherever it is, not the oldest one.
                let own = Owed::Request(book.waiters[index].id);
                if let Some(debt) = debt.filter(|&debt| debt != own) {
                    book.owed.push_front(debt);
                    if let Some(place) = book.owed.iter().position(|&owed| owed == own) {
                        book.owed.remove(place);
                    }
                }
                index
            }
            (None, Some(Owed::Request(id))) => {
                let waiter = book.waiters.iter().position(|waiter| waiter.id == id);
                match waiter {
                    Some(index) if matches!(book.waiters[index].expects, Expects::InPlace) => index,
                    // A request that recognises its reply did not: the
                    // message is not its reply, and its debt stays.
                    Some(_) => {
                        book.owed.push_front(Owed::Request(id));
                        return Some(message);
                    }
                    // Its requester gave up: the message is nobody's reply.
                    None => return Some(message),
                }
            }
            (None, _) => return Some(message),
        };
        let waiter = book.waiters.remove(index);
        drop(book);
        // The caller keeps its reply as long as it likes, in its own task.
        let reply = message.detached();
        // If the requester gave up just now, the message is nobody's reply.
        waiter.reply.send(Ok(reply)).err().and_then(Result::ok)
    }

    /// `connection` has ended: requests waiting for a reply it owed end with
    /// [`Error::ConnectionClosed`] (their message was sent; its reply
    /// cannot come on another connection).
    pub(crate) fn connection_ended(&self, connection: u64) {
        let mut book = self.lock();
        if book.owed_by != Some(connection) {
            return;
        }
        book.owed_by = None;
        let owed = std::mem::take(&mut book.owed);
        for owed in owed {
            if let Owed::Request(id) = owed
                && let Some(index) = book.waiters.iter().position(|waiter| waiter.id == id)
            {
                let waiter = book.waiters.remove(index);
                let _ = waiter
                    .reply
                    .send(Err(Error::ConnectionClosed { id: connection }));
            }
        }
    }

    /// Ends every request waiting, and every later one, with
    /// [`Error::ClientClosed`] (or, for a server's connection,
    /// [`Error::ConnectionClosed`]): the client has ended. (One signal here, not a
    /// shutdown future polled beside every request.)
    pub(crate) fn close(&self) {
        let mut book = self.lock();
        book.closed = true;
        book.waiters.clear();
        book.owed.clear();
    }
}

/// A request being waited for in [`Replies::ask`]; dropped, its waiter goes
/// (nothing is left once it was answered, forgotten or timed out).
struct Waiting<'a> {
    replies: &'a Replies,
    id: RequestId,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.replies.abandon(self.id);
    }
}

impl ReplyHook for Replies {
    fn sending(&self, connection: u64, request: Option<RequestId>) {
        Replies::sending(self, connection, request);
    }

    fn offer(&self, connection: u64, message: Message) -> Option<Message> {
        Replies::offer(self, connection, message)
    }

    fn close(&self) {
        Replies::close(self);
    }
}

impl fmt::Debug for Replies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let book = self.lock();
        f.debug_struct("Replies")
            .field("order", &self.order)
            .field("waiting", &book.waiters.len())
            .field("owed", &book.owed.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::sync::oneshot::error::TryRecvError;

    use super::*;

    const CONNECTION: u64 = 7;

    fn every_message() -> Replies {
        Replies::new(ReplyOrder::EveryMessage)
    }

    /// A request under [`ReplyOrder::EveryMessage`], its message queued.
    fn request(replies: &Replies) -> (RequestId, oneshot::Receiver<Result<Message>>) {
        let (id, reply) = replies.wait(Expects::InPlace);
        replies.sending(CONNECTION, Some(id));
        (id, reply)
    }

    #[test]
    fn replies_owed_to_earlier_messages_never_reach_a_later_request() {
        let replies = every_message();
        replies.sending(CONNECTION, None); // the handshake
        replies.sending(CONNECTION, None); // a send
        let (_, mut status) = request(&replies);

        let to_handshake = Message::from("re: hello");
        let to_send = Message::from("re: event");
        assert_eq!(
            replies.offer(CONNECTION, to_handshake.clone()),
            Some(to_handshake)
        );
        assert_eq!(replies.offer(CONNECTION, to_send.clone()), Some(to_send));
        assert_eq!(status.try_recv().unwrap_err(), TryRecvError::Empty);
        assert_eq!(replies.offer(CONNECTION, Message::from("re: status")), None);
        assert_eq!(
            status.try_recv().unwrap().unwrap(),
            Message::from("re: status")
        );
        // Nothing is owed any more: what comes now is the server's own.
        let push = Message::from("news");
        assert_eq!(replies.offer(CONNECTION, push.clone()), Some(push));
    }

    #[test]
    fn a_reply_that_names_its_request_does_not_take_a_place_from_another() {
        let replies = every_message();
        let (_, mut in_place) = request(&replies);
        let (_, mut matching) =
            replies.wait(Expects::Matching(Box::new(|m| m.as_bytes() == b"#9")));
        replies.sending(CONNECTION, None);

        assert_eq!(replies.offer(CONNECTION, Message::from("#9")), None);
        assert_eq!(matching.try_recv().unwrap().unwrap(), Message::from("#9"));
        assert_eq!(
            in_place.try_recv().unwrap_err(),
            TryRecvError::Empty,
            "still waits"
        );
        assert_eq!(replies.offer(CONNECTION, Message::from("first")), None);
        assert_eq!(
            in_place.try_recv().unwrap().unwrap(),
            Message::from("first")
        );
    }

    #[test]
    fn a_lost_connection_ends_the_requests_it_owed_and_its_debts() {
        let replies = every_message();
        replies.sending(CONNECTION, None);
        let (_, mut lost) = request(&replies);
        replies.connection_ended(CONNECTION);
        assert!(matches!(
            lost.try_recv().unwrap(),
            Err(Error::ConnectionClosed { id: CONNECTION })
        ));
        // The next connection owes nothing of the old one's.
        let (id, mut next) = replies.wait(Expects::InPlace);
        replies.sending(CONNECTION + 1, Some(id));
        assert_eq!(replies.offer(CONNECTION + 1, Message::from("ok")), None);
        assert_eq!(next.try_recv().unwrap().unwrap(), Message::from("ok"));
    }

    #[test]
    fn a_request_given_up_forgets_what_was_owed_before_it() {
        let replies = every_message();
        replies.sending(CONNECTION, None); // a handshake the server never answers
        let (id, _reply) = request(&replies);
        assert_eq!(
            replies.timed_out(id, Duration::from_secs(1)),
            1,
            "one reply was owed before it"
        );
        let (_, mut next) = request(&replies);
        assert_eq!(replies.offer(CONNECTION, Message::from("pong")), None);
        assert_eq!(next.try_recv().unwrap().unwrap(), Message::from("pong"));
    }

    #[test]
    fn a_matched_reply_pays_its_own_requests_debt_and_no_other() {
        let replies = every_message();
        let (_, mut in_place) = request(&replies);
        let (matching_id, mut matching) =
            replies.wait(Expects::Matching(Box::new(|m| m.as_bytes() == b"#9")));
        replies.sending(CONNECTION, Some(matching_id));

        assert_eq!(replies.offer(CONNECTION, Message::from("#9")), None);
        assert_eq!(matching.try_recv().unwrap().unwrap(), Message::from("#9"));
        assert_eq!(replies.offer(CONNECTION, Message::from("first")), None);
        assert_eq!(
            in_place.try_recv().unwrap().unwrap(),
            Message::from("first")
        );
        // Both debts are paid: the next request's reply is the next message.
        let (_, mut next) = request(&replies);
        assert_eq!(replies.offer(CONNECTION, Message::from("next")), None);
        assert_eq!(next.try_recv().unwrap().unwrap(), Message::from("next"));
    }

    #[test]
    fn a_timeout_ends_the_requests_older_than_it_and_spares_the_younger() {
        let replies = every_message();
        let (_, mut older) = request(&replies);
        let (timed_out, _gone) = request(&replies);
        let (_, mut younger) = request(&replies);
        replies.timed_out(timed_out, Duration::from_secs(1));
        assert!(matches!(
            older.try_recv().unwrap(),
            Err(Error::RequestTimeout { .. })
        ));
        assert_eq!(replies.offer(CONNECTION, Message::from("late")), None);
        assert_eq!(younger.try_recv().unwrap().unwrap(), Message::from("late"));
    }

    #[test]
    fn a_message_whose_requester_gave_up_goes_to_on_message() {
        let replies = every_message();
        let (id, reply) = request(&replies);
        drop(reply);
        replies.forget(id);
        let message = Message::from("nobody's");
        assert_eq!(replies.offer(CONNECTION, message.clone()), Some(message));
    }

    #[test]
    fn a_send_on_an_older_connection_leaves_the_current_ones_debts() {
        let replies = every_message();
        replies.sending(CONNECTION + 1, None);
        let (id, mut reply) = replies.wait(Expects::InPlace);
        replies.sending(CONNECTION + 1, Some(id));
        replies.sending(CONNECTION, None); // a stale handle
        assert_eq!(
            replies.offer(CONNECTION + 1, Message::from("first")),
            Some(Message::from("first"))
        );
        assert_eq!(replies.offer(CONNECTION + 1, Message::from("mine")), None);
        assert_eq!(reply.try_recv().unwrap().unwrap(), Message::from("mine"));
    }

    #[test]
    fn requests_only_takes_the_next_message_and_counts_nothing() {
        let replies = Replies::new(ReplyOrder::RequestsOnly);
        replies.sending(CONNECTION, None);
        let (_, mut reply) = replies.wait(Expects::Matching(Box::new(|_| true)));
        assert_eq!(replies.offer(CONNECTION, Message::from("next")), None);
        assert_eq!(reply.try_recv().unwrap().unwrap(), Message::from("next"));
        assert!(replies.lock().owed.is_empty());
    }

    #[test]
    fn a_short_reply_reaches_its_request_without_the_read_buffer() {
        let replies = every_message();
        let (_, mut short_reply) = request(&replies);
        let (_, mut long_reply) = request(&replies);
        let read_buffer = Bytes::from(vec![b'x'; 8192]);
        let short = Message::new(read_buffer.slice(..32));
        let long = Message::new(read_buffer.slice(..1024));
        assert_eq!(replies.offer(CONNECTION, short.clone()), None);
        assert_eq!(replies.offer(CONNECTION, long.clone()), None);

        let got = short_reply.try_recv().unwrap().unwrap();
        assert_eq!(got, short);
        assert_ne!(got.as_bytes().as_ptr(), short.as_bytes().as_ptr(), "copied");
        // A long one is worth sharing: the buffer is mostly its own.
        let got = long_reply.try_recv().unwrap().unwrap();
        assert_eq!(got.as_bytes().as_ptr(), long.as_bytes().as_ptr());
    }

    #[test]
    fn after_close_requests_end_at_once() {
        let replies = every_message();
        let (_, mut waiting) = request(&replies);
        replies.close();
        assert_eq!(
            waiting.try_recv().unwrap_err(),
            TryRecvError::Closed,
            "the waiting request ends"
        );
        let (_, mut later) = replies.wait(Expects::InPlace);
        assert_eq!(
            later.try_recv().unwrap_err(),
            TryRecvError::Closed,
            "a later one ends at once"
        );
        assert_eq!(
            replies.offer(CONNECTION, Message::from("late")),
            Some(Message::from("late"))
        );
    }
}
