//! Logging within a rate: the first lines of a second are written, the rest
//! counted and summed up in one line. The framework logs connection errors
//! this way (`connection/log_budget.rs`); handlers that
//! log per message a peer controls (a NAK per bad frame) should too, or one
//! hostile peer fills the disk.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync;

/// Lets the first `per_second` lines of each second through and counts the
/// rest, so a flood of one kind of line costs a few lines a second.
///
/// # Examples
///
/// ```
/// use flexi_socket::{Connection, LogRate, LogVerdict, on_message};
///
/// /// At most ten NAK lines a second, whatever the peers send.
/// static NAK_LOG: LogRate = LogRate::per_second(10);
///
/// #[on_message]
/// async fn frame(conn: Connection, frame: &[u8]) -> flexi_socket::Result<()> {
///     if frame.is_empty() {
///         if let LogVerdict::Log { suppressed } = NAK_LOG.admit() {
///             if suppressed > 0 {
///                 tracing::info!("{suppressed} more NAKs were not logged");
///             }
///             tracing::info!(peer = %conn.peer_addr(), "NAK: empty frame");
///         }
///         return conn.send("NAK").await;
///     }
///     conn.send("ACK").await
/// }
/// ```
#[derive(Debug)]
pub struct LogRate {
    per_window: u32,
    window: Mutex<Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

/// What [`LogRate::admit`] says about one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum LogVerdict {
    /// Write the line; first say that `suppressed` lines of its kind were
    /// not written in the second before (when it is not 0).
    Log {
        /// Lines counted instead of written since the last one written.
        suppressed: u64,
    },
    /// Over the rate: the line is counted, not written.
    Suppress,
}

/// The rate's window.
const WINDOW: Duration = Duration::from_secs(1);

impl LogRate {
    /// At most `lines` lines a second (usable in a `static`).
    #[must_use]
    pub const fn per_second(lines: u32) -> Self {
        Self {
            per_window: lines,
            window: Mutex::new(Window {
                started: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether to write one more line now.
    pub fn admit(&self) -> LogVerdict {
        self.admit_or(|| false)
    }

    /// Whether to write one more line now: within the rate, or beyond it
    /// when `beyond` says so (asked only then). A line let through beyond
    /// the rate is not counted as suppressed; those suppressed before it are
    /// reported with the next line within the rate.
    pub(crate) fn admit_or(&self, beyond: impl FnOnce() -> bool) -> LogVerdict {
        let now = Instant::now();
        let mut window = sync::lock(&self.window);
        if window.started.is_none_or(|started| now - started >= WINDOW) {
            window.started = Some(now);
            window.logged = 0;
        }
        if window.logged < self.per_window {
            window.logged += 1;
            // Lines are suppressed only once a window's are all logged, so
            // this count is the earlier windows', reported with the first line
            // of this one.
            LogVerdict::Log {
                suppressed: std::mem::take(&mut window.suppressed),
            }
        } else if beyond() {
            LogVerdict::Log { suppressed: 0 }
        } else {
            window.suppressed += 1;
            LogVerdict::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_of_a_second_are_logged_then_one_line_counts_the_rest() {
        let rate = LogRate::per_second(10);
        for _ in 0..10 {
            assert_eq!(rate.admit(), LogVerdict::Log { suppressed: 0 });
        }
        for _ in 0..25 {
            assert_eq!(rate.admit(), LogVerdict::Suppress);
        }
        tokio::time::advance(WINDOW).await;
        assert_eq!(rate.admit(), LogVerdict::Log { suppressed: 25 });
        assert_eq!(rate.admit(), LogVerdict::Log { suppressed: 0 });
    }
}
