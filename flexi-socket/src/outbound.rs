//! A connection's bounded outbound queue: frames waiting for the socket,
//! limited in messages and in bytes (a frame's bytes count until the writer
//! has written it).
//!
//! A mutex around a `VecDeque` rather than a channel: an idle connection's
//! empty queue allocates nothing, and the writer can take every ready frame
//! under one lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use crate::limits::{Limits, SlowConsumerPolicy};

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is full and the policy says not to wait (longer).
    Full,
    /// The policy's wait elapsed.
    TimedOut,
    /// The connection no longer accepts frames.
    Closed,
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
    /// Wakes senders waiting for room.
    room: Notify,
    /// Wakes the writer waiting for frames.
    ready: Notify,
    max_messages: usize,
    max_bytes: usize,
    /// Frames queued or being written: what is lost if the connection is cut.
    pending: AtomicU64,
    /// The task that runs the writer, once known. Its own pushes need no
    /// wake-up: it polls the writer right after the reader (a biased join),
    /// and waking a running task would only cost it another turn.
    writer_task: OnceLock<tokio::task::Id>,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    /// Bytes queued or being written.
    bytes: usize,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic elsewhere cannot poison it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A frame bigger than the whole budget costs the whole budget, so it can
    /// still be sent once the queue is empty.
    fn cost(&self, frame: &Bytes) -> usize {
        frame.len().min(self.max_bytes)
    }

    /// Queues `frame` if there is room now; gives it back otherwise.
    fn try_push(&self, frame: Bytes) -> Result<(), (Refused, Bytes)> {
        let cost = self.cost(&frame);
        let mut state = self.lock();
        if state.closed {
            return Err((Refused::Closed, frame));
        }
        if state.frames.len() >= self.max_messages
            || state.bytes.saturating_add(cost) > self.max_bytes
        {
            return Err((Refused::Full, frame));
        }
        // Counted under the lock, before the writer can see the frame, and
        // only once it is really queued (a cancelled send leaves no trace).
        self.pending.fetch_add(1, Ordering::Relaxed);
        state.frames.push_back(frame);
        state.bytes += cost;
        drop(state);
        let from_writer_task = self
            .writer_task
            .get()
            .is_some_and(|writer| tokio::task::try_id() == Some(*writer));
        if !from_writer_task {
            self.ready.notify_one();
        }
        Ok(())
    }
}

pub(crate) fn channel(limits: &Limits) -> (OutboundSender, OutboundReceiver) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State::default()),
        room: Notify::new(),
        ready: Notify::new(),
        max_messages: limits.outbound_messages,
        max_bytes: limits.outbound_bytes,
        pending: AtomicU64::new(0),
        writer_task: OnceLock::new(),
    });
    (
        OutboundSender {
            queue: Arc::clone(&queue),
        },
        OutboundReceiver { queue },
    )
}

impl OutboundSender {
    /// Queues `frame` as the slow-consumer `policy` says.
    pub(crate) async fn push(
        &self,
        frame: Bytes,
        policy: SlowConsumerPolicy,
    ) -> Result<(), Refused> {
        // The common case, room in the queue, costs no timer and no waiting.
        match self.queue.try_push(frame) {
            Ok(()) => Ok(()),
            Err((Refused::Full, frame)) => match policy {
                // Boxed: the waiting machinery sits in every send's future otherwise.
                SlowConsumerPolicy::Wait(patience) => {
                    Box::pin(tokio::time::timeout(patience, self.push_waiting(frame)))
                        .await
                        .unwrap_or(Err(Refused::TimedOut))
                }
                SlowConsumerPolicy::Fail | SlowConsumerPolicy::Disconnect => Err(Refused::Full),
            },
            Err((refused, _)) => Err(refused),
        }
    }

    async fn push_waiting(&self, mut frame: Bytes) -> Result<(), Refused> {
        loop {
            // Registered before looking, so room made meanwhile is not missed.
            let room = self.queue.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.queue.try_push(frame) {
                Err((Refused::Full, unqueued)) => frame = unqueued,
                other => return other.map_err(|(refused, _)| refused),
            }
            room.await;
        }
    }

