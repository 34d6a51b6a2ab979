//! When to try again: exponential backoff with jitter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a client retries after a failed or lost connection.
///
/// The n-th consecutive failure waits `initial × factorⁿ⁻¹`, capped at
/// `max_delay`, each delay shortened by up to `jitter` (a fraction) at random
/// so that many clients do not reconnect in lockstep.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnect {
    initial: Duration,
    factor: f64,
    max_delay: Duration,
    max_attempts: Option<u32>,
    jitter: f64,
}

impl Default for Reconnect {
    /// Forever, from 100 ms doubling to 30 s, with 20 % jitter: a device
    /// client should come back whenever its server does.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max_delay: Duration::from_secs(30),
            max_attempts: None,
            jitter: 0.2,
        }
    }
}

impl Reconnect {
    /// Never retry: the first failure is final.
    pub fn never() -> Self {
        Self::default().max_attempts(1)
    }

    /// The first delay (default 100 ms).
    #[must_use]
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// How much each delay grows (default 2.0).
    #[must_use]
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor.max(1.0);
        self
    }

    /// The longest delay (default 30 s).
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Give up after this many consecutive failed attempts (default: never).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The fraction of each delay taken off at random (default 0.2; 0 for none).
    #[must_use]
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// The wait after `failures` consecutive failures, or `None` to give up.
    pub(crate) fn delay_after(&self, failures: u32) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| failures >= max) {
            return None;
        }
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.initial.as_secs_f64() * self.factor.powi(exponent);
        let capped = grown.min(self.max_delay.as_secs_f64());
        let shortened = capped * (1.0 - self.jitter * random_fraction());
        Some(Duration::from_secs_f64(shortened.max(0.0)))
    }
}

/// A number in [0, 1) that differs between calls and processes; enough to
/// spread reconnects, not for anything secret.
fn random_fraction() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(nanos) ^ 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    let mixed = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    (mixed >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_and_give_up() {
        let policy = Reconnect::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(350))
            .jitter(0.0)
            .max_attempts(5);
        let delays: Vec<_> = (1..=5).map(|n| policy.delay_after(n)).collect();
        assert_eq!(
            delays,
            [
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(350)),
                Some(Duration::from_millis(350)),
                None,
            ]
        );
        assert_eq!(Reconnect::never().delay_after(1), None);
    }

    #[test]
    fn jitter_only_shortens() {
        let policy = Reconnect::default()
            .initial_delay(Duration::from_secs(1))
            .jitter(0.5);
        for _ in 0..100 {
            let delay = policy.delay_after(1).unwrap();
            assert!(delay <= Duration::from_secs(1) && delay >= Duration::from_millis(500));
        }
    }
}
