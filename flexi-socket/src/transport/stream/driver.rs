//! [`Driver`]: the future of one stream connection's task. It polls the
//! reading side first and the writing side right after, so replies a
//! handler just queued leave in the same poll; then it runs the close:
//! on_disconnect, flush, FIN, and a while of reading what the peer still
//! sends. The shutdown deadline can cut it short at any point.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::ReadBuf;
use tokio::time::Sleep;

use super::reading::Reading;
use super::writing::{Finish, Writing};
use crate::connection::outbound::OutboundReceiver;
use crate::connection::report;
use crate::connection::{CloseStage, Connection, DisconnectReason};
use crate::error::Error;
use crate::events::{after_abort, on_disconnect};
use crate::future::BoxFuture;
use crate::transport::decoder::ConnectionDecoder;
use crate::transport::stream::Stream;

pub(super) struct Driver<S> {
    connection: Connection,
    stream: S,
    reading: Reading,
    writing: Writing,
    /// `None` while serving. Boxed: every idle connection's task holds this
    /// field, and only a closing connection (or one whose write failed)
    /// has anything in it.
    closing: Option<Box<Closing>>,
}

enum Closing {
    /// A write failed while reading and writing: reading goes on until it
    /// sees the close this caused, then the error is reported, before
    /// on_disconnect.
    WriteFailed(io::Error),
    /// Reading ended: a failed write is reported, then on_disconnect runs
    /// (the writing side goes on meanwhile); then the close goes on as
    /// `close` says.
    Disconnecting {
        future: BoxFuture<'static, ()>,
        close: Close,
    },
    /// The writing side flushes what was queued (or gives it up) before
    /// `deadline`; then, if `linger`, the peer's leftovers are read.
    Flushing {
        linger: bool,
        deadline: Pin<Box<Sleep>>,
    },
    /// After our FIN, the peer's unread bytes would turn close() into a RST
    /// that destroys our last replies in flight; so they are read and
    /// dropped for a while.
    Lingering(Linger),
    /// Cut at the shutdown deadline: a late on_disconnect, and accounting.
    Aborting(BoxFuture<'static, ()>),
    Done,
}

/// How a connection's close goes on after on_disconnect, decided by why
/// reading ended.
#[derive(Clone, Copy)]
struct Close {
    finish: Finish,
    /// Whether the peer may still send after our FIN (it did not close or fail).
    linger: bool,
}

impl Close {
    fn after(reason: &DisconnectReason) -> Self {
        Self {
            // A peer that does not read: what is queued is given up.
            finish: if *reason == DisconnectReason::SlowConsumer {
                Finish::Abandon
            } else {
                Finish::Flush
            },
            linger: !matches!(
                reason,
                DisconnectReason::PeerClosed | DisconnectReason::Reset(_)
            ),
        }
    }
}

impl<S: Stream> Driver<S> {
    pub(super) fn new(stream: S, connection: Connection, outbound: OutboundReceiver) -> Self {
        Self {
            reading: Reading::new(&connection),
            writing: Writing::new(&stream, outbound),
            connection,
            stream,
            closing: None,
        }
    }

    /// The driver of a connection that rested (see `rest`), waiting again.
    pub(super) fn resumed(rested: Rested<S>) -> Self {
        Self {
            reading: Reading::resumed(rested.decoder.map(|decoder| *decoder)),
            writing: Writing::resumed(rested.outbound),
            connection: rested.connection,
            stream: rested.stream,
            closing: None,
        }
    }

    /// Whether the connection may rest now that the driver waits: its
    /// stream can, its peer has been quiet, it serves, and both sides wait
    /// holding nothing but what [`Rested`] keeps.
    pub(super) fn may_rest(&self) -> bool {
        S::CAN_REST
            && self.connection.activity().is_quiet()
            && self.closing.is_none()
            && self.reading.may_rest()
            && self.writing.may_rest()
    }

