//! A TCP connection's halves over one shared socket. Unlike tokio's
//! `into_split`, the socket stays reachable beside them: the outbound queue
//! keeps it while the writer runs, so a broadcast can write a frame that
//! finds the writer idle itself, without waking the connection's task.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::connection::outbound::SocketWrite;

/// Splits `stream` into the halves a connection task runs on.
pub(crate) fn split(stream: TcpStream) -> (TcpReader, TcpWriter) {
    let stream = Arc::new(stream);
    (TcpReader(Arc::clone(&stream)), TcpWriter(stream))
}

/// The read half.
#[derive(Debug)]
pub(crate) struct TcpReader(Arc<TcpStream>);

impl TcpReader {
    pub(super) fn socket(&self) -> &TcpStream {
        &self.0
    }
}

impl AsyncRead for TcpReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            // A `WouldBlock` clears the stale readiness: wait again.
            match self.0.try_read_buf(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                read => return Poll::Ready(read.map(drop)),
            }
        }
    }
}

/// The write half. Dropped, it sends no FIN of its own: the socket closes
/// when the connection's task ends (with it, the queue lets it go).
#[derive(Debug)]
pub(crate) struct TcpWriter(Arc<TcpStream>);

impl TcpWriter {
    /// The socket, for the outbound queue (see `SocketWrite`).
    pub(super) fn shared_socket(&self) -> Arc<dyn SocketWrite> {
        Arc::clone(&self.0) as Arc<dyn SocketWrite>
    }
}

impl AsyncWrite for TcpWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// FIN: the write side of the socket is shut, the read side stays open.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(Shutdown::Write))
    }
}

impl SocketWrite for TcpStream {
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, bytes)
    }
}
