//! [`HandlerSlot`]: where a handler's future lives while it runs.
//!
//! A connection calls the same handler for message after message. Boxing
//! each call's future would cost an allocation and a free per message (a
//! tenth of the runtime's work per message in a pipelined echo); a slot
//! keeps the allocation of the last call and puts the next call's future
//! of the same type into it instead. A waiting connection keeps its slot
//! only while the future in it is small (see [`HandlerSlot::trim`]).

use std::any::TypeId;
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
#[derive(Default)]
pub struct HandlerSlot {
    /// The future put in last, and the type it has behind the erasure.
    future: Option<(Pin<Box<SlotFuture>>, TypeId)>,
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
    /// back pinned where it lives.
    fn start<F>(&mut self, future: F) -> Pin<&mut F>
    where
        F: Future<Output = HandlerOutput> + Send + 'static,
    {
        let type_id = TypeId::of::<F>();
        match &self.future {
            Some((_, held)) if *held == type_id => {
                // Pinning allows this: `set` drops the old `F` in place and
                // writes the new one into the same memory.
                let mut current = self.current::<F>();
                current.set(future);
                current
            }
            _ => {
                self.future = Some((Box::pin(future), type_id));
                self.current::<F>()
            }
        }
    }

    /// The future in the slot, which is an `F`.
    ///
    /// # Panics
    /// If the slot is empty or holds a future of another type.
    fn current<F: Future + 'static>(&mut self) -> Pin<&mut F> {
        let (current, held) = self.future.as_mut().expect("the slot holds a future");
        assert!(*held == TypeId::of::<F>(), "the slot holds an `F`");
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

    /// Frees the allocation unless it is small: what a connection keeps
    /// between messages should not be a handler's large future (one with a
    /// big buffer in its state, say) times every idle connection.
    pub(crate) fn trim(&mut self) {
        /// A typical `async fn` handler's future is a few dozen bytes.
        const KEPT: usize = 256;
        let large = self
            .future
            .as_ref()
            .is_some_and(|(future, _)| std::mem::size_of_val(&**future) > KEPT);
        if large {
            self.future = None;
        }
    }

    /// Polls the future put in last again, through the erasure: a handler
    /// that did not finish in its first poll ([`run`](Self::run)).
    ///
    /// # Panics
    /// If no future was put in.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<HandlerOutput> {
        let (future, _) = self
            .future
            .as_mut()
            .expect("a started handler has a future");
        future.as_mut().poll(cx)
    }
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
        let (future, type_id) = slot.future.as_ref()?;
        Some((std::ptr::from_ref(&**future).cast(), *type_id))
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
    fn only_a_small_future_is_kept_by_trim() {
        let mut slot = HandlerSlot::default();
        let _ = run(&mut slot, call(1));
        slot.trim();
        assert!(slot.future.is_some(), "a small future is kept");

        let large = async {
            let state = [7u8; 1024];
            tokio::task::yield_now().await;
            Ok(Some(crate::Message::from(state.to_vec())))
        };
        let _ = run(&mut slot, large);
        slot.trim();
        assert!(slot.future.is_none(), "a large future is freed");
    }
}
