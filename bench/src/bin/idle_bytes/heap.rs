//! What glibc's malloc holds besides the live blocks: the heap it took and
//! how much of it lies free between live blocks, so that the gap between
//! the live bytes and the process's resident memory has a name. Elsewhere
//! than on Linux with glibc, only the resident memory is read.

/// Malloc's heap, over all its arenas, and the process's resident memory.
pub(crate) struct Heap {
    malloc: Option<Malloc>,
    resident: usize,
    /// Of it, pages of files: the program's code, paged in as it first runs.
    resident_file: usize,
}

/// glibc's own counts (`mallinfo2`).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
struct Malloc {
    /// Bytes it took from the kernel (its heaps and mmap'd blocks).
    taken: usize,
    /// Of them, in blocks handed out, headers included, and in the
    /// per-thread caches (which `mallinfo2` does not walk).
    in_use: usize,
    /// Of them, free: in its bins, between live blocks, and at the top of
    /// each heap (not handed out yet).
    free: usize,
}

impl Heap {
    pub(crate) fn now() -> Self {
        Self {
            malloc: glibc::counts(),
            resident: resident_bytes("VmRSS:"),
            resident_file: resident_bytes("RssFile:"),
        }
    }

    /// What grew from `before` to `self`, divided by `per` (the
    /// connections it is for; 1 for a total), after `label`.
    pub(crate) fn print_growth(&self, before: &Heap, label: &str, per: usize) {
        let grown = |after: usize, before: usize| (after as f64 - before as f64) / per as f64;
        let malloc = match (&self.malloc, &before.malloc) {
            (Some(after), Some(before)) => format!(
                "malloc's heap {:.1} (in use {:.1}, free {:.1}); ",
                grown(after.taken, before.taken),
                grown(after.in_use, before.in_use),
                grown(after.free, before.free),
            ),
            _ => String::new(),
        };
        println!(
            "{label}: {malloc}resident memory {:.1}, of it file-backed (code) {:.1}",
            grown(self.resident, before.resident),
            grown(self.resident_file, before.resident_file),
        );
    }
}

/// Prints glibc's own report on stderr (XML: each arena's free blocks by
/// size), which tells what the free bytes are; nothing elsewhere.
pub(crate) fn print_malloc_info() {
    glibc::print_info();
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

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    // `mallinfo2` (glibc 2.33) and `malloc_info` are C functions that read
    // malloc's own bookkeeping; `fdopen` and `fflush` hand the latter stderr.
    #![allow(unsafe_code)]

    use std::ffi::{c_char, c_int, c_void};

    use super::Malloc;

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

    pub(super) fn counts() -> Option<Malloc> {
        // SAFETY: `MallInfo2` is glibc's `struct mallinfo2` field for field
        // (ten `size_t`s, in order), returned by value; the function takes
        // no arguments and only reads malloc's counters. (It is in glibc
        // 2.33 and later: an older one fails to link, not at run time.)
        let info = unsafe { mallinfo2() };
        Some(Malloc {
            taken: info.arena + info.hblkhd,
            in_use: info.uordblks + info.hblkhd,
            free: info.fordblks,
        })
    }

    pub(super) fn print_info() {
        // SAFETY: fd 2 is assumed to be this process's stderr, as nothing
        // here closes it (were it another file, the report would go there;
        // no memory is at stake). The `FILE` is flushed and kept, never
        // closed or freed, so the fd stays open: a few hundred bytes, once.
        unsafe {
            let stderr = fdopen(2, c"w".as_ptr());
            if !stderr.is_null() {
                malloc_info(0, stderr);
                fflush(stderr);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    use super::Malloc;

    pub(super) fn counts() -> Option<Malloc> {
        None
    }

    pub(super) fn print_info() {
        eprintln!("idle_bytes: --malloc-info needs glibc");
    }
}
