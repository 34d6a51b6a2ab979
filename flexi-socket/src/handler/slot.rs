//! [`HandlerSlot`]: where a handler's future lives while it runs.
//!
//! A connection calls the same handler for message after message. Boxing
//! each call's future would cost an allocation and a free per message (a
//! tenth of the runtime's work per message in a pipelined echo); a slot
//! keeps the allocation of the last call and puts the next call's future
//! of the same type into it instead. Between reads the allocation belongs
//! to the worker thread, not to the connection (see
//! [`HandlerSlot::release`]): connections on a thread run one at a time,
//! so one finished future per handler type serves them all, and an idle
//! connection holds none.

use std::any::TypeId;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{HandlerError, HandlerOutput};
use crate::error::Error;

/// A handler call's future, boxed and type-erased.
pub(crate) type SlotFuture = dyn Future<Output = HandlerOutput> + Send;

/// Where a handler's future lives while it runs; kept by the caller from
/// one call to the next. Not public API: the attribute macros and
/// [`Router`](crate::Router) put handlers' futures here.
#[doc(hidden)]
pub struct HandlerSlot {
    /// The future put in last, if the slot holds it.
    future: Option<Pin<Box<SlotFuture>>>,
    /// The type the future put in last has behind the erasure, kept when
    /// the future is released: the type to [`reclaim`](Self::reclaim).
    type_id: TypeId,
}

impl Default for HandlerSlot {
    fn default() -> Self {
        Self {
            future: None,
            type_id: TypeId::of::<()>(),
        }
    }
}

impl HandlerSlot {
    /// Starts `future` in the slot, in the allocation of the previous
    /// future if that was of the same type, and polls it once: a handler
    /// that finishes at once (an echo's does) is started and done in this
    /// one call, its future polled by its own type rather than through the
    /// erasure. One that waits is polled again by `poll`.
    pub fn run<F>(&mut self, future: F, cx: &mut Context<'_>) -> Poll<HandlerOutput>
    where
        F: Future<Output = HandlerOutput> + Send + 'static,
    {
        self.start(future).poll(cx)
    }

    /// Puts `future` into the slot (see [`run`](Self::run)) and gives it
    /// back pinned where it lives. Nothing else happens here (the thread's
    /// spare is [`reclaim`](Self::reclaim)ed before): its caller then builds
    /// the future right where it goes, not on the stack to be copied (30
    /// instructions a message for the echo's 144 bytes, callgrind).
    fn start<F>(&mut self, future: F) -> Pin<&mut F>
    where
        F: Future<Output = HandlerOutput> + Send + 'static,
    {
        let type_id = TypeId::of::<F>();
        if self.future.is_some() && self.type_id == type_id {
            // Pinning allows this: `set` drops the old `F` in place and
            // writes the new one into the same memory.
            let mut current = self.current::<F>();
            current.set(future);
            current
        } else {
            self.future = Some(Box::pin(future));
            self.type_id = type_id;
            self.current::<F>()
        }
    }

    /// The future in the slot, which is an `F`.
    ///
    /// # Panics
    /// If the slot is empty or holds a future of another type.
    fn current<F: Future + 'static>(&mut self) -> Pin<&mut F> {
        assert!(self.type_id == TypeId::of::<F>(), "the slot holds an `F`");
        let current = self.future.as_mut().expect("the slot holds a future");
        // SAFETY: the box holds an `F`: the type it was put in with was
        // recorded then and checked just above, so the cast only restores
        // the erased type. Nothing is moved: the pin goes on at the same
        // address.
        #[allow(unsafe_code)]
        unsafe {
            current
                .as_mut()
                .map_unchecked_mut(|erased| &mut *std::ptr::from_mut(erased).cast::<F>())
        }
    }

    /// Empties the slot, whose future must have finished: its allocation
    /// goes to the worker thread for the next call of its type on any of
    /// the thread's connections, unless the thread keeps one of that type
    /// already or the future is large (a handler with a big buffer in its
    /// state, say, should not pin that on every thread). A connection
    /// releases its slot before it waits for bytes, so an idle one holds
    /// no future.
    pub(crate) fn release(&mut self) {
        /// A typical `async fn` handler's future is a few dozen bytes.
        const KEPT: usize = 256;
        let Some(finished) = self.future.take() else {
            return;
        };
        if std::mem::size_of_val(&*finished) <= KEPT {
            drop(give_spare(finished, self.type_id));
        }
    }

    /// Takes back, before handling a read, the thread's spare of the type
    /// this slot held last, if the thread keeps one: the next call of the
    /// same handler then reuses it.
    pub(crate) fn reclaim(&mut self) {
        if self.future.is_none() {
            self.future = take_spare(self.type_id);
        }
    }

    /// Drops the future in the slot, which will not be polled again (its
    /// call timed out), so that what it holds is let go now.
    pub(crate) fn clear(&mut self) {
        self.future = None;
    }

