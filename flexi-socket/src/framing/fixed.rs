//! [`FixedLengthCodec`]: every frame has the same length.

use std::io;

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::Decoded;
use crate::error::Error;

/// Frames of exactly `length` bytes.
///
/// Decoding yields exactly `length` bytes, untouched, unless
/// [`with_trim_padding(true)`](Self::with_trim_padding) asks to strip trailing
/// pad bytes. Encoding pads a shorter message with the pad byte (default
/// `b' '`) up to `length` and refuses a longer one. The frame length is its own
/// limit: a decoder never holds more than `length - 1` bytes plus one read. At
/// EOF an unfinished frame is reported as [`Error::FrameTruncated`] and not
/// delivered.
#[derive(Clone, Debug)]
pub struct FixedLengthCodec {
    length: usize,
    pad: u8,
    trim_padding: bool,
}

impl FixedLengthCodec {
    /// Frames of exactly `length` bytes, padded with `b' '`, not trimmed.
    ///
    /// # Panics
    ///
    /// If `length` is 0: empty frames would carry nothing and never consume input.
    pub fn new(length: usize) -> Self {
        assert!(length > 0, "a fixed frame length must be at least 1 byte");
        FixedLengthCodec {
            length,
            pad: b' ',
            trim_padding: false,
        }
    }

    /// Sets the byte that fills a shorter outbound message up to the frame
    /// length (default `b' '`, the usual filler of fixed-width text records).
    #[must_use]
    pub fn with_pad(mut self, pad: u8) -> Self {
        self.pad = pad;
        self
    }

    /// Strips trailing pad bytes from decoded frames (default `false`: frames
    /// arrive exactly as sent, as a message may legitimately end with the pad
    /// byte).
    #[must_use]
    pub fn with_trim_padding(mut self, trim: bool) -> Self {
        self.trim_padding = trim;
        self
    }

    /// The frame length in bytes.
    pub fn length(&self) -> usize {
        self.length
    }

    /// The pad byte.
    pub fn pad(&self) -> u8 {
        self.pad
    }

    /// The bytes of `buf`, shorter than a frame, that certainly begin the
    /// next frame: with trimmed padding, not the pad bytes at its end.
    pub(super) fn pending_frame<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        if !self.trim_padding {
            return buf;
        }
        let kept = buf
            .iter()
            .rposition(|&byte| byte != self.pad)
            .map_or(0, |last| last + 1);
        &buf[..kept]
    }

    pub(super) fn encode_message(&self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        if message.len() > self.length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the message has {} bytes, more than the fixed frame length of {} bytes",
                    message.len(),
                    self.length
                ),
            ));
        }
        dst.reserve(self.length);
        dst.put_slice(message);
        dst.put_bytes(self.pad, self.length - message.len());
        Ok(())
    }
}

impl Decoder for FixedLengthCodec {
    type Item = Decoded;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        if buf.len() < self.length {
            return Ok(None);
        }
        let mut frame = buf.split_to(self.length).freeze();
        if self.trim_padding {
            let kept = frame
                .iter()
                .rposition(|&byte| byte != self.pad)
                .map_or(0, |last| last + 1);
            frame.truncate(kept);
        }
        Ok(Some(Decoded::Frame(frame)))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        if let Some(decoded) = self.decode(buf)? {
            return Ok(Some(decoded));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let bytes = buf.len();
        buf.clear();
        Ok(Some(Decoded::discarded(Error::FrameTruncated { bytes })))
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for FixedLengthCodec {
    type Error = io::Error;

    fn encode(&mut self, message: T, dst: &mut BytesMut) -> io::Result<()> {
        self.encode_message(message.as_ref(), dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::tests::{Outcome, feed};

    #[test]
    fn frames_split_across_reads_and_several_in_one_buffer() {
        let out = feed(&mut FixedLengthCodec::new(3), &[b"ab", b"cdefg", b"hi"]);
        assert_eq!(out, Outcome::frames(&["abc", "def", "ghi"]));
    }

    #[test]
    fn padding_is_delivered_untouched_by_default() {
        let out = feed(&mut FixedLengthCodec::new(4), &[b"ab  "]);
        assert_eq!(out, Outcome::frames(&["ab  "]));
    }

    #[test]
    fn trim_padding_strips_only_trailing_pad_bytes() {
        let mut codec = FixedLengthCodec::new(4)
            .with_pad(b'#')
            .with_trim_padding(true);
        let out = feed(&mut codec, &[b"a#b#", b"####", b"abcd"]);
        assert_eq!(out, Outcome::frames(&["a#b", "", "abcd"]));
    }

    #[test]
    fn eof_mid_frame_is_truncated_not_delivered() {
        let out = feed(&mut FixedLengthCodec::new(4), &[b"abcdef"]);
        assert_eq!(
            out,
            vec![Outcome::frame("abcd"), Outcome::Truncated { bytes: 2 }]
        );
    }

    #[test]
    fn encode_pads_a_shorter_message() {
        let mut dst = BytesMut::new();
        let mut codec = FixedLengthCodec::new(5);
        codec.encode("ab", &mut dst).unwrap();
        codec.with_pad(0).encode("xyz", &mut dst).unwrap();
        assert_eq!(&dst[..], b"ab   xyz\0\0");
    }

    #[test]
    fn encode_exactly_the_length_adds_nothing() {
        let mut dst = BytesMut::new();
        FixedLengthCodec::new(3).encode("abc", &mut dst).unwrap();
        assert_eq!(&dst[..], b"abc");
    }

    #[test]
    fn encode_refuses_a_longer_message() {
        let mut dst = BytesMut::from(&b"kept"[..]);
        let err = FixedLengthCodec::new(3)
            .encode("abcd", &mut dst)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("4 bytes"), "{err}");
        assert_eq!(&dst[..], b"kept", "nothing may be written on refusal");
    }

    #[test]
    #[should_panic(expected = "at least 1 byte")]
    fn zero_length_panics() {
        let _ = FixedLengthCodec::new(0);
    }
}
