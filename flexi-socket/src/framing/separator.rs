//! [`SeparatorCodec`]: a message ends with a separator of one or more bytes.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::Decoded;
use crate::error::Error;

/// Default limit of delimited framings: far above any text-protocol line, yet a
/// peer that never sends the delimiter costs at most this much memory.
pub(super) const DEFAULT_DELIMITED_MAX: usize = 64 * 1024;

/// Frames that end with a separator of one or more bytes (`"\r\n"`, `"\0"`,
/// `"<END>"`, ...).
///
/// The separator is not part of the message. A frame whose payload is longer
/// than [`max_length`](Self::max_length) is dropped up to its separator and
/// reported once as [`Decoded::Discarded`] with [`Error::FrameTooLarge`];
/// decoding then resumes with the next frame. At EOF an unfinished frame is not
/// delivered: it is reported as [`Error::FrameTruncated`].
///
/// The codec never buffers more than `max_length` plus the separator plus one
/// read, and never searches the same bytes twice, even when a multi-byte
/// separator is split across reads.
///
/// Encoding appends the separator; a message that itself contains the
/// separator reaches the peer as several messages (not checked, as sending
/// several messages in one write is a legitimate use).
#[derive(Clone, Debug)]
pub struct SeparatorCodec {
    // Every connection's decoder is a clone of its framing's codec: shared,
    // the separator costs none of them an allocation (and `Bytes` would be
    // twice the size).
    separator: Arc<[u8]>,
    max_length: usize,
    // Where the next search starts: no separator starts before this index.
    next_index: usize,
    // Set while dropping an oversize frame (already reported) up to its separator.
    discarding: bool,
}

impl SeparatorCodec {
    /// Frames ended by `separator`, with a limit of 64 KiB per frame.
    ///
    /// # Panics
    ///
    /// If `separator` is empty: an empty separator would end a frame at every
    /// byte position.
    pub fn new(separator: impl Into<Bytes>) -> Self {
        let separator: Arc<[u8]> = separator.into().as_ref().into();
        assert!(
            !separator.is_empty(),
            "the framing separator must be at least one byte long"
        );
        SeparatorCodec {
            separator,
            max_length: DEFAULT_DELIMITED_MAX,
            next_index: 0,
            discarding: false,
        }
    }

    /// Sets the largest accepted payload in bytes, separator excluded
    /// (default 64 KiB).
    #[must_use]
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The separator.
    pub fn separator(&self) -> &[u8] {
        &self.separator
    }

    /// The largest accepted payload in bytes, separator excluded.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Whether it holds nothing of the stream it decodes: it is as a new
    /// one of its configuration is (a resting connection keeps no such
    /// decoder: see `ConnectionDecoder::is_as_new`).
    pub(super) fn is_fresh(&self) -> bool {
        self.next_index == 0 && !self.discarding
    }

    /// Drops the bytes of an oversize frame up to and including its separator.
    /// Returns the number of frame bytes before the separator if it was found.
    fn skip_oversize(&mut self, buf: &mut BytesMut) -> Option<usize> {
        let start = self.next_index.min(buf.len());
        self.next_index = 0;
        match find(&buf[start..], &self.separator) {
            Some(offset) => {
                let length = start + offset;
                buf.advance(length + self.separator.len());
                self.discarding = false;
                Some(length)
            }
            None => {
                // The tail may be the beginning of a separator split across reads.
                let keep = buf.len().min(self.separator.len() - 1);
                buf.advance(buf.len() - keep);
                None
            }
        }
    }

    /// Decodes the next item of `buf`. `shape` sees each complete frame
    /// (separator excluded) before it is taken off the buffer, and says how
    /// much of it is the message, or why it is dropped instead; an oversize
    /// frame is reported against `stated_max`. The codecs built on this one
    /// shape their frames there, on the path every message takes, so a
    /// frame is split off once and moved once.
    #[inline]
    pub(super) fn decode_with(
        &mut self,
        buf: &mut BytesMut,
        stated_max: usize,
        shape: impl FnOnce(&[u8]) -> Result<usize, Error>,
    ) -> Option<Decoded> {
        if self.discarding && self.skip_oversize(buf).is_none() {
            return None;
        }
        let Some(length) = self.find_frame(buf) else {
            return self.oversize(buf, stated_max);
        };
        self.next_index = 0;
        let taken = length + self.separator.len();
        Some(match shape(&buf[..length]) {
            Ok(kept) => {
                // One split takes the frame and its separator off the buffer.
                let mut frame = buf.split_to(taken);
                frame.truncate(kept);
                Decoded::Frame(frame.freeze())
            }
            Err(error) => {
                buf.advance(taken);
                Decoded::discarded(error)
            }
        })
    }

