//! A connection's bounded outbound queue: encoded frames waiting for the
//! socket, limited in frames and in bytes (a frame counts until the writer
//! has written it).
//!
//! Frames are copied back to back into one byte buffer that the writer
//! takes whole: no allocation and no reference count per frame, and all
//! that is ready goes out in one write. A datagram queue also keeps each
//! frame's length, so every frame is still sent on its own. Buffers come
//! from a per-thread spare and go back to it once written, so an idle
//! connection's queue holds none.
//!
//! A TCP connection's queue also holds its socket while the writer runs: a
//! sender that finds the writer idle may write its frame there itself
//! ([`WrittenBy::Sender`], what a broadcast does), instead of waking the
//! connection's task to write one frame.

use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use once_cell::race::OnceBox;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

use crate::config::{Limits, SlowConsumerPolicy};
use crate::spare::{self, WRITE_BUFFERS};
use crate::sync;

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueueRefused {
    /// The queue is full and the policy says not to wait (longer).
    Full,
    /// The policy's wait elapsed.
    TimedOut,
    /// The connection no longer accepts frames.
    Closed,
}

/// Who writes a frame that finds the connection's writer idle.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WrittenBy<'a> {
    /// The connection's writer, woken if need be: a handler's replies,
    /// written together once it returns. `sending_task` is the waker of
    /// the task that sends, when known: the writer's own task polls the
    /// writer right after the code that sends (the connection's driver, a
    /// UDP session's biased join), so its frames need no wake-up, and waking
    /// the running task would only cost it another turn. Told by the waker
    /// the writer waits with, at the cost of a comparison.
    Writer { sending_task: Option<&'a Waker> },
    /// The sender, straight to the socket if the queue holds one and the
    /// socket takes the frame now (what the socket does not take is left to
    /// the writer): a broadcast, which would otherwise wake every
    /// connection's task for one frame each.
    Sender,
}

/// A socket a sender can write to without waiting (TCP).
pub(crate) trait SocketWrite: fmt::Debug + Send + Sync {
    /// Writes what the socket takes now (`WouldBlock`: nothing).
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize>;
}

/// Whether frame boundaries survive the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A byte stream (TCP, TLS): frames may leave in one write.
    Stream,
    /// Datagrams (UDP): every frame is sent on its own.
    Datagrams,
}

/// The senders' end; shared by every clone of a `Connection`.
#[derive(Debug)]
pub(crate) struct OutboundSender {
    queue: Arc<Queue>,
}

/// The writer's end.
#[derive(Debug)]
pub(crate) struct OutboundReceiver {
    queue: Arc<Queue>,
}

#[derive(Debug)]
struct Queue {
    state: Mutex<State>,
    /// Wakes senders waiting for room; made by the first sender that waits
    /// (most queues never fill: every connection holds a pointer, not a
    /// wait list).
    room: OnceBox<Notify>,
    /// How many senders wait for room: a write frees room for nobody
    /// (and costs no `Notify` lock) while none does.
    waiting_for_room: AtomicUsize,
    /// A `u32` (beside the two flags below, in what would be padding): a
    /// limit above it is none in practice, as that many frames would take
    /// as many gigabytes at least.
    max_messages: u32,
    max_bytes: usize,
    /// A [`Flusher`] takes what is queued next: senders need not wake the
    /// writer. Set without the lock (a sender that does not see it yet only
    /// wakes the writer for nothing), read and cleared under it.
    held: AtomicBool,
    /// Whether frame boundaries survive the queue.
    transport: Transport,
}

#[derive(Debug, Default)]
struct State {
    /// The frames waiting for the writer, back to back.
    waiting: Frames,
    /// Frames taken by the writer and not yet written: at most
    /// `max_messages`, and a `u32` beside the two flags below.
    writing_frames: u32,
    /// Budget of the frames taken by the writer and not yet written.
    writing_cost: usize,
    /// No frame is accepted any more (`Connection::close`, or the writer
    /// finishing); those queued are still written.
    refusing: bool,
    /// The writer ends once the queue is empty.
    closed: bool,
    /// The writer, while it waits for frames.
    writer: Option<Waker>,
    /// The connection's socket while the writer runs, if senders may write
    /// to it (see [`WrittenBy::Sender`]).
    socket: Option<Arc<dyn SocketWrite>>,
    /// Frames and bytes ever queued: the connection's outbound counters.
    queued_frames: u64,
    queued_bytes: u64,
}

