//! The writing side of a connection's task: all frames queued at a moment
//! leave in one write, as soon as they are queued, until the reading side
//! says to finish; then the rest is flushed and FIN sent (within the
//! shutdown timeout) or, for a peer that does not read, abandoned.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Sleep;

use crate::connection::outbound::{Frames, OutboundReceiver};
use crate::transport::stream::StreamWriter;

/// How the writing side ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finish {
    /// Write everything queued, then FIN.
    Flush,
    /// The peer does not read: give up on the queue.
    Abandon,
}

/// The writing side's state: what every connection's task holds for it.
pub(super) struct Writing<W> {
    writer: W,
    outbound: OutboundReceiver,
    /// Frames taken from the queue and not yet all written.
    frames: Frames,
    /// How much of `frames` is written already.
    written: usize,
    /// Bytes were written since the last flush (TLS buffers what it encrypts).
    unflushed: bool,
    /// Whether the queue knows this task as the writer's (see `poll`).
    bound: bool,
    phase: Phase,
}

enum Phase {
    /// Writing frames as they are queued.
    Running,
    /// Told to finish: writing what is left, then FIN, before the deadline.
    Flushing(Pin<Box<Sleep>>),
    ShuttingDown(Pin<Box<Sleep>>),
    Done,
}

impl<W: StreamWriter> Writing<W> {
    pub(super) fn new(writer: W, outbound: OutboundReceiver) -> Self {
        if let Some(socket) = writer.shared_socket() {
            outbound.share_socket(socket);
        }
        Self {
            writer,
            outbound,
            frames: Frames::default(),
            written: 0,
            unflushed: false,
            bound: false,
            phase: Phase::Running,
        }
    }

    pub(super) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// From now on no more sends are accepted; `Flush` writes what was
    /// accepted (within `flush_timeout`), `Abandon` drops it.
    pub(super) fn finish(&mut self, finish: Finish, flush_timeout: Duration) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        match finish {
            Finish::Flush => {
                self.outbound.close();
                self.phase = Phase::Flushing(Box::pin(tokio::time::sleep(flush_timeout)));
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
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.bound {
            // Here, not when built: this runs in the connection's own task.
            // Its sends then need not wake the writer, which it polls after them.
            self.outbound.polled_after_senders_in_this_task();
            self.bound = true;
        }
        let polled = match &mut self.phase {
            Phase::Running => self.poll_queue(cx),
            Phase::Flushing(deadline) => {
                if deadline.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(flush_timed_out()))
                } else {
                    self.poll_queue(cx)
                }
            }
            Phase::ShuttingDown(deadline) => {
                if deadline.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(flush_timed_out()))
                } else {
                    Pin::new(&mut self.writer).poll_shutdown(cx)
                }
            }
            Phase::Done => return Poll::Ready(Ok(())),
        };
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => {
                self.abandon();
                Poll::Ready(Err(error))
            }
            Poll::Ready(Ok(())) => {
                self.phase = match std::mem::replace(&mut self.phase, Phase::Done) {
                    Phase::Flushing(deadline) => Phase::ShuttingDown(deadline),
                    _ => Phase::Done,
                };
                if self.is_done() {
                    Poll::Ready(Ok(()))
                } else {
                    self.poll(cx)
                }
            }
        }
    }

    /// Writes frames as they are queued, until the queue is closed and
    /// empty (while running, it is closed only when the writing side ends).
    fn poll_queue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.frames.is_empty() {
                ready!(self.poll_write(cx))?;
            }
            match self.outbound.poll_take(cx, &mut self.frames) {
                Poll::Ready(true) => {}
                Poll::Ready(false) => return self.poll_flush(cx),
                Poll::Pending => {
                    // Nothing more to write for now: what a TLS stream still
                    // holds goes out, or a reply could wait for the next one.
                    ready!(self.poll_flush(cx))?;
                    return Poll::Pending;
                }
            }
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unflushed {
            ready!(Pin::new(&mut self.writer).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the rest of `frames`, then gives them back to the queue.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let bytes = self.frames.bytes();
        while self.written < bytes.len() {
            match ready!(Pin::new(&mut self.writer).poll_write(cx, &bytes[self.written..])) {
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

fn flush_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "flushing the outbound queue timed out",
    )
}
