//! [`ClusterConfig`]: where the NATS servers are and how long to wait.

use std::time::Duration;

use crate::error::Error;

use super::subject;

/// How a server joins a cluster over NATS
/// ([`ServerBuilder::cluster`](crate::ServerBuilder::cluster)).
///
/// The node's name is the server's
/// [`node_name`](crate::ServerBuilder::node_name): it must be unique in the
/// cluster and made of `A-Z a-z 0-9 - _` (at most 64).
///
/// ```
/// use std::time::Duration;
/// use flexi_socket::ClusterConfig;
///
/// let cluster = ClusterConfig::new(["nats://10.0.0.5:4222", "nats://10.0.0.6:4222"])
///     .request_timeout(Duration::from_millis(500))
///     .subject_prefix("acme.gateway");
/// # let _ = cluster;
/// ```
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub(crate) urls: Vec<String>,
    pub(crate) request_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) subject_prefix: String,
}

impl ClusterConfig {
    /// Joins through the NATS servers at `urls` (`nats://host:port`, or
    /// `host:port`); the client moves to another one when its server goes.
    pub fn new<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            request_timeout: Duration::from_secs(2),
            ping_interval: Duration::from_secs(10),
            subject_prefix: "flexi".to_owned(),
        }
    }

    /// How long a cross-node send, locate or broadcast waits for the other
    /// node's answer before it reports a timeout. Default 2 s.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How often this node pings its NATS server when the connection is
    /// quiet; two unanswered pings and the node takes the server for gone
    /// (cross-node operations then answer "cluster unavailable" at once,
    /// and the client reconnects). Default 10 s.
    #[must_use]
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// The first tokens of every subject the cluster uses, so that several
    /// clusters can share NATS servers: dot-separated names of
    /// `A-Z a-z 0-9 - _`. Default `flexi`.
    #[must_use]
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Checks the configuration for a node named `node`.
    pub(crate) fn check(&self, node: &str) -> Result<(), Error> {
        let reason = if self.urls.is_empty() {
            "no NATS server URL was given".to_owned()
        } else if !subject::valid_name(node) {
            format!(
                "the node name {node:?} is not 1 to 64 of A-Z a-z 0-9 - _ \
                 (set it with `.node_name(..)`)"
            )
        } else if !subject::valid_prefix(&self.subject_prefix) {
            format!(
                "the subject prefix {:?} is not dot-separated names of A-Z a-z 0-9 - _",
                self.subject_prefix
            )
        } else if self.request_timeout.is_zero() {
            "the request timeout is zero".to_owned()
        } else {
            return Ok(());
        };
        Err(Error::Cluster { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_configuration_says_what_is_wrong() {
        let config = ClusterConfig::new(["nats://127.0.0.1:4222"]);
        assert!(config.check("node-a").is_ok());
        let said = |config: &ClusterConfig, node: &str| config.check(node).unwrap_err().to_string();
        assert!(said(&config, "a.b").contains("node name"));
        assert!(said(&ClusterConfig::new(Vec::<String>::new()), "a").contains("no NATS"));
        let prefixed = config.clone().subject_prefix("a.*");
        assert!(said(&prefixed, "a").contains("subject prefix"));
        let zero = config.request_timeout(Duration::ZERO);
        assert!(said(&zero, "a").contains("timeout"));
    }
}
