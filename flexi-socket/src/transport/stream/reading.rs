//! The reading side of a connection's task: wait for bytes, read them into
//! the buffer, and hand every frame the framing makes of them to the
//! pipeline, one at a time, until the connection closes.
//!
//! A state machine polled by the driver rather than an `async fn`: waiting
//! is what every idle connection does, and this way the wait holds only
//! the decoder, the (empty) buffer and the handler slot. The frames of a
//! read are handled right in the poll that read them while each handler
//! finishes at once, the usual case (an echo's does): that costs no
//! allocation. Whatever waits (a handler that awaits, on_connect, a
//! report, classification) goes on in a boxed future that lives while it
//! runs.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::time::Sleep;

use crate::connection::report;
use crate::connection::{CloseStage, Connection, DisconnectReason};
use crate::error::Error;
use crate::events::{
    Delivered, Suspended, deliver_here, on_connect, on_frame, resume, suspendable,
};
use crate::framing::{Decoded, Decoding, FrameDecoder};
use crate::future::BoxFuture;
use crate::handler::HandlerSlot;
use crate::transport::decoder::{ConnectionDecoder, Prepared};
use crate::transport::stream::Stream;

/// The reading side's state.
pub(super) struct Reading {
    step: ReadingStep,
    /// Not here while a drain has it.
    decoder: Option<ConnectionDecoder>,
    buffer: BytesMut,
    /// The on_message handler's future: its allocation serves message after
    /// message (see [`HandlerSlot`]). Empty while a drain has it.
    slot: HandlerSlot,
}

/// Two words: the wait's timer, or one boxed future for whatever runs.
/// There is no "ended" step: the driver polls the reading side no more
/// once it ended, and [`Reading::stop`] leaves it waiting on nothing.
enum ReadingStep {
    /// Waiting for bytes, the close, or (idle-gap framing) a gap. Without
    /// a decoder (no on_connect ran first, or the connection came back from
    /// a rest that kept none), the connection opens first.
    Waiting { gap: Option<Pin<Box<Sleep>>> },
    /// on_connect, a drain of the buffer's frames or the report of why
    /// reading ends runs; its [`Ran`] says which.
    Running(BoxFuture<'static, Ran>),
}

/// What a [`ReadingStep::Running`] future gives back.
enum Ran {
    /// on_connect ran.
    Connected(ControlFlow<DisconnectReason>),
    /// The buffer was drained in `mode`.
    Drained(Drained, Drain),
    /// Why reading ended was reported; it ended for this reason.
    Reported(DisconnectReason),
}

/// What a drain gives back.
struct Drained {
    decoder: ConnectionDecoder,
    buffer: BytesMut,
    slot: HandlerSlot,
    /// What the pipeline said.
    flow: ControlFlow<DisconnectReason>,
    /// Whether frames were taken off the buffer.
    framed_some: bool,
}

/// What [`Reading::drain_here`] did with a read.
enum Handled {
    /// Reading goes on with the current step.
    GoOn,
    /// A boxed drain goes on with a delivery that waits, and was polled.
    Waits,
    /// Reading ends.
    End(DisconnectReason),
}

/// What a boxed drain does first: what the handling in place
/// ([`Reading::drain_here`]) left when something had to wait.
enum Leftover {
    /// Nothing: it starts with the buffer.
    Nothing,
    /// A delivery that waits for its handler or its failure's report.
    Delivery(Suspended),
    /// What the framing made of the buffer after the last frame handled in
    /// place: something to report.
    Decoded(Decoding),
}

/// What the framing is asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Complete frames in the buffer.
    Ready,
    /// The idle gap elapsed: the pending bytes are a message.
    Idle,
    /// The peer sent FIN: whatever the framing can still make of the buffer.
    Eof,
    /// The connection is closing: the same as at EOF, then reading ends.
    Closing,
}

impl Drain {
    /// The next of what the framing makes of `buffer` in this mode: the one
    /// decoding step of both ways a read's frames are handled (in the read's
    /// own poll while every handler finishes at once, in a boxed drain
    /// once one waits).
    fn decode(self, decoder: &mut FrameDecoder, buffer: &mut BytesMut) -> Decoding {
        match self {
            Drain::Ready => decoder.decode(buffer),
            Drain::Idle => decoder.decode_idle(buffer),
            Drain::Eof | Drain::Closing => decoder.decode_eof(buffer),
        }
    }
}

