//! The stream driver's state machines, driven over in-memory pipes and,
//! where the socket itself matters, loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::config::Limits;
use crate::connection::DisconnectReason;
use crate::connection::Endpoint;
use crate::connection::outbound::Transport;
use crate::error::Error;
use crate::handler::Router;

fn plain_endpoint() -> Arc<Endpoint> {
    endpoint(Router::new(), Limits::default())
}

fn endpoint(router: Router, limits: Limits) -> Arc<Endpoint> {
    Endpoint::for_tests(router, limits)
}

/// What the handlers of [`recording`] saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Message(String),
    Error(String),
    Disconnect(DisconnectReason),
}

/// Handlers that answer every line with `<line>` after `delay` (none: at
/// once, in the read's own poll), and record every event.
fn recording(delay: Option<Duration>) -> (Router, mpsc::UnboundedReceiver<Seen>) {
    let (seen, events) = mpsc::unbounded_channel();
    let (on_error, on_disconnect) = (seen.clone(), seen.clone());
    let router = Router::new()
        .on_message(move |conn: crate::Connection, line: String| {
            let seen = seen.clone();
            async move {
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                let _ = seen.send(Seen::Message(line.clone()));
                conn.send(format!("<{line}>")).await
            }
        })
        .on_error(move |_conn: crate::Connection, error: Error| {
            let _ = on_error.send(Seen::Error(error.to_string()));
            async {}
        })
        .on_disconnect(move |_conn: crate::Connection, reason: DisconnectReason| {
            let _ = on_disconnect.send(Seen::Disconnect(reason));
            async {}
        });
    (router, events)
}

/// A connection of `endpoint` served by the stream driver over an
/// in-memory pipe; the test holds the other end.
fn served(endpoint: &Arc<Endpoint>) -> (DuplexStream, Connection, tokio::task::JoinHandle<()>) {
    let (peer, ours) = tokio::io::duplex(1024);
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (connection, queue) = endpoint.open(addr, addr, Transport::Stream).unwrap();
    endpoint.register(&connection);
    let task = tokio::spawn(run(ours, connection.clone(), queue, ()));
    (peer, connection, task)
}

/// Everything the peer reads until the driver closes its side.
async fn read_to_end(peer: &mut DuplexStream) -> String {
    let mut read = String::new();
    tokio::time::timeout(Duration::from_secs(10), peer.read_to_string(&mut read))
        .await
        .expect("the driver closes its side")
        .unwrap();
    read
}

/// The events up to and including on_disconnect.
async fn until_disconnect(events: &mut mpsc::UnboundedReceiver<Seen>) -> Vec<Seen> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("on_disconnect runs")
            .expect("the handlers are still there");
        let last = matches!(event, Seen::Disconnect(_));
        seen.push(event);
        if last {
            return seen;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_frame_split_across_reads_is_delivered_once_whole() {
    let (router, mut events) = recording(None);
    let endpoint = endpoint(router, Limits::default());
    let (mut peer, _connection, task) = served(&endpoint);
    peer.write_all(b"hel").await.unwrap();
    // The driver reads the first half before the rest is written.
    tokio::time::sleep(Duration::from_millis(10)).await;
    peer.write_all(b"lo\nsecond\n").await.unwrap();
    peer.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut peer).await, "<hello>\n<second>\n");
    task.await.unwrap();
    assert_eq!(
        until_disconnect(&mut events).await,
        [
            Seen::Message("hello".into()),
            Seen::Message("second".into()),
            Seen::Disconnect(DisconnectReason::PeerClosed),
        ]
    );
}

/// A handler that waits moves the read's remaining frames to the boxed
/// drain; they are still handled in order, one at a time.
#[tokio::test(start_paused = true)]
async fn frames_behind_a_waiting_handler_are_handled_in_order_after_it() {
    let (router, mut events) = recording(Some(Duration::from_millis(50)));
    let endpoint = endpoint(router, Limits::default());
    let (mut peer, _connection, task) = served(&endpoint);
    peer.write_all(b"a\nb\nc\n").await.unwrap();
    peer.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut peer).await, "<a>\n<b>\n<c>\n");
    task.await.unwrap();
    let seen = until_disconnect(&mut events).await;
    assert_eq!(
        seen,
        [
            Seen::Message("a".into()),
            Seen::Message("b".into()),
            Seen::Message("c".into()),
            Seen::Disconnect(DisconnectReason::PeerClosed),
        ]
    );
}

#[tokio::test]
async fn a_frame_cut_by_eof_is_reported_not_delivered() {
    let (router, mut events) = recording(None);
    let endpoint = endpoint(router, Limits::default());
    let (mut peer, _connection, task) = served(&endpoint);
    peer.write_all(b"whole\ncut").await.unwrap();
    peer.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut peer).await, "<whole>\n");
    task.await.unwrap();
    let seen = until_disconnect(&mut events).await;
    assert_eq!(seen[0], Seen::Message("whole".into()));
    assert!(
        matches!(&seen[1], Seen::Error(text) if text.contains("3 bytes")),
        "{seen:?}"
    );
    assert_eq!(seen[2], Seen::Disconnect(DisconnectReason::PeerClosed));
}

