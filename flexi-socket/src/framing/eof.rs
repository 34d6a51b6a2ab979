//! [`EofCodec`]: the whole stream, up to EOF, is one message.

use std::io;

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::Decoded;
use super::length_prefixed::DEFAULT_LENGTH_PREFIXED_MAX;
use crate::error::Error;

/// One message per connection: everything the peer sends until it closes its
/// write side (HTTP/1.0-style request, file upload, one-shot report).
///
/// The message is bounded by [`max_length`](Self::max_length): once the
/// stream grows past it the codec drops every further byte instead of
/// buffering it, and at EOF reports [`Error::FrameTooLarge`] with the total
/// length instead of the message. A peer that closes without sending anything
/// produces no message. Encoding writes the message as is; the sender then
/// closes the connection to end it.
#[derive(Clone, Debug)]
pub struct EofCodec {
    max_length: usize,
    // Bytes dropped so far, once the stream went over the limit.
    discarded: Option<usize>,
}

impl EofCodec {
    /// A message of at most 8 MiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the largest accepted message in bytes (default 8 MiB, the limit of
    /// length-prefixed framing, as both carry whole payloads).
    #[must_use]
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The largest accepted message in bytes.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Whether it holds nothing of the stream it decodes: it is as a new
    /// one of its configuration is (a resting connection keeps no such
    /// decoder: see `ConnectionDecoder::is_as_new`).
    pub(super) fn is_fresh(&self) -> bool {
        self.discarded.is_none()
    }

    /// The bytes of `buf` that certainly begin the message: all of them,
    /// unless it is already over the limit.
    pub(super) fn pending_frame<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        if self.discarded.is_some() { &[] } else { buf }
    }

    pub(super) fn encode_message(&self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        dst.put_slice(message);
        Ok(())
    }
}

impl Default for EofCodec {
    fn default() -> Self {
        EofCodec {
            max_length: DEFAULT_LENGTH_PREFIXED_MAX,
            discarded: None,
        }
    }
}

impl Decoder for EofCodec {
    type Item = Decoded;
    type Error = io::Error;

    /// Never yields: only EOF ends the message.
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        if let Some(discarded) = &mut self.discarded {
            *discarded = discarded.saturating_add(buf.len());
            buf.clear();
        } else if buf.len() > self.max_length {
            self.discarded = Some(buf.len());
            buf.clear();
        }
        Ok(None)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        self.decode(buf)?;
        if let Some(length) = self.discarded.take() {
            return Ok(Some(Decoded::discarded(Error::FrameTooLarge {
                length,
                max: self.max_length,
            })));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(Decoded::Frame(buf.split().freeze())))
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for EofCodec {
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
    fn whole_stream_split_across_reads_is_one_message() {
        let out = feed(&mut EofCodec::new(), &[b"GET /\r\n", b"", b"\r\nbody\n"]);
        assert_eq!(out, Outcome::frames(&["GET /\r\n\r\nbody\n"]));
    }

    #[test]
    fn exactly_at_the_limit_is_accepted() {
        let out = feed(&mut EofCodec::new().with_max_length(4), &[b"ab", b"cd"]);
        assert_eq!(out, Outcome::frames(&["abcd"]));
    }

    #[test]
    fn over_the_limit_is_dropped_while_reading_and_reported_at_eof() {
        let mut codec = EofCodec::new().with_max_length(4);
        let mut buf = BytesMut::new();
        for chunk in [&b"abc"[..], b"de", b"fghij"] {
            buf.extend_from_slice(chunk);
            assert!(codec.decode(&mut buf).unwrap().is_none());
            assert!(buf.len() <= 4);
        }
        let out = feed(&mut codec, &[]);
        assert_eq!(out, vec![Outcome::TooLarge { length: 10, max: 4 }]);
    }

    #[test]
    fn empty_stream_is_no_message() {
        assert_eq!(feed(&mut EofCodec::new(), &[b""]), vec![]);
    }

    #[test]
    fn encode_writes_the_message_as_is() {
        let mut dst = BytesMut::new();
        EofCodec::new().encode("a\nb", &mut dst).unwrap();
        assert_eq!(&dst[..], b"a\nb");
    }
}
