//! Two small pieces the hand-written synchronisation here shares (the
//! outbound queue's lock, taken by every send, is `parking_lot`'s, which
//! has no poisoning to get past).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};

/// Locks `mutex` even when a panic poisoned it. No lock of this crate
/// is held across user code that could leave its data half-updated (each
/// call says why), and a handler's panic must not turn every later lock of
/// the same data into another panic.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps `cx`'s waker in `slot` to be woken later. A task polled again
/// usually has the same waker: it is then left as it is, saving a clone
/// (an atomic increment) and the drop of the old one.
pub(crate) fn keep_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        slot => *slot = Some(cx.waker().clone()),
    }
}
