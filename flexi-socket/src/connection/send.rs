//! Sending: `before_send`, the framing, then the bounded outbound queue.
//!
//! Every reply goes through here, so the common case (no `before_send`, room
//! in the queue) completes in one poll of a small hand-written future,
//! with nothing boxed; only the rest of the cases pay for an `async` body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};

use super::{Connection, DisconnectReason, Sends};
use crate::config::{PanicPolicy, SlowConsumerPolicy};
use crate::connection::outbound::{QueueRefused, Unqueued, WrittenBy, with_encoded};
use crate::connection::report;
use crate::error::Error;
use crate::framing::FrameEncoder;
use crate::future::BoxFuture;
use crate::handler::invoke;
use crate::handler::{EventContext, Handler, HandlerSlot, Routes};
use crate::message::Message;

impl Connection {
    /// Sends a message: `before_send` runs first, then the framing encodes
    /// the result and it is queued for the socket. When this returns `Ok`, the
    /// bytes will be written before the connection closes.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionClosed`] once the connection is closing,
    /// [`Error::Encode`] if the framing refuses the message, or the error of a
    /// failing `before_send` handler.
    ///
    /// # Examples
    ///
    /// Text or bytes; `?` hands a failure to `on_error`:
    ///
    /// ```
    /// use flexi_socket::{Bytes, Connection, on_message};
    ///
    /// #[on_message]
    /// async fn answer(conn: Connection, msg: Bytes) -> flexi_socket::Result<()> {
    ///     conn.send("ACK").await?;                     // text
    ///     conn.send(msg).await?;                       // the bytes received, without copying
    ///     conn.send(vec![0x06]).await                  // bytes
    /// }
    /// # fn main() {}
    /// ```
    pub fn send(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        SendFuture {
            connection: self,
            policy: None,
            request: None,
            step: SendStep::Start(message.into()),
        }
    }

    /// [`send`](Self::send) under a given slow-consumer policy (the
    /// connection's own when `None`), of the message a client's request
    /// `request` sends, if any.
    pub(crate) fn send_for(
        &self,
        message: Message,
        request: Option<u64>,
        policy: Option<SlowConsumerPolicy>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        SendFuture {
            connection: self,
            policy,
            request,
            step: SendStep::Start(message),
        }
    }

    /// A client counts what it sends against the replies it expects. Called
    /// under the outbound queue's lock once the message is in: only what
    /// is queued owes a reply, in the queue's own order.
    #[inline]
    fn count_for_replies(&self, request: Option<u64>) {
        if let Some(replies) = &self.endpoint().replies {
            replies.sending(self.id(), request);
        }
    }