impl State {
    /// Writes the one frame waiting to the socket, if there is a socket and
    /// the writer holds no frames (so everything queued before is written:
    /// order holds); whether all of it was written. Under the queue's lock,
    /// so the writer takes nothing meanwhile. What the socket does not take
    /// stays queued for the writer, and so does the frame on an error: the
    /// writer meets it too and ends the connection as a failed write does.
    fn write_alone_now(&mut self) -> bool {
        let Some(socket) = &self.socket else {
            return false;
        };
        if self.waiting.count != 1
            || self.writing_frames > 0
            || self.waiting.bytes.len() > DIRECT_WRITE_MAX
        {
            return false;
        }
        let written = match socket.try_write(&self.waiting.bytes) {
            Ok(written) => written,
            Err(_) => return false,
        };
        if written < self.waiting.bytes.len() {
            self.waiting.bytes.advance(written);
            return false;
        }
        self.waiting.count = 0;
        WRITE_BUFFERS.give_back(&mut self.waiting.bytes);
        true
    }
}

/// The longest frame a sender writes to the socket itself: its copy into
/// the kernel happens under the queue's lock, which the writer and every
/// other sender wait for meanwhile, and in the sender's task (a broadcast
/// writes to each connection in turn). A longer frame is the connection's
/// own task's to write.
const DIRECT_WRITE_MAX: usize = 64 * 1024;

/// Frames back to back, with their count and byte budget; the unit that
/// moves from the queue to the writer.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    bytes: BytesMut,
    lengths: Lengths,
    count: u64,
}

/// Datagram queues only: the length of each frame, in order. Boxed: every
/// stream connection's queue and task hold frames and never a length, so
/// they pay a pointer instead of an empty `Vec`'s three words.
#[derive(Debug, Default)]
// The box is the point: one word here rather than the `Vec`'s three.
#[allow(clippy::box_collection)]
struct Lengths(Option<Box<Vec<u32>>>);

impl Lengths {
    fn push(&mut self, length: u32) {
        self.0.get_or_insert_with(Box::default).push(length);
    }

    fn iter(&self) -> impl Iterator<Item = &u32> {
        self.0.iter().flat_map(|lengths| lengths.iter())
    }

    /// Empties it for the next frames.
    fn clear(&mut self) {
        if let Some(lengths) = &mut self.0 {
            lengths.clear();
            if lengths.capacity() > 64 {
                // A burst is over: a quiet connection should not keep its peak.
                lengths.shrink_to_fit();
            }
        }
    }
}

