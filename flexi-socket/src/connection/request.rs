//! A server asking one of its connections and waiting for the answer: a
//! device that dialed in is polled as a client polls its server. The
//! requests of a connection wait in its own book of [`Replies`] (the
//! clients' mechanism), made the first time it is asked; an inbound
//! message is offered to that book before `on_message`, which never sees a
//! reply taken there.

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use super::replies::{Expects, Replies};
use super::{Connection, Connections};
use crate::error::Error;
use crate::message::Message;

impl Connection {
    /// Sends `message` and waits, at most `timeout`, for the first inbound
    /// message for which `is_reply` says yes: that one is returned and does
    /// not reach `on_message`; every other message goes to `on_message` as
    /// usual. Several requests may wait at once; each message goes to the
    /// oldest one it matches.
    ///
    /// For a handler of another connection (an operator's command polling a
    /// device) or any task: the connection's own handlers run in the task
    /// that reads its replies, so a request from one of them could not be
    /// answered and fails at once.
    ///
    /// # Errors
    ///
    /// [`Error::RequestTimeout`] when no reply came in time,
    /// [`Error::ConnectionClosed`] when the connection closes first (or
    /// was closed), [`Error::RequestInOwnTask`] from the connection's own
    /// handlers, or any error of [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use flexi_socket::Connections;
    ///
    /// /// Asks device `id` for its status; its reply starts with `STATUS`.
    /// async fn status(connections: &Connections, id: &str) -> flexi_socket::Result<String> {
    ///     let Some(device) = connections.by_key(id) else {
    ///         return Ok(format!("OFFLINE {id}"));
    ///     };
    ///     let reply = device
    ///         .request_matching("STATUS?", Duration::from_secs(2), |m| m.starts_with(b"STATUS "))
    ///         .await?;
    ///     Ok(String::from_utf8_lossy(&reply).into_owned())
    /// }
    /// # let _ = status;
    /// ```
    pub async fn request_matching(
        &self,
        message: impl Into<Message>,
        timeout: Duration,
        is_reply: impl Fn(&Message) -> bool + Send + Sync + 'static,
    ) -> Result<Message, Error> {
        if self.in_own_task().await {
            return Err(Error::RequestInOwnTask { id: self.id() });
        }
        let book = self
            .shared
            .extras
            .get_or_init(Box::default)
            .requests
            .get_or_init(|| Box::new(Replies::of_connection(self.id())));
        if self.is_closing() {
            // It may have ended before the book existed: none would end it.
            return Err(Error::ConnectionClosed { id: self.id() });
        }
        let message = message.into();
        let expects = Expects::Matching(Box::new(is_reply));
        book.ask(expects, timeout, |_| self.send(message)).await
    }

    /// Whether this future runs in the connection's own task.
    async fn in_own_task(&self) -> bool {
        let close = self.close_signal();
        poll_fn(|cx| Poll::Ready(close.polled_by_driver(cx))).await
    }

    /// The book of this connection's waiting requests, if it was ever asked.
    #[inline]
    pub(crate) fn requests(&self) -> Option<&Replies> {
        self.extras()?.requests.get()
    }

    /// The connection has ended: its waiting requests end with
    /// [`Error::ConnectionClosed`].
    pub(crate) fn end_requests(&self) {
        if let Some(book) = self.requests() {
            book.close();
        }
    }
}

impl Connections {
    /// [`Connection::request_matching`] to the connection holding `key`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyOffline`] when no open connection holds `key`, or any
    /// error of [`Connection::request_matching`].
    pub async fn request_to_key(
        &self,
        key: &str,
        message: impl Into<Message>,
        timeout: Duration,
        is_reply: impl Fn(&Message) -> bool + Send + Sync + 'static,
    ) -> Result<Message, Error> {
        let connection = self.by_key(key).ok_or_else(|| Error::KeyOffline {
            key: key.to_owned(),
        })?;
        connection
            .request_matching(message, timeout, is_reply)
            .await
    }
}
