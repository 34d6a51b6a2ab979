//! How the bytes of a stream become messages, and messages become bytes.
//!
//! A server or client takes one [`Framing`]; each connection gets its own
//! decoder and encoder from it. The codecs behind it are public
//! [`tokio_util::codec`] codecs, usable on their own with `Framed`:
//!
//! | framing | codec | a message is | default limit |
//! |---|---|---|---|
//! | [`Framing::lines`] | [`LineCodec`] | a line ended by `"\n"` (`"\r\n"` tolerated) | 64 KiB |
//! | [`Framing::separator`] | [`SeparatorCodec`] | bytes ended by a separator | 64 KiB |
//! | [`Framing::delimited`] | [`DelimitedCodec`] | bytes from a start sequence to an end sequence | 64 KiB |
//! | [`Framing::fixed`] | [`FixedLengthCodec`] | exactly `len` bytes | `len` |
//! | [`Framing::length_prefixed`] | [`LengthPrefixedCodec`] | a length header and that many bytes | 8 MiB |
//! | [`Framing::eof`] | [`EofCodec`] | the whole stream until EOF | 8 MiB |
//! | [`Framing::raw`] | [`RawCodec`] | whatever arrived | 64 KiB |
//! | [`Framing::idle_gap`] | [`IdleGapCodec`] | a burst followed by silence | 64 KiB |
//! | [`Framing::custom`] | yours | whatever your codec says | yours |
//!
//! The same rules hold for every built-in codec:
//!
//! - The delimiter or header is never part of the message.
//! - Decoders are bounded: they never buffer more than the limit plus the
//!   delimiter plus one read. A frame over the limit is dropped (up to its
//!   delimiter, or exactly the length its header declares), reported once as
//!   [`Decoded::Discarded`] with [`Error::FrameTooLarge`], and the next frame
//!   is read normally. A frame of exactly the limit is accepted.
//! - A frame cut by EOF is not delivered: it is reported as
//!   [`Error::FrameTruncated`] (as is, in `delimited`, a frame cut short by a
//!   new start; bytes before a start are [`Error::Unframed`]). Where EOF itself ends a message (`eof`, `raw`,
//!   `idle_gap`) the pending bytes are delivered.
//! - Recoverable problems are items ([`Decoded::Discarded`]), never decoder
//!   errors, so a `Framed` stream does not end on them.
//! - Frames are slices of the read buffer (no copy).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::Error;

mod codec;
mod custom;
mod delimited;
mod eof;
mod fixed;
mod idle_gap;
mod length_prefixed;
mod lines;
mod raw;
mod separator;
#[cfg(test)]
mod tests;

pub(crate) use codec::{Decoding, FrameDecoder, FrameEncoder};
pub use delimited::DelimitedCodec;
pub use eof::EofCodec;
pub use fixed::FixedLengthCodec;
pub use idle_gap::IdleGapCodec;
pub use length_prefixed::LengthPrefixedCodec;
pub use lines::LineCodec;
pub use raw::RawCodec;
pub use separator::SeparatorCodec;

use codec::{Builtin, FramingKind};
use custom::CustomFraming;

/// What a decoder makes of the bytes it was given.
#[derive(Debug)]
pub enum Decoded {
    /// A complete message, delimiter excluded.
    Frame(Bytes),
    /// Bytes that were dropped for a recoverable reason, either
    /// [`Error::FrameTooLarge`], [`Error::FrameTruncated`] or (`delimited`)
    /// [`Error::Unframed`]; decoding goes on. Boxed: every frame moves
    /// through this type, and errors are rare.
    Discarded(Box<Error>),
}

impl Decoded {
    pub(crate) fn discarded(error: Error) -> Self {
        Decoded::Discarded(Box::new(error))
    }
}

/// How bytes on the wire become messages: the choice of codec and its
/// parameters, shared by every connection of a server or client.
///
/// ```
/// use flexi_socket::Framing;
///
/// let text = Framing::lines().max_length(4096);
/// let records = Framing::fixed(80).pad(b' ').trim_padding(true);
/// let binary = Framing::length_prefixed().prefix_len(2).little_endian();
/// let sia = Framing::separator("\r");
/// let stx_etx = Framing::delimited("\x02", "\x03").max_length(1024);
/// # let _ = (text, records, binary, sia, stx_etx);
/// ```
#[derive(Clone)]
pub struct Framing {
    kind: FramingKind,
    /// Frames outbound messages instead of `kind`, when set (see [`Framing::outbound`]).
    outbound: Option<Box<FramingKind>>,
}

