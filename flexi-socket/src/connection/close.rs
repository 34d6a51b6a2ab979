//! [`CloseSignal`]: how a connection learns that it is to close, and, at
//! the shutdown deadline, that it is cut; and how others learn that it has
//! ended.
//!
//! The connection's own task looks at it several times per message: whether
//! it is closing is one atomic load, and its waker sits in a slot of its
//! own (a short lock, not a `Notify` wait list), taken only when the waker
//! there is not already this task's. Only that task waits on it, or, while
//! the connection rests without a task, its resting waker.

use std::future::poll_fn;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering, fence};
use std::task::{Context, Poll, Waker};

use once_cell::race::OnceBox;
use tokio::sync::Notify;

use super::DisconnectReason;
use crate::sync;

/// How far a connection is from open (its stage is 0 while open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum CloseStage {
    /// Closing gracefully: reading stops, what was read is handled, the
    /// queue is flushed.
    Closing = 1,
    /// Cut at the shutdown deadline: nothing more is awaited.
    Aborted = 2,
}

#[derive(Debug, Default)]
pub(crate) struct CloseSignal {
    stage: AtomicU8,
    /// Boxed: set once, when closing starts; an open connection holds a
    /// pointer, not a reason's room.
    reason: OnceBox<DisconnectReason>,
    /// The connection's own task.
    driver: Mutex<Option<Waker>>,
    /// The data pointer of the waker in `driver` (null while there is none),
    /// so that a poll from the task whose waker is there skips the lock.
    registered: AtomicPtr<()>,
    /// The data pointer of the connection's task's waker, once it waited
    /// here: kept when `registered` is emptied, to tell that task apart.
    driver_task: AtomicPtr<()>,
    /// The connection has ended: on_disconnect ran, its task is done.
    ended: AtomicBool,
    /// Wakes those waiting for the end (`Connection::closed`). Made by the
    /// first of them: most connections have none, and every connection
    /// holds this field.
    ended_waiters: OnceBox<Notify>,
}

impl CloseSignal {
    /// Starts closing for `reason`, unless closing already started (the
    /// first reason stays).
    pub(crate) fn close(&self, reason: DisconnectReason) {
        self.reason.get_or_init(|| Box::new(reason));
        self.advance(CloseStage::Closing);
    }

    /// Cuts the connection (see [`CloseStage::Aborted`]).
    pub(crate) fn abort(&self) {
        self.reason
            .get_or_init(|| Box::new(DisconnectReason::Shutdown));
        self.advance(CloseStage::Aborted);
    }

    fn advance(&self, stage: CloseStage) {
        if self.stage.fetch_max(stage as u8, Ordering::AcqRel) >= stage as u8 {
            return;
        }
        self.wake_driver();
    }

    /// Wakes the connection's task (which registers its waker again when it
    /// waits here next); without a new stage, a nudge from the deadline
    /// sweeper to a connection whose peer went quiet, which may then rest.
    pub(crate) fn wake_driver(&self) {
        let driver = {
            let mut driver = sync::lock(&self.driver);
            self.registered
                .store(std::ptr::null_mut(), Ordering::Release);
            driver.take()
        };
        if let Some(waker) = driver {
            waker.wake();
        }
    }

    pub(crate) fn reached(&self, stage: CloseStage) -> bool {
        self.stage.load(Ordering::Acquire) >= stage as u8
    }

    /// Why the connection is closing, once it is.
    pub(crate) fn reason(&self) -> Option<DisconnectReason> {
        if !self.reached(CloseStage::Closing) {
            return None;
        }
        self.reason.get().cloned()
    }

    /// For the connection's own task: ready once `stage` is reached.
    pub(crate) fn poll_reached(&self, stage: CloseStage, cx: &mut Context<'_>) -> Poll<()> {
        // This task's waker is in the slot (and the task noted: see
        // `poll_reached_by`), and an advance, which empties the hint and
        // takes the waker under one lock, has not come yet: it will wake it.
        // (A task's waker keeps its data pointer, the task, which the waker
        // in the slot keeps alive; only the connection's task, or its
        // resting waker, polls here. A null data pointer, as in
        // `Waker::noop`, says nothing: such a waker is registered every
        // time.) The per-message case, kept small enough to inline.
        let data = cx.waker().data();
        if !data.is_null()
            && self.registered.load(Ordering::Acquire) == data.cast_mut()
            && !self.reached(stage)
        {
            return Poll::Pending;
        }
        self.poll_reached_by(stage, cx, true)
    }