impl Frames {
    /// All frames, back to back.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each frame on its own (datagram queues only).
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        self.lengths.iter().scan(0, |start, &length| {
            let length = length as usize;
            let frame = &self.bytes[*start..*start + length];
            *start += length;
            Some(frame)
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// What these frames take from a byte budget of `max`. A frame bigger
    /// than the whole budget is only queued alone (see `try_append`), so
    /// this is their length, or `max` for such a frame.
    fn cost(&self, max: usize) -> usize {
        self.bytes.len().min(max)
    }
}

impl Queue {
    /// A lock without poisoning: every update under it leaves the state
    /// consistent (`append`, the runtime's own encoding, adds nothing when
    /// it fails), so a panic elsewhere while it was held would leave
    /// nothing half-done to guard against.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Adds one frame, written by `append` at the end of the waiting
    /// frames, if the queue has room for it; otherwise nothing is added.
    /// Returns the frame's length. `queued` runs once the frame is in,
    /// still under the queue's lock, so what it notes is in queue order.
    fn try_append<E>(
        &self,
        written_by: WrittenBy<'_>,
        append: impl FnOnce(&mut BytesMut) -> Result<(), E>,
        queued: impl FnOnce(),
    ) -> Result<usize, Unqueued<E>> {
        let mut state = self.lock();
        if state.refusing {
            return Err(Unqueued::Refused(QueueRefused::Closed));
        }
        if state.waiting.count + u64::from(state.writing_frames) >= u64::from(self.max_messages) {
            return Err(Unqueued::Refused(QueueRefused::Full));
        }
        let used = state.waiting.cost(self.max_bytes) + state.writing_cost;
        let waiting = &mut state.waiting;
        WRITE_BUFFERS.take(&mut waiting.bytes);
        let start = waiting.bytes.len();
        let appended = append(&mut waiting.bytes);
        let length = waiting.bytes.len() - start;
        // A frame bigger than the whole budget costs the whole budget, so it
        // can still be sent once the queue is empty.
        let cost = length.min(self.max_bytes);
        if appended.is_err() || used.saturating_add(cost) > self.max_bytes {
            waiting.bytes.truncate(start);
            return Err(
                appended.map_or_else(Unqueued::Append, |()| Unqueued::Refused(QueueRefused::Full))
            );
        }
        if self.transport == Transport::Datagrams {
            // Datagrams are far smaller than 4 GiB.
            waiting.lengths.push(length as u32);
        }
        waiting.count += 1;
        state.queued_frames += 1;
        state.queued_bytes += length as u64;
        queued();
        if matches!(written_by, WrittenBy::Sender) && state.write_alone_now() {
            return Ok(length);
        }
        let wake = match (&state.writer, written_by) {
            (None, _) => false,
            (
                Some(writer),
                WrittenBy::Writer {
                    sending_task: Some(task),
                },
            ) if writer.will_wake(task) => false,
            (Some(_), _) => !self.held.load(Ordering::Relaxed),
        };
        let writer = if wake { state.writer.take() } else { None };
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
        Ok(length)
    }

    /// Moves the waiting frames into `frames` for whoever sends them, if
    /// nobody holds frames taken before (they are sent first).
    fn take_into(&self, state: &mut State, frames: &mut Frames) -> bool {
        debug_assert!(frames.is_empty());
        if state.waiting.is_empty() || state.writing_frames > 0 {
            return false;
        }
        std::mem::swap(&mut state.waiting, frames);
        state.writing_frames =
            u32::try_from(frames.count).expect("at most `max_messages` frames are queued");
        state.writing_cost = frames.cost(self.max_bytes);
        true
    }

    /// Gives back the budget of `frames`, which reached the socket, and
    /// empties it for the next take. `by_flusher`: a [`Flusher`] wrote them,
    /// and wakes the writer if it waits for them to be written (frames
    /// queued meanwhile, or the end).
    fn written(&self, frames: &mut Frames, by_flusher: bool) {
        let writer = {
            let mut state = self.lock();
            state.writing_frames = 0;
            state.writing_cost = 0;
            let writer_waits = !state.waiting.is_empty() || state.closed;
            if by_flusher && writer_waits {
                state.writer.take()
            } else {
                None
            }
        };
        if let Some(writer) = writer {
            writer.wake();
        }
        frames.count = 0;
        frames.lengths.clear();
        WRITE_BUFFERS.give_back(&mut frames.bytes);
        // A sender counts itself before it takes the lock to look for room,
        // and this looks after freeing room under that lock: a sender that
        // found none is seen here.
        if self.waiting_for_room.load(Ordering::SeqCst) > 0 {
            self.wake_waiting_for_room();
        }
    }

    /// Wakes the senders waiting for room (a sender makes the wait list
    /// before it looks for room under the lock, so none is missed).
    fn wake_waiting_for_room(&self) {
        if let Some(room) = self.room.get() {
            room.notify_waiters();
        }
    }
}

/// Why [`OutboundSender::try_append`] added nothing.
#[derive(Debug)]
pub(crate) enum Unqueued<E> {
    /// The queue refused the frame.
    Refused(QueueRefused),
    /// Writing the frame failed.
    Append(E),
}

/// A queue for one connection over `transport`.
pub(crate) fn channel(limits: &Limits, transport: Transport) -> (OutboundSender, OutboundReceiver) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State::default()),
        room: OnceBox::new(),
        waiting_for_room: AtomicUsize::new(0),
        held: AtomicBool::new(false),
        max_messages: u32::try_from(limits.outbound_messages).unwrap_or(u32::MAX),
        max_bytes: limits.outbound_bytes,
        transport,
    });
    let sender = OutboundSender {
        queue: Arc::clone(&queue),
    };
    (sender, OutboundReceiver { queue })
}

impl OutboundSender {
    /// Queues `frame` if there is room now.
    #[cfg(test)]
    pub(crate) fn try_push(&self, frame: &[u8]) -> Result<(), QueueRefused> {
        self.try_push_then(frame, None, || {})
    }

