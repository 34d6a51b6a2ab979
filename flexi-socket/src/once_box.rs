//! [`OnceBox`]: a value made at most once, when first needed, behind one
//! pointer.
//!
//! Every connection holds several things most connections never make (what
//! classification decided, the close reason, waiters for its end, the book
//! of its requests, its typed state). A `OnceLock<Box<T>>` takes two words
//! for each (the `Once`'s state beside the pointer); this takes one, the
//! pointer, null until set. Two threads that make the value at once both
//! build one and the first to store its own wins; the other's is dropped
//! unseen, so a value must do nothing of its own until it is shared.

use std::fmt;
use std::marker::PhantomData;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

pub(crate) struct OnceBox<T> {
    /// Null until set; then from `Box::into_raw`, freed only by `drop`.
    value: AtomicPtr<T>,
    /// It owns a `T` on the heap, and is `Send` and `Sync` exactly when a
    /// `OnceLock<Box<T>>` is (one thread may make the value another drops).
    _owns: PhantomData<OnceLock<Box<T>>>,
}

impl<T> OnceBox<T> {
    pub(crate) const fn new() -> Self {
        Self {
            value: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// The value, once set.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        let value = self.value.load(Ordering::Acquire);
        // SAFETY: null, or a `Box`'s allocation stored with Release (`store`)
        // and loaded with Acquire, so its `T` is fully written. It is freed
        // only when `self` drops, which cannot happen while `&self` lives.
        #[allow(unsafe_code)]
        unsafe {
            value.as_ref()
        }
    }

    /// Sets `value` unless a value is set already; then gives it back.
    pub(crate) fn set(&self, value: Box<T>) -> Result<(), Box<T>> {
        self.store(value).map(drop).map_err(|(value, _)| value)
    }

    /// The value, made by `make` if none is set yet.
    pub(crate) fn get_or_init(&self, make: impl FnOnce() -> Box<T>) -> &T {
        if let Some(value) = self.get() {
            return value;
        }
        match self.store(make()) {
            Ok(value) => value,
            // Another thread set one meanwhile: ours goes.
            Err((_ours, theirs)) => theirs,
        }
    }

    /// Stores `value` if none is set: the value set, or `value` back with
    /// the value another set first.
    fn store(&self, value: Box<T>) -> Result<&T, (Box<T>, &T)> {
        let new = Box::into_raw(value);
        let stored =
            self.value
                .compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire);
        // SAFETY: `new` is our own `Box`'s: after a successful exchange it is
        // the value set, freed only when `self` drops (as in `get`); after a
        // failed one nobody else has seen it, so it is ours to take back.
        // `current` is another's value, stored and freed as `new` would be.
        #[allow(unsafe_code)]
        unsafe {
            match stored {
                Ok(_) => Ok(&*new),
                Err(current) => Err((Box::from_raw(new), &*current)),
            }
        }
    }
}

impl<T> Default for OnceBox<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for OnceBox<T> {
    fn drop(&mut self) {
        let value = *self.value.get_mut();
        if !value.is_null() {
            // SAFETY: set from `Box::into_raw` and never freed before (see `get`).
            #[allow(unsafe_code)]
            drop(unsafe { Box::from_raw(value) });
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for OnceBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Some(value) => f.debug_tuple("OnceBox").field(value).finish(),
            None => f.write_str("OnceBox(<unset>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn it_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<OnceBox<[u64; 8]>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn the_first_value_set_stays_and_later_ones_come_back() {
        let once = OnceBox::new();
        assert_eq!(once.get(), None);
        assert_eq!(once.set(Box::new(1)), Ok(()));
        assert_eq!(once.set(Box::new(2)), Err(Box::new(2)));
        assert_eq!(*once.get_or_init(|| Box::new(3)), 1);
        assert_eq!(once.get(), Some(&1));
    }

    #[test]
    fn get_or_init_makes_the_value_once() {
        let once = OnceBox::new();
        let mut made = 0;
        for _ in 0..3 {
            let value = once.get_or_init(|| {
                made += 1;
                Box::new("made")
            });
            assert_eq!(*value, "made");
        }
        assert_eq!(made, 1);
    }

    #[test]
    fn threads_racing_to_make_it_share_one_value_and_lose_none() {
        let drops = Arc::new(AtomicUsize::new(0));
        let once = OnceBox::new();
        let winners: Vec<usize> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        let value = once.get_or_init(|| Box::new(Counted(Arc::clone(&drops))));
                        std::ptr::from_ref(value) as usize
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|racer| racer.join().unwrap())
                .collect()
        });
        assert!(winners.iter().all(|&winner| winner == winners[0]));
        let lost = drops.load(Ordering::SeqCst);
        drop(once);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            lost + 1,
            "the value set is dropped with it, once"
        );
    }

    #[test]
    fn an_unset_one_drops_nothing_and_a_set_one_its_value() {
        let drops = Arc::new(AtomicUsize::new(0));
        drop(OnceBox::<Counted>::new());
        let once = OnceBox::new();
        assert!(once.set(Box::new(Counted(Arc::clone(&drops)))).is_ok());
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(once);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
