//! The per-connection task: read → decode → classify once → after_receive →
//! route → handler, one event at a time; beside it, in the same task, a
//! writer fed by the bounded outbound queue that coalesces ready frames into
//! one write. Closing is "stop reading, handle what was read, flush, FIN,
//! drain the peer's leftovers, close", so neither side loses what was accepted.

use std::io;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::connection::{Connection, DisconnectReason, Stage};
use crate::connection_decoder::{ConnectionDecoder, Prepared};
use crate::deadlines::{Clock, idle_timer, wait_for};
use crate::dispatch::report;
use crate::error::Error;
use crate::framing::Decoded;
use crate::handler::HandlerSlot;
use crate::outbound::{Frames, OutboundReceiver};
use crate::pipeline::{on_connect, on_disconnect, on_frame, until_aborted};
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

/// How the writer ends.
enum Finish {
    /// Write everything queued, then FIN.
    Flush,
    /// The peer does not read: give up on the queue.
    Abandon,
}

async fn serve(
    mut reader: impl StreamReader,
    writer: impl StreamWriter,
    connection: &Connection,
    outbound: OutboundReceiver,
    disconnected: &AtomicBool,
) {
    let (finish, finish_signal) = oneshot::channel();
    let (written, written_signal) = oneshot::channel::<()>();
    let write_error = Mutex::new(None);
    let flush_timeout = connection.server().limits.shutdown_timeout;

    // The halves are built inside join!, not as locals first: see `run`.
    // Biased, reader first: replies a handler just queued are written in
    // the same poll, without waiting for another turn of the task.
    tokio::join!(
        biased;
        async {
            // Cold or occasional steps are boxed: they then take memory only while
            // they run, not for the whole life of every idle connection's task.
            let reason = match Box::pin(on_connect(connection)).await {
                ControlFlow::Continue(()) => read_loop(connection, &mut reader).await,
                ControlFlow::Break(reason) => reason,
            };
            let failed_write = write_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(error) = failed_write {
                Box::pin(report(connection, Error::Io(error))).await;
            }
            tracing::debug!(%reason, "disconnecting");
            // From now on the connection reports itself closing (a client's
            // sends then go to its outbox); sends from on_disconnect still work.
            connection.close_because(reason.clone());
            Box::pin(on_disconnect(connection, reason.clone())).await;
            disconnected.store(true, Ordering::Relaxed);
            let mode = if reason == DisconnectReason::SlowConsumer {
                Finish::Abandon
            } else {
                Finish::Flush
            };
            let _ = finish.send(mode);
            let _ = written_signal.await;
            if peer_may_still_send(&reason) {
                Box::pin(drain_input(&mut reader, connection.server().limits.linger)).await;
            }
        },
        async {
            if let Err(error) = write_loop(writer, outbound, finish_signal, flush_timeout).await {
                connection.close_because(DisconnectReason::Reset(error.to_string()));
                *write_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
            }
            let _ = written.send(());
        }
    );
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

/// Before classification the buffer may not grow past the first-message cap,
/// so a client cannot hold its classification (and our memory) hostage.
fn first_message_too_long(connection: &Connection, buffer: &BytesMut) -> Option<DisconnectReason> {
    let server = connection.server();
    let cap = server.limits.first_message_max_length;
    (server.classifier.is_some() && connection.is_first_message() && buffer.len() > cap)
        .then(|| DisconnectReason::Limit(format!("first message longer than {cap} bytes")))
}

async fn read_loop(connection: &Connection, reader: &mut impl StreamReader) -> DisconnectReason {
    let server = connection.server();
    let mut decoder = match ConnectionDecoder::new(connection) {
        Ok(decoder) => decoder,
        Err(error) => {
            Box::pin(report(connection, error)).await;
            return DisconnectReason::FramingFailed;
        }
    };
    let mut buffer = BytesMut::new();
    let mut clock = Clock::new(server);
    let timer = idle_timer();
    tokio::pin!(timer);
    let closed = connection.close_signal().reached_by_driver(Stage::Closing);
    tokio::pin!(closed);
    loop {
        // Every complete frame already read is handled, even after close():
        // nothing read is lost.
        let buffered = buffer.len();
        if let ControlFlow::Break(reason) =
            Box::pin(drain(connection, &mut decoder, &mut buffer, Drain::Ready)).await
        {
            return reason;
        }
        let framed_some = buffer.len() < buffered;
        if let Some(reason) = connection.close_reason() {
            // Reading stops here: whatever the framing can still make of the
            // buffer is delivered (eof, raw, idle_gap) or reported as truncated.
            if let ControlFlow::Break(reason) =
                Box::pin(drain(connection, &mut decoder, &mut buffer, Drain::Eof)).await
            {
                return reason;
            }
            return reason;
        }
        if let Some(reason) = first_message_too_long(connection, &buffer) {
            return reason;
        }
        let partial_frame = !buffer.is_empty() && decoder.frame_deadline_applies();
        clock.pending_bytes(partial_frame, framed_some);
        let (deadline, expired) = clock.next_deadline(connection.is_first_message());
        let idle_gap = decoder
            .current()
            .idle_gap()
            .filter(|_| decoder.current().wants_idle_timer(&buffer));
        let read = tokio::select! {
            biased;
            () = &mut closed => continue,
            () = wait_for(timer.as_mut(), deadline) => {
                tracing::info!(reason = %expired, "closing");
                return expired;
            }
            read = read_some(reader, &mut buffer, idle_gap) => read,
        };
        let mode = match read {
            Ok(Some(0)) => Drain::Eof,
            Ok(Some(_)) => {
                clock.read_now();
                continue;
            }
            Ok(None) => Drain::Idle,
            Err(error) => {
                let reason = DisconnectReason::Reset(error.to_string());
                Box::pin(report(connection, Error::Io(error))).await;
                return reason;
            }
        };
        if let ControlFlow::Break(reason) =
            Box::pin(drain(connection, &mut decoder, &mut buffer, mode)).await
        {
            return reason;
        }
        if matches!(mode, Drain::Eof) {
            return DisconnectReason::PeerClosed;
        }
    }
}

/// Reads once; `Ok(None)` means the idle gap elapsed (armed only while the
/// idle-gap framing has a message pending or a burst to discard).
async fn read_some(
    reader: &mut impl StreamReader,
    buffer: &mut BytesMut,
    idle_gap: Option<Duration>,
) -> io::Result<Option<usize>> {
    match idle_gap {
        // Boxed: only idle-gap framing pays for the timer, and only while reading.
        Some(gap) => match Box::pin(tokio::time::timeout(gap, reader.read_lazily(buffer))).await {
            Ok(read) => read.map(Some),
            Err(_elapsed) => Ok(None),
        },
        None => reader.read_lazily(buffer).await.map(Some),
    }
}

/// What the framing is asked for.
#[derive(Clone, Copy)]
enum Drain {
    /// Complete frames in the buffer.
    Ready,
    /// The idle gap elapsed: the pending bytes are a message.
    Idle,
    /// The peer sent FIN: whatever the framing can still make of the buffer.
    Eof,
}

/// Handles every frame the decoder yields in `mode`. An unrecoverable framing
/// error ends the connection; recoverable ones are reported and skipped.
async fn drain(
    connection: &Connection,
    decoder: &mut ConnectionDecoder,
    buffer: &mut BytesMut,
    mode: Drain,
) -> ControlFlow<DisconnectReason> {
    // The frames of one read share it: their handler futures take turns in
    // one allocation, freed when the buffer is drained.
    let mut slot = HandlerSlot::default();
    loop {
        // A gap of silence ends a first unit as surely as EOF does.
        let at_end = matches!(mode, Drain::Eof | Drain::Idle);
        // Boxed: only a connection not yet classified has work to do here.
        if !decoder.is_settled()
            && Box::pin(decoder.prepare(connection, buffer, at_end)).await? == Prepared::NeedsBytes
        {
            return ControlFlow::Continue(());
        }
        let decoder = decoder.current();
        let decoded = match mode {
            Drain::Ready => decoder.decode(buffer),
            Drain::Idle => decoder.decode_idle(buffer),
            Drain::Eof => decoder.decode_eof(buffer),
        };
        let flow = match decoded {
            Ok(Some(Decoded::Frame(frame))) => on_frame(connection, frame, &mut slot).await,
            Ok(Some(Decoded::Discarded(error))) => {
                report(connection, *error).await;
                ControlFlow::Continue(())
            }
            Ok(None) => return ControlFlow::Continue(()),
            Err(error) => {
                report(connection, *error).await;
                ControlFlow::Break(DisconnectReason::FramingFailed)
            }
        };
        if flow.is_break() {
            return flow;
        }
    }
}

/// Writes queued frames until told to finish; then flushes the rest (bounded
/// by `flush_timeout`) and sends FIN, or abandons the queue.
async fn write_loop(
    mut writer: impl StreamWriter,
    mut outbound: OutboundReceiver,
    mut finish: oneshot::Receiver<Finish>,
    flush_timeout: Duration,
) -> io::Result<()> {
    outbound.polled_after_senders_in_this_task();
    let mut frames = Frames::default();
    let mode = loop {
        tokio::select! {
            biased;
            more = outbound.take(&mut frames) => {
                if !more {
                    break Finish::Flush;
                }
                // A peer that stops reading blocks this write: `finish`
                // must still be heard, or closing would wait forever.
                let write = write(&mut writer, &outbound, &mut frames);
                tokio::pin!(write);
                let finished = tokio::select! {
                    biased;
                    written = &mut write => {
                        written?;
                        None
                    }
                    mode = &mut finish => Some(mode.unwrap_or(Finish::Flush)),
                };
                match finished {
                    None => {}
                    Some(Finish::Abandon) => return Ok(()),
                    Some(Finish::Flush) => {
                        within_flush_timeout(flush_timeout, write).await?;
                        break Finish::Flush;
                    }
                }
            }
            mode = &mut finish => break mode.unwrap_or(Finish::Flush),
        }
    };
    // No more sends are accepted from here on; what was accepted is written.
    outbound.close();
    if let Finish::Abandon = mode {
        return Ok(());
    }
    let flush = async {
        while outbound.take(&mut frames).await {
            write(&mut writer, &outbound, &mut frames).await?;
        }
        writer.shutdown().await
    };
    // Boxed: the timer and the flush take memory only while closing.
    Box::pin(within_flush_timeout(flush_timeout, flush)).await
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

/// Writes `frames`, taken from the queue, in one write.
async fn write(
    writer: &mut impl StreamWriter,
    outbound: &OutboundReceiver,
    frames: &mut Frames,
) -> io::Result<()> {
    writer.write_all(frames.bytes()).await?;
    outbound.written(frames);
    Ok(())
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
    /// together they are most of what an idle connection costs (the target is
    /// at most 2 KiB per idle connection, RSS included).
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
            task_size + serve_size <= 2048,
            "an idle connection's task grew to {task_size} + {serve_size} bytes"
        );
    }
}