impl Reading {
    /// Starts with on_connect, if there is one.
    pub(super) fn new(connection: &Connection) -> Self {
        let step = if connection.routes().on_connect.is_some() {
            let connection = connection.clone();
            ReadingStep::Running(Box::pin(async move {
                Ran::Connected(on_connect(&connection).await)
            }))
        } else {
            // Nothing to run first: no boxed future for it; the first poll
            // opens the connection (see `ReadingStep::Waiting`).
            ReadingStep::Waiting { gap: None }
        };
        Self {
            step,
            decoder: None,
            buffer: BytesMut::new(),
            slot: HandlerSlot::default(),
        }
    }

    /// Reading goes on after the connection rested: it waits for bytes,
    /// with nothing buffered, with `decoder`, or without one if the
    /// connection kept none: its first poll makes a new one, as it does a
    /// new connection's.
    pub(super) fn resumed(decoder: Option<ConnectionDecoder>) -> Self {
        Self {
            step: ReadingStep::Waiting { gap: None },
            decoder,
            buffer: BytesMut::new(),
            slot: HandlerSlot::default(),
        }
    }

    /// Whether this side holds nothing the connection needs while it rests:
    /// it waits for bytes with none buffered and no idle-gap timer.
    pub(super) fn may_rest(&self) -> bool {
        matches!(self.step, ReadingStep::Waiting { gap: None })
            && self.buffer.is_empty()
            && self.decoder.is_some()
    }

    /// What reading needs kept while the connection rests: the decoder (a
    /// framing may be in the middle of dropping an oversized frame, say).
    pub(super) fn into_decoder(self) -> Option<ConnectionDecoder> {
        self.decoder
    }

    /// Reads and handles frames; `Ready` with the reason once reading ended.
    pub(super) fn poll(
        &mut self,
        connection: &Connection,
        stream: &mut impl Stream,
        cx: &mut Context<'_>,
    ) -> Poll<DisconnectReason> {
        loop {
            match &mut self.step {
                // In the connection's task, not where it was accepted: a
                // codec factory's panic ends this connection only.
                ReadingStep::Waiting { .. } if self.decoder.is_none() => self.open(connection),
                ReadingStep::Waiting { gap } => {
                    if connection
                        .close_signal()
                        .poll_reached(CloseStage::Closing, cx)
                        .is_ready()
                    {
                        // Complete frames were handled before waiting: the
                        // close goes on as after any drain.
                        if let Some(reason) = self.after_drain(connection, Drain::Ready, false) {
                            return self.end(reason);
                        }
                        continue;
                    }
                    // How much room a read asks for: the endpoint's
                    // (`read_buffer_size`), not a copy in every connection.
                    let chunk = connection.endpoint().limits.read_buffer;
                    if let Poll::Ready(read) = stream.poll_read_lazily(cx, &mut self.buffer, chunk)
                    {
                        match read {
                            Ok(0) => self.drain(connection, Drain::Eof),
                            Ok(_) => {
                                connection.activity().read(&connection.endpoint().deadlines);
                                match self.drain_here(connection, cx) {
                                    Handled::GoOn => {}
                                    // What waits was polled, and will wake the task.
                                    Handled::Waits => return Poll::Pending,
                                    Handled::End(reason) => return self.end(reason),
                                }
                            }
                            Err(error) => {
                                let reason = DisconnectReason::Reset(error.to_string());
                                self.step = reporting(connection, Error::Io(error), reason);
                            }
                        }
                        continue;
                    }
                    match gap.as_mut().map(|gap| gap.as_mut().poll(cx)) {
                        Some(Poll::Ready(())) => self.drain(connection, Drain::Idle),
                        _ => return Poll::Pending,
                    }
                }
                ReadingStep::Running(future) => match ready!(future.as_mut().poll(cx)) {
                    Ran::Connected(ControlFlow::Continue(())) => self.open(connection),
                    Ran::Connected(ControlFlow::Break(reason)) | Ran::Reported(reason) => {
                        return self.end(reason);
                    }
                    Ran::Drained(drained, mode) => {
                        connection
                            .activity()
                            .handlers_done(&connection.endpoint().deadlines);
                        self.decoder = Some(drained.decoder);
                        self.buffer = drained.buffer;
                        self.slot = drained.slot;
                        if let ControlFlow::Break(reason) = drained.flow {
                            return self.end(reason);
                        }
                        if let Some(reason) =
                            self.after_drain(connection, mode, drained.framed_some)
                        {
                            return self.end(reason);
                        }
                    }
                },
            }
        }
    }

