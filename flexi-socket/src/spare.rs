//! One spare buffer per worker thread for reads and one for writes.
//! Connections on a thread run one at a time, so the buffer a connection
//! gives back when it is done is the one the next busy connection takes: no
//! allocation per read or write, and none held by an idle connection.

use std::cell::RefCell;

use bytes::BytesMut;

/// Larger buffers are freed rather than kept: one burst should not pin its
/// peak on a thread for good.
pub(crate) const KEPT: usize = 64 * 1024;

thread_local! {
    static READS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    static WRITES: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A pool of one buffer per thread. Which thread-local it is, is chosen by
/// a `match` rather than held as a `&LocalKey`: through a reference, every
/// access calls the key's accessor out of line (10 instructions a message in
/// ping-pong, callgrind), where a key named in the code is inlined.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spare {
    Reads,
    Writes,
}

/// What connections read into.
pub(crate) const READ_BUFFERS: Spare = Spare::Reads;
/// What outbound frames are queued in.
pub(crate) const WRITE_BUFFERS: Spare = Spare::Writes;

impl Spare {
    /// Runs `f` on this thread's spare buffer.
    #[inline]
    fn with<R>(self, f: impl FnOnce(&mut BytesMut) -> R) -> R {
        match self {
            Spare::Reads => READS.with_borrow_mut(f),
            Spare::Writes => WRITES.with_borrow_mut(f),
        }
    }

    /// Moves the thread's spare buffer into `buffer` if `buffer` has no room.
    pub(crate) fn take(self, buffer: &mut BytesMut) {
        if buffer.capacity() == 0 {
            self.with(|spare| std::mem::swap(spare, buffer));
        }
    }

    /// Empties `buffer` and keeps its allocation as the thread's spare if
    /// that is larger than the spare it has (up to [`KEPT`]); `buffer` is
    /// left without one. Inline: the writer calls it after every write, and
    /// out of line it costs a call and a thread-local lookup per message.
    #[inline]
    pub(crate) fn give_back(self, buffer: &mut BytesMut) {
        buffer.clear();
        let buffer = std::mem::take(buffer);
        if buffer.capacity() <= KEPT {
            self.with(|spare| {
                if spare.capacity() < buffer.capacity() {
                    *spare = buffer;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_back_buffer_is_the_next_one_taken() {
        let mut first = BytesMut::with_capacity(4096);
        first.extend_from_slice(b"left over");
        let allocation = first.as_ptr();
        READ_BUFFERS.give_back(&mut first);
        assert_eq!(first.capacity(), 0, "an idle holder keeps nothing");
        let mut next = BytesMut::new();
        READ_BUFFERS.take(&mut next);
        assert_eq!(next.as_ptr(), allocation);
        assert!(next.is_empty());
    }

    #[test]
    fn a_burst_buffer_is_not_kept() {
        let mut burst = BytesMut::with_capacity(KEPT * 2);
        WRITE_BUFFERS.give_back(&mut burst);
        let mut next = BytesMut::new();
        WRITE_BUFFERS.take(&mut next);
        assert!(next.capacity() <= KEPT);
    }
}