    /// Frames and queues `message` if nothing needs waiting for; otherwise
    /// the boxed rest of the work, which has done nothing yet (dropped
    /// unpolled, it leaves the connection as it was). `written_by` says who
    /// writes the frame if it finds the writer idle (the boxed rest leaves
    /// it to the writer). Inline: the common case, a plain send with room in
    /// the queue, is a few checks, the lock and the frame's copy, and
    /// returns nothing but `Ok`.
    #[inline]
    pub(super) fn try_send(
        &self,
        message: Message,
        policy: Option<SlowConsumerPolicy>,
        request: Option<u64>,
        written_by: WrittenBy<'_>,
    ) -> Result<Result<(), Error>, BoxFuture<'_, Result<(), Error>>> {
        let (sends, routes, encoder) = self.sending();
        if sends == Sends::Filtered {
            return Err(self.send_filtered(routes, encoder, message, policy, request));
        }
        match self.queue(encoder, &message, request, written_by) {
            Queued::Yes => Ok(Ok(())),
            Queued::Not(not_queued) => self.not_queued(not_queued, policy, request),
        }
    }

    /// A message [`queue`](Self::queue) did not queue: the boxed wait for
    /// room, or the error. Out of line: the common case never comes here.
    #[inline(never)]
    fn not_queued(
        &self,
        not_queued: NotQueued,
        policy: Option<SlowConsumerPolicy>,
        request: Option<u64>,
    ) -> Result<Result<(), Error>, BoxFuture<'_, Result<(), Error>>> {
        match not_queued {
            NotQueued::Full(frame) => Err(Box::pin(self.queue_when_full(frame, policy, request))),
            NotQueued::Unsent(unsent) => Ok(Err(self.refused(unsent, policy))),
        }
    }

    /// The boxed way of a send through `before_send` or into the history.
    #[inline(never)]
    fn send_filtered<'a>(
        &'a self,
        routes: &'a Routes,
        encoder: &'a FrameEncoder,
        message: Message,
        policy: Option<SlowConsumerPolicy>,
        request: Option<u64>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let before_send = routes.before_send.as_ref();
        Box::pin(self.filtered(before_send, encoder, message, policy, request))
    }

    /// Runs `before_send` (if any), then frames and queues what it returns,
    /// and records both forms in the history once the message is queued.
    async fn filtered(
        &self,
        before_send: Option<&Handler>,
        encoder: &FrameEncoder,
        message: Message,
        policy: Option<SlowConsumerPolicy>,
        request: Option<u64>,
    ) -> Result<(), Error> {
        let given = self.keeps_history().then(|| message.clone());
        let message = match before_send {
            Some(before_send) => match self.before_send(before_send, message).await? {
                Some(message) => message,
                None => {
                    if let Some(given) = given {
                        self.record_outbound(&given, None);
                    }
                    return Ok(());
                }
            },
            None => message,
        };
        // Queued in a poll of its own, to tell the writer which task sends.
        let queued = std::future::poll_fn(|cx| {
            let written_by = WrittenBy::Writer {
                sending_task: Some(cx.waker()),
            };
            Poll::Ready(self.queue(encoder, &message, request, written_by))
        })
        .await;
        match queued {
            Queued::Yes => {}
            Queued::Not(NotQueued::Full(frame)) => {
                self.queue_when_full(frame, policy, request).await?;
            }
            Queued::Not(NotQueued::Unsent(unsent)) => return Err(self.refused(unsent, policy)),
        }
        // Recorded once queued: a send that failed was not written.
        if let Some(given) = given {
            self.record_outbound(&given, Some(&message));
        }
        Ok(())
    }

    /// Frames `message` and queues it if the queue has room; otherwise the
    /// frame, to wait for room, or why it cannot be queued. Once queued, a
    /// client counts the reply it owes (for `request`, if it is one's).
    /// Always inline: every send comes here, and a call costs its prologue
    /// and the result moved through memory (callgrind).
    #[inline(always)]
    fn queue(
        &self,
        encoder: &FrameEncoder,
        message: &Message,
        request: Option<u64>,
        written_by: WrittenBy<'_>,
    ) -> Queued {
        if encoder.runs_user_code() {
            return self.queue_encoded_aside(encoder, message, request, written_by);
        }
        let appended = self.shared.outbound.try_append(
            written_by,
            |dst| encoder.encode(message, dst),
            || self.count_for_replies(request),
        );
        match appended {
            Ok(length) => {
                self.meter_sent(length);
                Queued::Yes
            }
            Err(unqueued) => Queued::Not(not_appended(encoder, message, unqueued)),
        }
    }

    /// [`queue`](Self::queue) with a custom codec, user code that runs
    /// outside the queue's lock: encoded aside first, then copied in.
    #[inline(never)]
    fn queue_encoded_aside(
        &self,
        encoder: &FrameEncoder,
        message: &Message,
        request: Option<u64>,
        written_by: WrittenBy<'_>,
    ) -> Queued {
        let outbound = &self.shared.outbound;
        let sending_task = match written_by {
            WrittenBy::Writer { sending_task } => sending_task,
            WrittenBy::Sender => None,
        };
        let queued = with_encoded(
            |dst| encoder.encode(message, dst),
            |frame| match outbound.try_push_then(frame, sending_task, || {
                self.count_for_replies(request);
            }) {
                Ok(()) => {
                    self.meter_sent(frame.len());
                    Queued::Yes
                }
                Err(QueueRefused::Full) => {
                    Queued::Not(NotQueued::Full(Bytes::copy_from_slice(frame)))
                }
                Err(refused) => Queued::Not(NotQueued::Unsent(Unsent::Refused(refused))),
            },
        );
        queued.unwrap_or_else(|error| Queued::Not(NotQueued::Unsent(Unsent::Encode(error))))
    }

    /// Queues `frame` once the queue has room, as the slow-consumer policy says.
    async fn queue_when_full(
        &self,
        frame: Bytes,
        policy: Option<SlowConsumerPolicy>,
        request: Option<u64>,
    ) -> Result<(), Error> {
        let patience = policy.unwrap_or_else(|| self.slow_consumer_policy());
        let length = frame.len();
        let queued = || self.count_for_replies(request);
        self.shared
            .outbound
            .push_when_full(frame, patience, queued)
            .await
            .map_err(|refused| self.refused(Unsent::Refused(refused), policy))?;
        self.meter_sent(length);
        Ok(())
    }

    /// The error for a message that was not queued under `policy`.
    fn refused(&self, unsent: Unsent, policy: Option<SlowConsumerPolicy>) -> Error {
        let refused = match unsent {
            Unsent::Encode(error) => return error,
            Unsent::Refused(refused) => refused,
        };
        let id = self.id();
        match (
            refused,
            policy.unwrap_or_else(|| self.slow_consumer_policy()),
        ) {
            (QueueRefused::Closed, _) => Error::ConnectionClosed { id },
            (QueueRefused::TimedOut, SlowConsumerPolicy::Wait(waited)) => {
                Error::SendTimeout { id, waited }
            }
            (_, SlowConsumerPolicy::Disconnect) => {
                self.close_because(DisconnectReason::SlowConsumer);
                Error::QueueFull { id }
            }
            _ => Error::QueueFull { id },
        }
    }

    /// Runs `before_send`; `None` means it dropped the message.
    async fn before_send(
        &self,
        handler: &Handler,
        message: Message,
    ) -> Result<Option<Message>, Error> {
        let context = EventContext::for_message(self.clone(), message);
        let outcome = invoke(self, handler, context, &mut HandlerSlot::default()).await;
        if let Err(error) = &outcome {
            self.after_panic(error).await;
        }
        outcome
    }

    /// The slow-consumer policy for this connection's client type.
    pub(crate) fn slow_consumer_policy(&self) -> SlowConsumerPolicy {
        let limits = &self.shared.endpoint.limits;
        self.client_type()
            .and_then(|client_type| limits.slow_consumer_by_type.get(client_type))
            .copied()
            .unwrap_or(limits.slow_consumer)
    }

    /// A panic in `before_send` is handled like one in any other handler:
    /// reported to `on_error`, and the connection closed if the policy says so.
    async fn after_panic(&self, error: &Error) {
        let Error::HandlerPanicked { handler, message } = error else {
            return;
        };
        let reported = Error::HandlerPanicked {
            handler,
            message: message.clone(),
        };
        report(self, reported).await;
        if self.shared.endpoint.limits.on_panic == PanicPolicy::Close {
            self.close_because(DisconnectReason::HandlerPanicked);
        }
    }
}