    /// on_connect let the connection in, or it came back from a rest
    /// without its decoder: decoding starts.
    fn open(&mut self, connection: &Connection) {
        match ConnectionDecoder::new(connection) {
            Ok(mut decoder) => {
                // A decoder that classifies nothing has nothing to do with
                // the empty buffer: reading waits at once, without a boxed
                // drain (every connection of a server without a classifier).
                let waits = decoder.is_settled() && !decoder.offers_early(connection);
                self.decoder = Some(decoder);
                let activity = connection.activity();
                // Once: a connection back from a rest keeps its clock.
                if !activity.is_tracked() {
                    activity.track(&connection.endpoint().deadlines);
                }
                if waits {
                    self.step = ReadingStep::Waiting { gap: None };
                } else {
                    self.drain(connection, Drain::Ready);
                }
            }
            Err(error) => {
                self.step = reporting(connection, error, DisconnectReason::FramingFailed);
            }
        }
    }

    /// Handles the complete frames a read brought, right here in its poll,
    /// as long as each delivery finishes at once; hands what has to wait,
    /// and the rest of the buffer, to a boxed drain.
    fn drain_here(&mut self, connection: &Connection, cx: &mut Context<'_>) -> Handled {
        let settled = self.decoder.as_ref().is_some_and(|d| d.is_settled());
        if !settled || !suspendable(connection) {
            self.drain(connection, Drain::Ready);
            return Handled::GoOn;
        }
        let activity = connection.activity();
        // Handlers run: a frame deadline that falls meanwhile is not the
        // peer's doing (the boxed drain says the same while it runs).
        activity.handlers_started();
        self.slot.reclaim();
        let buffered = self.buffer.len();
        // Settled: the decoder in use stays the same for the whole read.
        let decoder = self
            .decoder
            .as_mut()
            .expect("the decoder is back")
            .current();
        loop {
            let frame = match Drain::Ready.decode(decoder, &mut self.buffer) {
                Ok(Some(Decoded::Frame(frame))) => frame,
                Ok(None) => {
                    activity.handlers_done(&connection.endpoint().deadlines);
                    let framed_some = self.buffer.len() < buffered;
                    break match self.after_drain(connection, Drain::Ready, framed_some) {
                        Some(reason) => Handled::End(reason),
                        None => Handled::GoOn,
                    };
                }
                reported => {
                    let framed_some = self.buffer.len() < buffered;
                    self.drain_after(connection, Leftover::Decoded(reported), framed_some);
                    // Not polled yet.
                    break Handled::GoOn;
                }
            };
            match deliver_here(connection, frame, &mut self.slot, cx) {
                Delivered::Over(ControlFlow::Continue(())) => {}
                Delivered::Over(ControlFlow::Break(reason)) => {
                    activity.handlers_done(&connection.endpoint().deadlines);
                    break Handled::End(reason);
                }
                Delivered::Waits(suspended) => {
                    self.drain_after(connection, Leftover::Delivery(suspended), true);
                    break Handled::Waits;
                }
            }
        }
    }

    /// Hands the frames of the buffer (as `mode` asks) to a boxed drain that
    /// owns the decoder, the buffer and the slot until it gives them back.
    fn drain(&mut self, connection: &Connection, mode: Drain) {
        self.boxed_drain(connection, mode, Leftover::Nothing, false);
    }

    /// Goes on with what [`drain_here`](Self::drain_here) could not finish,
    /// and the rest of the buffer, in a boxed drain; `framed_already`: it
    /// took frames off the buffer.
    fn drain_after(&mut self, connection: &Connection, leftover: Leftover, framed_already: bool) {
        self.boxed_drain(connection, Drain::Ready, leftover, framed_already);
    }

    /// See [`drain`](Self::drain); `leftover` comes first, and
    /// `framed_already` says whether frames were taken off the buffer before.
    fn boxed_drain(
        &mut self,
        connection: &Connection,
        mode: Drain,
        leftover: Leftover,
        framed_already: bool,
    ) {
        let connection = connection.clone();
        let mut decoder = self
            .decoder
            .take()
            .expect("the decoder is back from the last drain");
        let mut buffer = std::mem::take(&mut self.buffer);
        self.slot.reclaim();
        let mut slot = std::mem::take(&mut self.slot);
        connection.activity().handlers_started();
        let future = Box::pin(async move {
            let buffered = buffer.len();
            let flow = drain(
                &connection,
                &mut decoder,
                &mut buffer,
                &mut slot,
                mode,
                leftover,
            )
            .await;
            let drained = Drained {
                framed_some: framed_already || buffer.len() < buffered,
                decoder,
                buffer,
                slot,
                flow,
            };
            Ran::Drained(drained, mode)
        });
        self.step = ReadingStep::Running(future);
    }