    /// Polls the future put in last again, through the erasure: a handler
    /// that did not finish in its first poll ([`run`](Self::run)).
    ///
    /// # Panics
    /// If no future was put in.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<HandlerOutput> {
        let future = self
            .future
            .as_mut()
            .expect("a started handler has a future");
        future.as_mut().poll(cx)
    }
}

/// How many handler types a worker thread keeps an allocation for: a server
/// has a few on_message handlers, one per client type.
const SPARE_TYPES: usize = 4;

/// A finished future kept by a worker thread, and the type it was made
/// for. Cells rather than a `RefCell`: looking at the type is a plain load
/// and no borrow is ever held, so a nested or re-entrant start (a future's
/// `Drop` code, say) finds the spares as they are, and at worst allocates.
struct Spare {
    type_id: Cell<Option<TypeId>>,
    future: Cell<Option<Pin<Box<SlotFuture>>>>,
}

impl Spare {
    const fn empty() -> Self {
        Self {
            type_id: Cell::new(None),
            future: Cell::new(None),
        }
    }
}

thread_local! {
    /// Finished futures given back by the slots of this thread's connections.
    static SPARES: [Spare; SPARE_TYPES] = const { [const { Spare::empty() }; SPARE_TYPES] };
}

/// The thread's finished future of type `type_id`, if it keeps one.
#[inline]
fn take_spare(type_id: TypeId) -> Option<Pin<Box<SlotFuture>>> {
    SPARES
        .try_with(|spares| {
            let spare = spares
                .iter()
                .find(|spare| spare.type_id.get() == Some(type_id))?;
            spare.type_id.set(None);
            spare.future.take()
        })
        .ok()
        .flatten()
}

/// Keeps `future`, finished, as the thread's spare of `type_id` (one per
/// type, in the first free place, the last place's spare making room when
/// all hold other types); gives back what is not kept, `future` itself or
/// the spare it displaced, for the caller to drop.
#[inline]
fn give_spare(future: Pin<Box<SlotFuture>>, type_id: TypeId) -> Option<Pin<Box<SlotFuture>>> {
    // On a thread whose spares are gone (it is ending), it is just dropped.
    SPARES
        .try_with(|spares| {
            for spare in spares {
                match spare.type_id.get() {
                    None => {
                        spare.type_id.set(Some(type_id));
                        return spare.future.replace(Some(future));
                    }
                    Some(held) if held == type_id => return Some(future),
                    Some(_) => {}
                }
            }
            let last = &spares[SPARE_TYPES - 1];
            last.type_id.set(Some(type_id));
            last.future.replace(Some(future))
        })
        .ok()
        .flatten()
}

/// The outcome of a handler call whose argument could not be produced: it
/// ends at once with that error, and the slot keeps what it holds. Not
/// public API: the attribute macros return it.
#[doc(hidden)]
pub fn rejected(error: Error) -> Poll<HandlerOutput> {
    Poll::Ready(Err(HandlerError::Argument(Box::new(error))))
}

pin_project_lite::pin_project! {
    /// A handler's own future, its output converted for the runtime on the
    /// way out. Not public API: the attribute macros put handlers' futures
    /// in a slot this way when no argument needs to live beside them.
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct MapOutput<F, C> {
        #[pin]
        future: F,
        convert: Option<C>,
    }
}

impl<F, C> MapOutput<F, C>
where
    F: Future,
    C: FnOnce(F::Output) -> HandlerOutput,
{
    /// `future`, whose output `convert` turns into a [`HandlerOutput`].
    pub fn new(future: F, convert: C) -> Self {
        Self {
            future,
            convert: Some(convert),
        }
    }
}

impl<F, C> Future for MapOutput<F, C>
where
    F: Future,
    C: FnOnce(F::Output) -> HandlerOutput,
{
    type Output = HandlerOutput;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerOutput> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        let convert = this
            .convert
            .take()
            .expect("a handler's future is not polled after it completed");
        Poll::Ready(convert(output))
    }
}

