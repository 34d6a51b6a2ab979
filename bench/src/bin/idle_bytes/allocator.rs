//! A global allocator that counts what is live: bytes in all, and blocks by
//! size, so the difference of two snapshots says how much a set of
//! connections holds and, by the sizes of its blocks, which structs those are.

// A global allocator is an `unsafe` trait; every call only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// Sizes up to this are counted one by one (every struct a connection holds
/// is smaller); larger ones by power of two.
const EXACT: usize = 4096;
const CLASSES: usize = EXACT + 1 + usize::BITS as usize;

/// The system allocator, counting.
pub(crate) struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];
/// Live bytes by class: a power-of-two range holds blocks of several sizes.
static LIVE_CLASS_BYTES: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

/// A block size whose next allocations print where they were made; 0: none.
static TRACED_SIZE: AtomicUsize = AtomicUsize::new(0);
/// How many more of them print.
static TRACES_LEFT: AtomicUsize = AtomicUsize::new(0);

/// The next `count` allocations of `size` bytes print their backtraces on
/// stderr: what struct a block of that size is.
pub(crate) fn trace_next(size: usize, count: usize) {
    TRACES_LEFT.store(count, Ordering::Relaxed);
    TRACED_SIZE.store(size, Ordering::Relaxed);
}

fn class(size: usize) -> usize {
    if size <= EXACT {
        size
    } else {
        EXACT + 1 + (usize::BITS - size.leading_zeros()) as usize
    }
}

fn count(size: usize, blocks: i64) {
    if blocks > 0 && size == TRACED_SIZE.load(Ordering::Relaxed) {
        // Off while capturing, which allocates too.
        TRACED_SIZE.store(0, Ordering::Relaxed);
        eprintln!(
            "a block of {size} bytes allocated at:\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        if TRACES_LEFT.fetch_sub(1, Ordering::Relaxed) > 1 {
            TRACED_SIZE.store(size, Ordering::Relaxed);
        }
    }
    // Relaxed: only the totals matter, read once the server is quiet.
    LIVE_BYTES.fetch_add(blocks * size as i64, Ordering::Relaxed);
    LIVE_BLOCKS[class(size)].fetch_add(blocks, Ordering::Relaxed);
    LIVE_CLASS_BYTES[class(size)].fetch_add(blocks * size as i64, Ordering::Relaxed);
}

// SAFETY: every call goes to `System` with the caller's own arguments; the
// counting around it neither allocates nor touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            count(layout.size(), 1);
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            count(layout.size(), 1);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(block, layout) };
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received.
        let moved = unsafe { System.realloc(block, layout, new_size) };
        if !moved.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
        }
        moved
    }
}

/// What was live at one moment.
pub(crate) struct Snapshot {
    bytes: i64,
    blocks: Vec<i64>,
    class_bytes: Vec<i64>,
}

/// Live bytes now.
pub(crate) fn live_bytes() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

pub(crate) fn snapshot() -> Snapshot {
    Snapshot {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        blocks: LIVE_BLOCKS
            .iter()
            .map(|blocks| blocks.load(Ordering::Relaxed))
            .collect(),
        class_bytes: LIVE_CLASS_BYTES
            .iter()
            .map(|bytes| bytes.load(Ordering::Relaxed))
            .collect(),
    }
}

/// Blocks of one size (or, above [`EXACT`], one power-of-two range) that
/// became live or were freed between two snapshots.
pub(crate) struct Grown {
    /// The size, or for a range its lower bound.
    pub(crate) size: usize,
    /// Whether `size` is a range's lower bound.
    pub(crate) at_least: bool,
    pub(crate) blocks: i64,
    pub(crate) bytes: i64,
}

impl Snapshot {
    /// Live bytes now minus live bytes at `earlier`.
    pub(crate) fn bytes_since(&self, earlier: &Snapshot) -> i64 {
        self.bytes - earlier.bytes
    }

    /// The sizes whose live blocks changed since `earlier`.
    pub(crate) fn grown_since(&self, earlier: &Snapshot) -> Vec<Grown> {
        (0..CLASSES)
            .filter_map(|class| {
                let blocks = self.blocks[class] - earlier.blocks[class];
                let bytes = self.class_bytes[class] - earlier.class_bytes[class];
                (blocks != 0 || bytes != 0).then(|| {
                    if class <= EXACT {
                        Grown {
                            size: class,
                            at_least: false,
                            blocks,
                            bytes,
                        }
                    } else {
                        Grown {
                            size: 1 << (class - EXACT - 2),
                            at_least: true,
                            blocks,
                            bytes,
                        }
                    }
                })
            })
            .collect()
    }
}