    /// What follows a drain in `mode`: another drain, a wait, or the end.
    fn after_drain(
        &mut self,
        connection: &Connection,
        mode: Drain,
        framed_some: bool,
    ) -> Option<DisconnectReason> {
        match mode {
            Drain::Eof => return Some(DisconnectReason::PeerClosed),
            Drain::Closing => {
                return Some(
                    connection
                        .close_reason()
                        .unwrap_or(DisconnectReason::Closed),
                );
            }
            Drain::Ready | Drain::Idle => {}
        }
        if let Some(reason) = connection.close_reason() {
            if timed_out(&reason) {
                // A deadline cut the stream short: its unfinished rest is dropped.
                return Some(reason);
            }
            // Reading stops here: whatever the framing can still make of the
            // buffer is delivered (eof, raw, idle_gap) or reported as truncated.
            self.drain(connection, Drain::Closing);
            return None;
        }
        if let Some(reason) = first_message_too_long(connection, &self.buffer) {
            return Some(reason);
        }
        let decoder = self.decoder.as_mut().expect("the decoder is back");
        let partial_frame = !self.buffer.is_empty() && decoder.frame_deadline_applies();
        let framed_some = mode == Drain::Ready && framed_some;
        connection.activity().pending_bytes(
            &connection.endpoint().deadlines,
            partial_frame,
            framed_some,
        );
        self.slot.release();
        let gap = decoder
            .current()
            .idle_gap()
            .filter(|_| decoder.current().wants_idle_timer(&self.buffer))
            // Boxed: only idle-gap framing pays for a timer, and only while it waits.
            .map(|gap| Box::pin(tokio::time::sleep(gap)));
        self.step = ReadingStep::Waiting { gap };
        None
    }

    /// Drops whatever runs (the connection is cut).
    pub(super) fn stop(&mut self) {
        self.step = ReadingStep::Waiting { gap: None };
    }

    /// Reading ended: what ran is dropped, and the driver polls no more.
    fn end(&mut self, reason: DisconnectReason) -> Poll<DisconnectReason> {
        self.stop();
        Poll::Ready(reason)
    }
}

/// The step that reports `error`, after which reading ends for `reason`.
fn reporting(connection: &Connection, error: Error, reason: DisconnectReason) -> ReadingStep {
    let connection = connection.clone();
    ReadingStep::Running(Box::pin(async move {
        report(&connection, error).await;
        Ran::Reported(reason)
    }))
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
    let endpoint = connection.endpoint();
    let cap = endpoint.limits.first_message_max_length;
    (endpoint.classifier.is_some() && connection.is_first_message() && buffer.len() > cap)
        .then(|| DisconnectReason::Limit(format!("first message longer than {cap} bytes")))
}

/// Handles `leftover`, then every frame the decoder yields in `mode`. An
/// unrecoverable framing error ends the connection; recoverable ones are
/// reported and skipped.
async fn drain(
    connection: &Connection,
    decoder: &mut ConnectionDecoder,
    buffer: &mut BytesMut,
    slot: &mut HandlerSlot,
    mode: Drain,
    leftover: Leftover,
) -> ControlFlow<DisconnectReason> {
    let mut decoded = match leftover {
        Leftover::Nothing => None,
        Leftover::Delivery(suspended) => {
            resume(connection, suspended, slot).await?;
            None
        }
        Leftover::Decoded(decoded) => Some(decoded),
    };
    loop {
        let decoded = match decoded.take() {
            Some(decoded) => decoded,
            None => {
                // A gap of silence ends a first unit as surely as EOF does.
                let at_end = !matches!(mode, Drain::Ready);
                // Boxed: only a connection not yet classified has work to do here.
                if !decoder.is_settled()
                    && Box::pin(decoder.prepare(connection, buffer, at_end)).await?
                        == Prepared::NeedsBytes
                {
                    return ControlFlow::Continue(());
                }
                mode.decode(decoder.current(), buffer)
            }
        };
        let flow = match decoded {
            Ok(Some(Decoded::Frame(frame))) => on_frame(connection, frame, slot).await,
            Ok(Some(Decoded::Discarded(error))) => {
                report(connection, *error).await;
                ControlFlow::Continue(())
            }
            Ok(None) => {
                // Boxed: only a connection not yet classified has work to do here.
                if decoder.offers_early(connection)
                    && Box::pin(decoder.classify_early(connection, buffer)).await?
                {
                    continue;
                }
                return ControlFlow::Continue(());
            }
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
