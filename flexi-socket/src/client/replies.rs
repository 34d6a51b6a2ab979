//! Request/reply: requests waiting for their reply, and the one routine
//! both client modes use to ask.

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::connection::ReplyHook;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::sync;

/// Requests waiting for their reply, in the order they were made.
#[derive(Default)]
pub(crate) struct Replies {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next_id: u64,
    list: Vec<Waiter>,
    /// The client has ended: no reply will come to anyone.
    closed: bool,
}

struct Waiter {
    id: u64,
    is_reply: Box<dyn Fn(&Message) -> bool + Send + Sync>,
    reply: oneshot::Sender<Message>,
}

impl Replies {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        sync::lock(&self.waiting)
    }

    pub(crate) fn wait(
        &self,
        is_reply: Box<dyn Fn(&Message) -> bool + Send + Sync>,
    ) -> (u64, oneshot::Receiver<Message>) {
        let (reply, receiver) = oneshot::channel();
        let mut waiting = self.lock();
        if waiting.closed {
            // Dropping `reply` tells the receiver at once.
            return (0, receiver);
        }
        waiting.next_id += 1;
        let id = waiting.next_id;
        waiting.list.push(Waiter {
            id,
            is_reply,
            reply,
        });
        (id, receiver)
    }

    /// Sends with `send` and waits for the first message `is_reply` accepts,
    /// at most `timeout`, or until the client ends ([`close`](Self::close)).
    /// The one request/reply routine of TCP and UDP client modes.
    pub(crate) async fn ask(
        &self,
        is_reply: Box<dyn Fn(&Message) -> bool + Send + Sync>,
        timeout: Duration,
        send: impl Future<Output = Result<()>>,
    ) -> Result<Message> {
        // Waiting starts before sending, so a fast reply cannot slip past.
        let (waiter, reply) = self.wait(is_reply);
        let outcome = async {
            send.await?;
            // The sender is dropped unanswered only when the client ends.
            reply.await.map_err(|_| Error::ClientClosed)
        };
        let outcome = tokio::time::timeout(timeout, outcome)
            .await
            .unwrap_or(Err(Error::RequestTimeout { after: timeout }));
        if outcome.is_err() {
            // Otherwise a later message would go to a request no one waits for.
            self.cancel(waiter);
        }
        outcome
    }

    /// Ends every request waiting, and every later one, with
    /// [`Error::ClientClosed`]: the client has ended. (One signal here, not a
    /// shutdown future polled beside every request.)
    pub(crate) fn close(&self) {
        let mut waiting = self.lock();
        waiting.closed = true;
        waiting.list.clear();
    }

    pub(crate) fn cancel(&self, id: u64) {
        self.lock().list.retain(|waiter| waiter.id != id);
    }

    /// Hands `message` to the oldest request it answers; gives it back when
    /// no request wants it.
    pub(crate) fn offer(&self, message: Message) -> Option<Message> {
        let mut waiting = self.lock();
        let Some(index) = waiting.list.iter().position(|w| (w.is_reply)(&message)) else {
            return Some(message);
        };
        let waiter = waiting.list.remove(index);
        // The caller keeps its reply as long as it likes, in its own task.
        let reply = message.detached();
        // If the requester gave up just now, the message is nobody's reply.
        waiter.reply.send(reply).err()
    }
}

impl ReplyHook for Replies {
    fn offer(&self, message: Message) -> Option<Message> {
        Replies::offer(self, message)
    }

    fn close(&self) {
        Replies::close(self);
    }
}

impl fmt::Debug for Replies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replies")
            .field("waiting", &self.lock().list.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::sync::oneshot::error::TryRecvError;

    use super::*;

    #[test]
    fn a_short_reply_reaches_its_request_without_the_read_buffer() {
        let replies = Replies::default();
        let (_, mut short_reply) = replies.wait(Box::new(|_| true));
        let (_, mut long_reply) = replies.wait(Box::new(|_| true));
        let read_buffer = Bytes::from(vec![b'x'; 8192]);
        let short = Message::new(read_buffer.slice(..32));
        let long = Message::new(read_buffer.slice(..1024));
        assert_eq!(replies.offer(short.clone()), None);
        assert_eq!(replies.offer(long.clone()), None);

        let got = short_reply.try_recv().unwrap();
        assert_eq!(got, short);
        assert_ne!(got.as_bytes().as_ptr(), short.as_bytes().as_ptr(), "copied");
        // A long one is worth sharing: the buffer is mostly its own.
        let got = long_reply.try_recv().unwrap();
        assert_eq!(got.as_bytes().as_ptr(), long.as_bytes().as_ptr());
    }

    #[test]
    fn after_close_requests_end_at_once() {
        let replies = Replies::default();
        let (_, mut waiting) = replies.wait(Box::new(|_| true));
        replies.close();
        assert_eq!(
            waiting.try_recv(),
            Err(TryRecvError::Closed),
            "the waiting request ends"
        );
        let (_, mut later) = replies.wait(Box::new(|_| true));
        assert_eq!(
            later.try_recv(),
            Err(TryRecvError::Closed),
            "a later one ends at once"
        );
        assert_eq!(
            replies.offer(Message::from("late")),
            Some(Message::from("late"))
        );
    }
}