    /// Queues `frame` if there is room now, and then runs `queued` under
    /// the queue's lock (see `Queue::try_append`); `sending_task` as in
    /// [`WrittenBy::Writer`].
    pub(crate) fn try_push_then(
        &self,
        frame: &[u8],
        sending_task: Option<&Waker>,
        queued: impl FnOnce(),
    ) -> Result<(), QueueRefused> {
        self.queue
            .try_append(
                WrittenBy::Writer { sending_task },
                |waiting| {
                    waiting.extend_from_slice(frame);
                    Ok::<(), Infallible>(())
                },
                queued,
            )
            .map(drop)
            .map_err(|unqueued| match unqueued {
                Unqueued::Refused(refused) => refused,
                Unqueued::Append(never) => match never {},
            })
    }

    /// Queues the frame that `append` writes, straight into the queue, if
    /// there is room for it now; returns its length. `append` runs under the
    /// queue's lock, so it must be the runtime's own code, and must add
    /// nothing when it fails.
    pub(crate) fn try_append<E>(
        &self,
        written_by: WrittenBy<'_>,
        append: impl FnOnce(&mut BytesMut) -> Result<(), E>,
        queued: impl FnOnce(),
    ) -> Result<usize, Unqueued<E>> {
        self.queue.try_append(written_by, append, queued)
    }

    /// Queues `frame`, which [`try_push_then`](Self::try_push_then) or
    /// [`try_append`](Self::try_append) found no room for, as the
    /// slow-consumer `policy` says.
    pub(crate) async fn push_when_full(
        &self,
        frame: Bytes,
        policy: SlowConsumerPolicy,
        queued: impl Fn(),
    ) -> Result<(), QueueRefused> {
        match policy {
            SlowConsumerPolicy::Wait(patience) => {
                tokio::time::timeout(patience, self.push_waiting(&frame, &queued))
                    .await
                    .unwrap_or(Err(QueueRefused::TimedOut))
            }
            SlowConsumerPolicy::Fail | SlowConsumerPolicy::Disconnect => Err(QueueRefused::Full),
        }
    }

    async fn push_waiting(&self, frame: &[u8], queued: &impl Fn()) -> Result<(), QueueRefused> {
        // Counted before looking, and uncounted however this ends (a timed
        // out send drops it): see `OutboundReceiver::written`.
        let _waiting = WaitingForRoom::count(&self.queue.waiting_for_room);
        let room = self.queue.room.get_or_init(Box::default);
        loop {
            // Registered before looking, so room made meanwhile is not missed.
            let room = room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push_then(frame, None, queued) {
                Err(QueueRefused::Full) => {}
                other => return other,
            }
            room.await;
        }
    }

    /// Refuses further frames, while the writer goes on writing those
    /// already queued (and ends only when its side of the connection does).
    pub(crate) fn refuse_more(&self) {
        self.queue.lock().refusing = true;
        // Senders waiting for room learn that none will come.
        self.queue.wake_waiting_for_room();
    }

    /// Frames queued and not yet written.
    pub(crate) fn pending(&self) -> u64 {
        let state = self.queue.lock();
        state.waiting.count + u64::from(state.writing_frames)
    }

    /// Frames and bytes queued so far (framing included).
    pub(crate) fn queued(&self) -> (u64, u64) {
        let state = self.queue.lock();
        (state.queued_frames, state.queued_bytes)
    }
}

impl OutboundReceiver {
    /// Moves all frames that are waiting into `frames`, which must be empty
    /// (see [`written`](Self::written)); `Ready(false)` once the queue is
    /// closed and empty. Pending until a frame is queued.
    pub(crate) fn poll_take(&mut self, cx: &mut Context<'_>, frames: &mut Frames) -> Poll<bool> {
        let mut state = self.queue.lock();
        if self.queue.take_into(&mut state, frames) {
            return Poll::Ready(true);
        }
        // Frames a flusher holds are not written yet: not the end.
        if state.closed && state.waiting.is_empty() && state.writing_frames == 0 {
            return Poll::Ready(false);
        }
        sync::keep_waker(&mut state.writer, cx);
        Poll::Pending
    }

    /// [`poll_take`](Self::poll_take) as a future.
    pub(crate) async fn take(&mut self, frames: &mut Frames) -> bool {
        std::future::poll_fn(|cx| self.poll_take(cx, frames)).await
    }

    /// Lets senders write to `socket` while the queue is open (see
    /// [`WrittenBy::Sender`]); the writer writes to the same socket.
    pub(crate) fn share_socket(&self, socket: Arc<dyn SocketWrite>) {
        self.queue.lock().socket = Some(socket);
    }