    /// Registers `cx` (the resting connection's waker) with all that can
    /// wake the connection: its close, its outbound queue, its socket.
    /// `false` if one of them is ready already: the driver goes on (and its
    /// next poll registers its own task's waker in their place).
    pub(super) fn settle(&mut self, cx: &mut Context<'_>) -> bool {
        self.connection
            .close_signal()
            .poll_reached_at_rest(CloseStage::Closing, cx)
            .is_pending()
            && self.writing.settle(cx)
            && self.stream.poll_read_ready(cx).is_pending()
    }

    /// What the connection keeps while it rests: its task's state without
    /// the buffers, the handler's slot and the timers, which a connection
    /// at rest holds empty.
    pub(super) fn into_rest(self) -> Rested<S> {
        let decoder = self
            .reading
            .into_decoder()
            .expect("a connection rests only with its decoder");
        Rested {
            decoder: (!decoder.is_as_new(&self.connection)).then(|| Box::new(decoder)),
            outbound: self.writing.into_outbound(),
            connection: self.connection,
            stream: self.stream,
        }
    }

    /// Whether reading and writing go on: the close has not begun.
    fn serving(&self) -> bool {
        matches!(
            self.closing.as_deref(),
            None | Some(Closing::WriteFailed(_))
        )
    }

    /// The close goes on with `next`, in the box of the step before if there
    /// was one: a connection's close allocates it once.
    fn enter(&mut self, next: Closing) {
        match &mut self.closing {
            Some(step) => **step = next,
            None => self.closing = Some(Box::new(next)),
        }
    }

    /// Reading ended for `reason`: the close begins.
    fn disconnect(&mut self, reason: DisconnectReason) {
        let connection = self.connection.clone();
        // Serving until now: the box, if any, holds a failed write.
        let failed_write = match self
            .closing
            .as_deref_mut()
            .map(|step| std::mem::replace(step, Closing::Done))
        {
            Some(Closing::WriteFailed(error)) => Some(error),
            _ => None,
        };
        let close = Close::after(&reason);
        let future = Box::pin(async move {
            if let Some(error) = failed_write {
                report(&connection, Error::Io(error)).await;
            }
            tracing::debug!(%reason, "disconnecting");
            // From now on the connection reports itself closing (a client's
            // sends then go to its outbox); sends from on_disconnect still work.
            connection.close_because(reason.clone());
            on_disconnect(&connection, reason).await;
        });
        self.enter(Closing::Disconnecting { future, close });
    }

    /// on_disconnect ran: no more sends are accepted, what was is written.
    fn flush(&mut self, close: Close) {
        let flush_timeout = self.connection.endpoint().limits.shutdown_timeout;
        self.writing.finish(close.finish);
        self.enter(Closing::Flushing {
            linger: close.linger,
            deadline: Box::pin(tokio::time::sleep(flush_timeout)),
        });
    }

    /// Writes what it can; a failed write closes the connection.
    fn poll_writing(&mut self, cx: &mut Context<'_>) {
        if let Poll::Ready(Err(error)) = self.writing.poll(&mut self.stream, cx) {
            if self.serving() {
                self.connection
                    .close_because(DisconnectReason::Reset(error.to_string()));
                // Reported once reading ended, before on_disconnect.
                self.enter(Closing::WriteFailed(error));
            } else {
                // Closing already: the peer is gone or does not read.
                tracing::debug!(%error, "writing failed while closing");
            }
        }
    }

    fn ended(&self, aborted: bool) -> Ended {
        Ended {
            connection: self.connection.clone(),
            aborted,
        }
    }

