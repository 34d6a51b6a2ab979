//! The byte streams a connection runs on (TCP, TLS, Unix, in-memory) and
//! how they read without making idle connections hold a read buffer. One
//! task reads and writes a connection, so a stream is never split into
//! halves (each would be another pointer in every connection's task, and
//! tokio's split another lock per poll).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use super::tcp::SharedTcpStream;
use crate::connection::outbound::SocketWrite;
use crate::spare::READ_BUFFERS;

/// A connection's byte stream.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Reads into `buffer`, with room for at least `chunk` bytes. A stream
    /// that can wait for data without a buffer does so when `buffer` is
    /// empty, so an idle connection holds none.
    fn poll_read_lazily(
        &mut self,
        cx: &mut Context<'_>,
        buffer: &mut BytesMut,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        buffer.reserve(chunk);
        poll_read_buf(Pin::new(self), cx, buffer)
    }

    /// The socket under this stream, if senders may write to it while the
    /// writer is idle (see `outbound::WrittenBy`): a plain socket only,
    /// not a stream that encrypts or buffers what it writes.
    fn shared_socket(&self) -> Option<Arc<dyn SocketWrite>> {
        None
    }

    /// Whether a connection on this stream can rest: its task ends while
    /// nothing happens, and the socket's readiness brings it back (see
    /// `rest`). A stream that buffers what it reads (TLS) cannot: readiness
    /// of the socket under it says nothing about its own bytes.
    const CAN_REST: bool = false;

    /// Registers `cx` to be woken once bytes (or the peer's close) can be
    /// read; `Ready` if they can now. Only called where [`Self::CAN_REST`].
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}

impl Stream for SharedTcpStream {
    fn poll_read_lazily(
        &mut self,
        cx: &mut Context<'_>,
        buffer: &mut BytesMut,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        if !buffer.is_empty() {
            // A partial frame is waiting for its rest: keep reading into it.
            buffer.reserve(chunk);
            return poll_read_buf(Pin::new(self), cx, buffer);
        }
        loop {
            // Nothing buffered: the allocation goes back to the thread's spare
            // before waiting, so an idle connection holds no read buffer.
            if buffer.capacity() > 0 {
                READ_BUFFERS.give_back(buffer);
            }
            ready!(self.socket().poll_read_ready(cx))?;
            READ_BUFFERS.take(buffer);
            buffer.reserve(chunk);
            match try_read_draining(self.socket(), buffer) {
                Ok(0) => return Poll::Ready(self.at_eof().map(|()| 0)),
                Ok(read) => return Poll::Ready(Ok(read)),
                // Readiness was stale (and is now cleared): wait again.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    fn shared_socket(&self) -> Option<Arc<dyn SocketWrite>> {
        Some(SharedTcpStream::shared_socket(self))
    }

    const CAN_REST: bool = true;

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        // An error is ready too: the read that follows meets it.
        self.socket().poll_read_ready(cx).map(|_| ())
    }
}

/// Reads what is there without waiting. With an edge-triggered selector
/// (epoll, kqueue) a short read means the socket's queue is drained, so
/// readiness is cleared as well, the way tokio's own `poll_read` does it on
/// the same systems (tokio issue #5866): otherwise the next `readable()`
/// returns at once on stale readiness and costs a read that fails with
/// `WouldBlock`, one wasted syscall per message in request/response traffic.
/// Clearing is safe: tokio clears only if no new readiness arrived since,
/// and never clears the closed state. Level-triggered selectors (Windows,
/// `poll`) re-arm only on a real `WouldBlock`: there, a plain read.
fn try_read_draining(socket: &TcpStream, buffer: &mut BytesMut) -> io::Result<usize> {
    const EDGE_TRIGGERED: bool = cfg!(any(
        target_os = "android",
        target_os = "illumos",
        target_os = "linux",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "ios",
        target_os = "macos",
        target_os = "netbsd",
        target_os = "openbsd",
    ));
    if !EDGE_TRIGGERED {
        return socket.try_read_buf(buffer);
    }
    let room = buffer.capacity() - buffer.len();
    let mut read = None;
    let outcome = socket.try_io(Interest::READABLE, || {
        let n = socket.try_read_buf(buffer)?;
        read = Some(n);
        if 0 < n && n < room {
            // Not an error: `try_io` clears readiness on `WouldBlock` only.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match read {
        Some(n) => Ok(n),
        // The read itself failed: `outcome` holds its error.
        None => outcome.map(|()| 0),
    }
}

/// A Unix socket reads with a buffer ready (while it runs; a resting
/// connection holds none).
#[cfg(unix)]
impl Stream for tokio::net::UnixStream {
    const CAN_REST: bool = true;

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        tokio::net::UnixStream::poll_read_ready(self, cx).map(|_| ())
    }
}

/// In-memory pipes (the testing harness's), with a buffer ready.
#[cfg(any(test, feature = "testing"))]
impl Stream for tokio::io::DuplexStream {}