    /// Refuses further frames; those already queued can still be taken.
    pub(crate) fn close(&mut self) {
        let socket = {
            let mut state = self.queue.lock();
            state.refusing = true;
            state.closed = true;
            // No sender writes any more; the socket closes with the writer.
            state.socket.take()
        };
        drop(socket);
        // Senders waiting for room learn that none will come.
        self.queue.wake_waiting_for_room();
    }

    /// Gives back the budget of `frames`, which reached the socket, and
    /// empties it for the next [`take`](Self::take).
    pub(crate) fn written(&self, frames: &mut Frames) {
        self.queue.written(frames, false);
    }

    /// Another way to the frames, for whoever ran the connection's handler
    /// in its own task and sends the replies right after (a UDP receive
    /// loop), while this writer waits.
    pub(crate) fn flusher(&self) -> Flusher {
        Flusher {
            queue: Arc::clone(&self.queue),
        }
    }
}

/// Sends a connection's replies instead of its writer, in the task that ran
/// the handler that made them: no wake-up of the writer's task. Frames stay
/// in order: each side takes only while the other holds none.
#[derive(Debug, Clone)]
pub(crate) struct Flusher {
    queue: Arc<Queue>,
}

impl Flusher {
    /// Until [`take`](Self::take), frames queued need not wake the writer:
    /// they are taken here.
    pub(crate) fn hold(&self) {
        self.queue.held.store(true, Ordering::Relaxed);
    }

    /// Ends the [`hold`](Self::hold): moves the waiting frames into
    /// `frames`, which must be empty, unless the writer holds frames it has
    /// not written (then it is woken to take these after them).
    pub(crate) fn take(&self, frames: &mut Frames) -> bool {
        let writer = {
            let mut state = self.queue.lock();
            self.queue.held.store(false, Ordering::Relaxed);
            if self.queue.take_into(&mut state, frames) {
                return true;
            }
            if state.waiting.is_empty() {
                None
            } else {
                state.writer.take()
            }
        };
        if let Some(writer) = writer {
            writer.wake();
        }
        false
    }

    /// See [`OutboundReceiver::written`].
    pub(crate) fn written(&self, frames: &mut Frames) {
        self.queue.written(frames, true);
    }
}

/// A sender waiting for room, counted while it waits.
struct WaitingForRoom<'a>(&'a AtomicUsize);

impl<'a> WaitingForRoom<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for WaitingForRoom<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A writer that goes away (an I/O error, a connection cut at the shutdown
/// deadline) closes the queue: later sends fail with `ConnectionClosed`
/// instead of being accepted and lost, and waiting senders wake up.
impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        self.close();
    }
}

