//! A connection's bounded outbound queue: frames waiting for the socket,
//! limited in messages (the channel) and in bytes (a semaphore the writer
//! refills as it writes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

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
    frames: mpsc::Sender<Bytes>,
    budget: Arc<Budget>,
}

/// The writer's end.
#[derive(Debug)]
pub(crate) struct OutboundReceiver {
    frames: mpsc::Receiver<Bytes>,
    budget: Arc<Budget>,
}

/// Bytes that may still be queued, and frames queued but not yet written.
#[derive(Debug)]
struct Budget {
    bytes: Semaphore,
    max_bytes: usize,
    pending: AtomicU64,
}

impl Budget {
    /// A frame bigger than the whole budget costs the whole budget, so it can
    /// still be sent once the queue is empty.
    fn cost(&self, frame: &Bytes) -> u32 {
        u32::try_from(frame.len().min(self.max_bytes)).unwrap_or(u32::MAX)
    }
}

pub(crate) fn channel(limits: &Limits) -> (OutboundSender, OutboundReceiver) {
    let (sender, receiver) = mpsc::channel(limits.outbound_messages);
    let max_bytes = limits
        .outbound_bytes
        .min(Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize);
    let budget = Arc::new(Budget {
        bytes: Semaphore::new(max_bytes),
        max_bytes,
        pending: AtomicU64::new(0),
    });
    (
        OutboundSender {
            frames: sender,
            budget: Arc::clone(&budget),
        },
        OutboundReceiver {
            frames: receiver,
            budget,
        },
    )
}

impl OutboundSender {
    /// Queues `frame` as the slow-consumer `policy` says.
    pub(crate) async fn push(
        &self,
        frame: Bytes,
        policy: SlowConsumerPolicy,
    ) -> Result<(), Refused> {
        let cost = self.budget.cost(&frame);
        // Counted before queueing so the writer can never count it down first.
        self.budget.pending.fetch_add(1, Ordering::Relaxed);
        // The common case, room in the queue, costs no timer and no waiting.
        let queued = match self.try_push(frame, cost) {
            Ok(()) => Ok(()),
            Err((Refused::Full, frame)) => match policy {
                SlowConsumerPolicy::Wait(patience) => {
                    tokio::time::timeout(patience, self.push_waiting(frame, cost))
                        .await
                        .unwrap_or(Err(Refused::TimedOut))
                }
                SlowConsumerPolicy::Fail | SlowConsumerPolicy::Disconnect => Err(Refused::Full),
            },
            Err((refused, _)) => Err(refused),
        };
        if queued.is_err() {
            self.budget.pending.fetch_sub(1, Ordering::Relaxed);
        }
        queued
    }

    async fn push_waiting(&self, frame: Bytes, cost: u32) -> Result<(), Refused> {
        let bytes = self
            .budget
            .bytes
            .acquire_many(cost)
            .await
            .map_err(|_| Refused::Closed)?;
        let slot = self.frames.reserve().await.map_err(|_| Refused::Closed)?;
        // The writer gives the bytes back once the frame is on the socket.
        bytes.forget();
        slot.send(frame);
        Ok(())
    }

    /// Queues `frame` if there is room now; gives it back otherwise.
    fn try_push(&self, frame: Bytes, cost: u32) -> Result<(), (Refused, Bytes)> {
        let Ok(bytes) = self.budget.bytes.try_acquire_many(cost) else {
            let refused = if self.frames.is_closed() {
                Refused::Closed
            } else {
                Refused::Full
            };
            return Err((refused, frame));
        };
        let slot = match self.frames.try_reserve() {
            Ok(slot) => slot,
            Err(mpsc::error::TrySendError::Full(())) => return Err((Refused::Full, frame)),
            Err(mpsc::error::TrySendError::Closed(())) => return Err((Refused::Closed, frame)),
        };
        bytes.forget();
        slot.send(frame);
        Ok(())
    }

    /// Frames queued and not yet written.
    pub(crate) fn pending(&self) -> u64 {
        self.budget.pending.load(Ordering::Relaxed)
    }
}

impl OutboundReceiver {
    /// The next frame; `None` once closed and empty.
    pub(crate) async fn recv(&mut self) -> Option<Bytes> {
        self.frames.recv().await
    }

    /// A frame that is ready now, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Bytes> {
        self.frames.try_recv().ok()
    }

    /// Whether no frame is ready now.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Refuses further frames; those already queued can still be received.
    pub(crate) fn close(&mut self) {
        self.frames.close();
    }

    /// What `frame` took from the byte budget.
    pub(crate) fn cost(&self, frame: &Bytes) -> u32 {
        self.budget.cost(frame)
    }

    /// Gives back the budget of `frames` frames that reached the socket.
    pub(crate) fn written(&self, cost: u32, frames: u64) {
        self.budget.bytes.add_permits(cost as usize);
        self.budget.pending.fetch_sub(frames, Ordering::Relaxed);
    }
}