    /// The shutdown deadline passed: everything stops where it is.
    fn abort(&mut self) {
        // on_disconnect runs once: a cut in the middle of it does not run it again.
        let disconnected = !self.serving();
        self.reading.stop();
        // The queue closes: the late on_disconnect's sends fail instead of
        // being lost uncounted.
        self.writing.abandon();
        let connection = self.connection.clone();
        self.enter(Closing::Aborting(Box::pin(async move {
            after_abort(&connection, disconnected).await;
        })));
    }
}

/// What a resting connection keeps of its driver.
pub(super) struct Rested<S> {
    connection: Connection,
    stream: S,
    /// Kept only where a new one would differ (a custom codec's, one
    /// dropping an oversize frame, one waiting for the classifier; see
    /// `ConnectionDecoder::is_as_new`); boxed, as most connections keep
    /// none: theirs is made again when they come back.
    decoder: Option<Box<ConnectionDecoder>>,
    outbound: OutboundReceiver,
}

impl<S> Rested<S> {
    pub(super) fn connection(&self) -> &Connection {
        &self.connection
    }
}

/// How a connection's driver ended; what is left to do once it is dropped.
pub(super) struct Ended {
    pub(super) connection: Connection,
    /// Cut at the shutdown deadline.
    pub(super) aborted: bool,
}

impl<S: Stream> Future for Driver<S> {
    type Output = Ended;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let this = self.get_mut();
        if !matches!(
            this.closing.as_deref(),
            Some(Closing::Aborting(_) | Closing::Done)
        ) && this
            .connection
            .close_signal()
            .poll_reached(CloseStage::Aborted, cx)
            .is_ready()
        {
            this.abort();
        }
        loop {
            match this.closing.as_deref_mut() {
                None | Some(Closing::WriteFailed(_)) => {
                    // Both sides poll what `settle` registers a resting
                    // connection's waker with (the close, the socket, the
                    // queue; the close also at the top), so after a settle
                    // that found one ready this task's waker is back in each
                    // once this side waits on it again (a handler that runs
                    // meanwhile leaves the socket's to the resting waker,
                    // whose wake is then stale: the readiness stays set for
                    // this task's next read).
                    let read = this.reading.poll(&this.connection, &mut this.stream, cx);
                    if let Poll::Ready(reason) = read {
                        this.disconnect(reason);
                        continue;
                    }
                    this.poll_writing(cx);
                    return Poll::Pending;
                }
                Some(Closing::Disconnecting { future, close }) => {
                    if future.as_mut().poll(cx).is_ready() {
                        let close = *close;
                        this.flush(close);
                        continue;
                    }
                    this.poll_writing(cx);
                    return Poll::Pending;
                }
                Some(Closing::Flushing { linger, deadline }) => {
                    let linger = *linger;
                    if deadline.as_mut().poll(cx).is_ready() {
                        // The peer is gone or does not read: the rest is given up.
                        this.writing.abandon();
                        tracing::debug!("flushing the outbound queue timed out");
                    } else {
                        this.poll_writing(cx);
                        if !this.writing.is_done() {
                            return Poll::Pending;
                        }
                    }
                    let next = if linger {
                        Closing::Lingering(Linger::new(this.connection.endpoint().limits.linger))
                    } else {
                        Closing::Done
                    };
                    this.enter(next);
                }
                Some(Closing::Lingering(linger)) => {
                    ready!(linger.poll(&mut this.stream, cx));
                    this.enter(Closing::Done);
                }
                Some(Closing::Aborting(future)) => {
                    ready!(future.as_mut().poll(cx));
                    this.enter(Closing::Done);
                    return Poll::Ready(this.ended(true));
                }
                Some(Closing::Done) => return Poll::Ready(this.ended(false)),
            }
        }
    }
}

/// Reads and drops what the peer sends, until it closes or `linger` passes.
struct Linger {
    deadline: Pin<Box<Sleep>>,
    // On the heap, and only while lingering: not in every connection's task.
    sink: Box<[u8]>,
}

impl Linger {
    fn new(linger: Duration) -> Self {
        Self {
            deadline: Box::pin(tokio::time::sleep(linger)),
            sink: vec![0; 1024].into_boxed_slice(),
        }
    }

    fn poll(&mut self, stream: &mut impl Stream, cx: &mut Context<'_>) -> Poll<()> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        loop {
            let mut sink = ReadBuf::new(&mut self.sink);
            match ready!(Pin::new(&mut *stream).poll_read(cx, &mut sink)) {
                Ok(()) if !sink.filled().is_empty() => {}
                // EOF or an error: the peer is done.
                _ => return Poll::Ready(()),
            }
        }
    }
}
