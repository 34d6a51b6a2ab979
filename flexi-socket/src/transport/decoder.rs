//! A connection's decoder, the one decoding path of streams and datagrams:
//! it may first wait for the raw first unit to classify the connection by,
//! lets the classifier decide on the first frame's bytes before the frame is
//! complete, and switches to the client type's own framing once the
//! connection is classified. The read buffer is never touched by any of
//! these steps, so no byte read is lost in the switch.

use std::ops::ControlFlow;

use bytes::BytesMut;

use crate::connection::report;
use crate::connection::{Connection, DisconnectReason};
use crate::error::Error;
use crate::events::{EARLY_LOOK_BYTES, classify_early, classify_first_unit};
use crate::framing::{FrameDecoder, Framing};

pub(crate) struct ConnectionDecoder {
    decoder: FrameDecoder,
    stage: DecoderStage,
    /// Whether pending bytes are a partial frame that the frame deadline
    /// (slowloris) applies to; it depends on the framing in use.
    frame_deadline_applies: bool,
    /// Whether the classifier is still to be offered the first frame's bytes
    /// before the frame is complete (see [`classify_early`](Self::classify_early)).
    early: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DecoderStage {
    /// `classify_raw`: nothing is decoded until the raw first unit classified the connection.
    AwaitingFirstUnit,
    /// The decoder switches to the client type's framing once classified.
    AwaitingClientType,
    /// This decoder stays.
    Settled,
}

/// What [`ConnectionDecoder::prepare`] found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// The decoder may decode the buffer.
    Ready,
    /// Nothing can be decoded until more bytes arrive (the first unit is incomplete).
    NeedsBytes,
}

impl ConnectionDecoder {
    /// The decoder of the connection's framing now, in the stage its
    /// endpoint's settings ask for: a connection not classified yet may
    /// wait for its raw first unit and switch framing once classified; a
    /// classified one (a datagram session's later datagrams) decodes with
    /// its client type's framing from the start.
    ///
    /// # Errors
    ///
    /// [`Error::Framing`] if a custom codec's factory panicked.
    pub(crate) fn new(connection: &Connection) -> Result<Self, Error> {
        let endpoint = connection.endpoint();
        let stage = match &endpoint.client_framing {
            _ if connection.classification_over() => DecoderStage::Settled,
            framing if framing.first_unit.is_some() => DecoderStage::AwaitingFirstUnit,
            framing if framing.switches() => DecoderStage::AwaitingClientType,
            _ => DecoderStage::Settled,
        };
        let framing = connection.framing();
        Ok(Self {
            decoder: framing.try_decoder()?,
            stage,
            frame_deadline_applies: framing.frame_deadline_applies(),
            early: endpoint.classifier.is_some() && !connection.classification_over(),
        })
    }

    /// Whether [`new`](Self::new) makes this very decoder again: it is
    /// settled, offers the classifier no early look (nor would a new one:
    /// the connection is classified, or has no classifier), and its codec
    /// is a built-in one holding nothing of the stream. A resting
    /// connection keeps no such decoder: it makes a new one when it comes
    /// back. (One with an early look to offer is kept: a new one would
    /// first look at the empty buffer in a boxed drain, for nothing, and a
    /// drain moves the idle clock as if the peer had sent.)
    pub(crate) fn is_as_new(&self, connection: &Connection) -> bool {
        // A settled decoder's framing is the connection's (`prepare`
        // switched to it), and a new one of a connection classified or
        // without a classifier settles at once.
        let classifier_waits =
            connection.endpoint().classifier.is_some() && !connection.classification_over();
        self.stage == DecoderStage::Settled
            && !self.early
            && !classifier_waits
            && self.decoder.is_fresh()
    }

    /// The decoder in use.
    pub(crate) fn current(&mut self) -> &mut FrameDecoder {
        &mut self.decoder
    }

    /// Whether the decoder stays as it is: [`prepare`](Self::prepare) has
    /// nothing left to do.
    pub(crate) fn is_settled(&self) -> bool {
        self.stage == DecoderStage::Settled
    }

    pub(crate) fn frame_deadline_applies(&self) -> bool {
        self.frame_deadline_applies
    }

    /// Readies the decoder for `buffer`: classifies by the raw first unit
    /// once it is complete (`at_end`: no more bytes will come, or the idle
    /// gap ended them), and switches to the client type's framing once
    /// classified.
    pub(crate) async fn prepare(
        &mut self,
        connection: &Connection,
        buffer: &BytesMut,
        at_end: bool,
    ) -> ControlFlow<DisconnectReason, Prepared> {
        if self.stage == DecoderStage::AwaitingFirstUnit {
            let decided = match classify_first_unit(connection, buffer, at_end).await {
                Some(flow) => {
                    flow?;
                    true
                }
                // The unit is not complete: what there is of it may settle the type.
                None if self.offers_early(connection) => {
                    self.look_early(connection, buffer).await?
                }
                None => false,
            };
            if !decided {
                return ControlFlow::Continue(Prepared::NeedsBytes);
            }
            self.stage = DecoderStage::AwaitingClientType;
        }
        if self.stage == DecoderStage::AwaitingClientType && connection.classification_over() {
            self.stage = DecoderStage::Settled;
            if let Some(framing) = connection.own_framing() {
                self.switch_to(connection, framing).await?;
            }
        }
        ControlFlow::Continue(Prepared::Ready)
    }

    /// Whether [`classify_early`](Self::classify_early) has anything to do:
    /// the connection is not classified yet. A plain flag once it is.
    pub(crate) fn offers_early(&mut self, connection: &Connection) -> bool {
        // `&&`, not `&=`: once the flag is down, the connection is not asked.
        self.early = self.early && !connection.classification_over();
        self.early
    }

    /// After the decoder found no complete frame in `buffer`: while the
    /// connection is not classified, lets the classifier decide on the
    /// bytes the first frame has so far. `Continue(true)` when it decided:
    /// decode `buffer` again ([`prepare`](Self::prepare) first), as the
    /// client type may bring its own framing.
    pub(crate) async fn classify_early(
        &mut self,
        connection: &Connection,
        buffer: &BytesMut,
    ) -> ControlFlow<DisconnectReason, bool> {
        if !self.offers_early(connection) {
            return ControlFlow::Continue(false);
        }
        let first_bytes = self.decoder.pending_frame(buffer);
        self.look_early(connection, first_bytes).await
    }

    /// Offers the classifier `first_bytes`, those of the first frame or raw
    /// unit so far; `Continue(true)` when it decided.
    async fn look_early(
        &mut self,
        connection: &Connection,
        first_bytes: &[u8],
    ) -> ControlFlow<DisconnectReason, bool> {
        if first_bytes.len() >= EARLY_LOOK_BYTES {
            // The classifier's last look: then the whole frame (or unit) decides.
            self.early = false;
        }
        match classify_early(connection, first_bytes).await {
            None => ControlFlow::Continue(false),
            Some(flow) => {
                self.early = false;
                flow?;
                ControlFlow::Continue(true)
            }
        }
    }

    async fn switch_to(
        &mut self,
        connection: &Connection,
        framing: &Framing,
    ) -> ControlFlow<DisconnectReason> {
        match framing.try_decoder() {
            Ok(decoder) => {
                self.decoder = decoder;
                self.frame_deadline_applies = framing.frame_deadline_applies();
                ControlFlow::Continue(())
            }
            Err(error) => {
                report(connection, error).await;
                ControlFlow::Break(DisconnectReason::FramingFailed)
            }
        }
    }
}
