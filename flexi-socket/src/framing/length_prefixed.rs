//! [`LengthPrefixedCodec`]: each frame starts with its length as an integer.

use std::io;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::Decoded;
use crate::error::Error;

/// Default limit of length-prefixed framing: binary payloads (images, firmware
/// chunks) are larger than text lines, and a header cannot make the decoder
/// allocate ahead of the bytes actually received.
pub(super) const DEFAULT_LENGTH_PREFIXED_MAX: usize = 8 * 1024 * 1024;

/// Frames made of a length header followed by that many bytes of payload.
///
/// The header is an unsigned integer of 1 to 8 bytes (default 4), big-endian
/// by default, counting the payload only unless
/// [`with_length_includes_prefix(true)`](Self::with_length_includes_prefix).
/// The header is not part of the message.
///
/// A header that declares more than [`max_length`](Self::max_length) bytes is
/// reported once as [`Error::FrameTooLarge`]; exactly the declared number of
/// bytes is then skipped, across as many reads as needed and without buffering
/// them, and decoding resumes with the next header. At EOF an unfinished frame
/// is reported as [`Error::FrameTruncated`] and not delivered. A header smaller
/// than itself when it includes itself is a decoder error: the stream position
/// is lost.
///
/// Encoding writes the header, then the message; it refuses a message whose
/// length does not fit the header. It does not apply `max_length`, which guards
/// this side's memory, not the peer's.
#[derive(Clone, Debug)]
pub struct LengthPrefixedCodec {
    prefix_len: usize,
    big_endian: bool,
    includes_prefix: bool,
    max_length: usize,
    state: State,
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Waiting for a complete header.
    Head,
    /// The header is consumed; waiting for this many payload bytes.
    Body(usize),
    /// Dropping this many more bytes of an oversize frame (already reported).
    Skip(u64),
}

impl LengthPrefixedCodec {
    /// A 4-byte big-endian header counting the payload only, and frames of at
    /// most 8 MiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the header size in bytes, 1 to 8 (default 4: the most common
    /// choice, enough for any frame up to 4 GiB).
    ///
    /// # Panics
    ///
    /// If `prefix_len` is not between 1 and 8.
    #[must_use]
    pub fn with_prefix_len(mut self, prefix_len: usize) -> Self {
        assert!(
            (1..=8).contains(&prefix_len),
            "a length prefix has 1 to 8 bytes, not {prefix_len}"
        );
        self.prefix_len = prefix_len;
        self
    }

    /// Sets the byte order of the header (default big-endian, the network
    /// byte order).
    #[must_use]
    pub fn with_big_endian(mut self, big_endian: bool) -> Self {
        self.big_endian = big_endian;
        self
    }

    /// Says whether the header value counts the header itself (default
    /// `false`: it counts the payload only, as most protocols do).
    #[must_use]
    pub fn with_length_includes_prefix(mut self, includes: bool) -> Self {
        self.includes_prefix = includes;
        self
    }

    /// Sets the largest accepted payload in bytes, header excluded
    /// (default 8 MiB).
    #[must_use]
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The header size in bytes.
    pub fn prefix_len(&self) -> usize {
        self.prefix_len
    }

    /// The largest accepted payload in bytes, header excluded.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Whether it holds nothing of the stream it decodes: it is as a new
    /// one of its configuration is (a resting connection keeps no such
    /// decoder: see `ConnectionDecoder::is_as_new`).
    pub(super) fn is_fresh(&self) -> bool {
        matches!(self.state, State::Head)
    }

