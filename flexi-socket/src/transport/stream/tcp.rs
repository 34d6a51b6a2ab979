//! A TCP connection's stream over a shared socket: the outbound queue keeps
//! the socket too while the writer runs, so a broadcast can write a frame
//! that finds the writer idle itself, without waking the connection's task.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::connection::outbound::SocketWrite;

/// The stream a connection task reads and writes `stream` through.
pub(crate) fn shared(stream: TcpStream) -> SharedTcpStream {
    SharedTcpStream(Arc::new(Socket {
        stream,
        senders_error: AtomicI32::new(0),
    }))
}

/// The socket the connection's task and its outbound queue share.
#[derive(Debug)]
struct Socket {
    stream: TcpStream,
    /// The OS error a sender's write met (0: none). The kernel reports a
    /// socket's error (a reset) once: taken by a sender, it would leave
    /// the reader an orderly EOF, so the reader reports it in its place.
    senders_error: AtomicI32,
}

/// A connection task's stream. Dropped, it sends no FIN of its own: the
/// socket closes when the connection's task ends (with it, the queue lets
/// it go).
#[derive(Debug)]
pub(crate) struct SharedTcpStream(Arc<Socket>);

impl SharedTcpStream {
    pub(super) fn socket(&self) -> &TcpStream {
        &self.0.stream
    }

    /// What an EOF means: the error a sender took from the socket, if any.
    pub(super) fn at_eof(&self) -> io::Result<()> {
        self.0.senders_error().map_or(Ok(()), Err)
    }

    /// The socket, for the outbound queue (see `SocketWrite`).
    pub(super) fn shared_socket(&self) -> Arc<dyn SocketWrite> {
        Arc::clone(&self.0) as Arc<dyn SocketWrite>
    }
}

impl Socket {
    fn senders_error(&self) -> Option<io::Error> {
        match self.senders_error.load(Ordering::Relaxed) {
            0 => None,
            code => Some(io::Error::from_raw_os_error(code)),
        }
    }
}

impl AsyncRead for SharedTcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.stream.poll_read_ready(cx))?;
            // A `WouldBlock` clears the stale readiness: wait again.
            match self.0.stream.try_read_buf(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Ok(0) if buf.remaining() > 0 => return Poll::Ready(self.at_eof()),
                read => return Poll::Ready(read.map(drop)),
            }
        }
    }
}

impl AsyncWrite for SharedTcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.stream.poll_write_ready(cx))?;
            match self.0.stream.try_write(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // After a sender took the socket's error, a write meets only
                // a broken pipe: the taken error is the one to report.
                Err(error) => return Poll::Ready(Err(self.0.senders_error().unwrap_or(error))),
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// FIN: the write side of the socket is shut, the read side stays open.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&self.0.stream).shutdown(Shutdown::Write))
    }
}

impl SocketWrite for Socket {
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.stream.try_write(bytes);
        if let Err(error) = &written
            && let Some(code) = error.raw_os_error()
            && error.kind() != io::ErrorKind::WouldBlock
        {
            // The first one: a later write meets only what followed it.
            let _ =
                self.senders_error
                    .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
        }
        written
    }
}
