//! [`RawCodec`]: whatever arrived is a message.

use std::io;

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::Decoded;
use super::separator::DEFAULT_DELIMITED_MAX;

/// No framing: each read is a message, as it arrives (whatever is buffered
/// when the decoder runs). A buffer larger than
/// [`max_length`](Self::max_length) is split into messages of that size.
///
/// TCP does not keep write boundaries, so one message of the peer can arrive
/// as several and several as one; use this for protocols where that does not
/// matter (byte streams, proxies, echo). Encoding writes the message as is.
#[derive(Clone, Debug)]
pub struct RawCodec {
    max_length: usize,
}

impl RawCodec {
    /// Messages of at most 64 KiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the largest message in bytes (default 64 KiB, a typical socket
    /// read).
    ///
    /// # Panics
    ///
    /// If `max_length` is 0: the codec could never make progress.
    #[must_use]
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        assert!(
            max_length > 0,
            "raw framing needs a max_length of at least 1 byte"
        );
        self.max_length = max_length;
        self
    }

    /// The largest message in bytes.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub(super) fn encode_message(&self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        dst.put_slice(message);
        Ok(())
    }
}

impl Default for RawCodec {
    fn default() -> Self {
        RawCodec {
            max_length: DEFAULT_DELIMITED_MAX,
        }
    }
}

impl Decoder for RawCodec {
    type Item = Decoded;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        if buf.is_empty() {
            return Ok(None);
        }
        let len = buf.len().min(self.max_length);
        Ok(Some(Decoded::Frame(buf.split_to(len).freeze())))
    }

    /// Delivers what is left: EOF ends a chunk like any read.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        self.decode(buf)
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for RawCodec {
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
    fn each_read_is_a_message() {
        let out = feed(&mut RawCodec::new(), &[b"ab\n", b"", b"c"]);
        assert_eq!(out, Outcome::frames(&["ab\n", "c"]));
    }

    #[test]
    fn exactly_at_the_limit_is_one_message() {
        let out = feed(&mut RawCodec::new().with_max_length(3), &[b"abc"]);
        assert_eq!(out, Outcome::frames(&["abc"]));
    }

    #[test]
    fn a_larger_buffer_is_split_at_the_limit() {
        let out = feed(&mut RawCodec::new().with_max_length(3), &[b"abcdefg"]);
        assert_eq!(out, Outcome::frames(&["abc", "def", "g"]));
    }

    #[test]
    fn encode_writes_the_message_as_is() {
        let mut dst = BytesMut::new();
        RawCodec::new().encode(&b"\0\n"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], b"\0\n");
    }

    #[test]
    #[should_panic(expected = "at least 1 byte")]
    fn zero_max_length_panics() {
        let _ = RawCodec::new().with_max_length(0);
    }
}
