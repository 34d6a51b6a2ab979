//! What classification decides for a connection, and what follows from it:
//! its client type's routes, framing and encoder, how its sends go, and the
//! traffic counters its messages are recorded under.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Connection;
use crate::client_type::ClientType;
use crate::framing::{FrameEncoder, Framing};
use crate::handler::Routes;
use crate::stats::Traffic;

impl Connection {
    /// The routes for this connection's client type (the defaults until classified).
    pub(crate) fn routes(&self) -> &Arc<Routes> {
        self.shared
            .classified
            .get()
            .map_or_else(|| self.default_routes(), |classified| &classified.routes)
    }

    /// What a send needs from classification, from one look at it (it may
    /// happen meanwhile): how sends go, the routes they take, and the encoder.
    #[inline]
    pub(super) fn sending(&self) -> (Sends, &Arc<Routes>, &FrameEncoder) {
        match self.shared.classified.get() {
            Some(classified) => (
                classified.sends,
                &classified.routes,
                classified
                    .encoder
                    .as_deref()
                    .unwrap_or_else(|| self.default_encoder()),
            ),
            None => (
                self.shared.endpoint.unclassified_sends,
                self.default_routes(),
                self.default_encoder(),
            ),
        }
    }

    /// The encoder until classified, and for client types without their own framing.
    pub(super) fn default_encoder(&self) -> &FrameEncoder {
        match self.extras().and_then(|extras| extras.encoder.as_deref()) {
            Some(own) => own,
            None => self
                .shared
                .endpoint
                .encoder
                .as_ref()
                .expect("a connection without an encoder of its own shares the endpoint's"),
        }
    }

    pub(super) fn default_routes(&self) -> &Arc<Routes> {
        self.shared.endpoint.routes.default_routes()
    }

    /// The framing this connection's bytes are decoded with now: its client
    /// type's own, once classified, or the endpoint's.
    pub(crate) fn framing(&self) -> &Framing {
        self.own_framing().unwrap_or(&self.shared.endpoint.framing)
    }

    /// The framing of this connection's client type, if it has its own.
    pub(crate) fn own_framing(&self) -> Option<&Framing> {
        self.shared
            .endpoint
            .client_framing
            .for_type(self.client_type()?)
    }

    /// Whether classification is over, whatever its outcome (it may have
    /// failed and left the connection unclassified for good): what it
    /// decided (the client type, its routes and framing) is set, and stays
    /// as it is. A reader on another thread asks this first and looks at
    /// what it decided only after seeing it over (this load pairs with
    /// [`end_classification`](Self::end_classification)'s store).
    pub(crate) fn classification_over(&self) -> bool {
        self.shared.classification.load(Ordering::Acquire) == ClassificationStage::Over as u8
    }

