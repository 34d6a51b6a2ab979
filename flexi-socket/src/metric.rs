//! The handles a server records its metrics through: the `metrics` facade's
//! (feature `metrics`), resolved once (at start-up, or at classification for
//! a client type's) so that recording is an atomic add, never a registry
//! lookup; those handles are shared by every connection (what that costs
//! per message: BENCHMARKS.md, "Metrics cost"). Without the feature every
//! type here is empty and every method does nothing, so the calls compile
//! away.
//!
//! Only servers record: a client's endpoint holds handles made with `on`
//! false, which record nothing (see `Side` and the README's "Deploying").

#[cfg(feature = "metrics")]
use std::time::Instant;

/// The exported names, Prometheus style. Other programs (dashboards, alerts)
/// depend on them: they never change.
pub(crate) mod name {
    /// Gauge: connections open now.
    pub(crate) const CONNECTIONS_OPEN: &str = "flexi_socket_connections_open";
    /// Connections accepted (UDP: sessions opened).
    pub(crate) const CONNECTIONS_TOTAL: &str = "flexi_socket_connections_total";
    /// Connections refused by a limit (the per-IP cap).
    pub(crate) const CONNECTIONS_REFUSED: &str = "flexi_socket_connections_refused_total";
    /// Messages received, labelled `client_type`.
    pub(crate) const MESSAGES_RECEIVED: &str = "flexi_socket_messages_received_total";
    /// Messages queued for sending, labelled `client_type`.
    pub(crate) const MESSAGES_SENT: &str = "flexi_socket_messages_sent_total";
    /// Payload bytes received.
    pub(crate) const BYTES_RECEIVED: &str = "flexi_socket_bytes_received_total";
    /// Bytes queued for sending, framing included.
    pub(crate) const BYTES_SENT: &str = "flexi_socket_bytes_sent_total";
    /// Connection errors, labelled `kind`.
    pub(crate) const ERRORS: &str = "flexi_socket_errors_total";
    /// Histogram: how long each handler call took, labelled `handler`.
    pub(crate) const HANDLER_DURATION: &str = "flexi_socket_handler_duration_seconds";
    /// Connections closed because of their PROXY header (missing, invalid, untrusted).
    pub(crate) const PROXY_REJECTED: &str = "flexi_socket_proxy_rejected_total";
    /// The balancer's health checks (PROXY v2 LOCAL).
    pub(crate) const PROXY_HEALTH_CHECKS: &str = "flexi_socket_proxy_health_checks_total";
    /// TLS handshakes that failed or timed out.
    pub(crate) const TLS_HANDSHAKES_FAILED: &str = "flexi_socket_tls_handshakes_failed_total";
    /// UDP datagrams dropped unhandled.
    pub(crate) const DATAGRAMS_DROPPED: &str = "flexi_socket_datagrams_dropped_total";
}

/// One label: its name and its value (bounded: client types and handler
/// names are known at start-up, error kinds are fixed).
pub(crate) type Label<'a> = (&'static str, &'a str);

/// A counter of the recorder's, or nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counter(#[cfg(feature = "metrics")] Option<::metrics::Counter>);

impl Counter {
    /// The counter `name` with `labels`, registered with the installed
    /// recorder if `on` (and there is one).
    pub(crate) fn new(on: bool, name: &'static str, labels: &[Label<'_>]) -> Self {
        #[cfg(feature = "metrics")]
        {
            Self(on.then(|| ::metrics::counter!(name, labels_of(labels))))
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (on, name, labels);
            Self()
        }
    }

    #[inline]
    pub(crate) fn increment(&self, amount: u64) {
        #[cfg(feature = "metrics")]
        if let Some(counter) = &self.0 {
            counter.increment(amount);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = amount;
    }
}

/// A gauge of the recorder's, or nothing. Moved by increments and
/// decrements only, never set: several servers in one process then add up
/// in it instead of overwriting each other.
#[derive(Clone, Debug, Default)]
pub(crate) struct Gauge(#[cfg(feature = "metrics")] Option<::metrics::Gauge>);

impl Gauge {
    /// The gauge `name`, registered with the installed recorder if `on`.
    pub(crate) fn new(on: bool, name: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        {
            Self(on.then(|| ::metrics::gauge!(name)))
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (on, name);
            Self()
        }
    }

    #[inline]
    pub(crate) fn increment(&self) {
        #[cfg(feature = "metrics")]
        if let Some(gauge) = &self.0 {
            gauge.increment(1.0);
        }
    }

    #[inline]
    pub(crate) fn decrement(&self) {
        #[cfg(feature = "metrics")]
        if let Some(gauge) = &self.0 {
            gauge.decrement(1.0);
        }
    }
}

/// A histogram of the recorder's, in seconds, or nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct Histogram(#[cfg(feature = "metrics")] Option<::metrics::Histogram>);

impl Histogram {
    /// The histogram `name` with `labels`, registered with the installed
    /// recorder if `on`.
    pub(crate) fn new(on: bool, name: &'static str, labels: &[Label<'_>]) -> Self {
        #[cfg(feature = "metrics")]
        {
            Self(on.then(|| ::metrics::histogram!(name, labels_of(labels))))
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (on, name, labels);
            Self()
        }
    }

    /// Whether recording into it does anything (a clock read is wasted otherwise).
    #[inline]
    fn is_on(&self) -> bool {
        #[cfg(feature = "metrics")]
        {
            self.0.is_some()
        }
        #[cfg(not(feature = "metrics"))]
        false
    }
}

