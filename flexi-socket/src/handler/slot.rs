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
    /// Puts `future` into the slot, in the allocation of the previous
    /// future if that was of the same type.
    pub fn start<F>(&mut self, future: F)
    where
        F: Future<Output = HandlerOutput> + Send + 'static,
    {
        match &mut self.future {
            Some((current, type_id)) if *type_id == TypeId::of::<F>() => {
                // SAFETY: the box holds an `F`: its type was recorded when it
                // was put in, so the cast only restores the erased type. The
                // pinned `F` is not moved: `set` drops it in place and writes
                // the new future into the same memory, which pinning allows.
                #[allow(unsafe_code)]
                let mut current = unsafe {
                    current
                        .as_mut()
                        .map_unchecked_mut(|erased| &mut *std::ptr::from_mut(erased).cast::<F>())
                };
                current.set(future);
            }
            _ => self.future = Some((Box::pin(future), TypeId::of::<F>())),
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

    /// Puts in the future of a handler whose argument could not be
    /// produced: it resolves at once to that error.
    pub fn reject(&mut self, error: Error) {
        self.start(std::future::ready(Err(HandlerError::Argument(error))));
    }

    /// The future put in last, to poll.
    pub(crate) fn future(&mut self) -> Option<Pin<&mut SlotFuture>> {
        self.future.as_mut().map(|(future, _)| future.as_mut())
    }

    /// Takes the future put in last out of the slot (to run it elsewhere).
    pub(crate) fn take(&mut self) -> Option<Pin<Box<SlotFuture>>> {
        self.future.take().map(|(future, _)| future)
    }
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

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<HandlerOutput> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        let convert = this
            .convert
            .take()
            .expect("a handler's future is not polled after it completed");
        std::task::Poll::Ready(convert(output))
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
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn poll(slot: &mut HandlerSlot) -> Poll<HandlerOutput> {
        let mut cx = Context::from_waker(Waker::noop());
        slot.future().expect("a future was started").poll(&mut cx)
    }

    fn address(slot: &mut HandlerSlot) -> *const () {
        let future = slot.future().unwrap();
        std::ptr::from_ref(&*future).cast()
    }

    async fn call(n: u8) -> HandlerOutput {
        Ok(Some(crate::Message::from(vec![n])))
    }

    #[test]
    fn a_future_of_the_same_type_reuses_the_allocation() {
        let mut slot = HandlerSlot::default();
        slot.start(call(1));
        let first = address(&mut slot);
        assert!(matches!(poll(&mut slot), Poll::Ready(Ok(Some(m))) if m.as_bytes() == [1]));
        slot.start(call(2));
        assert_eq!(address(&mut slot), first);
        assert!(matches!(poll(&mut slot), Poll::Ready(Ok(Some(m))) if m.as_bytes() == [2]));
    }

    #[test]
    fn a_future_of_another_type_gets_its_own() {
        let mut slot = HandlerSlot::default();
        slot.start(call(1));
        slot.reject(Error::NoHandlers);
        assert!(matches!(
            poll(&mut slot),
            Poll::Ready(Err(HandlerError::Argument(Error::NoHandlers)))
        ));
        assert!(slot.take().is_some());
        assert!(slot.future().is_none());
    }

    #[test]
    fn only_a_small_future_is_kept_by_trim() {
        let mut slot = HandlerSlot::default();
        slot.start(call(1));
        let _ = poll(&mut slot);
        slot.trim();
        assert!(slot.future().is_some(), "a small future is kept");

        let large = async {
            let state = [7u8; 1024];
            tokio::task::yield_now().await;
            Ok(Some(crate::Message::from(state.to_vec())))
        };
        slot.start(large);
        slot.trim();
        assert!(slot.future().is_none(), "a large future is freed");
    }
}