    /// Whether classification is still to run; true once at most, for the
    /// caller that is to run it, which calls
    /// [`end_classification`](Self::end_classification) when it is done.
    pub(crate) fn take_classification(&self) -> bool {
        // Asked for every inbound frame: a plain load answers all but the
        // first, without a locked read-modify-write per message.
        self.classification_to_run()
            && self
                .shared
                .classification
                .compare_exchange(
                    ClassificationStage::ToRun as u8,
                    ClassificationStage::Running as u8,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Whether classification is still to run: nobody has taken it.
    pub(crate) fn classification_to_run(&self) -> bool {
        self.shared.classification.load(Ordering::Relaxed) == ClassificationStage::ToRun as u8
    }

    /// Ends classification, taken by
    /// [`take_classification`](Self::take_classification), once what it
    /// decided is set (or its failure reported). Only then does
    /// [`classification_over`](Self::classification_over) say so, so that
    /// another thread that sees it over (UDP's receive loop) also sees what
    /// it decided.
    pub(crate) fn end_classification(&self) {
        self.shared
            .classification
            .store(ClassificationStage::Over as u8, Ordering::Release);
    }

    /// Gives the connection its client type, that type's routes and, if the
    /// type has its own framing, that framing's `encoder`.
    pub(crate) fn classify_as(&self, client_type: ClientType, encoder: Option<FrameEncoder>) {
        let routes = Arc::clone(self.shared.endpoint.routes.routes_for(&client_type));
        if let Some(history) = self.recorder() {
            history.set_limits(self.shared.endpoint.limits.history_for(&client_type));
        }
        // Classification runs once (take_classification): this cannot be set twice.
        let classified = self.shared.classified.get_or_init(|| {
            Box::new(Classified {
                sends: Sends::of(&routes, self.keeps_history()),
                traffic: self.shared.endpoint.counters.traffic(Some(&client_type)),
                client_type,
                routes,
                encoder: encoder.map(Box::new),
            })
        });
        // Filed under its type once, so a broadcast to the type visits its
        // members only; after the type is set, so that another task that
        // finds it there (under the list's lock) sends with its type's
        // framing and before_send, not the defaults.
        self.shared
            .endpoint
            .connections
            .lock()
            .classified(self.id(), &classified.client_type);
    }

    /// Classification failed (the classifier panicked): the connection
    /// stays unclassified, and keeps the default history, if any.
    pub(crate) fn classification_failed(&self) {
        if let Some(history) = self.recorder() {
            let unclassified = self
                .shared
                .endpoint
                .limits
                .history_for(&ClientType::DEFAULT);
            history.set_limits(unclassified);
        }
    }

    /// The exported traffic counters for this connection's client type now.
    #[cfg(feature = "metrics")]
    pub(super) fn traffic(&self) -> &Traffic {
        match self.shared.classified.get() {
            Some(classified) => &classified.traffic,
            None => self.shared.endpoint.counters.unclassified(),
        }
    }
}

/// Where a connection's classification is, kept as a `u8` in an atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum ClassificationStage {
    /// The first frame (or unit, or bytes) will classify it.
    ToRun,
    /// Its task classifies it now, or reports why it could not.
    Running,
    /// Over: classified, failed for good, or no classifier.
    Over,
}

/// How a connection's sends go: what every send would otherwise ask of
/// its routes and history, decided once per connection (when it opens, and
/// again when classified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sends {
    /// Straight to the framing and the queue, in the sender's poll.
    Plain,
    /// Through `before_send`, or kept in the history: the boxed way.
    Filtered,
}

impl Sends {
    pub(super) fn of(routes: &Routes, keeps_history: bool) -> Self {
        if routes.before_send.is_some() || keeps_history {
            Sends::Filtered
        } else {
            Sends::Plain
        }
    }
}

/// What classification decided for a connection.
pub(super) struct Classified {
    pub(super) client_type: ClientType,
    pub(super) routes: Arc<Routes>,
    pub(super) sends: Sends,
    /// The client type's own encoder (see `framing_for`); boxed, so
    /// connections without one pay a pointer.
    pub(super) encoder: Option<Box<FrameEncoder>>,
    /// The client type's exported traffic counters (empty, and unused,
    /// without the `metrics` feature).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(super) traffic: Traffic,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::ClassificationStage;
    use crate::connection::Endpoint;

    #[test]
    fn classification_is_over_only_once_its_taker_ends_it() {
        let connection = Endpoint::connection_for_tests();
        // Without a classifier it is over from the start, and not to take.
        assert!(connection.classification_over());
        assert!(!connection.take_classification());
        // As it opens with a classifier.
        connection
            .shared
            .classification
            .store(ClassificationStage::ToRun as u8, Ordering::Relaxed);
        assert!(!connection.classification_over());
        assert!(connection.take_classification());
        // Taken, it runs: not over yet (its routes are not set), and not
        // to take again.
        assert!(!connection.classification_over());
        assert!(!connection.classification_to_run());
        assert!(!connection.take_classification());
        connection.end_classification();
        assert!(connection.classification_over());
        assert!(!connection.take_classification());
    }
}