/// When a handler call started, for [`Histogram`]s of durations: one clock
/// read at the start and one at the end, and only into a histogram that
/// records (empty and free without the feature).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stopwatch(#[cfg(feature = "metrics")] Option<Instant>);

impl Stopwatch {
    /// Started now if `into` records.
    #[inline]
    pub(crate) fn start(into: &Histogram) -> Self {
        #[cfg(feature = "metrics")]
        {
            Self(into.is_on().then(Instant::now))
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = into.is_on();
            Self()
        }
    }

    /// Records the time since the start into `into`.
    #[inline]
    pub(crate) fn stop(self, into: &Histogram) {
        #[cfg(feature = "metrics")]
        if let (Some(started), Some(histogram)) = (self.0, &into.0) {
            histogram.record(started.elapsed().as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = into;
    }
}

#[cfg(feature = "metrics")]
fn labels_of(labels: &[Label<'_>]) -> Vec<::metrics::Label> {
    labels
        .iter()
        .map(|&(key, value)| ::metrics::Label::new(key, value.to_owned()))
        .collect()
}

/// Tells the installed recorder what each metric means (its `# HELP`
/// line). Each server does when it starts (a recorder keeps the last
/// description of a name), so a recorder installed late still gets them.
pub(crate) fn describe() {
    #[cfg(feature = "metrics")]
    {
        use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_gauge!(name::CONNECTIONS_OPEN, "Connections open now.");
        describe_counter!(
            name::CONNECTIONS_TOTAL,
            "Connections accepted (UDP: sessions opened)."
        );
        describe_counter!(
            name::CONNECTIONS_REFUSED,
            "Connections refused by the per-IP limit."
        );
        describe_counter!(
            name::MESSAGES_RECEIVED,
            "Messages received, by client type."
        );
        describe_counter!(
            name::MESSAGES_SENT,
            "Messages queued for sending, by client type."
        );
        describe_counter!(name::BYTES_RECEIVED, Unit::Bytes, "Payload bytes received.");
        describe_counter!(
            name::BYTES_SENT,
            Unit::Bytes,
            "Bytes queued for sending, framing included."
        );
        describe_counter!(name::ERRORS, "Connection errors, by kind.");
        describe_histogram!(
            name::HANDLER_DURATION,
            Unit::Seconds,
            "Handler call durations, by handler."
        );
        describe_counter!(
            name::PROXY_REJECTED,
            "Connections closed for a missing, invalid or untrusted PROXY header."
        );
        describe_counter!(
            name::PROXY_HEALTH_CHECKS,
            "PROXY v2 LOCAL connections (balancer health checks)."
        );
        describe_counter!(
            name::TLS_HANDSHAKES_FAILED,
            "TLS handshakes that failed or timed out."
        );
        describe_counter!(name::DATAGRAMS_DROPPED, "UDP datagrams dropped unhandled.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Free when off": without the feature a connection carries no handle
    /// and a handler call keeps no start time.
    #[cfg(not(feature = "metrics"))]
    #[test]
    fn without_the_feature_the_handles_are_empty() {
        assert_eq!(size_of::<Counter>(), 0);
        assert_eq!(size_of::<Gauge>(), 0);
        assert_eq!(size_of::<Histogram>(), 0);
        assert_eq!(size_of::<Stopwatch>(), 0);
        assert_eq!(size_of::<crate::stats::Traffic>(), 0);
    }

    /// A handle made with `on` false records nothing and reads no clock,
    /// whatever recorder is installed (a client's).
    #[test]
    fn handles_that_are_off_record_nothing() {
        let histogram = Histogram::new(false, name::HANDLER_DURATION, &[("handler", "h")]);
        assert!(!histogram.is_on());
        #[cfg(feature = "metrics")]
        {
            assert!(Stopwatch::start(&histogram).0.is_none());
            assert!(Counter::new(false, name::ERRORS, &[]).0.is_none());
        }
    }
}
