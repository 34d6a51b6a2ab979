//! The writing side of a connection's task: all frames queued at a moment
//! leave in one write, as soon as they are queued, until the reading side
//! says to finish; then the rest is flushed and FIN sent or, for a peer
//! that does not read, abandoned. The driver bounds the flush in time.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::connection::outbound::{Frames, OutboundReceiver};
use crate::transport::stream::Stream;

/// How the writing side ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finish {
    /// Write everything queued, then FIN.
    Flush,
    /// The peer does not read: give up on the queue.
    Abandon,
}

/// The writing side's state: what every connection's task holds for it.
/// The stream it writes to is the driver's, lent to each poll.
pub(super) struct Writing {
    outbound: OutboundReceiver,
    /// Frames taken from the queue and not yet all written.
    frames: Frames,
    /// How much of `frames` is written already.
    written: usize,
    /// Bytes were written since the last flush (TLS buffers what it encrypts).
    unflushed: bool,
    phase: Phase,
}

/// No deadline here: every connection's task holds this, and only a
/// closing one needs the flush's (the driver keeps it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Writing frames as they are queued.
    Running,
    /// Told to finish: writing what is left, then FIN.
    Flushing,
    ShuttingDown,
    Done,
}

impl Writing {
    pub(super) fn new(stream: &impl Stream, outbound: OutboundReceiver) -> Self {
        if let Some(socket) = stream.shared_socket() {
            outbound.share_socket(socket);
        }
        Self::resumed(outbound)
    }

    /// Writes from `outbound`, whose socket is shared with the queue
    /// already (if it can be): from the start, and after the connection
    /// rested.
    pub(super) fn resumed(outbound: OutboundReceiver) -> Self {
        Self {
            outbound,
            frames: Frames::default(),
            written: 0,
            unflushed: false,
            phase: Phase::Running,
        }
    }

    /// Whether this side holds nothing the connection needs while it rests:
    /// it runs, and everything taken was written.
    pub(super) fn may_rest(&self) -> bool {
        self.phase == Phase::Running && self.frames.is_empty() && !self.unflushed
    }

    /// For a connection about to rest: registers `cx` to be woken by the
    /// next frame queued; `false` if there are frames already (then taken,
    /// for the next write) or the queue closed.
    pub(super) fn settle(&mut self, cx: &mut Context<'_>) -> bool {
        self.outbound.poll_take(cx, &mut self.frames).is_pending()
    }

    /// What writing needs kept while the connection rests.
    pub(super) fn into_outbound(self) -> OutboundReceiver {
        self.outbound
    }

    pub(super) fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// From now on no more sends are accepted; `Flush` writes what was
    /// accepted, `Abandon` drops it.
    pub(super) fn finish(&mut self, finish: Finish) {
        if self.phase != Phase::Running {
            return;
        }
        match finish {
            Finish::Flush => {
                self.outbound.close();
                self.phase = Phase::Flushing;
            }
            Finish::Abandon => self.abandon(),
        }
    }

    /// Stops writing at once (the connection is cut).
    pub(super) fn abandon(&mut self) {
        self.outbound.close();
        self.phase = Phase::Done;
    }

    /// Makes what progress it can; `Ready` once done. A write that fails
    /// ends the writing side with its error.
    pub(super) fn poll(
        &mut self,
        stream: &mut impl Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = match self.phase {
            Phase::Running | Phase::Flushing => self.poll_queue(stream, cx),
            Phase::ShuttingDown => Pin::new(&mut *stream).poll_shutdown(cx),
            Phase::Done => return Poll::Ready(Ok(())),
        };
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => {
                self.abandon();
                Poll::Ready(Err(error))
            }
            Poll::Ready(Ok(())) => {
                self.phase = match self.phase {
                    Phase::Flushing => Phase::ShuttingDown,
                    _ => Phase::Done,
                };
                if self.is_done() {
                    Poll::Ready(Ok(()))
                } else {
                    self.poll(stream, cx)
                }
            }
        }
    }

    /// Writes frames as they are queued, until the queue is closed and
    /// empty (while running, it is closed only when the writing side ends).
    fn poll_queue(
        &mut self,
        stream: &mut impl Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.frames.is_empty() {
                ready!(self.poll_write(stream, cx))?;
            }
            match self.outbound.poll_take(cx, &mut self.frames) {
                Poll::Ready(true) => {}
                Poll::Ready(false) => return self.poll_flush(stream, cx),
                Poll::Pending => {
                    // Nothing more to write for now: what a TLS stream still
                    // holds goes out, or a reply could wait for the next one.
                    ready!(self.poll_flush(stream, cx))?;
                    return Poll::Pending;
                }
            }
        }
    }

    fn poll_flush(
        &mut self,
        stream: &mut impl Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.unflushed {
            ready!(Pin::new(stream).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the rest of `frames`, then gives them back to the queue.
    fn poll_write(
        &mut self,
        stream: &mut impl Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let bytes = self.frames.bytes();
        while self.written < bytes.len() {
            match ready!(Pin::new(&mut *stream).poll_write(cx, &bytes[self.written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.written += n;
                    self.unflushed = true;
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        self.outbound.written(&mut self.frames);
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}