    /// The length of the next complete frame within the limit in `buf`,
    /// separator excluded.
    #[inline]
    fn find_frame(&mut self, buf: &BytesMut) -> Option<usize> {
        let separator_len = self.separator.len();
        // The separator of an acceptable frame ends within this many bytes.
        let limit = self.max_length.saturating_add(separator_len);
        let window = buf.len().min(limit);
        let start = self.next_index.min(window);
        let Some(offset) = find(&buf[start..window], &self.separator) else {
            // No separator starts before this index: the next search starts there.
            self.next_index = (window + 1).saturating_sub(separator_len).max(start);
            return None;
        };
        Some(start + offset)
    }

    /// [`decode_with`](Self::decode_with) once the peer closed its side: an
    /// unfinished frame is reported as truncated, not delivered.
    pub(super) fn decode_eof_with(
        &mut self,
        buf: &mut BytesMut,
        stated_max: usize,
        shape: impl FnOnce(&[u8]) -> Result<usize, Error>,
    ) -> Option<Decoded> {
        if let Some(decoded) = self.decode_with(buf, stated_max, shape) {
            return Some(decoded);
        }
        let was_discarding = self.discarding;
        self.discarding = false;
        self.next_index = 0;
        let bytes = buf.len();
        buf.clear();
        // The rest of an oversize frame was already reported.
        if bytes == 0 || was_discarding {
            return None;
        }
        Some(Decoded::discarded(Error::FrameTruncated { bytes }))
    }

    /// After [`find_frame`](Self::find_frame) found no frame: `None` until
    /// more bytes may still end one within the limit; otherwise the oversize
    /// frame is reported (against `stated_max`), and dropped up to its
    /// separator.
    fn oversize(&mut self, buf: &mut BytesMut, stated_max: usize) -> Option<Decoded> {
        let separator_len = self.separator.len();
        if buf.len() < self.max_length.saturating_add(separator_len) {
            return None;
        }
        // No separator starts within the first `max_length` bytes: oversize.
        self.discarding = true;
        let buffered = buf.len();
        let length = self
            .skip_oversize(buf)
            // Otherwise at least the bytes that cannot be part of a separator.
            .unwrap_or(buffered + 1 - separator_len);
        Some(Decoded::discarded(Error::FrameTooLarge {
            length,
            max: stated_max,
        }))
    }

    /// The bytes of `buf`, which holds no complete frame, that certainly
    /// begin the next frame: all but a tail that may be the start of the
    /// separator; none while an oversize frame is dropped.
    pub(super) fn pending_frame<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        if self.discarding {
            return &[];
        }
        &buf[..buf.len().saturating_sub(self.separator.len() - 1)]
    }

    #[inline]
    pub(super) fn encode_message(&self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        dst.reserve(message.len() + self.separator.len());
        dst.put_slice(message);
        match *self.separator {
            // Most separators are one byte (`lines()`): stored as such, not
            // copied by a `memcpy` call of unknown length per message.
            [byte] => dst.put_u8(byte),
            ref separator => dst.put_slice(separator),
        }
        Ok(())
    }
}

impl Decoder for SeparatorCodec {
    type Item = Decoded;
    type Error = io::Error;

    #[inline]
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        Ok(self.decode_with(buf, self.max_length, whole))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        Ok(self.decode_eof_with(buf, self.max_length, whole))
    }
}

/// A frame delivered as it is.
#[inline]
fn whole(frame: &[u8]) -> Result<usize, Error> {
    Ok(frame.len())
}

impl<T: AsRef<[u8]>> Encoder<T> for SeparatorCodec {
    type Error = io::Error;

    fn encode(&mut self, message: T, dst: &mut BytesMut) -> io::Result<()> {
        self.encode_message(message.as_ref(), dst)
    }
}