    /// Frames queued and not yet written.
    pub(crate) fn pending(&self) -> u64 {
        self.queue.pending.load(Ordering::Relaxed)
    }
}

impl OutboundReceiver {
    /// Declares that the current task polls this writer after every poll of
    /// the code that sends (see `Queue::writer_task`).
    pub(crate) fn polled_after_senders_in_this_task(&self) {
        if let Some(task) = tokio::task::try_id() {
            let _ = self.queue.writer_task.set(task);
        }
    }

    /// The next frame; `None` once closed and empty.
    pub(crate) async fn recv(&mut self) -> Option<Bytes> {
        let queue = &self.queue;
        let ready = queue.ready.notified();
        tokio::pin!(ready);
        // The queue is looked at on every poll, not only after a wake-up: the
        // writer's own task queues frames without waking it.
        std::future::poll_fn(|cx| {
            loop {
                {
                    let mut state = queue.lock();
                    if let Some(frame) = state.frames.pop_front() {
                        return Poll::Ready(Some(frame));
                    }
                    if state.closed {
                        return Poll::Ready(None);
                    }
                }
                match ready.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => ready.set(queue.ready.notified()),
                }
            }
        })
        .await
    }

    /// A frame that is ready now, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Bytes> {
        self.queue.lock().frames.pop_front()
    }

    /// Whether no frame is ready now.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.lock().frames.is_empty()
    }

    /// Refuses further frames; those already queued can still be received.
    pub(crate) fn close(&mut self) {
        self.queue.lock().closed = true;
        // Senders waiting for room learn that none will come.
        self.queue.room.notify_waiters();
    }

    /// What `frame` took from the byte budget.
    pub(crate) fn cost(&self, frame: &Bytes) -> u32 {
        u32::try_from(self.queue.cost(frame)).unwrap_or(u32::MAX)
    }

    /// Gives back the budget of `frames` frames that reached the socket.
    pub(crate) fn written(&self, cost: u32, frames: u64) {
        {
            let mut state = self.queue.lock();
            state.bytes = state.bytes.saturating_sub(cost as usize);
            if state.frames.is_empty() && state.frames.capacity() > 64 {
                // A burst is over: an idle connection should not keep its peak.
                state.frames.shrink_to_fit();
            }
        }
        self.queue.pending.fetch_sub(frames, Ordering::Relaxed);
        self.queue.room.notify_waiters();
    }
}

/// Encodes one outbound frame into the worker thread's encode arena and
/// splits it off: small frames share larger allocations instead of
/// allocating one each, and an idle connection holds none. A queued frame
/// keeps its whole arena chunk alive, so chunks are small (4 KiB) and only
/// small frames use them: a slow consumer's full queue pins at most about
/// `outbound_queue` × 4 KiB, not much more than its byte budget.
pub(crate) fn encode_frame<E>(
    length_hint: usize,
    encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<Bytes, E> {
    /// Each fresh arena allocation serves many small frames.
    const ARENA_CHUNK: usize = 4 * 1024;
    /// Larger frames get an allocation of their own.
    const SMALL_FRAME: usize = 512;
    if length_hint >= SMALL_FRAME {
        let mut frame = BytesMut::with_capacity(length_hint + 16);
        return encode(&mut frame).map(|()| frame.freeze());
    }
    thread_local! {
        static ARENA: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
    }
    ARENA.with_borrow_mut(|arena| {
        if arena.capacity() < length_hint + 16 {
            *arena = BytesMut::with_capacity(ARENA_CHUNK);
        }
        let encoded = encode(arena);
        let frame = arena.split().freeze();
        encoded.map(|()| frame)
    })
}

/// A writer that goes away (an I/O error, a connection cut at the shutdown
/// deadline) closes the queue: later sends fail with `ConnectionClosed`
/// instead of being accepted and lost, and waiting senders wake up.
impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        self.close();
    }
}