impl std::fmt::Debug for HandlerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerSlot")
            .field("occupied", &self.future.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Waker;

    use super::*;

    fn run<F>(slot: &mut HandlerSlot, future: F) -> Poll<HandlerOutput>
    where
        F: Future<Output = HandlerOutput> + Send + 'static,
    {
        slot.run(future, &mut Context::from_waker(Waker::noop()))
    }

    /// Where the slot's future lives, and its type.
    fn held(slot: &HandlerSlot) -> Option<(*const (), TypeId)> {
        let future = slot.future.as_ref()?;
        Some((std::ptr::from_ref(&**future).cast(), slot.type_id))
    }

    async fn call(n: u8) -> HandlerOutput {
        Ok(Some(crate::Message::from(vec![n])))
    }

    fn is_message(polled: &Poll<HandlerOutput>, n: u8) -> bool {
        matches!(polled, Poll::Ready(Ok(Some(m))) if m.as_bytes() == [n])
    }

    #[test]
    fn a_future_of_the_same_type_reuses_the_allocation() {
        let mut slot = HandlerSlot::default();
        assert!(is_message(&run(&mut slot, call(1)), 1));
        let first = held(&slot);
        assert!(is_message(&run(&mut slot, call(2)), 2));
        assert_eq!(held(&slot), first);
    }

    #[test]
    fn a_future_of_another_type_replaces_the_last() {
        let mut slot = HandlerSlot::default();
        let _ = run(&mut slot, call(1));
        let other = std::future::ready(Ok(None));
        assert!(matches!(run(&mut slot, other), Poll::Ready(Ok(None))));
        let (_, type_id) = held(&slot).expect("the slot holds the new future");
        assert_eq!(type_id, TypeId::of::<std::future::Ready<HandlerOutput>>());
    }

    #[test]
    fn a_future_that_waits_stays_and_is_polled_again() {
        let mut slot = HandlerSlot::default();
        let waits = async {
            tokio::task::yield_now().await;
            call(3).await
        };
        assert!(run(&mut slot, waits).is_pending());
        let polled = slot.poll(&mut Context::from_waker(Waker::noop()));
        assert!(is_message(&polled, 3));
    }

    #[test]
    fn a_released_future_serves_the_next_slot_on_the_thread() {
        async fn released(n: u8) -> HandlerOutput {
            Ok(Some(crate::Message::from(vec![n])))
        }
        let mut first = HandlerSlot::default();
        let _ = run(&mut first, released(1));
        let allocation = held(&first);
        first.release();
        assert!(first.future.is_none(), "an idle connection holds none");
        // Another connection's slot that last held the same handler's future.
        let mut next = HandlerSlot::default();
        let _ = run(&mut next, released(2));
        next.release();
        let mut next = HandlerSlot {
            future: None,
            type_id: held_type(released(0)),
        };
        next.reclaim();
        assert!(is_message(&run(&mut next, released(3)), 3));
        assert_eq!(held(&next), allocation, "no new allocation");
        assert!(
            take_spare(held_type(released(0))).is_none(),
            "taken, not copied"
        );
    }

    #[test]
    fn a_thread_keeps_one_finished_future_per_type() {
        async fn twice(n: u8) -> HandlerOutput {
            Ok(Some(crate::Message::from(vec![n])))
        }
        let (mut one, mut other) = (HandlerSlot::default(), HandlerSlot::default());
        let _ = run(&mut one, twice(1));
        let _ = run(&mut other, twice(2));
        one.release();
        other.release();
        let type_id = held_type(twice(0));
        assert!(take_spare(type_id).is_some());
        assert!(take_spare(type_id).is_none(), "the second one was freed");
    }

    #[test]
    fn only_a_small_future_goes_to_the_thread() {
        let large = || async {
            let state = [7u8; 1024];
            tokio::task::yield_now().await;
            Ok(Some(crate::Message::from(state.to_vec())))
        };
        let mut slot = HandlerSlot::default();
        assert!(run(&mut slot, large()).is_pending());
        let finished = slot.poll(&mut Context::from_waker(Waker::noop()));
        assert!(finished.is_ready());
        slot.release();
        assert!(slot.future.is_none());
        assert!(
            take_spare(held_type(large())).is_none(),
            "a large future is freed"
        );
    }

    #[test]
    fn a_thread_keeps_a_spare_of_each_type() {
        async fn one(n: u8) -> HandlerOutput {
            Ok(Some(crate::Message::from(vec![n])))
        }
        async fn other(n: u8) -> HandlerOutput {
            Ok(Some(crate::Message::from(vec![n, n])))
        }
        let (mut first, mut second) = (HandlerSlot::default(), HandlerSlot::default());
        let _ = run(&mut first, one(1));
        let _ = run(&mut second, other(2));
        let (one_at, other_at) = (held(&first), held(&second));
        first.release();
        second.release();
        let mut first = HandlerSlot {
            future: None,
            type_id: held_type(other(0)),
        };
        first.reclaim();
        assert_eq!(held(&first), other_at, "the other type's spare");
        let mut second = HandlerSlot {
            future: None,
            type_id: held_type(one(0)),
        };
        second.reclaim();
        assert_eq!(held(&second), one_at);
    }

    /// A future, finished at once, that holds its `Arc` until it is dropped.
    struct Holding {
        _held: Arc<()>,
    }

    impl Future for Holding {
        type Output = HandlerOutput;

        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<HandlerOutput> {
            Poll::Ready(Ok(None))
        }
    }

    #[test]
    fn a_threads_spares_are_dropped_when_it_ends() {
        let held = Arc::new(());
        let inside = Arc::clone(&held);
        std::thread::spawn(move || {
            let mut slot = HandlerSlot::default();
            let _ = run(&mut slot, Holding { _held: inside });
            slot.release();
            assert!(slot.future.is_none(), "kept by the thread");
        })
        .join()
        .expect("the thread ran");
        assert_eq!(
            Arc::strong_count(&held),
            1,
            "the spare went with the thread"
        );
    }

    /// The type id a slot files `future` under.
    fn held_type<F: Future + 'static>(_future: F) -> TypeId {
        TypeId::of::<F>()
    }
}