    /// For a resting connection (`transport::stream::rest`), whose waker is
    /// no task: ready once `stage` is reached. The connection has no task
    /// then: the one it had is forgotten (a later task may get its address,
    /// as at the end), and the one it comes back in notes itself at its
    /// first poll (its waker is not the one in the slot).
    pub(crate) fn poll_reached_at_rest(&self, stage: CloseStage, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_reached_by(stage, cx, false)
    }

    /// Registers `cx`'s waker; `by_task`: it is the connection's task's
    /// (see `polled_by_driver`), otherwise the connection has none.
    fn poll_reached_by(&self, stage: CloseStage, cx: &mut Context<'_>, by_task: bool) -> Poll<()> {
        let data = cx.waker().data().cast_mut();
        // Also when the stage is reached: a task that comes back after
        // resting and is cut at the shutdown deadline before it ever waited
        // here is known as the connection's too.
        let task = if by_task { data } else { std::ptr::null_mut() };
        if self.driver_task.load(Ordering::Relaxed) != task {
            self.driver_task.store(task, Ordering::Relaxed);
        }
        if self.reached(stage) {
            return Poll::Ready(());
        }
        {
            let mut driver = sync::lock(&self.driver);
            sync::keep_waker(&mut driver, cx);
            self.registered.store(data, Ordering::Release);
        }
        // Advanced meanwhile: the waker may have been taken before it was put.
        if self.reached(stage) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Whether `cx` is the connection's own task (which runs its handlers),
    /// as far as it has waited here yet: the stream driver does so before
    /// its first handler, a UDP session before on_connect (`driven_here`).
    pub(crate) fn polled_by_driver(&self, cx: &Context<'_>) -> bool {
        let data = cx.waker().data().cast_mut();
        !data.is_null() && self.driver_task.load(Ordering::Relaxed) == data
    }

    /// Marks the connection ended and wakes those waiting for it.
    pub(crate) fn end(&self) {
        // The task is gone: a later task that happens to get its address
        // must not be taken for it (see `polled_by_driver`).
        self.driver_task
            .store(std::ptr::null_mut(), Ordering::Relaxed);
        self.ended.store(true, Ordering::Release);
        // Either a waiter that makes the `Notify` after this looks sees
        // `ended` (its own fence), or this sees its `Notify`.
        fence(Ordering::SeqCst);
        if let Some(waiters) = self.ended_waiters.get() {
            waiters.notify_waiters();
        }
    }

    /// Whether the connection has ended.
    pub(crate) fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Completes once the connection has ended.
    pub(crate) async fn ended(&self) {
        let waiters = self.ended_waiters.get_or_init(Box::default);
        loop {
            // Registered before looking, so an end meanwhile is not missed.
            let notified = waiters.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // See `end`.
            fence(Ordering::SeqCst);
            if self.ended.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Marks the task that awaits this as the connection's own, for
    /// [`polled_by_driver`](Self::polled_by_driver), before it first waits
    /// here: for a driver whose first handler runs before that wait.
    pub(crate) async fn driven_here(&self) {
        poll_fn(|cx| {
            let data = cx.waker().data().cast_mut();
            self.driver_task.store(data, Ordering::Relaxed);
            Poll::Ready(())
        })
        .await;
    }

    /// [`poll_reached`](Self::poll_reached) as a future.
    pub(crate) async fn reached_by_driver(&self, stage: CloseStage) {
        poll_fn(|cx| self.poll_reached(stage, cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    #[test]
    fn the_first_reason_stays() {
        let signal = CloseSignal::default();
        assert_eq!(signal.reason(), None);
        signal.close(DisconnectReason::IdleTimeout);
        signal.close(DisconnectReason::Closed);
        signal.abort();
        assert_eq!(signal.reason(), Some(DisconnectReason::IdleTimeout));
        assert!(signal.reached(CloseStage::Aborted));
    }

    /// A waker that counts its wake-ups.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// While the connection rests it has no task: the one it had is not
    /// taken for it any more (a later task may get its address), and the
    /// task it comes back in is known from its first poll, even one that
    /// finds the connection cut already.
    #[test]
    fn a_resting_connection_has_no_task_until_it_comes_back() {
        let signal = CloseSignal::default();
        let task = Waker::from(Arc::new(Counter(AtomicUsize::new(0))));
        let mut task_cx = Context::from_waker(&task);
        let resting = Arc::new(Counter(AtomicUsize::new(0)));
        let resting_waker = Waker::from(Arc::clone(&resting));
        let mut resting_cx = Context::from_waker(&resting_waker);

        assert!(
            signal
                .poll_reached(CloseStage::Closing, &mut task_cx)
                .is_pending()
        );
        assert!(signal.polled_by_driver(&task_cx));
        assert!(
            signal
                .poll_reached_at_rest(CloseStage::Closing, &mut resting_cx)
                .is_pending()
        );
        assert!(!signal.polled_by_driver(&task_cx), "the task is gone");
        assert!(!signal.polled_by_driver(&resting_cx), "a waker, no task");
        signal.abort();
        assert_eq!(resting.0.load(Ordering::SeqCst), 1, "the rest is woken");

        let back = Waker::from(Arc::new(Counter(AtomicUsize::new(0))));
        let mut back_cx = Context::from_waker(&back);
        assert!(
            signal
                .poll_reached(CloseStage::Aborted, &mut back_cx)
                .is_ready()
        );
        assert!(signal.polled_by_driver(&back_cx), "cut, and known");
    }

    #[test]
    fn the_driver_waiting_is_woken_at_each_stage() {
        let signal = CloseSignal::default();
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let woken = || counter.0.load(Ordering::SeqCst);

        assert!(
            signal
                .poll_reached(CloseStage::Closing, &mut cx)
                .is_pending()
        );
        // Polled again by the same task: still waiting, still registered.
        assert!(
            signal
                .poll_reached(CloseStage::Closing, &mut cx)
                .is_pending()
        );
        signal.close(DisconnectReason::Closed);
        assert_eq!(woken(), 1, "woken on close");
        assert!(signal.poll_reached(CloseStage::Closing, &mut cx).is_ready());

        assert!(
            signal
                .poll_reached(CloseStage::Aborted, &mut cx)
                .is_pending()
        );
        signal.close(DisconnectReason::IdleTimeout);
        assert_eq!(woken(), 1, "closing again is no news");
        signal.abort();
        assert_eq!(woken(), 2, "woken on abort");
        assert!(signal.poll_reached(CloseStage::Aborted, &mut cx).is_ready());
    }

    #[tokio::test]
    async fn those_waiting_for_the_end_are_woken_and_a_late_one_returns_at_once() {
        let signal = Arc::new(CloseSignal::default());
        let waiting = tokio::spawn({
            let signal = Arc::clone(&signal);
            async move { signal.ended().await }
        });
        // Made by the first waiter only.
        while signal.ended_waiters.get().is_none() {
            tokio::task::yield_now().await;
        }
        signal.end();
        tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("the waiter is woken at the end")
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), signal.ended())
            .await
            .expect("after the end, waiting returns at once");
    }

    /// A waiter registered with a waker is woken by the end; one dropped
    /// after its first poll leaves nothing the end could trip on; and after
    /// the end, waiting returns at the first poll.
    #[test]
    fn a_registered_waiter_is_woken_at_the_end_and_a_dropped_one_is_no_matter() {
        let signal = CloseSignal::default();
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);

        let mut dropped = Box::pin(signal.ended());
        assert!(dropped.as_mut().poll(&mut cx).is_pending());
        drop(dropped);
        let mut waiting = Box::pin(signal.ended());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);

        signal.end();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken at the end");
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
        assert!(Box::pin(signal.ended()).as_mut().poll(&mut cx).is_ready());
    }

    /// Waiters that come while the end happens on another thread, several
    /// at once, one of them polled, dropped and waiting again: none sleeps
    /// through the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_waiter_sleeps_through_an_end_that_comes_meanwhile() {
        for _ in 0..500 {
            let signal = Arc::new(CloseSignal::default());
            let waiters: Vec<_> = (0..3)
                .map(|n| {
                    let signal = Arc::clone(&signal);
                    tokio::spawn(async move {
                        if n == 0 {
                            let mut first = std::pin::pin!(signal.ended());
                            let _ = poll_fn(|cx| Poll::Ready(first.as_mut().poll(cx))).await;
                        }
                        signal.ended().await;
                    })
                })
                .collect();
            let ending = tokio::spawn({
                let signal = Arc::clone(&signal);
                async move { signal.end() }
            });
            for waiter in waiters {
                tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
                    .await
                    .expect("a waiter is woken by an end that came meanwhile")
                    .unwrap();
            }
            ending.await.unwrap();
        }
    }

    #[test]
    fn a_connection_nobody_waits_for_makes_no_notify() {
        let signal = CloseSignal::default();
        signal.end();
        assert!(signal.has_ended());
        assert!(signal.ended_waiters.get().is_none());
    }
}