impl Framing {
    /// Text lines ended by `"\n"`; a `'\r'` before it is stripped, so `"\r\n"`
    /// works too. Encoding appends `"\n"`. Lines are limited to 64 KiB.
    ///
    /// This is the default framing: most socket protocols meant to be typed or
    /// read by people are line based.
    pub fn lines() -> Self {
        Self::builtin(Builtin::Lines(LineCodec::new()))
    }

    /// Messages ended by `separator`, one or more bytes (`"\r\n"`, `"\0"`,
    /// `"\x03"`, ...). Encoding appends the separator. Messages are limited to
    /// 64 KiB.
    ///
    /// # Panics
    ///
    /// If `separator` is empty.
    pub fn separator(separator: impl Into<Bytes>) -> Self {
        Self::builtin(Builtin::Separator(SeparatorCodec::new(separator)))
    }

    /// Messages that run from `start` to `end`, one or more bytes each (STX/ETX,
    /// `"\n"`/`"\r"`, ...). Bytes before a start are dropped and reported once
    /// per run, and a start inside a frame restarts it (the partial frame is
    /// reported); see [`DelimitedCodec`]. Encoding wraps the message in `start`
    /// and `end`. Messages are limited to 64 KiB.
    ///
    /// # Panics
    ///
    /// If `start` or `end` is empty.
    pub fn delimited(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        Self::builtin(Builtin::Delimited(Box::new(DelimitedCodec::new(
            start, end,
        ))))
    }

    /// Frames of exactly `len` bytes. Decoding yields the `len` bytes untouched
    /// (see [`trim_padding`](Self::trim_padding)); encoding pads a shorter
    /// message with the [`pad`](Self::pad) byte up to `len` and refuses a
    /// longer one with [`Error::Encode`]. `len` is also the limit (there is no
    /// [`max_length`](Self::max_length)).
    ///
    /// # Panics
    ///
    /// If `len` is 0.
    pub fn fixed(len: usize) -> Self {
        Self::builtin(Builtin::Fixed(FixedLengthCodec::new(len)))
    }

    /// Frames made of a length header and that many bytes. The header is set
    /// with [`prefix_len`](Self::prefix_len) (default 4 bytes),
    /// [`big_endian`](Self::big_endian) / [`little_endian`](Self::little_endian)
    /// (default big) and [`length_includes_prefix`](Self::length_includes_prefix)
    /// (default `false`). Frames are limited to 8 MiB; an oversize frame is
    /// skipped by exactly its declared length and reported.
    pub fn length_prefixed() -> Self {
        Self::builtin(Builtin::LengthPrefixed(LengthPrefixedCodec::new()))
    }

    /// The whole stream until the peer closes its side is one message, limited
    /// to 8 MiB; past the limit the rest is dropped and [`Error::FrameTooLarge`]
    /// is reported at EOF. Encoding writes the message as is.
    pub fn eof() -> Self {
        Self::builtin(Builtin::Eof(EofCodec::new()))
    }

    /// No framing: whatever arrived in a read is a message, split into pieces
    /// of at most the limit (64 KiB). Encoding writes the message as is.
    pub fn raw() -> Self {
        Self::builtin(Builtin::Raw(RawCodec::new()))
    }

    /// A message ends after `gap` of silence: the bytes received since the
    /// previous gap are one message, of at most 64 KiB (an oversize burst is
    /// dropped until the next gap and reported).
    ///
    /// EOF counts as silence: the bytes pending when the peer closes are
    /// delivered as a last message, since a close ends a burst as surely as a
    /// pause does. Encoding writes the message as is.
    pub fn idle_gap(gap: Duration) -> Self {
        Self::builtin(Builtin::IdleGap(IdleGapCodec::new(gap)))
    }

    /// Your own tokio-util codec. `make` is called twice per connection: once
    /// for its decoder and once for its encoder (shared by the connection's
    /// senders).
    ///
    /// A decoder error ends the connection with [`Error::Framing`], as the
    /// codec's position in the stream is lost; an encoder error fails that
    /// send with [`Error::Encode`]. Your codec bounds its own buffering
    /// ([`max_length`](Self::max_length) panics), and EOF is handled by its
    /// `decode_eof`.
    pub fn custom<F, C>(make: F) -> Self
    where
        F: Fn() -> C + Send + Sync + 'static,
        C: Decoder + Encoder<Bytes> + Send + 'static,
        <C as Decoder>::Item: Into<Bytes>,
        <C as Decoder>::Error: fmt::Display,
        <C as Encoder<Bytes>>::Error: fmt::Display,
    {
        Framing {
            kind: FramingKind::Custom(CustomFraming::new(make)),
            outbound: None,
        }
    }

