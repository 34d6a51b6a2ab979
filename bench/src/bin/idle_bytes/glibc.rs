//! What glibc's malloc holds besides the live blocks: the heap it took and
//! how much of it lies free between live blocks, so that the gap between
//! the live bytes and the process's resident memory has a name.

// `mallinfo2` and `malloc_info` are C functions that read malloc's own
// bookkeeping; `fdopen` and `fflush` hand the latter stderr.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};

/// glibc's `struct mallinfo2` (malloc.h): every field a `size_t`.
#[repr(C)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

unsafe extern "C" {
    fn mallinfo2() -> MallInfo2;
    fn malloc_info(options: c_int, stream: *mut c_void) -> c_int;
    fn fdopen(fd: c_int, mode: *const c_char) -> *mut c_void;
    fn fflush(stream: *mut c_void) -> c_int;
}

/// Malloc's heap, over all its arenas, and the process's resident memory.
pub(crate) struct Heap {
    /// Bytes malloc took from the kernel (its heaps and mmap'd blocks).
    taken: usize,
    /// Of them, in blocks handed out, headers included.
    in_use: usize,
    /// Of them, free: in malloc's bins and caches, between live blocks.
    free: usize,
    resident: usize,
    /// Of it, pages of files: the program's code, paged in as it first runs.
    resident_file: usize,
}

impl Heap {
    pub(crate) fn now() -> Self {
        // SAFETY: takes no arguments, returns a struct by value.
        let info = unsafe { mallinfo2() };
        Self {
            taken: info.arena + info.hblkhd,
            in_use: info.uordblks + info.hblkhd,
            free: info.fordblks,
            resident: resident_bytes("VmRSS:"),
            resident_file: resident_bytes("RssFile:"),
        }
    }

    /// What grew from `before` to `self`, divided by `per` (the
    /// connections it is for; 1 for a total), after `label`.
    pub(crate) fn print_growth(&self, before: &Heap, label: &str, per: usize) {
        let grown = |after: usize, before: usize| (after as f64 - before as f64) / per as f64;
        println!(
            "{label}: malloc's heap {:.1} (in use {:.1}, free {:.1}); resident memory {:.1}, of it file-backed (code) {:.1}",
            grown(self.taken, before.taken),
            grown(self.in_use, before.in_use),
            grown(self.free, before.free),
            grown(self.resident, before.resident),
            grown(self.resident_file, before.resident_file),
        );
    }
}

/// Prints malloc's own report on stderr (XML: each arena's free blocks by
/// size), which tells what the free bytes are.
pub(crate) fn print_malloc_info() {
    // SAFETY: fd 2 is this process's stderr, opened for its whole life; the
    // stream is flushed, not closed, so the fd stays open.
    unsafe {
        let stderr = fdopen(2, c"w".as_ptr());
        if !stderr.is_null() {
            malloc_info(0, stderr);
            fflush(stderr);
        }
    }
}

fn resident_bytes(field: &str) -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|kib| {
            kib.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}
