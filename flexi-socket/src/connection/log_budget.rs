//! How many connection errors of each kind an endpoint logs: the first few
//! per second, then one line that says how many more there were. A peer
//! that sends an oversize frame, or garbage, as fast as it can must not fill
//! the disk with one warning per frame; every error is still counted in the
//! stats and still reaches `on_error`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::stats::ERROR_KINDS;
use crate::sync;

/// Lines of one kind logged per window.
pub(crate) const LOGGED_PER_WINDOW: u32 = 10;
/// The window.
const WINDOW: Duration = Duration::from_secs(1);

/// An endpoint's log budget, per kind of error.
#[derive(Debug, Default)]
pub(crate) struct LogBudget {
    kinds: Mutex<[KindWindow; ERROR_KINDS]>,
}

#[derive(Debug, Default, Clone, Copy)]
struct KindWindow {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

/// Whether to log an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it; first say that `suppressed` of its kind were not logged.
    Log { suppressed: u64 },
    /// Over the budget: count it as suppressed.
    Suppress,
}

impl LogBudget {
    pub(crate) fn admit(&self, kind: usize) -> Verdict {
        let now = Instant::now();
        let mut kinds = sync::lock(&self.kinds);
        let window = &mut kinds[kind];
        let mut suppressed = 0;
        if window.started.is_none_or(|started| now - started >= WINDOW) {
            suppressed = std::mem::take(&mut window.suppressed);
            *window = KindWindow {
                started: Some(now),
                logged: 0,
                suppressed: 0,
            };
        }
        if window.logged < LOGGED_PER_WINDOW {
            window.logged += 1;
            Verdict::Log { suppressed }
        } else {
            window.suppressed += 1;
            Verdict::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_of_a_window_are_logged_then_one_line_counts_the_rest() {
        let budget = LogBudget::default();
        for _ in 0..LOGGED_PER_WINDOW {
            assert_eq!(budget.admit(0), Verdict::Log { suppressed: 0 });
        }
        for _ in 0..25 {
            assert_eq!(budget.admit(0), Verdict::Suppress);
        }
        // Another kind has its own budget.
        assert_eq!(budget.admit(1), Verdict::Log { suppressed: 0 });
        tokio::time::advance(WINDOW).await;
        assert_eq!(budget.admit(0), Verdict::Log { suppressed: 25 });
        assert_eq!(budget.admit(0), Verdict::Log { suppressed: 0 });
    }
}
