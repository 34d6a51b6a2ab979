//! The per-connection halves of a [`Framing`](super::Framing): one
//! [`FrameDecoder`] for the reader, one [`FrameEncoder`] shared by the senders.
//! Built-in codecs are dispatched by `match`, with no boxing; only a custom
//! codec sits behind a trait object.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::custom::{CustomDecoder, CustomEncoder, CustomFraming};
use super::{
    Decoded, DelimitedCodec, EofCodec, FixedLengthCodec, IdleGapCodec, LengthPrefixedCodec,
    LineCodec, RawCodec, SeparatorCodec,
};
use crate::error::Error;

/// A configured built-in codec, in its initial state.
#[derive(Clone, Debug)]
pub(super) enum Builtin {
    Lines(LineCodec),
    Separator(SeparatorCodec),
    // Boxed: the largest codec by far; every connection holds a decoder.
    Delimited(Box<DelimitedCodec>),
    Fixed(FixedLengthCodec),
    LengthPrefixed(LengthPrefixedCodec),
    Eof(EofCodec),
    Raw(RawCodec),
    IdleGap(IdleGapCodec),
}

/// Runs `$body` with `$codec` bound to the codec inside `$builtin`, whatever its type.
macro_rules! with_codec {
    ($builtin:expr, $codec:ident => $body:expr) => {
        match $builtin {
            Builtin::Lines($codec) => $body,
            Builtin::Separator($codec) => $body,
            Builtin::Delimited($codec) => $body,
            Builtin::Fixed($codec) => $body,
            Builtin::LengthPrefixed($codec) => $body,
            Builtin::Eof($codec) => $body,
            Builtin::Raw($codec) => $body,
            Builtin::IdleGap($codec) => $body,
        }
    };
}

impl Builtin {
    /// The same codec with another limit.
    ///
    /// # Panics
    ///
    /// For `fixed`: its frame length is its limit, and a second one would
    /// either be silently ignored or make every frame oversize.
    pub(super) fn with_max_length(self, max: usize) -> Self {
        match self {
            Builtin::Lines(codec) => Builtin::Lines(codec.with_max_length(max)),
            Builtin::Separator(codec) => Builtin::Separator(codec.with_max_length(max)),
            Builtin::Delimited(codec) => Builtin::Delimited(Box::new(codec.with_max_length(max))),
            Builtin::Fixed(codec) => panic!(
                "Framing::max_length does not apply to Framing::fixed({}): the frame length is the limit",
                codec.length()
            ),
            Builtin::LengthPrefixed(codec) => Builtin::LengthPrefixed(codec.with_max_length(max)),
            Builtin::Eof(codec) => Builtin::Eof(codec.with_max_length(max)),
            Builtin::Raw(codec) => Builtin::Raw(codec.with_max_length(max)),
            Builtin::IdleGap(codec) => Builtin::IdleGap(codec.with_max_length(max)),
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Builtin::Lines(_) => "lines()",
            Builtin::Separator(_) => "separator(..)",
            Builtin::Delimited(_) => "delimited(..)",
            Builtin::Fixed(_) => "fixed(..)",
            Builtin::LengthPrefixed(_) => "length_prefixed()",
            Builtin::Eof(_) => "eof()",
            Builtin::Raw(_) => "raw()",
            Builtin::IdleGap(_) => "idle_gap(..)",
        }
    }
}

/// What a [`Framing`](super::Framing) holds.
#[derive(Clone, Debug)]
pub(super) enum FramingKind {
    Builtin(Builtin),
    Custom(CustomFraming),
}

impl FramingKind {
    pub(super) fn decoder(&self) -> FrameDecoder {
        FrameDecoder(match self {
            FramingKind::Builtin(codec) => DecoderKind::Builtin(codec.clone()),
            FramingKind::Custom(custom) => DecoderKind::Custom(custom.decoder()),
        })
    }

