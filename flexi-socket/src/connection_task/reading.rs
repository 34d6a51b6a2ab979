//! The reading side of a connection's task: wait for bytes, read them into
//! the buffer, and hand every frame the framing makes of them to the
//! pipeline, one at a time, until the connection closes.

use std::future::{Future, poll_fn};
use std::io;
use std::ops::ControlFlow;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;

use crate::connection::{Connection, DisconnectReason, Stage};
use crate::connection_decoder::{ConnectionDecoder, Prepared};
use crate::dispatch::report;
use crate::error::Error;
use crate::framing::Decoded;
use crate::handler::HandlerSlot;
use crate::pipeline::on_frame;
use crate::stream::StreamReader;

/// Reads and handles frames until the connection closes; returns why.
pub(super) async fn read_loop(
    connection: &Connection,
    reader: &mut impl StreamReader,
) -> DisconnectReason {
    let deadlines = &connection.server().deadlines;
    let activity = connection.activity();
    let mut decoder = match ConnectionDecoder::new(connection) {
        Ok(decoder) => decoder,
        Err(error) => {
            report(connection, error).await;
            return DisconnectReason::FramingFailed;
        }
    };
    let mut buffer = BytesMut::new();
    activity.track(deadlines);
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
            if timed_out(&reason) {
                // A deadline cut the stream short: its unfinished rest is dropped.
                return reason;
            }
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
        activity.pending_bytes(deadlines, partial_frame, framed_some);
        let idle_gap = decoder
            .current()
            .idle_gap()
            .filter(|_| decoder.current().wants_idle_timer(&buffer));
        let mode = match wait_and_read(connection, reader, &mut buffer, idle_gap).await {
            Waited::Closing => continue,
            Waited::Read(Ok(0)) => Drain::Eof,
            Waited::Read(Ok(_)) => {
                activity.read(deadlines);
                continue;
            }
            Waited::Gap => Drain::Idle,
            Waited::Read(Err(error)) => {
                let reason = DisconnectReason::Reset(error.to_string());
                report(connection, Error::Io(error)).await;
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

/// Whether `reason` is a read deadline (see `deadlines`).
fn timed_out(reason: &DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::IdleTimeout
            | DisconnectReason::FrameTimeout
            | DisconnectReason::FirstMessageTimeout
    )
}

/// Before classification the buffer may not grow past the first-message cap,
/// so a client cannot hold its classification (and our memory) hostage.
fn first_message_too_long(connection: &Connection, buffer: &BytesMut) -> Option<DisconnectReason> {
    let server = connection.server();
    let cap = server.limits.first_message_max_length;
    (server.classifier.is_some() && connection.is_first_message() && buffer.len() > cap)
        .then(|| DisconnectReason::Limit(format!("first message longer than {cap} bytes")))
}

/// What ended a wait for bytes.
enum Waited {
    /// The connection is closing.
    Closing,
    /// A read: the number of bytes, 0 at EOF.
    Read(io::Result<usize>),
    /// The idle gap elapsed (idle-gap framing only).
    Gap,
}

/// Waits until the connection closes, bytes arrive (and reads them) or,
/// with `idle_gap`, that much silence passes. One poll looks at all three,
/// with no state of its own: this wait is what every idle connection does.
async fn wait_and_read(
    connection: &Connection,
    reader: &mut impl StreamReader,
    buffer: &mut BytesMut,
    idle_gap: Option<Duration>,
) -> Waited {
    // Boxed: only idle-gap framing pays for a timer, and only while it waits.
    let mut gap = idle_gap.map(|gap| Box::pin(tokio::time::sleep(gap)));
    poll_fn(|cx| {
        if connection
            .close_signal()
            .poll_reached(Stage::Closing, cx)
            .is_ready()
        {
            return Poll::Ready(Waited::Closing);
        }
        if let Poll::Ready(read) = reader.poll_read_lazily(cx, buffer) {
            return Poll::Ready(Waited::Read(read));
        }
        match gap.as_mut().map(|gap| gap.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Waited::Gap),
            _ => Poll::Pending,
        }
    })
    .await
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
