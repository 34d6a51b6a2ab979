//! [`LineCodec`]: a message ends with `"\n"`; `"\r\n"` is tolerated.

use std::io;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::Decoded;
use super::separator::{DEFAULT_DELIMITED_MAX, SeparatorCodec};
use crate::error::Error;

/// Text lines: a message ends with `"\n"`, and a `'\r'` right before it is
/// stripped, so peers that send `"\r\n"` work too. Encoding appends `"\n"`.
///
/// Bounded and recovering like [`SeparatorCodec`]: a line longer than
/// [`max_length`](Self::max_length) (counted without `"\r\n"`) is dropped and
/// reported once as [`Error::FrameTooLarge`]; a line cut by EOF is reported as
/// [`Error::FrameTruncated`] and not delivered.
#[derive(Clone, Debug)]
pub struct LineCodec {
    // Allows one byte more than `max_length`: the '\r' that is stripped
    // afterwards. The one limit kept: every connection holds a decoder.
    inner: SeparatorCodec,
}

impl LineCodec {
    /// Lines of at most 64 KiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the longest accepted line in bytes, `"\r\n"` excluded
    /// (default 64 KiB).
    #[must_use]
    pub fn with_max_length(self, max_length: usize) -> Self {
        LineCodec {
            inner: self.inner.with_max_length(max_length.saturating_add(1)),
        }
    }

    /// The longest accepted line in bytes, `"\r\n"` excluded.
    pub fn max_length(&self) -> usize {
        match self.inner.max_length() {
            // Saturated: no limit either way.
            usize::MAX => usize::MAX,
            allowed => allowed - 1,
        }
    }

    /// Whether it holds nothing of the stream it decodes: it is as a new
    /// one of its configuration is (a resting connection keeps no such
    /// decoder: see `ConnectionDecoder::is_as_new`).
    pub(super) fn is_fresh(&self) -> bool {
        self.inner.is_fresh()
    }

    /// The bytes of `buf`, which holds no complete line, that certainly
    /// begin the next line: a last `'\r'` may be the start of `"\r\n"`.
    pub(super) fn pending_frame<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let pending = self.inner.pending_frame(buf);
        pending.strip_suffix(b"\r").unwrap_or(pending)
    }

    #[inline]
    pub(super) fn encode_message(&self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        self.inner.encode_message(message, dst)
    }
}

impl Default for LineCodec {
    fn default() -> Self {
        LineCodec {
            inner: SeparatorCodec::new("\n").with_max_length(DEFAULT_DELIMITED_MAX + 1),
        }
    }
}

impl Decoder for LineCodec {
    type Item = Decoded;
    type Error = io::Error;

    // The inner codec reports an oversize line against this codec's limit,
    // which it could not know.
    #[inline]
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        let max = self.max_length();
        Ok(self
            .inner
            .decode_with(buf, max, |line| line_length(line, max)))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        let max = self.max_length();
        Ok(self
            .inner
            .decode_eof_with(buf, max, |line| line_length(line, max)))
    }
}

/// How much of `line` is the message: all but its `'\r'`, if it had one;
/// or why it is dropped: it is longer than `max_length` (the inner codec
/// allowed one byte more, for that `'\r'`).
#[inline]
fn line_length(line: &[u8], max_length: usize) -> Result<usize, Error> {
    let length = match line {
        [text @ .., b'\r'] => text.len(),
        text => text.len(),
    };
    if length > max_length {
        return Err(Error::FrameTooLarge {
            length,
            max: max_length,
        });
    }
    Ok(length)
}

impl<T: AsRef<[u8]>> Encoder<T> for LineCodec {
    type Error = io::Error;

    fn encode(&mut self, message: T, dst: &mut BytesMut) -> io::Result<()> {
        self.encode_message(message.as_ref(), dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::tests::{Outcome, feed};

    fn codec(max: usize) -> LineCodec {
        LineCodec::new().with_max_length(max)
    }

    #[test]
    fn multiple_lines_in_one_buffer() {
        let out = feed(&mut codec(16), &[b"one\ntwo\n\nthree\n"]);
        assert_eq!(out, Outcome::frames(&["one", "two", "", "three"]));
    }

    #[test]
    fn line_split_across_reads() {
        let out = feed(&mut codec(16), &[b"he", b"", b"llo", b"\n"]);
        assert_eq!(out, Outcome::frames(&["hello"]));
    }

    #[test]
    fn crlf_is_stripped_even_when_split() {
        let out = feed(&mut codec(16), &[b"a\r\nb\r", b"\nc\r\r\n"]);
        assert_eq!(out, Outcome::frames(&["a", "b", "c\r"]));
    }

    #[test]
    fn lone_cr_is_kept_inside_a_line() {
        let out = feed(&mut codec(16), &[b"a\rb\n"]);
        assert_eq!(out, Outcome::frames(&["a\rb"]));
    }

    #[test]
    fn exactly_at_the_limit_is_accepted_with_lf_and_crlf() {
        let out = feed(&mut codec(4), &[b"abcd\nabcd\r\n"]);
        assert_eq!(out, Outcome::frames(&["abcd", "abcd"]));
    }

    #[test]
    fn one_over_the_limit_is_discarded_then_decoding_resumes() {
        let out = feed(&mut codec(4), &[b"abcde\nok\n"]);
        assert_eq!(
            out,
            vec![
                Outcome::TooLarge { length: 5, max: 4 },
                Outcome::frame("ok")
            ]
        );
    }

    #[test]
    fn one_over_the_limit_with_crlf_is_discarded() {
        let out = feed(&mut codec(4), &[b"abcde\r\nok\r\n"]);
        // The reported length counts the bytes before '\n', '\r' included.
        assert_eq!(
            out,
            vec![
                Outcome::TooLarge { length: 6, max: 4 },
                Outcome::frame("ok")
            ]
        );
    }

    #[test]
    fn long_line_across_reads_is_reported_once_and_not_buffered() {
        let mut codec = codec(4);
        let mut buf = BytesMut::new();
        let mut outcomes = Vec::new();
        for chunk in [&b"abc"[..], b"defgh", b"ijklmn", b"op\nnext\n"] {
            buf.extend_from_slice(chunk);
            while let Some(decoded) = codec.decode(&mut buf).unwrap() {
                outcomes.push(Outcome::from(decoded));
            }
            assert!(buf.len() <= 5, "buffer grew to {}", buf.len());
        }
        assert_eq!(
            outcomes,
            vec![
                Outcome::TooLarge { length: 8, max: 4 },
                Outcome::frame("next")
            ]
        );
    }

    #[test]
    fn eof_mid_line_is_truncated_not_delivered() {
        let out = feed(&mut codec(16), &[b"done\nhalf"]);
        assert_eq!(
            out,
            vec![Outcome::frame("done"), Outcome::Truncated { bytes: 4 }]
        );
    }

    #[test]
    fn encode_appends_lf() {
        let mut dst = BytesMut::new();
        codec(16).encode("ACK", &mut dst).unwrap();
        assert_eq!(&dst[..], b"ACK\n");
    }
}