/// Index of the first occurrence of `needle` (not empty) in `haystack`.
///
/// Vectorised (memchr): this search runs over every byte a connection reads.
#[inline]
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [byte] => memchr::memchr(*byte, haystack),
        _ => memchr::memmem::find(haystack, needle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::tests::{Outcome, feed};

    fn codec(separator: &'static str, max: usize) -> SeparatorCodec {
        SeparatorCodec::new(separator).with_max_length(max)
    }

    #[test]
    fn multiple_frames_in_one_buffer() {
        let out = feed(&mut codec("\r\n", 16), &[b"a\r\nbc\r\n\r\nd\r\n"]);
        assert_eq!(out, Outcome::frames(&["a", "bc", "", "d"]));
    }

    #[test]
    fn frame_split_across_reads() {
        let out = feed(&mut codec("||", 16), &[b"he", b"ll", b"o|", b"|"]);
        assert_eq!(out, Outcome::frames(&["hello"]));
    }

    #[test]
    fn separator_split_across_reads() {
        let out = feed(
            &mut codec("<END>", 16),
            &[b"ab<E", b"N", b"D>cd<EN", b"D><", b"<END>"],
        );
        assert_eq!(out, Outcome::frames(&["ab", "cd", "<"]));
    }

    #[test]
    fn partial_separator_is_not_a_separator() {
        let out = feed(&mut codec("<END>", 16), &[b"a<EN", b"Xb<END>"]);
        assert_eq!(out, Outcome::frames(&["a<ENXb"]));
    }

    #[test]
    fn overlapping_separator_bytes_end_at_the_first_match() {
        let out = feed(&mut codec("aab", 16), &[b"xaa", b"aab"]);
        assert_eq!(out, Outcome::frames(&["xaa"]));
    }

    #[test]
    fn exactly_at_the_limit_is_accepted() {
        let out = feed(&mut codec("||", 4), &[b"abcd|", b"|"]);
        assert_eq!(out, Outcome::frames(&["abcd"]));
    }

    #[test]
    fn one_over_the_limit_is_discarded_then_decoding_resumes() {
        let out = feed(&mut codec("||", 4), &[b"abcde||ok||"]);
        assert_eq!(
            out,
            vec![
                Outcome::TooLarge { length: 5, max: 4 },
                Outcome::frame("ok")
            ]
        );
    }

    #[test]
    fn oversize_frame_across_many_reads_is_reported_once() {
        let mut codec = codec("<>", 4);
        let mut buf = BytesMut::new();
        let mut outcomes = Vec::new();
        for chunk in [&b"0123"[..], b"4567", b"89<", b"", b"0123<", b">fine<>"] {
            buf.extend_from_slice(chunk);
            while let Some(decoded) = codec.decode(&mut buf).unwrap() {
                outcomes.push(Outcome::from(decoded));
            }
            // While discarding only a possible separator start is kept.
            assert!(buf.len() <= 4 + 2, "buffer grew to {}", buf.len());
        }
        assert_eq!(
            outcomes,
            vec![
                Outcome::TooLarge { length: 7, max: 4 },
                Outcome::frame("fine")
            ]
        );
    }

    #[test]
    fn eof_mid_frame_is_truncated_not_delivered() {
        let out = feed(&mut codec("||", 16), &[b"one||tw", b"o|"]);
        assert_eq!(
            out,
            vec![Outcome::frame("one"), Outcome::Truncated { bytes: 4 }]
        );
    }

    #[test]
    fn eof_while_discarding_reports_nothing_more() {
        let out = feed(&mut codec("||", 2), &[b"abcdef"]);
        assert_eq!(out, vec![Outcome::TooLarge { length: 5, max: 2 }]);
    }

    #[test]
    fn encode_appends_the_separator() {
        let mut dst = BytesMut::new();
        let mut codec = codec("\r\n", 16);
        codec.encode("hi", &mut dst).unwrap();
        codec.encode(Bytes::from_static(b""), &mut dst).unwrap();
        assert_eq!(&dst[..], b"hi\r\n\r\n");
    }

    #[test]
    #[should_panic(expected = "at least one byte")]
    fn empty_separator_panics() {
        let _ = SeparatorCodec::new("");
    }

    #[test]
    fn find_handles_edges() {
        assert_eq!(find(b"", b"ab"), None);
        assert_eq!(find(b"a", b"ab"), None);
        assert_eq!(find(b"xab", b"ab"), Some(1));
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"ab", b"ab"), Some(0));
    }
}