/// Why a message was not queued.
enum Unsent {
    Encode(Error),
    Refused(QueueRefused),
}

/// What [`Connection::queue`] did with a message.
enum Queued {
    Yes,
    Not(NotQueued),
}

/// A message [`Connection::queue`] did not queue.
enum NotQueued {
    /// No room now: the frame, to wait for room on its own.
    Full(Bytes),
    Unsent(Unsent),
}

/// What a built-in codec's frame that `OutboundSender::try_append` did not
/// append comes to.
#[cold]
fn not_appended(encoder: &FrameEncoder, message: &[u8], unqueued: Unqueued<Error>) -> NotQueued {
    match unqueued {
        Unqueued::Refused(QueueRefused::Full) => {
            let mut frame = BytesMut::new();
            match encoder.encode(message, &mut frame) {
                Ok(()) => NotQueued::Full(frame.freeze()),
                Err(error) => NotQueued::Unsent(Unsent::Encode(error)),
            }
        }
        Unqueued::Refused(refused) => NotQueued::Unsent(Unsent::Refused(refused)),
        Unqueued::Append(error) => NotQueued::Unsent(Unsent::Encode(error)),
    }
}

/// The future of [`Connection::send`].
struct SendFuture<'a> {
    connection: &'a Connection,
    policy: Option<SlowConsumerPolicy>,
    /// The client request this message is sent for, if any.
    request: Option<u64>,
    step: SendStep<'a>,
}

enum SendStep<'a> {
    /// Not polled yet: nothing happens before the first poll.
    Start(Message),
    /// `before_send` or a full queue: the boxed rest of the work.
    Waiting(BoxFuture<'a, Result<(), Error>>),
    Done,
}

impl Future for SendFuture<'_> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.step, SendStep::Done) {
                SendStep::Start(message) => {
                    let sent = this.connection.try_send(
                        message,
                        this.policy,
                        this.request,
                        WrittenBy::Writer {
                            sending_task: Some(cx.waker()),
                        },
                    );
                    match sent {
                        // The common end in an arm of its own: the result
                        // is then written as its tag alone, not moved out
                        // whole (72 bytes, the size of an error: callgrind).
                        Ok(Ok(())) => return Poll::Ready(Ok(())),
                        Ok(result) => return Poll::Ready(result),
                        Err(rest) => this.step = SendStep::Waiting(rest),
                    }
                }
                SendStep::Waiting(mut rest) => {
                    let Poll::Ready(result) = rest.as_mut().poll(cx) else {
                        this.step = SendStep::Waiting(rest);
                        return Poll::Pending;
                    };
                    return Poll::Ready(result);
                }
                SendStep::Done => panic!("a send is not polled after it completed"),
            }
        }
    }
}
