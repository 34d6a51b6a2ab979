//! The writing side of a connection's task: all frames queued at a moment
//! leave in one write, as soon as they are queued, until the reading side
//! says to finish; then the rest is flushed (within the shutdown timeout)
//! and FIN sent or, for a peer that does not read, abandoned.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::Finish;
use crate::outbound::{Frames, OutboundReceiver};
use crate::stream::StreamWriter;

/// Writes queued frames until `finish` says to stop; then flushes the rest
/// (bounded by `flush_timeout`) and sends FIN, or abandons the queue.
pub(super) async fn write_loop(
    mut writer: impl StreamWriter,
    mut outbound: OutboundReceiver,
    finish: &Finish,
    flush_timeout: Duration,
) -> io::Result<()> {
    outbound.polled_after_senders_in_this_task();
    let mut frames = Frames::default();
    // How much of `frames` is written already.
    let mut written = 0;
    let flush = poll_fn(|cx| {
        loop {
            if finish.abandoning() {
                return Poll::Ready(Ok(false));
            }
            if !frames.is_empty() {
                match poll_write(&mut writer, cx, &frames, &mut written) {
                    Poll::Ready(Ok(())) => {
                        outbound.written(&mut frames);
                        written = 0;
                        continue;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    // A peer that stops reading blocks this write: a finish
                    // must still be heard, or closing would wait forever.
                    Poll::Pending if finish.flushing() => return Poll::Ready(Ok(true)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if finish.flushing() {
                return Poll::Ready(Ok(true));
            }
            match outbound.poll_take(cx, &mut frames) {
                Poll::Ready(true) => {}
                Poll::Ready(false) => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await?;
    // No more sends are accepted from here on; what was accepted is written.
    outbound.close();
    if !flush {
        return Ok(());
    }
    let rest = async {
        poll_fn(|cx| {
            loop {
                if !frames.is_empty() {
                    ready!(poll_write(&mut writer, cx, &frames, &mut written))?;
                    outbound.written(&mut frames);
                    written = 0;
                }
                if !ready!(outbound.poll_take(cx, &mut frames)) {
                    return Poll::Ready(Ok::<(), io::Error>(()));
                }
            }
        })
        .await?;
        writer.shutdown().await
    };
    // Boxed: the timer and the flush take memory only while closing.
    Box::pin(within_flush_timeout(flush_timeout, rest)).await
}

/// Writes what is left of `frames` after its first `written` bytes.
fn poll_write(
    writer: &mut impl StreamWriter,
    cx: &mut Context<'_>,
    frames: &Frames,
    written: &mut usize,
) -> Poll<io::Result<()>> {
    let bytes = frames.bytes();
    while *written < bytes.len() {
        match ready!(Pin::new(&mut *writer).poll_write(cx, &bytes[*written..])) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => *written += n,
            Err(error) => return Poll::Ready(Err(error)),
        }
    }
    Poll::Ready(Ok(()))
}

/// Runs a write the closing connection waits for, at most `flush_timeout`.
async fn within_flush_timeout(
    flush_timeout: Duration,
    write: impl Future<Output = io::Result<()>>,
) -> io::Result<()> {
    tokio::time::timeout(flush_timeout, write)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "flushing the outbound queue timed out",
            ))
        })
}
