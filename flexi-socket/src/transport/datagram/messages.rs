//! Where a receive loop copies its datagrams out of the receive buffers to
//! become messages: one buffer, cut into them one after the other, so that
//! a datagram costs a copy and a reference count instead of an allocation
//! and a free of its own (roughly 100 instructions fewer a datagram in the
//! UDP echo, callgrind: see BENCHMARKS.md). Once every message cut from
//! the buffer is dropped (an echo's are, before the next datagram comes),
//! it is used again from its start.
//!
//! A message kept after its handler is done keeps the buffer it was cut
//! from alive, as a TCP message keeps its connection's read buffer (see
//! `Message::detached`): at most [`BUFFER`] bytes, and never more than the
//! longest datagram accepted. A longer datagram is copied on its own, so
//! that a buffer never grows past [`BUFFER`].

use bytes::{Bytes, BytesMut};

/// The size of each buffer: room for dozens of typical datagrams, so one
/// allocation serves many, and all that a kept short message holds on to
/// (half of a TCP connection's default read buffer, 8 KiB).
const BUFFER: usize = 4 * 1024;

/// The buffer datagrams are copied to (see the module's doc).
#[derive(Debug)]
pub(crate) struct MessageBuffer {
    buffer: BytesMut,
    /// Each new buffer's capacity: [`BUFFER`], or less if no datagram
    /// accepted is that long.
    size: usize,
}

impl MessageBuffer {
    /// For datagrams of at most `max_datagram` bytes.
    pub(crate) fn new(max_datagram: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            size: max_datagram.min(BUFFER),
        }
    }

    /// `datagram`'s bytes, as a message of their own.
    pub(crate) fn copy(&mut self, datagram: &[u8]) -> Bytes {
        if datagram.is_empty() {
            // Nothing to copy, and nothing to hold a buffer for.
            return Bytes::new();
        }
        if datagram.len() > self.size {
            // A buffer of its length would be reused for the short ones
            // after it, each then holding on to all of it.
            return Bytes::copy_from_slice(datagram);
        }
        // Room left in this buffer, or all of it again once no message
        // holds a part of it.
        if !self.buffer.try_reclaim(datagram.len()) {
            // Kept messages hold the rest: a new buffer. The old one is
            // freed with the last of them.
            self.buffer = BytesMut::with_capacity(self.size);
        }
        self.buffer.extend_from_slice(datagram);
        self.buffer.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_their_datagrams() {
        let mut buffer = MessageBuffer::new(1500);
        let first = buffer.copy(b"first");
        let second = buffer.copy(b"second");
        assert_eq!(first, "first");
        assert_eq!(second, "second");
    }

    #[test]
    fn a_buffer_no_message_holds_is_used_again_from_its_start() {
        let mut buffer = MessageBuffer::new(1500);
        let first = buffer.copy(&[1; 1000]);
        let start = first.as_ptr();
        drop(first);
        // Most of the buffer is left: the next message follows the first.
        let second = buffer.copy(&[2; 400]);
        assert_eq!(second.as_ptr(), start.wrapping_add(1000));
        drop(second);
        // No room left after the two, but nothing holds them: from the start.
        let third = buffer.copy(&[3; 1000]);
        assert_eq!(third.as_ptr(), start);
        assert_eq!(third, [3; 1000].as_slice());
    }

    #[test]
    fn a_kept_message_keeps_its_bytes_and_the_next_ones_get_a_new_buffer() {
        let mut buffer = MessageBuffer::new(1500);
        let kept = buffer.copy(&[1; 1000]);
        let next = buffer.copy(&[2; 1000]);
        assert_eq!(kept, [1; 1000].as_slice());
        assert_eq!(next, [2; 1000].as_slice());
        let kept_range = kept.as_ptr_range();
        assert!(!kept_range.contains(&next.as_ptr()));
    }

    #[test]
    fn a_datagram_longer_than_a_buffer_is_copied_on_its_own() {
        let mut buffer = MessageBuffer::new(65_507);
        let long = buffer.copy(&[7; 9000]);
        assert_eq!(long, [7; 9000].as_slice());
        drop(long);
        // The short ones after it share a buffer of the usual size, not one
        // the long one's length that each would hold on to.
        let short = buffer.copy(b"short");
        assert_eq!(short, "short");
        assert_eq!(buffer.buffer.capacity(), BUFFER - short.len());
    }

    #[test]
    fn an_empty_datagram_holds_no_buffer() {
        let mut buffer = MessageBuffer::new(1500);
        let empty = buffer.copy(b"");
        assert!(empty.is_empty());
        assert_eq!(buffer.buffer.capacity(), 0);
    }
}