    pub(super) fn encoder(&self) -> FrameEncoder {
        FrameEncoder(match self {
            FramingKind::Builtin(codec) => EncoderKind::Builtin(codec.clone()),
            FramingKind::Custom(custom) => EncoderKind::Custom(custom.encoder()),
        })
    }
}

/// Turns the bytes one connection reads into [`Decoded`] items.
#[derive(Debug)]
pub(crate) struct FrameDecoder(DecoderKind);

#[derive(Debug)]
enum DecoderKind {
    Builtin(Builtin),
    Custom(CustomDecoder),
}

/// What a [`FrameDecoder`] made of the buffer: an item, `None` until more
/// bytes arrive, or an error after which the connection cannot go on. Small
/// (the error is boxed): every frame of every connection passes through it.
pub(crate) type Decoding = Result<Option<Decoded>, Box<Error>>;

/// Built-in codecs report recoverable problems as items; an error from one
/// means the stream cannot be followed any more (a corrupt length header).
fn unrecoverable(err: io::Error) -> Box<Error> {
    Box::new(Error::Framing(err.to_string()))
}

#[inline]
fn decode_builtin(builtin: &mut Builtin, buf: &mut BytesMut) -> Decoding {
    with_codec!(builtin, codec => codec.decode(buf)).map_err(unrecoverable)
}

impl FrameDecoder {
    /// The next item from `buf`, or `None` until more bytes arrive.
    ///
    /// Recoverable problems are `Ok(Some(Decoded::Discarded(..)))`; `Err` means
    /// the connection cannot go on. Never panics: a custom codec's panic is
    /// an `Err`. Inline: the reader's loop takes the frame straight from
    /// the codec, without the item moved out through a call.
    #[inline]
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Decoding {
        match &mut self.0 {
            // Most reads end on a frame boundary, and a built-in codec makes
            // nothing of an empty buffer and stays as it was, whatever its
            // state (the property tests in `framing::tests` check it on every
            // framing): no need to ask it. A custom codec may differ.
            DecoderKind::Builtin(_) if buf.is_empty() => Ok(None),
            DecoderKind::Builtin(builtin) => decode_builtin(builtin, buf),
            DecoderKind::Custom(codec) => codec.decode(buf),
        }
    }

    /// Whether it holds nothing of the stream it decodes, so a new decoder
    /// of its framing is the same: a built-in codec in its first state. A
    /// custom codec's state is its own, and never counts as fresh.
    pub(crate) fn is_fresh(&self) -> bool {
        let DecoderKind::Builtin(builtin) = &self.0 else {
            return false;
        };
        match builtin {
            Builtin::Lines(codec) => codec.is_fresh(),
            Builtin::Separator(codec) => codec.is_fresh(),
            Builtin::Delimited(codec) => codec.is_fresh(),
            Builtin::LengthPrefixed(codec) => codec.is_fresh(),
            Builtin::Eof(codec) => codec.is_fresh(),
            Builtin::IdleGap(codec) => codec.is_fresh(),
            // Their configuration is all they hold.
            Builtin::Fixed(_) | Builtin::Raw(_) => true,
        }
    }