/// Encodes one outbound frame into the worker thread's scratch buffer and
/// hands it to `queue`, which copies what it keeps: no allocation per frame.
/// The encoder is user code for custom codecs, so it runs outside any lock.
pub(crate) fn with_encoded<E, T>(
    encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    queue: impl FnOnce(&[u8]) -> T,
) -> Result<T, E> {
    thread_local! {
        static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    }
    SCRATCH.with_borrow_mut(|scratch| {
        // Left dirty only if a custom encoder panicked halfway.
        scratch.clear();
        let queued = encode(scratch).map(|()| queue(scratch));
        if scratch.capacity() > spare::KEPT {
            *scratch = BytesMut::new();
        }
        queued
    })
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    fn limits(messages: usize, bytes: usize) -> Limits {
        Limits {
            outbound_messages: messages,
            outbound_bytes: bytes,
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn frames_queued_together_are_taken_together_back_to_back() {
        let (sender, mut receiver) = channel(&limits(8, 1024), Transport::Stream);
        sender.try_push(b"one\n").unwrap();
        sender.try_push(b"two\n").unwrap();
        let mut frames = Frames::default();
        assert!(receiver.take(&mut frames).await);
        assert_eq!(frames.bytes(), b"one\ntwo\n");
        assert_eq!(sender.pending(), 2, "taken is not written");
        receiver.written(&mut frames);
        assert_eq!(sender.pending(), 0);
        assert_eq!(sender.queued(), (2, 8));
    }

    /// Every connection holds one, idle or not: 152 bytes, 168 with the
    /// `Arc`'s counts, a 176-byte block with glibc's header (192 while its
    /// frame counts were 64-bit, 208 while every queue held its wait list
    /// for room, 224 while a stream's waiting frames held an empty `Vec`
    /// for the datagram-only lengths).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_idle_queue_stays_small() {
        let size = std::mem::size_of::<Queue>();
        eprintln!("outbound queue {size} bytes");
        assert!(
            size <= 152,
            "a connection's outbound queue grew to {size} bytes"
        );
    }

    #[tokio::test]
    async fn a_datagram_queue_keeps_each_frame_apart() {
        let (sender, mut receiver) = channel(&limits(8, 1024), Transport::Datagrams);
        sender.try_push(b"ab").unwrap();
        sender.try_push(b"c").unwrap();
        let mut frames = Frames::default();
        assert!(receiver.take(&mut frames).await);
        let datagrams: Vec<&[u8]> = frames.datagrams().collect();
        assert_eq!(datagrams, [&b"ab"[..], &b"c"[..]]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_until_the_writer_has_written() {
        let (sender, mut receiver) = channel(&limits(2, 1024), Transport::Stream);
        sender.try_push(b"1").unwrap();
        sender.try_push(b"2").unwrap();
        assert_eq!(sender.try_push(b"3"), Err(QueueRefused::Full));
        let mut frames = Frames::default();
        assert!(receiver.take(&mut frames).await);
        // Taken but not written still counts against the limit.
        assert_eq!(sender.try_push(b"3"), Err(QueueRefused::Full));
        receiver.written(&mut frames);
        sender.try_push(b"3").unwrap();
    }

    #[tokio::test]
    async fn the_byte_limit_bounds_what_a_peer_that_does_not_read_costs() {
        let (sender, _receiver) = channel(&limits(100, 8), Transport::Stream);
        sender.try_push(b"12345678").unwrap();
        assert_eq!(sender.try_push(b"9"), Err(QueueRefused::Full));
    }

    #[tokio::test]
    async fn a_sender_waiting_for_room_gets_it_once_written() {
        let (sender, mut receiver) = channel(&limits(1, 1024), Transport::Stream);
        sender.try_push(b"first").unwrap();
        let waiting = sender.push_when_full(
            Bytes::from_static(b"second"),
            SlowConsumerPolicy::Wait(std::time::Duration::from_secs(10)),
            || {},
        );
        tokio::pin!(waiting);
        assert!(
            poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx)))
                .await
                .is_pending()
        );
        let mut frames = Frames::default();
        assert!(receiver.take(&mut frames).await);
        receiver.written(&mut frames);
        assert_eq!(waiting.await, Ok(()));
        assert!(receiver.take(&mut frames).await);
        assert_eq!(frames.bytes(), b"second");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_room_ends_after_the_policy_s_patience() {
        let (sender, _receiver) = channel(&limits(1, 1024), Transport::Stream);
        sender.try_push(b"first").unwrap();
        let patience = SlowConsumerPolicy::Wait(std::time::Duration::from_secs(30));
        let waited = sender
            .push_when_full(Bytes::from_static(b"second"), patience, || {})
            .await;
        assert_eq!(waited, Err(QueueRefused::TimedOut));
        let refused = sender
            .push_when_full(
                Bytes::from_static(b"second"),
                SlowConsumerPolicy::Fail,
                || {},
            )
            .await;
        assert_eq!(refused, Err(QueueRefused::Full));
    }

    #[tokio::test]
    async fn a_closed_queue_refuses_new_frames_and_hands_out_the_queued_ones() {
        let (sender, mut receiver) = channel(&limits(8, 1024), Transport::Stream);
        sender.try_push(b"queued").unwrap();
        receiver.close();
        assert_eq!(sender.try_push(b"late"), Err(QueueRefused::Closed));
        let mut frames = Frames::default();
        assert!(
            receiver.take(&mut frames).await,
            "what was accepted still leaves"
        );
        receiver.written(&mut frames);
        assert!(!receiver.take(&mut frames).await, "then the queue is done");
    }

    #[tokio::test]
    async fn a_queue_refusing_more_still_writes_what_it_took_and_keeps_its_writer() {
        let (sender, mut receiver) = channel(&limits(1, 1024), Transport::Stream);
        sender.try_push(b"before").unwrap();
        // A sender waiting for room hears that none will come.
        let waiting = sender.push_when_full(
            Bytes::from_static(b"waiting"),
            SlowConsumerPolicy::Wait(std::time::Duration::from_secs(30)),
            || {},
        );
        tokio::pin!(waiting);
        assert!(
            poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx)))
                .await
                .is_pending()
        );
        sender.refuse_more();
        assert_eq!(waiting.await, Err(QueueRefused::Closed));
        assert_eq!(sender.try_push(b"after"), Err(QueueRefused::Closed));
        let mut frames = Frames::default();
        assert!(receiver.take(&mut frames).await);
        assert_eq!(frames.bytes(), b"before");
        receiver.written(&mut frames);
        // Not closed: the writer waits (its side of the connection decides
        // when it ends) instead of ending early without its FIN.
        let mut next = Frames::default();
        assert!(
            poll_fn(|cx| Poll::Ready(receiver.poll_take(cx, &mut next)))
                .await
                .is_pending()
        );
    }

    #[tokio::test]
    async fn a_writer_that_goes_away_closes_the_queue() {
        let (sender, receiver) = channel(&limits(8, 1024), Transport::Stream);
        drop(receiver);
        assert_eq!(sender.try_push(b"lost?"), Err(QueueRefused::Closed));
    }

    /// A socket that takes at most `room` bytes in all (then `WouldBlock`),
    /// or fails with `fail`; what it took, in order.
    #[derive(Debug, Default)]
    struct FakeSocket {
        took: std::sync::Mutex<Vec<u8>>,
        room: std::sync::Mutex<usize>,
        fail: Option<io::ErrorKind>,
    }

    impl FakeSocket {
        fn with_room(room: usize) -> Arc<Self> {
            Arc::new(Self {
                room: std::sync::Mutex::new(room),
                ..Self::default()
            })
        }

        fn took(&self) -> Vec<u8> {
            sync::lock(&self.took).clone()
        }
    }

    impl SocketWrite for FakeSocket {
        fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
            if let Some(kind) = self.fail {
                return Err(kind.into());
            }
            let mut room = sync::lock(&self.room);
            let taken = bytes.len().min(*room);
            if taken == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            *room -= taken;
            sync::lock(&self.took).extend_from_slice(&bytes[..taken]);
            Ok(taken)
        }
    }

    fn try_push_as(
        sender: &OutboundSender,
        written_by: WrittenBy,
        frame: &[u8],
    ) -> Result<usize, Unqueued<Infallible>> {
        sender.try_append(
            written_by,
            |waiting| {
                waiting.extend_from_slice(frame);
                Ok(())
            },
            || {},
        )
    }

    fn push_as(sender: &OutboundSender, written_by: WrittenBy<'_>, frame: &[u8]) {
        try_push_as(sender, written_by, frame).unwrap();
    }

    /// What the writer would take next, if anything.
    async fn taken(receiver: &mut OutboundReceiver) -> Option<Vec<u8>> {
        let mut frames = Frames::default();
        let ready = poll_fn(|cx| Poll::Ready(receiver.poll_take(cx, &mut frames))).await;
        let bytes = ready.is_ready().then(|| frames.bytes().to_vec());
        receiver.written(&mut frames);
        bytes
    }

    /// A writing side with `socket` shared for senders' direct writes.
    fn sharing(socket: &Arc<FakeSocket>) -> (OutboundSender, OutboundReceiver) {
        let (sender, receiver) = channel(&limits(8, 1 << 20), Transport::Stream);
        receiver.share_socket(Arc::clone(socket) as Arc<dyn SocketWrite>);
        (sender, receiver)
    }

    #[tokio::test]
    async fn a_senders_frame_to_an_idle_writer_is_written_at_once() {
        let socket = FakeSocket::with_room(1024);
        let (sender, mut receiver) = sharing(&socket);
        push_as(&sender, WrittenBy::Sender, b"one\n");
        assert_eq!(socket.took(), b"one\n");
        assert_eq!(sender.pending(), 0);
        assert_eq!(sender.queued(), (1, 4), "counted as sent");
        assert_eq!(
            taken(&mut receiver).await,
            None,
            "nothing left for the writer"
        );
    }

    #[tokio::test]
    async fn the_rest_of_a_partial_direct_write_is_the_writers_and_later_frames_queue_behind_it() {
        let socket = FakeSocket::with_room(3);
        let (sender, mut receiver) = sharing(&socket);
        push_as(&sender, WrittenBy::Sender, b"hello\n");
        assert_eq!(socket.took(), b"hel");
        assert_eq!(sender.pending(), 1);
        // The rest waits at the head of the queue: the next frame goes behind it.
        push_as(&sender, WrittenBy::Sender, b"next\n");
        assert_eq!(socket.took(), b"hel");
        assert_eq!(taken(&mut receiver).await.unwrap(), b"lo\nnext\n");
    }

    #[tokio::test]
    async fn a_frame_the_socket_refuses_stays_queued_whole() {
        for (socket, why) in [
            (FakeSocket::with_room(0), "would block"),
            (
                Arc::new(FakeSocket {
                    fail: Some(io::ErrorKind::ConnectionReset),
                    ..FakeSocket::default()
                }),
                "an error, which the writer then meets and reports",
            ),
        ] {
            let (sender, mut receiver) = sharing(&socket);
            push_as(&sender, WrittenBy::Sender, b"one\n");
            assert_eq!(socket.took(), b"", "{why}");
            assert_eq!(taken(&mut receiver).await.unwrap(), b"one\n", "{why}");
        }
    }

    #[tokio::test]
    async fn a_sender_never_writes_ahead_of_frames_already_queued_or_being_written() {
        let socket = FakeSocket::with_room(1024);
        let (sender, mut receiver) = sharing(&socket);
        // A handler's reply, queued for the writer.
        push_as(
            &sender,
            WrittenBy::Writer { sending_task: None },
            b"reply\n",
        );
        push_as(&sender, WrittenBy::Sender, b"broadcast\n");
        assert_eq!(socket.took(), b"");
        // Taken by the writer and not yet written: still none ahead of it.
        let mut frames = Frames::default();
        assert!(receiver.take(&mut frames).await);
        assert_eq!(frames.bytes(), b"reply\nbroadcast\n");
        push_as(&sender, WrittenBy::Sender, b"later\n");
        assert_eq!(socket.took(), b"");
        receiver.written(&mut frames);
        assert_eq!(taken(&mut receiver).await.unwrap(), b"later\n");
        // The writer holds nothing now: the next one goes straight out.
        push_as(&sender, WrittenBy::Sender, b"now\n");
        assert_eq!(socket.took(), b"now\n");
    }

    #[tokio::test]
    async fn a_frame_longer_than_the_direct_write_bound_is_left_to_the_writer() {
        let socket = FakeSocket::with_room(usize::MAX);
        let (sender, mut receiver) = sharing(&socket);
        let long = vec![b'x'; DIRECT_WRITE_MAX + 1];
        push_as(&sender, WrittenBy::Sender, &long);
        assert_eq!(socket.took(), b"");
        assert_eq!(taken(&mut receiver).await.unwrap(), long);
    }

    #[tokio::test]
    async fn a_closed_queue_lets_go_of_the_socket_and_writes_no_more() {
        let socket = FakeSocket::with_room(1024);
        let (sender, mut receiver) = sharing(&socket);
        assert_eq!(Arc::strong_count(&socket), 2);
        receiver.close();
        assert_eq!(
            Arc::strong_count(&socket),
            1,
            "the queue no longer holds it"
        );
        let refused = try_push_as(&sender, WrittenBy::Sender, b"late\n");
        assert!(matches!(
            refused,
            Err(Unqueued::Refused(QueueRefused::Closed))
        ));
        assert_eq!(socket.took(), b"");
    }

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_frame_from_the_writers_own_task_does_not_wake_it_and_one_from_another_task_does() {
        let (sender, mut receiver) = channel(&limits(8, 1024), Transport::Stream);
        let writers_task = Arc::new(CountingWaker::default());
        let other_task = Arc::new(CountingWaker::default());
        let (writers_waker, others_waker) = (
            Waker::from(Arc::clone(&writers_task)),
            Waker::from(Arc::clone(&other_task)),
        );
        let mut frames = Frames::default();
        let mut cx = Context::from_waker(&writers_waker);
        assert!(receiver.poll_take(&mut cx, &mut frames).is_pending());
        let from = |waker| WrittenBy::Writer {
            sending_task: Some(waker),
        };
        push_as(&sender, from(&writers_waker), b"reply\n");
        assert_eq!(
            writers_task.0.load(Ordering::SeqCst),
            0,
            "polled right after its sends"
        );
        push_as(&sender, from(&others_waker), b"other\n");
        assert_eq!(writers_task.0.load(Ordering::SeqCst), 1);
        assert_eq!(other_task.0.load(Ordering::SeqCst), 0);
        assert!(receiver.poll_take(&mut cx, &mut frames).is_ready());
        assert_eq!(frames.bytes(), b"reply\nother\n");
    }
}