/// Closing: reading stops, what was read is handled, the replies already
/// queued are written, then FIN.
#[tokio::test]
async fn close_flushes_the_replies_to_what_was_read_then_sends_fin() {
    let (router, mut events) = recording(None);
    let endpoint = endpoint(router, Limits::default());
    let (mut peer, connection, task) = served(&endpoint);
    peer.write_all(b"one\n").await.unwrap();
    let mut reply = [0; 6];
    peer.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"<one>\n");
    connection.send("bye").await.unwrap();
    connection.close();
    assert_eq!(read_to_end(&mut peer).await, "bye\n");
    // The driver lingers for what the peer still sends until it closes too.
    peer.shutdown().await.unwrap();
    task.await.unwrap();
    let seen = until_disconnect(&mut events).await;
    assert_eq!(
        seen.last(),
        Some(&Seen::Disconnect(DisconnectReason::Closed))
    );
    assert!(
        connection.send("late").await.is_err(),
        "a closed connection refuses sends"
    );
}

/// A peer that stops reading: the flush at close is bounded by the
/// shutdown timeout, then the queued replies are given up.
#[tokio::test(start_paused = true)]
async fn a_peer_that_never_reads_cannot_hold_the_close_forever() {
    let (router, _events) = recording(None);
    let limits = Limits {
        shutdown_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let endpoint = endpoint(router, limits);
    let (peer, connection, task) = served(&endpoint);
    // More than the pipe holds, so the writer waits on the peer.
    let big = "x".repeat(4096);
    for _ in 0..4 {
        connection.send(big.as_str()).await.unwrap();
    }
    connection.close();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the close ends after the flush timeout")
        .unwrap();
    assert!(
        connection.queued() > 0,
        "what could not be written is counted"
    );
    drop(peer);
}

/// A client's stream and the server's end of it, over loopback.
async fn connected() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    (client, accepted)
}

/// Every idle connection holds this task's future, and nothing else of
/// its own but the connection: it is much of what an idle connection
/// costs. tokio allocates a task as 104 bytes around its future, rounded
/// up to 128: a server's connection future is this one, its 24-byte
/// `Place` and the task tracker's 8-byte token, so at 248 bytes or less
/// the task takes 384 bytes, not 512 (and at 120 or less, 256). 232 since
/// the writer's frames hold a pointer, not an empty `Vec`, for the
/// datagram-only lengths.
#[tokio::test]
#[cfg(target_pointer_width = "64")]
async fn an_idle_connection_task_stays_small() {
    let (_client, accepted) = connected().await;
    let endpoint = plain_endpoint();
    let peer = accepted.peer_addr().unwrap();
    let (connection, receiver) = endpoint.open(peer, peer, Transport::Stream).unwrap();
    let stream = super::shared_tcp(accepted);
    let task_size = std::mem::size_of_val(&run(stream, connection, receiver, ()));
    eprintln!("connection task {task_size} bytes");
    assert!(
        task_size <= 232,
        "an idle connection's task grew to {task_size} bytes"
    );
}

/// Records how many connections the server lists when it is dropped.
struct ListedAtDrop {
    endpoint: Arc<Endpoint>,
    listed: Arc<AtomicUsize>,
}

impl ListedAtDrop {
    fn new(endpoint: &Arc<Endpoint>) -> (Self, Arc<AtomicUsize>) {
        let listed = Arc::new(AtomicUsize::new(usize::MAX));
        let recorder = Self {
            endpoint: Arc::clone(endpoint),
            listed: Arc::clone(&listed),
        };
        (recorder, listed)
    }
}

impl Drop for ListedAtDrop {
    fn drop(&mut self) {
        let listed = self.endpoint.connections.len();
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

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Stream for ObservedSocket {}

/// The end of a connection goes in this order: its socket is closed,
/// it leaves the server's list, and then what it held (a place under
/// the limits) is given back. So a connection missing from the list
/// has let go of its socket, and the list never shows more connections
/// than the limits allow.
#[tokio::test]
async fn a_connection_is_unlisted_after_its_socket_closes_and_before_its_place_is_free() {
    let (client, accepted) = connected().await;
    let peer = accepted.peer_addr().unwrap();
    let endpoint = plain_endpoint();
    let (connection, receiver) = endpoint.open(peer, peer, Transport::Stream).unwrap();
    endpoint.register(&connection);
    let (closed, listed_at_close) = ListedAtDrop::new(&endpoint);
    let (held, listed_at_release) = ListedAtDrop::new(&endpoint);
    let socket = ObservedSocket {
        stream: accepted,
        _closed: closed,
    };
    drop(client);
    let task = run(socket, connection, receiver, held);
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
