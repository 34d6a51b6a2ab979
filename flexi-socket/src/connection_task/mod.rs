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

mod reading;
mod writing;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::connection::{Connection, DisconnectReason};
use crate::dispatch::report;
use crate::error::Error;
use crate::outbound::OutboundReceiver;
use crate::pipeline::{on_connect, on_disconnect, until_aborted};
use crate::stream::{StreamReader, StreamWriter};

/// Serves one accepted connection until it ends; fires on_disconnect exactly
/// once, even when the shutdown deadline cuts the connection short.
pub(crate) async fn run(
    reader: impl StreamReader,
    writer: impl StreamWriter,
    connection: Connection,
    outbound: OutboundReceiver,
) {
    let disconnected = AtomicBool::new(false);
    until_aborted(
        &connection,
        &disconnected,
        Box::pin(serve(reader, writer, &connection, outbound, &disconnected)),
    )
    .await;
}

/// What the reading side tells the writing side (they share one task).
pub(super) struct Finish(AtomicU8);

impl Finish {
    const WRITING: u8 = 0;
    /// Write everything queued, then FIN.
    const FLUSH: u8 = 1;
    /// The peer does not read: give up on the queue.
    const ABANDON: u8 = 2;

    fn new() -> Self {
        Self(AtomicU8::new(Self::WRITING))
    }

    fn set(&self, mode: u8) {
        self.0.store(mode, Ordering::Release);
    }

    fn flushing(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::FLUSH
    }

    fn abandoning(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::ABANDON
    }
}

async fn serve(
    mut reader: impl StreamReader,
    writer: impl StreamWriter,
    connection: &Connection,
    outbound: OutboundReceiver,
    disconnected: &AtomicBool,
) {
    let finish = Finish::new();
    let write_error = Mutex::new(None);
    let flush_timeout = connection.server().limits.shutdown_timeout;

    // Biased, reader first: replies a handler just queued are written in
    // the same poll, and the writer learns of `finish` in the poll that
    // set it, with no wake-up between the two.
    let (reason, ()) = tokio::join!(
        biased;
        async {
            // Cold or occasional steps are boxed: they then take memory only while
            // they run, not for the whole life of every idle connection's task.
            let reason = match Box::pin(on_connect(connection)).await {
                ControlFlow::Continue(()) => reading::read_loop(connection, &mut reader).await,
                ControlFlow::Break(reason) => reason,
            };
            let failed_write = write_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(error) = failed_write {
                report(connection, Error::Io(error)).await;
            }
            tracing::debug!(%reason, "disconnecting");
            // From now on the connection reports itself closing (a client's
            // sends then go to its outbox); sends from on_disconnect still work.
            connection.close_because(reason.clone());
            Box::pin(on_disconnect(connection, reason.clone())).await;
            disconnected.store(true, Ordering::Relaxed);
            finish.set(if reason == DisconnectReason::SlowConsumer {
                Finish::ABANDON
            } else {
                Finish::FLUSH
            });
            reason
        },
        async {
            if let Err(error) = writing::write_loop(writer, outbound, &finish, flush_timeout).await {
                connection.close_because(DisconnectReason::Reset(error.to_string()));
                *write_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
            }
        }
    );
    if peer_may_still_send(&reason) {
        Box::pin(drain_input(&mut reader, connection.server().limits.linger)).await;
    }
}

/// After our FIN, the peer's unread bytes would turn close() into a RST that
/// destroys our last replies in flight; so read and drop them for a while.
fn peer_may_still_send(reason: &DisconnectReason) -> bool {
    !matches!(
        reason,
        DisconnectReason::PeerClosed | DisconnectReason::Reset(_)
    )
}

async fn drain_input(reader: &mut impl StreamReader, linger: Duration) {
    // On the heap: an array here would sit in every connection's task for its whole life.
    let mut sink = vec![0_u8; 1024];
    let _ = tokio::time::timeout(linger, async {
        while let Ok(1..) = reader.read(&mut sink).await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::client_framing::ClientFraming;
    use crate::framing::Framing;
    use crate::limits::Limits;
    use crate::outbound::{self, Transport};
    use crate::router::Router;
    use crate::server::ServerContext;

    /// Every idle connection holds this task and its boxed `serve` future:
    /// together they are much of what an idle connection costs (the target
    /// is at most 2 KiB per idle connection, RSS included).
    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let routes = Router::new().resolve(None, false).unwrap();
        let limits = Limits::default();
        let context = ServerContext::new(
            routes,
            None,
            None,
            Framing::lines(),
            ClientFraming::default(),
            limits,
            None,
        );
        let (sender, receiver) = outbound::channel(&context.limits, Transport::Stream);
        let peer = client.local_addr().unwrap();
        let connection = Connection::new(1, peer, peer, Arc::clone(&context), sender).unwrap();
        let flag = AtomicBool::new(false);
        let (reader, writer) = client.into_split();
        let (_sender, second) = outbound::channel(&context.limits, Transport::Stream);
        let (reader2, writer2) = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap()
            .into_split();
        let serve_size =
            std::mem::size_of_val(&serve(reader2, writer2, &connection, second, &flag));
        let task_size = std::mem::size_of_val(&run(reader, writer, connection, receiver));
        eprintln!("connection task {task_size} bytes + serve {serve_size} bytes");
        assert!(
            task_size + serve_size <= 1152,
            "an idle connection's task grew to {task_size} + {serve_size} bytes"
        );
    }
}
