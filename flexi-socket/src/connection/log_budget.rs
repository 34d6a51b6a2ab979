//! How many connection errors of each kind an endpoint logs: the first few
//! per second, then one line that says how many more there were. A peer
//! that sends an oversize frame, or garbage, as fast as it can must not fill
//! the disk with one warning per frame; every error is still counted in the
//! stats and still reaches `on_error`.
//!
//! The budget of a kind is the endpoint's, so one flooding connection spends
//! it for all. Each connection's first error of a kind is therefore logged
//! beyond it, from a second budget shared by all such first errors: a quiet
//! connection's one error is not lost in a neighbour's flood, and ten
//! thousand connections failing at once still log a bounded number of lines.

use std::sync::atomic::{AtomicU16, Ordering};

use crate::log_rate::{LogRate, LogVerdict};
use crate::stats::ERROR_KINDS;

/// Lines of one kind logged per second.
pub(crate) const LOGGED_PER_SECOND: u32 = 10;

/// Connections' first errors of a kind logged per second, all kinds
/// together, beyond the kinds' own budgets.
pub(crate) const FIRSTS_PER_SECOND: u32 = 20;

/// An endpoint's log budget: a [`LogRate`] per kind of error, and one for
/// the connections' first errors of a kind beyond those.
#[derive(Debug)]
pub(crate) struct LogBudget {
    kinds: [LogRate; ERROR_KINDS],
    firsts: LogRate,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            kinds: std::array::from_fn(|_| LogRate::per_second(LOGGED_PER_SECOND)),
            firsts: LogRate::per_second(FIRSTS_PER_SECOND),
        }
    }
}

impl LogBudget {
    /// Whether to log an error of kind `kind` (an index of `ERROR_KINDS`);
    /// `first`: it is its connection's first error of that kind.
    pub(crate) fn admit(&self, kind: usize, first: bool) -> LogVerdict {
        self.kinds[kind].admit_or(|| first && self.firsts.admit() != LogVerdict::Suppress)
    }
}

/// The kinds of error a connection has had, for [`LogBudget::admit`]'s
/// `first`: a bit per kind.
#[derive(Debug, Default)]
pub(crate) struct KindsSeen(AtomicU16);

const _: () = assert!(ERROR_KINDS <= u16::BITS as usize);

impl KindsSeen {
    /// Notes an error of kind `kind`; whether it is the first of its kind.
    pub(crate) fn first(&self, kind: usize) -> bool {
        let bit = 1 << kind;
        // A plain load first: a flooding connection has seen its kind already.
        let seen = &self.0;
        seen.load(Ordering::Relaxed) & bit == 0 && seen.fetch_or(bit, Ordering::Relaxed) & bit == 0
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
            assert_eq!(budget.admit(0, false), LogVerdict::Log { suppressed: 0 });
        }
        for _ in 0..25 {
            assert_eq!(budget.admit(0, false), LogVerdict::Suppress);
        }
        assert_eq!(budget.admit(1, false), LogVerdict::Log { suppressed: 0 });
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(budget.admit(0, false), LogVerdict::Log { suppressed: 25 });
    }

    #[tokio::test(start_paused = true)]
    async fn first_errors_are_logged_beyond_a_spent_kind_within_their_own_budget() {
        let budget = LogBudget::default();
        for _ in 0..LOGGED_PER_SECOND {
            assert!(matches!(budget.admit(0, false), LogVerdict::Log { .. }));
        }
        assert_eq!(budget.admit(0, false), LogVerdict::Suppress);
        // Other connections' first errors of the spent kind: some, not all.
        let logged = (0..1_000)
            .filter(|_| budget.admit(0, true) != LogVerdict::Suppress)
            .count();
        assert_eq!(logged, FIRSTS_PER_SECOND as usize);
        tokio::time::advance(Duration::from_secs(1)).await;
        // The count says what was not logged: the flood's line and the
        // first errors beyond the second budget.
        let unlogged = 1 + 1_000 - u64::from(FIRSTS_PER_SECOND);
        assert_eq!(
            budget.admit(0, false),
            LogVerdict::Log {
                suppressed: unlogged
            }
        );
    }

    #[test]
    fn a_kind_is_first_once_per_connection() {
        let seen = KindsSeen::default();
        assert!(seen.first(3));
        assert!(!seen.first(3));
        assert!(seen.first(ERROR_KINDS - 1));
        assert!(!seen.first(3));
    }
}