    /// Sets the largest accepted message in bytes, delimiter or header
    /// excluded. Defaults: 64 KiB for `lines`, `separator`, `delimited`, `raw`
    /// and `idle_gap` (text and bursts), 8 MiB for `length_prefixed` and `eof`
    /// (whole binary payloads).
    ///
    /// # Panics
    ///
    /// - With `fixed` framing: the frame length is the limit.
    /// - With `custom` framing: a custom codec enforces its own limit.
    /// - If `max` is 0 with `raw` framing, which could then never make progress.
    #[must_use]
    pub fn max_length(self, max: usize) -> Self {
        match self.kind {
            FramingKind::Builtin(codec) => Framing {
                kind: FramingKind::Builtin(codec.with_max_length(max)),
                outbound: self.outbound,
            },
            FramingKind::Custom(_) => panic!(
                "Framing::max_length does not apply to Framing::custom(..): a custom codec enforces its own limit"
            ),
        }
    }

    /// Sets the byte that pads a shorter outbound message to the `fixed`
    /// length (default `b' '`, the usual filler of fixed-width text records).
    ///
    /// # Panics
    ///
    /// If the framing is not `fixed`.
    #[must_use]
    pub fn pad(self, byte: u8) -> Self {
        self.map_fixed("pad", |codec| codec.with_pad(byte))
    }

    /// Strips trailing pad bytes from inbound `fixed` frames (default `false`:
    /// frames arrive exactly as sent, as a message may legitimately end with
    /// the pad byte).
    ///
    /// # Panics
    ///
    /// If the framing is not `fixed`.
    #[must_use]
    pub fn trim_padding(self, trim: bool) -> Self {
        self.map_fixed("trim_padding", |codec| codec.with_trim_padding(trim))
    }

    /// Sets the size of the length header in bytes, 1 to 8 (default 4: the
    /// most common choice, enough for frames up to 4 GiB).
    ///
    /// # Panics
    ///
    /// If the framing is not `length_prefixed`, or `bytes` is not 1 to 8.
    #[must_use]
    pub fn prefix_len(self, bytes: usize) -> Self {
        self.map_length_prefixed("prefix_len", |codec| codec.with_prefix_len(bytes))
    }

    /// Reads and writes the length header big-endian, the network byte order
    /// (the default).
    ///
    /// # Panics
    ///
    /// If the framing is not `length_prefixed`.
    #[must_use]
    pub fn big_endian(self) -> Self {
        self.map_length_prefixed("big_endian", |codec| codec.with_big_endian(true))
    }

    /// Reads and writes the length header little-endian (default big-endian).
    ///
    /// # Panics
    ///
    /// If the framing is not `length_prefixed`.
    #[must_use]
    pub fn little_endian(self) -> Self {
        self.map_length_prefixed("little_endian", |codec| codec.with_big_endian(false))
    }

    /// Says whether the header value counts the header itself (default
    /// `false`: it counts the payload only, as most protocols do).
    ///
    /// # Panics
    ///
    /// If the framing is not `length_prefixed`.
    #[must_use]
    pub fn length_includes_prefix(self, includes: bool) -> Self {
        self.map_length_prefixed("length_includes_prefix", |codec| {
            codec.with_length_includes_prefix(includes)
        })
    }

    /// Decodes inbound bytes with this framing but frames outbound messages
    /// with `framing`, for protocols whose two directions differ: say,
    /// requests ended by DC4 answered with one bare byte,
    /// `Framing::separator("\x14").outbound(Framing::raw())`.
    /// Builder calls after this one still set the inbound side.
    ///
    /// ```
    /// use flexi_socket::Framing;
    ///
    /// // Lines in, length-prefixed replies out.
    /// let framing = Framing::lines().outbound(Framing::length_prefixed().prefix_len(2));
    /// # let _ = framing;
    /// ```
    #[must_use]
    pub fn outbound(self, framing: Framing) -> Self {
        let encoder_side = framing.outbound.map_or(framing.kind, |kind| *kind);
        Framing {
            kind: self.kind,
            outbound: Some(Box::new(encoder_side)),
        }
    }

