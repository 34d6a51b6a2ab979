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

    /// Whether classification ran and is over, whatever its outcome (it may
    /// have failed and left the connection unclassified for good).
    pub(crate) fn classification_over(&self) -> bool {
        self.shared.classification_done.load(Ordering::Relaxed)
    }

    /// Whether classification is still to run; true once at most, for the
    /// caller that is to run it.
    pub(crate) fn take_classification(&self) -> bool {
        // Asked for every inbound frame: a plain load answers all but the
        // first, without a locked read-modify-write per message.
        !self.classification_over()
            && !self
                .shared
                .classification_done
                .swap(true, Ordering::Relaxed)
    }

    /// Gives the connection its client type, that type's routes and, if the
    /// type has its own framing, that framing's `encoder`.
    pub(crate) fn classify_as(&self, client_type: ClientType, encoder: Option<FrameEncoder>) {
        let routes = Arc::clone(self.shared.endpoint.routes.routes_for(&client_type));
        // Filed under its type once, so a broadcast to the type visits its members only.
        self.shared
            .endpoint
            .connections
            .lock()
            .classified(self.id(), &client_type);
        if let Some(history) = self.recorder() {
            history.set_limits(self.shared.endpoint.limits.history_for(&client_type));
        }
        // Classification runs once (take_classification): this cannot be set twice.
        let _ = self.shared.classified.set(Box::new(Classified {
            sends: Sends::of(&routes, self.keeps_history()),
            traffic: self.shared.endpoint.counters.traffic(Some(&client_type)),
            client_type,
            routes,
            encoder: encoder.map(Box::new),
        }));
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
