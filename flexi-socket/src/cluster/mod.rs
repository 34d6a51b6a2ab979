//! The cluster (feature `nats`): several servers ("nodes") behind a load
//! balancer reach each other's connections by key, group and client type
//! through NATS. flexi-socket does not invent a cluster protocol: NATS
//! carries every message, and its "no responders" answer, its per-connection
//! subscriptions and its reconnection are what the guarantees rest on.
//!
//! - `config.rs`: [`ClusterConfig`], what the builder takes.
//! - `subject.rs`: the subjects, and keys made safe for them.
//! - `wire.rs`: the payload format (versioned, bounded, decoded without panics).
//! - `node.rs`: joining, presence of the other nodes, answering broadcasts.
//! - `keys.rs`: one subscription per key held here; claims (newest wins).
//! - `request.rs`: asking the others; every answer becomes an outcome.
//! - `warnings.rs`: what the node logs about the cluster, within a rate.
//!
//! The crate docs ("Cluster") and the README ("Scaling out") say what is
//! and is not guaranteed.

mod config;
mod keys;
mod members;
mod node;
mod request;
mod subject;
mod warnings;
mod wire;

pub use config::ClusterConfig;
pub(crate) use node::ClusterNode;
pub(crate) use wire::check_round_trip;
