//! A stream connection's decoder: it may first wait for the raw first unit
//! to classify the connection by, and it switches to the client type's own
//! framing once the connection is classified. The read buffer is never
//! touched by either step, so no byte read is lost in the switch.

use std::ops::ControlFlow;

use bytes::BytesMut;

use crate::connection::{Connection, DisconnectReason};
use crate::dispatch::report;
use crate::framing::FrameDecoder;
use crate::pipeline::classify;

pub(crate) struct ConnectionDecoder {
    decoder: FrameDecoder,
    stage: Stage,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `classify_raw`: nothing is decoded until the raw first unit classified the connection.
    AwaitingFirstUnit,
    /// The decoder switches to the client type's framing once classified.
    AwaitingClientType,
    /// This decoder stays.
    Settled,
}

impl ConnectionDecoder {
    /// The decoder of the server's framing, in the stage its settings ask for.
    pub(crate) fn new(connection: &Connection) -> Self {
        let server = connection.server();
        let decoder = server.framing.decoder();
        let stage = match (&server.classifier, &server.client_framing) {
            (None, _) => Stage::Settled,
            (Some(_), framing) if framing.first_unit.is_some() => Stage::AwaitingFirstUnit,
            (Some(_), framing) if framing.switches() => Stage::AwaitingClientType,
            (Some(_), _) => Stage::Settled,
        };
        Self { decoder, stage }
    }

    /// The decoder to use now.
    pub(crate) fn get(&mut self) -> &mut FrameDecoder {
        &mut self.decoder
    }

    /// Readies the decoder for `buffer`: classifies by the raw first unit
    /// once it is complete (`at_end`: no more bytes will come), and switches
    /// to the client type's framing once classified. `Continue(false)` means
    /// nothing can be decoded until more bytes arrive.
    pub(crate) async fn prepare(
        &mut self,
        connection: &Connection,
        buffer: &BytesMut,
        at_end: bool,
    ) -> ControlFlow<DisconnectReason, bool> {
        if self.stage == Stage::AwaitingFirstUnit {
            let server = connection.server();
            let first_unit = server.client_framing.first_unit.as_ref();
            let Some(unit) = first_unit.and_then(|unit| unit.cut(buffer, at_end)) else {
                return ControlFlow::Continue(false);
            };
            if let Err(flow) = classify(connection, unit).await {
                // Unclassified, the connection goes on with the server's framing.
                flow?;
                self.stage = Stage::Settled;
                return ControlFlow::Continue(true);
            }
            self.stage = Stage::AwaitingClientType;
        }
        if self.stage == Stage::AwaitingClientType && connection.client_type().is_some() {
            self.stage = Stage::Settled;
            if let Some(framing) = connection.own_framing() {
                match framing.try_decoder() {
                    Ok(decoder) => self.decoder = decoder,
                    Err(error) => {
                        report(connection, error).await;
                        return ControlFlow::Break(DisconnectReason::FramingFailed);
                    }
                }
            }
        }
        ControlFlow::Continue(true)
    }
}