    /// The payload length a complete header declares.
    fn payload_len(&self, mut header: &[u8]) -> io::Result<u64> {
        let value = if self.big_endian {
            header.get_uint(self.prefix_len)
        } else {
            header.get_uint_le(self.prefix_len)
        };
        if !self.includes_prefix {
            return Ok(value);
        }
        value.checked_sub(self.prefix_len as u64).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a length header of {value} is smaller than the {}-byte header it includes",
                    self.prefix_len
                ),
            )
        })
    }

    pub(super) fn encode_message(&self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        let header_max = u64::MAX >> (64 - 8 * self.prefix_len);
        let extra = if self.includes_prefix {
            self.prefix_len
        } else {
            0
        };
        let declared = (message.len() as u64)
            .checked_add(extra as u64)
            .filter(|&declared| declared <= header_max)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the message has {} bytes, too many for a {}-byte length prefix",
                        message.len(),
                        self.prefix_len
                    ),
                )
            })?;
        dst.reserve(self.prefix_len + message.len());
        if self.big_endian {
            dst.put_uint(declared, self.prefix_len);
        } else {
            dst.put_uint_le(declared, self.prefix_len);
        }
        dst.put_slice(message);
        Ok(())
    }
}

impl Default for LengthPrefixedCodec {
    fn default() -> Self {
        LengthPrefixedCodec {
            prefix_len: 4,
            big_endian: true,
            includes_prefix: false,
            max_length: DEFAULT_LENGTH_PREFIXED_MAX,
            state: State::Head,
        }
    }
}

