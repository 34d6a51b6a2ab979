//! The per-connection task: read → decode → classify once → after_receive →
//! route → handler, one event at a time; a writer half fed by the bounded
//! outbound queue, coalescing ready frames into one write.

use std::io;
use std::ops::ControlFlow;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::connection::{Connection, DisconnectReason};
use crate::dispatch::{invoke, report};
use crate::error::Error;
use crate::framing::{Decoded, FrameDecoder};
use crate::handler::EventContext;
use crate::message::Message;

/// How much room each read asks for.
const READ_CHUNK: usize = 8 * 1024;
/// Frames ready at once are copied into one buffer up to this size, then written.
const WRITE_BATCH: usize = 64 * 1024;

/// Serves one accepted connection until it ends; fires on_disconnect exactly once.
pub(crate) async fn run(
    stream: TcpStream,
    connection: Connection,
    outbound: mpsc::Receiver<Bytes>,
) {
    let (reader, writer) = stream.into_split();
    let (finish_writing, finish) = oneshot::channel();
    let mut writer_task = tokio::spawn(write_loop(writer, outbound, finish));

    let reason = match on_connect(&connection).await {
        ControlFlow::Continue(()) => read_loop(&connection, reader, &mut writer_task).await,
        ControlFlow::Break(reason) => reason,
    };
    tracing::debug!(%reason, "disconnecting");
    on_disconnect(&connection, reason).await;

    // Everything already queued is written (send returned Ok for it), then FIN.
    let _ = finish_writing.send(());
    if !writer_task.is_finished() {
        match writer_task.await {
            Ok(Err(error)) => tracing::debug!(%error, "writing failed while closing"),
            Err(join_error) => tracing::error!(%join_error, "writer task failed"),
            Ok(Ok(())) => {}
        }
    }
    connection.server().connections.remove(connection.id());
}

async fn on_connect(connection: &Connection) -> ControlFlow<DisconnectReason> {
    let Some(handler) = connection.routes().on_connect.clone() else {
        return ControlFlow::Continue(());
    };
    match invoke(&handler, EventContext::new(connection.clone())).await {
        Ok(_) => ControlFlow::Continue(()),
        Err(error) => fail(connection, error).await,
    }
}

async fn on_disconnect(connection: &Connection, reason: DisconnectReason) {
    let Some(handler) = connection.routes().on_disconnect.clone() else {
        return;
    };
    let context = EventContext::new(connection.clone()).with_reason(reason);
    if let Err(error) = invoke(&handler, context).await {
        report(connection, error).await;
    }
}

