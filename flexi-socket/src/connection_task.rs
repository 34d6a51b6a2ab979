//! The per-connection task: read → decode → classify once → after_receive →
//! route → handler, one event at a time; beside it, in the same task, a
//! writer fed by the bounded outbound queue that coalesces ready frames into
//! one write. Closing is "stop reading, handle what was read, flush, FIN,
//! drain the peer's leftovers, close", so neither side loses what was accepted.

use std::io;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::connection::{Connection, DisconnectReason};
use crate::dispatch::{invoke, report};
use crate::error::Error;
use crate::framing::{Decoded, FrameDecoder};
use crate::handler::{EventContext, panic_message};
use crate::limits::PanicPolicy;
use crate::message::Message;
use crate::outbound::OutboundReceiver;
use crate::server::ServerContext;

/// How much room each read asks for.
const READ_CHUNK: usize = 8 * 1024;
/// Frames ready at once are copied into one buffer up to this size, then written.
const WRITE_BATCH: usize = 64 * 1024;
/// How long on_disconnect may take when the shutdown deadline already passed.
const LATE_DISCONNECT: Duration = Duration::from_secs(1);

/// Serves one accepted connection until it ends; fires on_disconnect exactly
/// once, even when the shutdown deadline cuts the connection short.
pub(crate) async fn run(stream: TcpStream, connection: Connection, outbound: OutboundReceiver) {
    let server = Arc::clone(connection.server());
    let disconnected = AtomicBool::new(false);
    tokio::select! {
        () = serve(stream, &connection, outbound, &disconnected) => {}
        () = server.abort.cancelled() => {
            let undelivered = connection.queued();
            server.note_aborted(undelivered);
            tracing::warn!(undelivered, "connection aborted at the shutdown deadline");
            if !disconnected.load(Ordering::Relaxed) {
                let late = on_disconnect(&connection, DisconnectReason::Shutdown);
                let _ = tokio::time::timeout(LATE_DISCONNECT, late).await;
            }
        }
    }
    // From here on the connection reports itself closing, and sends fail.
    connection.close_because(DisconnectReason::Closed);
    server.connections.remove(connection.id());
}

/// How the writer ends.
enum Finish {
    /// Write everything queued, then FIN.
    Flush,
    /// The peer does not read: give up on the queue.
    Abandon,
}