    /// Whether a partial frame means "the rest is on its way", so a frame
    /// deadline makes sense. In `eof`, `raw` and `idle_gap` framings pending
    /// bytes are the normal state, not a stalled frame.
    pub(crate) fn frame_deadline_applies(&self) -> bool {
        !matches!(
            self.kind,
            FramingKind::Builtin(Builtin::Eof(_) | Builtin::Raw(_) | Builtin::IdleGap(_))
        )
    }

    /// A decoder for one connection.
    pub(crate) fn decoder(&self) -> FrameDecoder {
        self.kind.decoder()
    }

    /// The encoder of one connection, to be shared by all its senders.
    pub(crate) fn encoder(&self) -> FrameEncoder {
        self.outbound.as_deref().unwrap_or(&self.kind).encoder()
    }

    /// The encoder every connection can share: a built-in codec's, which
    /// holds no state; `None` for a custom codec (one per connection).
    pub(crate) fn shared_encoder(&self) -> Option<FrameEncoder> {
        // Not by building one and looking: a custom codec's factory is user
        // code, called only where its panic costs one connection.
        match self.outbound.as_deref().unwrap_or(&self.kind) {
            kind @ FramingKind::Builtin(_) => Some(kind.encoder()),
            FramingKind::Custom(_) => None,
        }
    }

    /// The framing of the other end: it encodes what this one decodes, and
    /// decodes what this one encodes (the test harness's peers use it).
    #[cfg(feature = "testing")]
    pub(crate) fn mirrored(&self) -> Framing {
        let encoded_by_us = self.outbound.as_deref().unwrap_or(&self.kind).clone();
        Framing {
            kind: encoded_by_us,
            outbound: Some(Box::new(self.kind.clone())),
        }
    }

    /// [`decoder`](Self::decoder), with a custom codec factory's panic caught.
    pub(crate) fn try_decoder(&self) -> Result<FrameDecoder, Error> {
        catch_factory_panic(|| self.decoder())
    }

    /// [`encoder`](Self::encoder), with a custom codec factory's panic caught.
    pub(crate) fn try_encoder(&self) -> Result<FrameEncoder, Error> {
        catch_factory_panic(|| self.encoder())
    }

    fn builtin(codec: Builtin) -> Self {
        Framing {
            kind: FramingKind::Builtin(codec),
            outbound: None,
        }
    }

    fn map_fixed(
        self,
        method: &str,
        set: impl FnOnce(FixedLengthCodec) -> FixedLengthCodec,
    ) -> Self {
        match self.kind {
            FramingKind::Builtin(Builtin::Fixed(codec)) => Framing {
                kind: FramingKind::Builtin(Builtin::Fixed(set(codec))),
                outbound: self.outbound,
            },
            other => panic!(
                "Framing::{method} applies to Framing::fixed(..) only, not to Framing::{}",
                Self::name(&other)
            ),
        }
    }

    fn map_length_prefixed(
        self,
        method: &str,
        set: impl FnOnce(LengthPrefixedCodec) -> LengthPrefixedCodec,
    ) -> Self {
        match self.kind {
            FramingKind::Builtin(Builtin::LengthPrefixed(codec)) => Framing {
                kind: FramingKind::Builtin(Builtin::LengthPrefixed(set(codec))),
                outbound: self.outbound,
            },
            other => panic!(
                "Framing::{method} applies to Framing::length_prefixed() only, not to Framing::{}",
                Self::name(&other)
            ),
        }
    }

    fn name(kind: &FramingKind) -> &'static str {
        match kind {
            FramingKind::Builtin(codec) => codec.name(),
            FramingKind::Custom(_) => "custom(..)",
        }
    }
}

/// A custom codec's factory is user code: its panic must cost one
/// connection (or datagram), not the task or loop that asked for a codec.
fn catch_factory_panic<T>(make: impl FnOnce() -> T) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)).map_err(|payload| {
        Error::Framing(format!(
            "the codec factory panicked: {}",
            crate::error::panic_message(&*payload)
        ))
    })
}

impl Default for Framing {
    /// [`Framing::lines`].
    fn default() -> Self {
        Self::lines()
    }
}

impl fmt::Debug for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn kind(kind: &FramingKind) -> &dyn fmt::Debug {
            match kind {
                FramingKind::Builtin(codec) => codec,
                FramingKind::Custom(custom) => custom,
            }
        }
        match &self.outbound {
            None => kind(&self.kind).fmt(f),
            Some(outbound) => f
                .debug_struct("Framing")
                .field("inbound", kind(&self.kind))
                .field("outbound", kind(outbound))
                .finish(),
        }
    }
}
