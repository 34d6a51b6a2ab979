//! What a node warns about the cluster, each kind within its own rate.
//! Anyone who can publish on the cluster's subjects decides how often a
//! payload is unreadable, and a NATS server that comes and goes decides how
//! often publishing fails: one warning per event would let either fill the
//! log. The first few of a second are written; the rest are counted, and
//! the next one written of that kind says how many were left out.

use crate::log_rate::{LogRate, LogVerdict};

/// Warnings of one kind logged per second.
const PER_SECOND: u32 = 10;

/// The kinds of cluster warning, each with its own budget, so a flood of
/// one (garbage payloads) does not hide the others (a node not answering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Warning {
    /// A payload that does not decode, or does not belong on its subject.
    Unreadable,
    /// Another node's message that this node could not act on (a body the
    /// framing refuses).
    Refused,
    /// Another node did not answer (in time, or readably).
    Unanswered,
    /// Publishing or subscribing failed, or the NATS connection changed.
    Nats,
    /// Another process says hello with this node's name.
    SameName,
}

impl Warning {
    /// Every kind, in declaration order: a kind's budget is at its
    /// discriminant (`kind as usize`), so this list sizes the budgets.
    const ALL: [Warning; 5] = [
        Warning::Unreadable,
        Warning::Refused,
        Warning::Unanswered,
        Warning::Nats,
        Warning::SameName,
    ];
}

const KINDS: usize = Warning::ALL.len();

/// A node's warning budgets (one [`LogRate`] per [`Warning`]).
#[derive(Debug)]
pub(super) struct Warnings([LogRate; KINDS]);

impl Default for Warnings {
    fn default() -> Self {
        Self(std::array::from_fn(|_| LogRate::per_second(PER_SECOND)))
    }
}

impl Warnings {
    /// Whether to write one more warning of `kind`; when it is, the number
    /// of those not written before it is logged first.
    pub(super) fn admit(&self, kind: Warning) -> bool {
        match self.0[kind as usize].admit() {
            LogVerdict::Log { suppressed } => {
                if suppressed > 0 {
                    tracing::warn!(
                        ?kind,
                        suppressed,
                        "cluster warnings of this kind were over {PER_SECOND} a second: {suppressed} not logged"
                    );
                }
                true
            }
            LogVerdict::Suppress => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_kind_has_its_own_budget() {
        let warnings = Warnings::default();
        let written = (0..1000)
            .filter(|_| warnings.admit(Warning::Unreadable))
            .count();
        assert_eq!(written, PER_SECOND as usize);
        assert!(
            warnings.admit(Warning::Unanswered),
            "another kind still logs"
        );
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(
            warnings.admit(Warning::Unreadable),
            "a new second logs again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_kind_has_a_budget_of_its_own() {
        for (index, kind) in Warning::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, index, "Warning::ALL is out of order");
            // Does not compile once a kind is added: add it to ALL as well.
            match kind {
                Warning::Unreadable
                | Warning::Refused
                | Warning::Unanswered
                | Warning::Nats
                | Warning::SameName => {}
            }
        }
        let warnings = Warnings::default();
        for (spent, kind) in Warning::ALL.iter().enumerate() {
            for other in &Warning::ALL[spent..] {
                assert!(warnings.admit(*other), "{other:?} after {spent} spent");
            }
            while warnings.admit(*kind) {}
        }
    }
}
