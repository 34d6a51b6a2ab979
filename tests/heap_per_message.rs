//! Handling a message leaves nothing behind on the heap, whatever the
//! message met: a handler that answered, one that failed, no handler at all,
//! a handler run under the handler timeout. Thousands of messages on one
//! connection must not grow the live heap by more than a few bytes each.
//!
//! The per-message path skips the drop of a finished delivery that owns
//! nothing (`Delivery::finish`); one forgotten while it still owned a box
//! would leak that box with every message, and this test sees it. Its own
//! binary, since the counting allocator sees the whole process: its one test
//! runs the cases one after the other.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use flexi_socket::{Connection, Error, FlexiSocket, Router};
use support::{LineClient, start};

/// The process's live heap bytes.
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The process's live heap blocks: a leak of even the smallest box, once per
/// message, shows here.
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call goes to `System` unchanged; only the sizes are counted.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

/// Messages sent before the heap is first read: buffers, the handler's
/// slot and the runtime's own tables reach their size.
const WARM_UP: usize = 1_000;
/// Messages between the two readings of the heap.
const MEASURED: usize = 10_000;
/// Lines in flight at once.
const BATCH: usize = 50;
/// What the live heap may grow by per measured message, in bytes: a
/// 16-byte box leaked with each one would be 16 times this.
const ALLOWED_BYTES_PER_MESSAGE: isize = 1;
/// How many measured messages may leave one more live block: a block
/// leaked with each message, however small, would be 10 times this.
const MESSAGES_PER_ALLOWED_BLOCK: isize = 10;

/// Every line, whatever became of it, gets one line back: the reply, or
/// the error the server reported.
fn answering_errors(router: Router) -> Router {
    router.on_error(|conn: Connection, error: Error| async move {
        let _ = conn.send(format!("error: {error}")).await;
    })
}

/// Sends `count` lines in batches and reads one line back for each; the
/// last line back, to show what the server did.
async fn exchange(client: &mut LineClient, count: usize) -> String {
    let mut last = String::new();
    for _ in 0..count / BATCH {
        for _ in 0..BATCH {
            client.send_line("ping").await;
        }
        for _ in 0..BATCH {
            last = client.recv_line().await;
        }
    }
    last
}

#[tokio::test]
async fn messages_leave_no_heap_behind_whatever_they_met() {
    let echo = || {
        Router::new()
            .on_message(|conn: Connection, line: String| async move { conn.send(line).await })
    };
    let failing = Router::new().on_message(|_conn: Connection, _line: String| async {
        Err::<(), _>(std::io::Error::other("refused"))
    });
    let cases = [
        ("answered", echo(), None, "ping"),
        ("failed", failing, None, "refused"),
        ("unrouted", Router::new(), None, "no on_message handler"),
        (
            "under the timeout",
            echo(),
            Some(Duration::from_secs(60)),
            "ping",
        ),
    ];
    for (case, router, timeout, expected) in cases {
        let running = start(
            FlexiSocket::server("127.0.0.1:0")
                .router(answering_errors(router))
                .handler_timeout(timeout),
        )
        .await;
        let mut client = LineClient::connect(running.addr).await;
        let last = exchange(&mut client, WARM_UP).await;
        assert!(last.contains(expected), "{case}: {last:?}");

        let (bytes, blocks) = (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed));
        exchange(&mut client, MEASURED).await;
        let grown = LIVE.load(Ordering::Relaxed) - bytes;
        let more_blocks = BLOCKS.load(Ordering::Relaxed) - blocks;
        eprintln!(
            "{case}: the live heap grew by {grown} bytes in {more_blocks} blocks over {MEASURED} messages"
        );
        assert!(
            grown < ALLOWED_BYTES_PER_MESSAGE * MEASURED as isize,
            "{case}: {grown} bytes more live after {MEASURED} messages"
        );
        assert!(
            more_blocks < MEASURED as isize / MESSAGES_PER_ALLOWED_BLOCK,
            "{case}: {more_blocks} blocks more live after {MEASURED} messages"
        );
        drop(client);
        running.stop().await;
    }
}