    /// The bytes of `buf` that certainly begin the next frame, as it will be
    /// delivered, once [`decode`](Self::decode) found no complete frame in
    /// `buf`: what a classifier may decide on early. Empty where the framing
    /// cannot tell: a frame that does not start at the stream's next byte
    /// (`delimited`, `length_prefixed`), a custom codec, an oversize frame
    /// being dropped.
    pub(crate) fn pending_frame<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let DecoderKind::Builtin(builtin) = &self.0 else {
            return &[];
        };
        match builtin {
            Builtin::Lines(codec) => codec.pending_frame(buf),
            Builtin::Separator(codec) => codec.pending_frame(buf),
            Builtin::Fixed(codec) => codec.pending_frame(buf),
            Builtin::Eof(codec) => codec.pending_frame(buf),
            Builtin::IdleGap(codec) => codec.pending_frame(buf),
            // Each read is a frame: nothing is left pending.
            Builtin::Raw(_) => buf,
            Builtin::Delimited(_) | Builtin::LengthPrefixed(_) => &[],
        }
    }

    /// What a built-in codec itself makes of `buf`, even an empty one
    /// (which [`decode`](Self::decode) does not ask it about); `None` for a
    /// custom codec.
    #[cfg(test)]
    pub(super) fn decode_builtin_in_full(&mut self, buf: &mut BytesMut) -> Option<Decoding> {
        match &mut self.0 {
            DecoderKind::Builtin(builtin) => Some(decode_builtin(builtin, buf)),
            DecoderKind::Custom(_) => None,
        }
    }

    /// The next item once the peer closed its side; call until `Ok(None)`.
    ///
    /// An unfinished frame is reported once as [`Error::FrameTruncated`], not
    /// delivered, except where EOF ends a message (`eof()`, `raw()`,
    /// `idle_gap(..)`).
    pub(crate) fn decode_eof(&mut self, buf: &mut BytesMut) -> Decoding {
        match &mut self.0 {
            DecoderKind::Builtin(builtin) => {
                with_codec!(builtin, codec => codec.decode_eof(buf)).map_err(unrecoverable)
            }
            DecoderKind::Custom(codec) => codec.decode_eof(buf),
        }
    }

    /// The silence that ends a message, for `idle_gap(..)` framing only.
    pub(crate) fn idle_gap(&self) -> Option<Duration> {
        match &self.0 {
            DecoderKind::Builtin(Builtin::IdleGap(codec)) => Some(codec.gap()),
            _ => None,
        }
    }

    /// Whether the reader should time its silence and call
    /// [`decode_idle`](Self::decode_idle) after [`idle_gap`](Self::idle_gap) of
    /// it: with `idle_gap(..)` framing, while bytes are pending or an oversize
    /// burst is being dropped (the drop empties the buffer, yet only a gap
    /// ends it).
    pub(crate) fn wants_idle_timer(&self, buffer: &BytesMut) -> bool {
        match &self.0 {
            DecoderKind::Builtin(Builtin::IdleGap(codec)) => codec.awaits_gap(buffer),
            _ => false,
        }
    }

    /// The pending message after [`idle_gap`](Self::idle_gap) of silence; a
    /// no-op for every other framing.
    pub(crate) fn decode_idle(&mut self, buf: &mut BytesMut) -> Decoding {
        match &mut self.0 {
            DecoderKind::Builtin(Builtin::IdleGap(codec)) => Ok(codec.decode_idle(buf)),
            _ => Ok(None),
        }
    }
}

/// Frames the messages of one connection; clones share the same codec.
#[derive(Clone, Debug)]
pub(crate) struct FrameEncoder(EncoderKind);

#[derive(Clone, Debug)]
enum EncoderKind {
    Builtin(Builtin),
    Custom(CustomEncoder),
}

impl FrameEncoder {
    /// Whether encoding runs user code (a custom codec), which may panic or
    /// append bytes before it fails; built-in codecs do neither.
    pub(crate) fn runs_user_code(&self) -> bool {
        matches!(self.0, EncoderKind::Custom(_))
    }

    /// Appends `message`, framed, to `dst`; on error nothing is appended by a
    /// built-in codec. Always inline: every send encodes, straight into the
    /// outbound queue, and a call costs more than the encoding (callgrind).
    #[inline(always)]
    pub(crate) fn encode(&self, message: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        match &self.0 {
            EncoderKind::Builtin(builtin) => {
                with_codec!(builtin, codec => codec.encode_message(message, dst))
                    .map_err(refused_to_encode)
            }
            EncoderKind::Custom(codec) => codec.encode(message, dst),
        }
    }
}

/// A built-in codec's refusal (a message too long for `fixed`), as a send's error.
#[cold]
fn refused_to_encode(err: io::Error) -> Error {
    Error::Encode {
        reason: err.to_string(),
    }
}
