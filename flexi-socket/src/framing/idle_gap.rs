//! [`IdleGapCodec`]: a message ends when the peer falls silent.

use std::io;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::Decoded;
use super::separator::DEFAULT_DELIMITED_MAX;
use crate::error::Error;

/// A message ends after a gap of silence: the bytes received since the last
/// gap form one message (devices that send a burst per event and no
/// delimiter).
///
/// The decoder cannot see time: its owner calls
/// [`decode_idle`](Self::decode_idle) when no byte arrived for
/// [`gap`](Self::gap), even when the buffer is empty: dropping an oversize
/// burst empties the buffer, and only a gap ends the drop.
/// `Decoder::decode` never yields a message, and
/// `Decoder::decode_eof` treats EOF as the final silence: the pending bytes are
/// delivered as a message, since EOF ends a burst as surely as a pause does.
///
/// A burst longer than [`max_length`](Self::max_length) is reported once as
/// [`Error::FrameTooLarge`] as soon as it goes over, and its remaining bytes
/// are dropped until the next gap. Encoding writes the message as is; the
/// sender must itself pause between messages.
#[derive(Clone, Debug)]
pub struct IdleGapCodec {
    gap: Duration,
    max_length: usize,
    // Set while dropping the rest of an oversize burst (already reported).
    discarding: bool,
}

impl IdleGapCodec {
    /// Messages separated by `gap` of silence, of at most 64 KiB.
    pub fn new(gap: Duration) -> Self {
        IdleGapCodec {
            gap,
            max_length: DEFAULT_DELIMITED_MAX,
            discarding: false,
        }
    }

    /// Sets the largest accepted message in bytes (default 64 KiB, the limit
    /// of delimited framings, as a burst is a delimited message in time).
    #[must_use]
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The silence that ends a message.
    pub fn gap(&self) -> Duration {
        self.gap
    }

    /// The largest accepted message in bytes.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Whether it holds nothing of the stream it decodes: it is as a new
    /// one of its configuration is (a resting connection keeps no such
    /// decoder: see `ConnectionDecoder::is_as_new`).
    pub(super) fn is_fresh(&self) -> bool {
        !self.discarding
    }

    /// Whether a gap of silence would end something: a pending burst, or the
    /// drop of an oversize one (whose bytes are already gone from `buf`).
    pub(super) fn awaits_gap(&self, buf: &BytesMut) -> bool {
        self.discarding || !buf.is_empty()
    }

    /// Ends the pending message: to be called when no byte arrived for
    /// [`gap`](Self::gap). Returns the message, or `None` when nothing is
    /// pending or the burst was oversize (already reported); a second call
    /// returns `None`.
    pub fn decode_idle(&mut self, buf: &mut BytesMut) -> Option<Decoded> {
        if std::mem::take(&mut self.discarding) {
            buf.clear();
            return None;
        }
        if buf.is_empty() {
            return None;
        }
        if buf.len() > self.max_length {
            // Over the limit but not yet reported: the burst ends here anyway.
            let length = buf.len();
            buf.clear();
            return Some(self.too_large(length));
        }
        Some(Decoded::Frame(buf.split().freeze()))
    }

    fn too_large(&self, length: usize) -> Decoded {
        Decoded::discarded(Error::FrameTooLarge {
            length,
            max: self.max_length,
        })
    }

    /// The bytes of `buf` that certainly begin the pending message: all of
    /// them, unless an oversize burst is being dropped.
    pub(super) fn pending_frame<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        if self.discarding { &[] } else { buf }
    }

    pub(super) fn encode_message(&self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        dst.put_slice(message);
        Ok(())
    }
}

impl Decoder for IdleGapCodec {
    type Item = Decoded;
    type Error = io::Error;

    /// Yields only the report of an oversize burst: silence ends a message.
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        if self.discarding {
            buf.clear();
            return Ok(None);
        }
        if buf.len() <= self.max_length {
            return Ok(None);
        }
        self.discarding = true;
        let length = buf.len();
        buf.clear();
        Ok(Some(self.too_large(length)))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        if let Some(decoded) = self.decode(buf)? {
            return Ok(Some(decoded));
        }
        Ok(self.decode_idle(buf))
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for IdleGapCodec {
    type Error = io::Error;

    fn encode(&mut self, message: T, dst: &mut BytesMut) -> io::Result<()> {
        self.encode_message(message.as_ref(), dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::tests::{Outcome, feed};

    fn codec(max: usize) -> IdleGapCodec {
        IdleGapCodec::new(Duration::from_millis(50)).with_max_length(max)
    }

    /// Feeds bursts, each followed by silence, which the owner (like the
    /// connection task) only times when the codec awaits a gap.
    fn bursts(codec: &mut IdleGapCodec, bursts: &[&[&[u8]]]) -> Vec<Outcome> {
        let mut buf = BytesMut::new();
        let mut outcomes = Vec::new();
        for burst in bursts {
            for chunk in *burst {
                buf.extend_from_slice(chunk);
                while let Some(decoded) = codec.decode(&mut buf).unwrap() {
                    outcomes.push(Outcome::from(decoded));
                }
            }
            if codec.awaits_gap(&buf) {
                while let Some(decoded) = codec.decode_idle(&mut buf) {
                    outcomes.push(Outcome::from(decoded));
                }
            }
        }
        outcomes
    }

    #[test]
    fn a_burst_split_across_reads_is_one_message() {
        let out = bursts(&mut codec(16), &[&[b"ab", b"c\n"], &[b"d"]]);
        assert_eq!(out, Outcome::frames(&["abc\n", "d"]));
    }

    #[test]
    fn silence_without_bytes_is_no_message() {
        let out = bursts(&mut codec(16), &[&[], &[b"x"], &[]]);
        assert_eq!(out, Outcome::frames(&["x"]));
    }

    #[test]
    fn exactly_at_the_limit_is_accepted() {
        let out = bursts(&mut codec(3), &[&[b"ab", b"c"]]);
        assert_eq!(out, Outcome::frames(&["abc"]));
    }

    #[test]
    fn one_over_is_reported_once_dropped_until_the_gap_then_resumes() {
        let out = bursts(&mut codec(3), &[&[b"ab", b"cd", b"efgh"], &[b"ok"]]);
        assert_eq!(
            out,
            vec![
                Outcome::TooLarge { length: 4, max: 3 },
                Outcome::frame("ok")
            ]
        );
    }

    #[test]
    fn eof_delivers_the_pending_burst() {
        let out = feed(&mut codec(16), &[b"last", b" words"]);
        assert_eq!(out, Outcome::frames(&["last words"]));
    }

    #[test]
    fn eof_while_discarding_reports_nothing_more() {
        let out = feed(&mut codec(2), &[b"abc", b"d"]);
        assert_eq!(out, vec![Outcome::TooLarge { length: 3, max: 2 }]);
    }

    #[test]
    fn oversize_seen_first_at_idle_is_reported() {
        let mut buf = BytesMut::from(&b"abcd"[..]);
        let mut codec = codec(2);
        assert_eq!(
            codec.decode_idle(&mut buf).map(Outcome::from),
            Some(Outcome::TooLarge { length: 4, max: 2 })
        );
        assert!(buf.is_empty());
        assert!(codec.decode_idle(&mut buf).is_none());
    }
}