impl Decoder for LengthPrefixedCodec {
    type Item = Decoded;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        loop {
            match self.state {
                State::Skip(remaining) => {
                    let skipped = buf
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    buf.advance(skipped);
                    let remaining = remaining - skipped as u64;
                    if remaining > 0 {
                        self.state = State::Skip(remaining);
                        return Ok(None);
                    }
                    self.state = State::Head;
                }
                State::Head => {
                    if buf.len() < self.prefix_len {
                        return Ok(None);
                    }
                    let declared = self.payload_len(&buf[..self.prefix_len])?;
                    buf.advance(self.prefix_len);
                    match usize::try_from(declared) {
                        // No reserve: a header alone must not cost `max_length` of memory.
                        Ok(len) if len <= self.max_length => self.state = State::Body(len),
                        too_large => {
                            self.state = State::Skip(declared);
                            return Ok(Some(Decoded::discarded(Error::FrameTooLarge {
                                length: too_large.unwrap_or(usize::MAX),
                                max: self.max_length,
                            })));
                        }
                    }
                }
                State::Body(len) => {
                    if buf.len() < len {
                        return Ok(None);
                    }
                    self.state = State::Head;
                    return Ok(Some(Decoded::Frame(buf.split_to(len).freeze())));
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        if let Some(decoded) = self.decode(buf)? {
            return Ok(Some(decoded));
        }
        let unfinished = match self.state {
            State::Head => buf.len(),
            State::Body(_) => self.prefix_len + buf.len(),
            // The oversize frame was already reported.
            State::Skip(_) => 0,
        };
        self.state = State::Head;
        buf.clear();
        if unfinished == 0 {
            return Ok(None);
        }
        Ok(Some(Decoded::discarded(Error::FrameTruncated {
            bytes: unfinished,
        })))
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for LengthPrefixedCodec {
    type Error = io::Error;

    fn encode(&mut self, message: T, dst: &mut BytesMut) -> io::Result<()> {
        self.encode_message(message.as_ref(), dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::tests::{Outcome, feed};

    fn codec(max: usize) -> LengthPrefixedCodec {
        LengthPrefixedCodec::new().with_max_length(max)
    }

    #[test]
    fn big_endian_frames_in_one_buffer() {
        let out = feed(&mut codec(16), &[b"\0\0\0\x02hi\0\0\0\0\0\0\0\x01!"]);
        assert_eq!(out, Outcome::frames(&["hi", "", "!"]));
    }

    #[test]
    fn header_and_payload_split_across_reads() {
        let out = feed(&mut codec(16), &[b"\0\0", b"\0\x03a", b"b", b"c"]);
        assert_eq!(out, Outcome::frames(&["abc"]));
    }

    #[test]
    fn little_endian_two_byte_header() {
        let mut codec = codec(600).with_prefix_len(2).with_big_endian(false);
        let mut input = vec![0x2c, 0x01];
        input.extend(std::iter::repeat_n(b'x', 300));
        let out = feed(&mut codec, &[&input]);
        assert_eq!(out, vec![Outcome::Frame(vec![b'x'; 300])]);
    }

    #[test]
    fn length_including_the_prefix() {
        let mut codec = codec(16)
            .with_prefix_len(1)
            .with_length_includes_prefix(true);
        let out = feed(&mut codec, &[b"\x03ab\x01"]);
        assert_eq!(out, Outcome::frames(&["ab", ""]));
    }

    #[test]
    fn header_smaller_than_itself_is_an_error() {
        let mut codec = codec(16)
            .with_prefix_len(2)
            .with_length_includes_prefix(true);
        let err = codec
            .decode(&mut BytesMut::from(&b"\0\x01"[..]))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn exactly_at_the_limit_is_accepted() {
        let out = feed(&mut codec(3).with_prefix_len(1), &[b"\x03abc"]);
        assert_eq!(out, Outcome::frames(&["abc"]));
    }

    #[test]
    fn oversize_is_skipped_exactly_across_reads_then_decoding_resumes() {
        let mut codec = codec(3).with_prefix_len(1);
        let out = feed(&mut codec, &[b"\x04ab", b"c", b"d\x02ok"]);
        assert_eq!(
            out,
            vec![
                Outcome::TooLarge { length: 4, max: 3 },
                Outcome::frame("ok")
            ]
        );
    }

    #[test]
    fn skipping_does_not_buffer() {
        let mut codec = codec(3).with_prefix_len(2);
        let mut buf = BytesMut::from(&b"\x01\x00"[..]);
        let Some(Decoded::Discarded(error)) = codec.decode(&mut buf).unwrap() else {
            panic!("expected a discarded frame");
        };
        assert!(matches!(*error, Error::FrameTooLarge { length: 256, .. }));
        for _ in 0..25 {
            buf.extend_from_slice(&[0; 10]);
            assert!(codec.decode(&mut buf).unwrap().is_none());
            assert!(buf.is_empty());
        }
        buf.extend_from_slice(b"123456\0\x01z");
        assert_eq!(
            Outcome::from(codec.decode(&mut buf).unwrap().unwrap()),
            Outcome::frame("z")
        );
    }

    #[test]
    fn eof_mid_payload_is_truncated_not_delivered() {
        let out = feed(&mut codec(16).with_prefix_len(1), &[b"\x01a\x05abc"]);
        assert_eq!(
            out,
            vec![Outcome::frame("a"), Outcome::Truncated { bytes: 4 }]
        );
    }

    #[test]
    fn eof_mid_header_is_truncated() {
        let out = feed(&mut codec(16), &[b"\0\0"]);
        assert_eq!(out, vec![Outcome::Truncated { bytes: 2 }]);
    }

    #[test]
    fn eof_while_skipping_reports_nothing_more() {
        let out = feed(&mut codec(1).with_prefix_len(1), &[b"\x09abc"]);
        assert_eq!(out, vec![Outcome::TooLarge { length: 9, max: 1 }]);
    }

    #[test]
    fn encode_writes_each_header_shape() {
        let mut dst = BytesMut::new();
        codec(16).encode("ab", &mut dst).unwrap();
        codec(16)
            .with_big_endian(false)
            .encode("ab", &mut dst)
            .unwrap();
        codec(16)
            .with_prefix_len(2)
            .with_length_includes_prefix(true)
            .encode("ab", &mut dst)
            .unwrap();
        assert_eq!(&dst[..], b"\0\0\0\x02ab\x02\0\0\0ab\0\x04ab");
    }

    #[test]
    fn encode_refuses_what_the_header_cannot_hold() {
        let mut dst = BytesMut::new();
        let mut codec = codec(16).with_prefix_len(1);
        codec.encode(vec![0; 255], &mut dst).unwrap();
        let err = codec
            .with_length_includes_prefix(true)
            .encode(vec![0; 255], &mut dst)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(dst.len(), 256, "nothing may be written on refusal");
    }

    #[test]
    #[should_panic(expected = "1 to 8 bytes")]
    fn prefix_len_out_of_range_panics() {
        let _ = LengthPrefixedCodec::new().with_prefix_len(9);
    }
}