async fn serve(
    stream: TcpStream,
    connection: &Connection,
    outbound: OutboundReceiver,
    disconnected: &AtomicBool,
) {
    let (mut reader, writer) = stream.into_split();
    let (finish, finish_signal) = oneshot::channel();
    let (written, written_signal) = oneshot::channel::<()>();
    let write_error = Mutex::new(None);
    let flush_timeout = connection.server().limits.shutdown_timeout;

    let writing = async {
        if let Err(error) = write_loop(writer, outbound, finish_signal, flush_timeout).await {
            connection.close_because(DisconnectReason::Reset(error.to_string()));
            *write_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        }
        let _ = written.send(());
    };

    let reading = async {
        let reason = match on_connect(connection).await {
            ControlFlow::Continue(()) => read_loop(connection, &mut reader).await,
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
        on_disconnect(connection, reason.clone()).await;
        disconnected.store(true, Ordering::Relaxed);
        let mode = if reason == DisconnectReason::SlowConsumer {
            Finish::Abandon
        } else {
            Finish::Flush
        };
        let _ = finish.send(mode);
        let _ = written_signal.await;
        if peer_may_still_send(&reason) {
            drain_input(&mut reader, connection.server().limits.linger).await;
        }
    };

    tokio::join!(reading, writing);
}

/// After our FIN, the peer's unread bytes would turn close() into a RST that
/// destroys our last replies in flight; so read and drop them for a while.
fn peer_may_still_send(reason: &DisconnectReason) -> bool {
    !matches!(
        reason,
        DisconnectReason::PeerClosed | DisconnectReason::Reset(_)
    )
}

async fn drain_input(reader: &mut OwnedReadHalf, linger: Duration) {
    let mut sink = [0_u8; 1024];
    let _ = tokio::time::timeout(linger, async {
        while let Ok(1..) = reader.read(&mut sink).await {}
    })
    .await;
}

async fn on_connect(connection: &Connection) -> ControlFlow<DisconnectReason> {
    let Some(handler) = connection.routes().on_connect.clone() else {
        return ControlFlow::Continue(());
    };
    match invoke(connection, &handler, EventContext::new(connection.clone())).await {
        Ok(_) => ControlFlow::Continue(()),
        Err(error) => fail(connection, error).await,
    }
}

async fn on_disconnect(connection: &Connection, reason: DisconnectReason) {
    let Some(handler) = connection.routes().on_disconnect.clone() else {
        return;
    };
    let context = EventContext::new(connection.clone()).with_reason(reason);
    if let Err(error) = invoke(connection, &handler, context).await {
        report(connection, error).await;
    }
}

async fn read_loop(connection: &Connection, reader: &mut OwnedReadHalf) -> DisconnectReason {
    let server = connection.server();
    let mut decoder = server.framing.decoder();
    let mut buffer = BytesMut::new();
    let mut clock = Clock::new(server);
    let close = connection.close_token().clone();
    loop {
        // Every complete frame already read is handled, even after close():
        // nothing read is lost.
        if let ControlFlow::Break(reason) =
            drain(connection, &mut decoder, &mut buffer, Drain::Ready).await
        {
            return reason;
        }
        if let Some(reason) = connection.close_reason() {
            // Reading stops here: whatever the framing can still make of the
            // buffer is delivered (eof, raw, idle_gap) or reported as truncated.
            if let ControlFlow::Break(reason) =
                drain(connection, &mut decoder, &mut buffer, Drain::Eof).await
            {
                return reason;
            }
            return reason;
        }
        if let Some(reason) = first_message_too_long(connection, &buffer) {
            return reason;
        }
        clock.pending_bytes(!buffer.is_empty());
        let (deadline, expired) = clock.next_deadline(connection.is_first_message());
        buffer.reserve(READ_CHUNK);
        let idle_gap = decoder
            .idle_gap()
            .filter(|_| decoder.wants_idle_timer(&buffer));
        let read = tokio::select! {
            biased;
            () = close.cancelled() => continue,
            () = sleep_until(deadline) => {
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
                report(connection, Error::Io(error)).await;
                return reason;
            }
        };
        if let ControlFlow::Break(reason) = drain(connection, &mut decoder, &mut buffer, mode).await
        {
            return reason;
        }
        if matches!(mode, Drain::Eof) {
            return DisconnectReason::PeerClosed;
        }
    }
}

/// Before classification the buffer may not grow past the first-message cap,
/// so a client cannot hold its classification (and our memory) hostage.
fn first_message_too_long(connection: &Connection, buffer: &BytesMut) -> Option<DisconnectReason> {
    let server = connection.server();
    let cap = server.limits.first_message_max_length;
    (server.classifier.is_some() && connection.is_first_message() && buffer.len() > cap)
        .then(|| DisconnectReason::Limit(format!("first message longer than {cap} bytes")))
}

/// The read deadlines of one connection: first message, partial frame, idle.
struct Clock {
    started: Instant,
    last_read: Instant,
    partial_since: Option<Instant>,
    first_message: Option<Duration>,
    frame: Option<Duration>,
    idle: Option<Duration>,
}

impl Clock {
    fn new(server: &ServerContext) -> Self {
        let now = Instant::now();
        let limits = &server.limits;
        Self {
            started: now,
            last_read: now,
            partial_since: None,
            // Without a classifier nothing waits for a first message.
            first_message: limits
                .first_message_timeout
                .filter(|_| server.classifier.is_some()),
            // EOF, raw and idle-gap framings have no partial frames to time out.
            frame: limits
                .frame_timeout
                .filter(|_| server.framing.frame_deadline_applies()),
            idle: limits.idle_timeout,
        }
    }

    fn read_now(&mut self) {
        self.last_read = Instant::now();
    }

    /// Starts the frame deadline when a partial frame appears, stops it when none is left.
    fn pending_bytes(&mut self, partial: bool) {
        match (partial, self.partial_since) {
            (true, None) => self.partial_since = Some(Instant::now()),
            (false, Some(_)) => self.partial_since = None,
            _ => {}
        }
    }

    fn next_deadline(&self, awaiting_first_message: bool) -> (Option<Instant>, DisconnectReason) {
        let candidates = [
            self.first_message
                .filter(|_| awaiting_first_message)
                .map(|limit| (self.started + limit, DisconnectReason::FirstMessageTimeout)),
            self.frame
                .zip(self.partial_since)
                .map(|(limit, since)| (since + limit, DisconnectReason::FrameTimeout)),
            self.idle
                .map(|limit| (self.last_read + limit, DisconnectReason::IdleTimeout)),
        ];
        candidates
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
            .map_or((None, DisconnectReason::IdleTimeout), |(at, reason)| {
                (Some(at), reason)
            })
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Reads once; `Ok(None)` means the idle gap elapsed (armed only while the
/// idle-gap framing has a message pending or a burst to discard).
async fn read_some(
    reader: &mut OwnedReadHalf,
    buffer: &mut BytesMut,
    idle_gap: Option<Duration>,
) -> io::Result<Option<usize>> {
    match idle_gap {
        Some(gap) => match tokio::time::timeout(gap, reader.read_buf(buffer)).await {
            Ok(read) => read.map(Some),
            Err(_elapsed) => Ok(None),
        },
        _ => reader.read_buf(buffer).await.map(Some),
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
    decoder: &mut FrameDecoder,
    buffer: &mut BytesMut,
    mode: Drain,
) -> ControlFlow<DisconnectReason> {
    loop {
        // A custom codec is user code: its panic ends this connection only.
        let decoded = catch_unwind(AssertUnwindSafe(|| match mode {
            Drain::Ready => decoder.decode(buffer),
            Drain::Idle => decoder.decode_idle(buffer),
            Drain::Eof => decoder.decode_eof(buffer),
        }))
        .unwrap_or_else(|payload| {
            Err(Error::Framing(format!(
                "the codec panicked: {}",
                panic_message(&*payload)
            )))
        });
        let flow = match decoded {
            Ok(Some(Decoded::Frame(frame))) => on_frame(connection, frame).await,
            Ok(Some(Decoded::Discarded(error))) => {
                report(connection, error).await;
                ControlFlow::Continue(())
            }
            Ok(None) => return ControlFlow::Continue(()),
            Err(error) => {
                report(connection, error).await;
                ControlFlow::Break(DisconnectReason::FramingFailed)
            }
        };
        if flow.is_break() {
            return flow;
        }
    }
}

async fn on_frame(connection: &Connection, frame: Bytes) -> ControlFlow<DisconnectReason> {
    connection.count_inbound(frame.len());
    if connection.is_first_message() {
        if let Err(error) = classify(connection, &frame) {
            return fail(connection, error).await;
        }
    }
    let flow = deliver(connection, Message::from(frame)).await;
    connection.first_message_done();
    flow
}

/// Runs the classifier (user code: a panic is caught and treated like a
/// handler's panic).
fn classify(connection: &Connection, first_frame: &[u8]) -> Result<(), Error> {
    let Some(classifier) = &connection.server().classifier else {
        return Ok(());
    };
    let client_type =
        catch_unwind(AssertUnwindSafe(|| classifier.classify(first_frame))).map_err(|payload| {
            Error::HandlerPanicked {
                handler: classifier.name,
                message: panic_message(&*payload),
            }
        })?;
    tracing::Span::current().record("client_type", client_type.as_str());
    tracing::debug!(%client_type, "classified");
    connection.classify_as(client_type);
    Ok(())
}

async fn deliver(connection: &Connection, mut message: Message) -> ControlFlow<DisconnectReason> {
    let routes = connection.routes().clone();
    if let Some(after_receive) = &routes.after_receive {
        let context = EventContext::new(connection.clone()).with_message(message);
        match invoke(connection, after_receive, context).await {
            Ok(Some(kept)) => message = kept,
            Ok(None) => return ControlFlow::Continue(()),
            Err(error) => return fail(connection, error).await,
        }
    }
    let Some(on_message) = &routes.on_message else {
        let client_type = connection
            .client_type()
            .cloned()
            .unwrap_or(crate::ClientType::DEFAULT);
        report(connection, Error::Unrouted { client_type }).await;
        return ControlFlow::Continue(());
    };
    let context = EventContext::new(connection.clone()).with_message(message);
    match invoke(connection, on_message, context).await {
        Ok(_) => ControlFlow::Continue(()),
        Err(error) => fail(connection, error).await,
    }
}

/// Reports a handler's failure; a panic closes the connection unless the
/// panic policy says to go on.
async fn fail(connection: &Connection, error: Error) -> ControlFlow<DisconnectReason> {
    let close = matches!(error, Error::HandlerPanicked { .. })
        && connection.server().limits.on_panic == PanicPolicy::Close;
    report(connection, error).await;
    if close {
        ControlFlow::Break(DisconnectReason::HandlerPanicked)
    } else {
        ControlFlow::Continue(())
    }
}

/// Writes queued frames until told to finish; then flushes the rest (bounded
/// by `flush_timeout`) and sends FIN, or abandons the queue.
async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut outbound: OutboundReceiver,
    mut finish: oneshot::Receiver<Finish>,
    flush_timeout: Duration,
) -> io::Result<()> {
    let mut batch = BytesMut::new();
    let mode = loop {
        tokio::select! {
            biased;
            frame = outbound.recv() => match frame {
                Some(frame) => write_ready(&mut writer, &mut outbound, frame, &mut batch).await?,
                None => break Finish::Flush,
            },
            mode = &mut finish => break mode.unwrap_or(Finish::Flush),
        }
    };
    // No more sends are accepted from here on; what was accepted is written.
    outbound.close();
    if let Finish::Abandon = mode {
        return Ok(());
    }
    let flush = async {
        while let Some(frame) = outbound.recv().await {
            write_ready(&mut writer, &mut outbound, frame, &mut batch).await?;
        }
        writer.shutdown().await
    };
    tokio::time::timeout(flush_timeout, flush)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "flushing the outbound queue timed out",
            ))
        })
}

/// Writes `first` and every frame ready behind it, in as few writes as possible.
async fn write_ready(
    writer: &mut OwnedWriteHalf,
    outbound: &mut OutboundReceiver,
    first: Bytes,
    batch: &mut BytesMut,
) -> io::Result<()> {
    let mut cost = outbound.cost(&first);
    if outbound.is_empty() {
        // A lone reply goes out at once, without a copy.
        writer.write_all(&first).await?;
        outbound.written(cost, 1);
        return Ok(());
    }
    let mut frames = 1;
    batch.extend_from_slice(&first);
    while batch.len() < WRITE_BATCH {
        let Some(frame) = outbound.try_recv() else {
            break;
        };
        cost += outbound.cost(&frame);
        frames += 1;
        batch.extend_from_slice(&frame);
    }
    writer.write_all(batch).await?;
    batch.clear();
    outbound.written(cost, frames);
    Ok(())
}