async fn read_loop(
    connection: &Connection,
    mut reader: OwnedReadHalf,
    writer_task: &mut JoinHandle<io::Result<()>>,
) -> DisconnectReason {
    let mut decoder = connection.server().framing.decoder();
    let mut buffer = BytesMut::new();
    let close = connection.close_token().clone();
    loop {
        // Every complete frame already read is handled, even after close():
        // nothing read is lost.
        if let ControlFlow::Break(reason) =
            drain(connection, &mut decoder, &mut buffer, Drain::Ready).await
        {
            return reason;
        }
        if close.is_cancelled() {
            return closing_reason(connection);
        }
        buffer.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            () = close.cancelled() => continue,
            written = &mut *writer_task => return writer_failed(connection, written).await,
            read = read_some(&mut reader, &mut buffer, decoder.idle_gap()) => read,
        };
        let end_of_stream = matches!(read, Ok(Some(0)));
        let drained = match read {
            Ok(Some(0)) => drain(connection, &mut decoder, &mut buffer, Drain::Eof).await,
            Ok(Some(_)) => continue,
            Ok(None) => drain(connection, &mut decoder, &mut buffer, Drain::Idle).await,
            Err(error) => {
                let reason = DisconnectReason::Reset(error.to_string());
                report(connection, Error::Io(error)).await;
                return reason;
            }
        };
        if let ControlFlow::Break(reason) = drained {
            return reason;
        }
        if end_of_stream {
            return DisconnectReason::PeerClosed;
        }
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
        let decoded = match mode {
            Drain::Ready => decoder.decode(buffer),
            Drain::Idle => decoder.decode_idle(buffer),
            Drain::Eof => decoder.decode_eof(buffer),
        };
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

/// Reads once; `Ok(None)` means the idle gap elapsed with bytes buffered.
async fn read_some(
    reader: &mut OwnedReadHalf,
    buffer: &mut BytesMut,
    idle_gap: Option<Duration>,
) -> io::Result<Option<usize>> {
    match idle_gap {
        Some(gap) if !buffer.is_empty() => {
            match tokio::time::timeout(gap, reader.read_buf(buffer)).await {
                Ok(read) => read.map(Some),
                Err(_elapsed) => Ok(None),
            }
        }
        _ => reader.read_buf(buffer).await.map(Some),
    }
}

async fn on_frame(connection: &Connection, frame: Bytes) -> ControlFlow<DisconnectReason> {
    connection.count_inbound(frame.len());
    if connection.is_first_message() {
        classify(connection, &frame);
    }
    let flow = deliver(connection, Message::from(frame)).await;
    connection.first_message_done();
    flow
}

fn classify(connection: &Connection, first_frame: &[u8]) {
    let Some(classifier) = &connection.server().classifier else {
        return;
    };
    let client_type = classifier.classify(first_frame);
    tracing::Span::current().record("client_type", client_type.as_str());
    tracing::debug!(%client_type, "classified");
    connection.classify_as(client_type);
}

async fn deliver(connection: &Connection, mut message: Message) -> ControlFlow<DisconnectReason> {
    let routes = connection.routes().clone();
    if let Some(after_receive) = &routes.after_receive {
        let context = EventContext::new(connection.clone()).with_message(message);
        match invoke(after_receive, context).await {
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
    match invoke(on_message, context).await {
        Ok(_) => ControlFlow::Continue(()),
        Err(error) => fail(connection, error).await,
    }
}

/// Reports a handler's failure; a panic closes the connection, anything else goes on.
async fn fail(connection: &Connection, error: Error) -> ControlFlow<DisconnectReason> {
    let panicked = matches!(error, Error::HandlerPanicked { .. });
    report(connection, error).await;
    if panicked {
        ControlFlow::Break(DisconnectReason::HandlerPanicked)
    } else {
        ControlFlow::Continue(())
    }
}

fn closing_reason(connection: &Connection) -> DisconnectReason {
    if connection.server().shutdown.is_cancelled() {
        DisconnectReason::Shutdown
    } else {
        DisconnectReason::Closed
    }
}

async fn writer_failed(
    connection: &Connection,
    written: Result<io::Result<()>, tokio::task::JoinError>,
) -> DisconnectReason {
    let error = match written {
        Ok(Err(error)) => error,
        Ok(Ok(())) => io::Error::new(io::ErrorKind::BrokenPipe, "writer stopped"),
        Err(join_error) => io::Error::other(join_error.to_string()),
    };
    let reason = DisconnectReason::Reset(error.to_string());
    report(connection, Error::Io(error)).await;
    reason
}

/// Writes queued frames until told to finish, then flushes the rest and sends FIN.
async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut outbound: mpsc::Receiver<Bytes>,
    mut finish: oneshot::Receiver<()>,
) -> io::Result<()> {
    let mut batch = BytesMut::new();
    let mut finishing = false;
    loop {
        let first = tokio::select! {
            biased;
            frame = outbound.recv() => frame,
            _ = &mut finish, if !finishing => {
                // No more sends are accepted; the loop drains what was queued.
                finishing = true;
                outbound.close();
                continue;
            }
        };
        let Some(first) = first else { break };
        if outbound.is_empty() {
            // A lone reply goes out at once, without a copy.
            writer.write_all(&first).await?;
            continue;
        }
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match outbound.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        writer.write_all(&batch).await?;
        batch.clear();
    }
    writer.shutdown().await
}
