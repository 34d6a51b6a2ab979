//! The stream driver: one task per connection over any byte stream split
//! into a [`StreamReader`] and a [`StreamWriter`] (TCP, TLS, in-memory
//! pipes; a new stream transport is a constructor, not a copy of this).
//!
//! The per-connection task: read → decode → classify once → after_receive →
//! route → handler, one event at a time; beside it, in the same task, a
//! writer fed by the bounded outbound queue that writes all ready frames in
//! one write. Closing is "stop reading, handle what was read, flush, FIN,
//! drain the peer's leftovers, close", so neither side loses what was accepted.
//!
//! Every wake-up of every connection runs through here, and every idle
//! connection holds this task's state, so both stay small: the waits are
//! hand-written polls (readiness, the close signal, the outbound queue)
//! with no timer (the server's deadline sweeper closes connections that
//! time out), and the state of an activity is boxed only while it runs.

mod driver;
mod io;
mod reading;
mod writing;

pub(crate) use io::{StreamReader, StreamWriter};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::connection::Connection;
use crate::connection::outbound::OutboundReceiver;
use crate::events::finished;

/// Serves one accepted connection until it ends; fires on_disconnect exactly
/// once, even when the shutdown deadline cuts the connection short. `held`
/// (a place under the connection limits, say) is dropped at the very end.
pub(crate) fn run(
    reader: impl StreamReader,
    writer: impl StreamWriter,
    connection: Connection,
    outbound: OutboundReceiver,
    held: impl Send + Unpin,
) -> impl Future<Output = ()> + Send {
    Task {
        driver: Some(driver::Driver::new(reader, writer, connection, outbound)),
        _held: held,
    }
}

/// A connection's task: its driver, then the connection's end, in this
/// order: the driver (socket and writer) is dropped, the connection leaves
/// the server's list, and `held` goes with the task. So a connection missing
/// from the list has its socket closed, and a place under the limits is
/// free only once the connection that held it is no longer listed (the
/// list never shows more connections than the limits allow).
struct Task<D, H> {
    driver: Option<D>,
    _held: H,
}

impl<D: Future<Output = driver::Ended> + Unpin, H: Unpin> Future for Task<D, H> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = self.driver.as_mut() else {
            return Poll::Ready(());
        };
        let ended = ready!(Pin::new(driver).poll(cx));
        self.driver = None;
        finished(&ended.connection, ended.aborted);
        // `held` is dropped with the task, right after this returns.
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::classify::ClientFraming;
    use crate::config::Limits;
    use crate::connection::Endpoint;
    use crate::connection::endpoint::Handlers;
    use crate::connection::outbound::Transport;
    use crate::framing::Framing;
    use crate::handler::Router;

    fn context() -> Arc<Endpoint> {
        let handlers = Handlers {
            routes: Router::new().resolve(None, false).unwrap(),
            app_state: None,
            classifier: None,
        };
        Endpoint::new(
            handlers,
            Framing::lines(),
            ClientFraming::default(),
            Limits::default(),
            None,
        )
    }

    /// Every idle connection holds this task's future, and nothing else of
    /// its own but the connection: it is much of what an idle connection
    /// costs (the target is at most 2 KiB per idle connection, RSS included;
    /// 1.76 KiB measured with this task at 328 bytes plus a server's 48-byte
    /// `Admission`, and the echo handler's future kept in the slot).
    /// A client's stream and the server's end of it, over loopback.
    async fn connected() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        (client, accepted)
    }

    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let (_client, accepted) = connected().await;
        let context = context();
        let peer = accepted.peer_addr().unwrap();
        let (connection, receiver) = context.open(peer, peer, Transport::Stream).unwrap();
        let (reader, writer) = accepted.into_split();
        let task_size = std::mem::size_of_val(&run(reader, writer, connection, receiver, ()));
        eprintln!("connection task {task_size} bytes");
        assert!(
            task_size <= 336,
            "an idle connection's task grew to {task_size} bytes"
        );
    }

    /// Records how many connections the server lists when it is dropped.
    struct ListedAtDrop {
        context: Arc<Endpoint>,
        listed: Arc<AtomicUsize>,
    }

    impl ListedAtDrop {
        fn new(context: &Arc<Endpoint>) -> (Self, Arc<AtomicUsize>) {
            let listed = Arc::new(AtomicUsize::new(usize::MAX));
            let recorder = Self {
                context: Arc::clone(context),
                listed: Arc::clone(&listed),
            };
            (recorder, listed)
        }
    }

    impl Drop for ListedAtDrop {
        fn drop(&mut self) {
            let listed = self.context.connections.len();
            self.listed.store(listed, Ordering::SeqCst);
        }
    }

    /// A socket that records, when it is closed, how many connections the
    /// server lists.
    struct ObservedSocket {
        stream: TcpStream,
        _closed: ListedAtDrop,
    }

    impl AsyncRead for ObservedSocket {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.stream).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for ObservedSocket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.stream).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.stream).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.stream).poll_shutdown(cx)
        }
    }

    /// The end of a connection goes in this order: its socket is closed,
    /// it leaves the server's list, and then what it held (a place under
    /// the limits) is given back. So a connection missing from the list
    /// has let go of its socket, and the list never shows more connections
    /// than the limits allow.
    #[tokio::test]
    async fn a_connection_is_unlisted_after_its_socket_closes_and_before_its_place_is_free() {
        let (client, accepted) = connected().await;
        let peer = accepted.peer_addr().unwrap();
        let context = context();
        let (connection, receiver) = context.open(peer, peer, Transport::Stream).unwrap();
        context.register(&connection);
        let (closed, listed_at_close) = ListedAtDrop::new(&context);
        let (held, listed_at_release) = ListedAtDrop::new(&context);
        let socket = ObservedSocket {
            stream: accepted,
            _closed: closed,
        };
        let (reader, writer) = tokio::io::split(socket);
        drop(client);
        let task = run(reader, writer, connection, receiver, held);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the connection ends when the peer closes");
        assert_eq!(
            listed_at_close.load(Ordering::SeqCst),
            1,
            "the socket closes while the connection is still listed"
        );
        assert_eq!(
            listed_at_release.load(Ordering::SeqCst),
            0,
            "the place is given back once the connection is unlisted"
        );
    }
}
