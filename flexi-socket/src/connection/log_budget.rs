//! How many connection errors of each kind an endpoint logs: the first few
//! per second, then one line that says how many more there were. A peer
//! that sends an oversize frame, or garbage, as fast as it can must not fill
//! the disk with one warning per frame; every error is still counted in the
//! stats and still reaches `on_error`.

use crate::log_rate::{LogRate, LogVerdict};
use crate::stats::ERROR_KINDS;

/// Lines of one kind logged per second.
pub(crate) const LOGGED_PER_SECOND: u32 = 10;

/// An endpoint's log budget: a [`LogRate`] per kind of error.
#[derive(Debug)]
pub(crate) struct LogBudget {
    kinds: [LogRate; ERROR_KINDS],
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            kinds: std::array::from_fn(|_| LogRate::per_second(LOGGED_PER_SECOND)),
        }
    }
}

impl LogBudget {
    /// Whether to log an error of kind `kind` (an index of `ERROR_KINDS`).
    pub(crate) fn admit(&self, kind: usize) -> LogVerdict {
        self.kinds[kind].admit()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_kind_has_its_own_budget() {
        let budget = LogBudget::default();
        for _ in 0..LOGGED_PER_SECOND {
            assert_eq!(budget.admit(0), LogVerdict::Log { suppressed: 0 });
        }
        for _ in 0..25 {
            assert_eq!(budget.admit(0), LogVerdict::Suppress);
        }
        assert_eq!(budget.admit(1), LogVerdict::Log { suppressed: 0 });
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(budget.admit(0), LogVerdict::Log { suppressed: 25 });
    }
}
