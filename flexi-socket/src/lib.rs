//! TCP socket servers with handlers routed by client type: "routing like web
//! frameworks, but for classic sockets".
//!
//! # Layers
//!
//! The source folders are layers, each importing only the ones above it
//! (`handler` and `connection` refer to each other), so every behaviour has
//! one home:
//!
//! | layer | holds |
//! |---|---|
//! | leaves (`address`, `error`, `message`, `client_type`, `handler_kind`, `config/`, `stats`, `metric`, `log_rate`, [`checksum`]) | plain types: addresses, errors, limits and policies, counters, metric handles, logging within a rate |
//! | [`framing`] | bytes <-> frames, one bounded codec per file |
//! | `classify/` | running the classifier, the raw first unit, per-client-type framing |
//! | `handler/` | the handler contract, the routing table, the attribute registry, running one handler (panics, timeouts, blocking) |
//! | `connection/` | [`Connection`], sending and closing, the outbound queue, [`Connections`] and its directory of keys, groups and client types, requests and their replies, deadlines, the endpoint a server or client shares, `on_error` reporting, the shutdown drain |
//! | `events/` | one connection's event sequence: on_connect, classify, after_receive, on_message, on_disconnect |
//! | `transport/` | the stream driver (TCP, TLS, in-memory pipes), UDP sessions, the decoder both share, TLS |
//! | `server/` | the accept loop, admission under the limits, the builders, the UDP receive loop |
//! | `client/` | connecting and reconnecting, request/reply, the UDP client |
//! | `cluster/` | send to a key, locate and broadcasts across nodes over NATS (feature `nats`): subjects, the payload format, key claims |
//! | `testing` | the in-memory test harness (feature `testing`) |
//!
//! # Public types
//!
//! | piece | what it does |
//! |---|---|
//! | [`FlexiSocket`] | entry point: `FlexiSocket::server(addr)` (TCP) or `FlexiSocket::udp(addr)` returns a [`ServerBuilder`] of that transport ([`Tcp`], [`Udp`]); `FlexiSocket::client(addr)` and `FlexiSocket::udp_client(addr)` the clients' builders |
//! | [`Server`] | a bound server: its address, its [`Connections`], `serve*()` |
//! | [`Connection`] | one peer: addresses, client type, counters, `send`, `close`, typed state, a key and groups (`set_key`, `join`), `request_matching` |
//! | [`Connections`] | every open connection, a handler argument or from outside: by id, key, group or client type; `send_to_key` ([`SendOutcome`]), `locate` ([`LocateOutcome`]), broadcasts, `request_to_key` |
//! | [`KeyPolicy`] | who keeps a key two connections claim (newest wins by default) |
//! | [`Client`] | client mode over TCP, TLS or a Unix socket (`FlexiSocket::client(addr)` returns a [`ClientBuilder`]): reconnects with backoff, keeps an outbox while disconnected; `send`, `request`, `close` |
//! | [`UdpClient`] | client mode over UDP (`FlexiSocket::udp_client(addr)`): one session with the server; `send`, `request`, `close` |
//! | [`Router`] | the routing table; built by the attributes or by hand |
//! | [`Classifier`] | decides a client type from the first frame, or early from its first bytes; usually derived |
//! | [`Framing`] | how bytes become messages (lines, separator, fixed, length prefix, ...) |
//! | [`Message`] | one message: immutable bytes |
//! | [`checksum`] | CRC-16/ARC, CRC-16/CCITT-FALSE, CRC-32, XOR and sums, binary or hex, for `after_receive`/`before_send` |
//! | [`enum@Error`] | the one error type; per-connection errors reach `#[on_error]` |
//! | `TlsServerConfig` | certificate and key for `ServerBuilder::tls` (feature `tls`) |
//! | `TlsClientConfig` | trusted roots, server name, client certificate for `ClientBuilder::tls` (feature `tls`) |
//! | `ClusterConfig` | the NATS servers and timeouts for `ServerBuilder::cluster` (feature `nats`) |
//!
//! Attributes: `#[on_connect]`, `#[on_message]`, `#[after_receive]`, `#[before_send]`,
//! `#[on_error]`, `#[on_disconnect]`, all but `on_connect` taking an optional
//! `client_type = "001"` or `client_type = Enum::Variant`, or several joined
//! with `|` (`client_type = "002" | "003"`): one handler for each of them.
//! A handler with a client type replaces the default handler of its kind
//! for that type (it does not run after it); the routing table logged at
//! start-up says which.
//!
//! With the feature `metrics`, servers record their counters, by client type,
//! error kind and handler, through the [`metrics`](https://docs.rs/metrics)
//! facade under Prometheus names (`flexi_socket_*`; the README's "The metrics
//! scrape" lists them); install a recorder before the server starts.
//!
//! # Cluster (feature `nats`)
//!
//! Several servers behind a load balancer become one: give each a unique
//! [`node_name`](ServerBuilder::node_name) and the same
//! [`ClusterConfig`] (`ServerBuilder::cluster`), and [`Connections`]'
//! send to a key, locate and broadcasts reach every node through NATS.
//! Local operations never touch NATS and keep working without it.
//!
//! What a cross-node operation reports, and what it means:
//!
//! | outcome | meaning |
//! |---|---|
//! | `SendOutcome::Delivered { node, connection }` | the node holding the key put the message in that connection's outbound queue (as a local `send` returning `Ok`) |
//! | `SendOutcome::Offline`, `LocateOutcome::Offline` | no node holds the key: the NATS server knew no subscriber ("no responders"), at once |
//! | `SendOutcome::QueueFull`, `SendOutcome::Closing` | the holding node's connection refused it, as locally |
//! | `SendOutcome::Timeout`, `LocateOutcome::Timeout` | no answer within [`ClusterConfig::request_timeout`]: the message may or may not have been delivered |
//! | `SendOutcome::ClusterUnavailable`, `LocateOutcome::ClusterUnavailable` | this node has no NATS connection: nothing was sent |
//!
//! Guaranteed: a message is delivered at most once (never retried); sends
//! made one after another by one node to one key are delivered in that
//! order (one NATS connection publishes them in order and the holder
//! serves each key one message at a time); a key is held by at most one
//! node once the claims have crossed (newest wins, by claim time then node
//! name; a claim's time is its node's wall clock, so keep the nodes' clocks
//! in step, e.g. with NTP: with skew, a HELLO later in real time can lose
//! to an earlier one); a node that dies loses its keys as soon as the NATS server drops
//! its connection (at once for a killed process, whose socket the kernel
//! closes; after the server's `ping_interval` × `ping_max` for a host that
//! vanishes); after NATS returns, a node subscribes its keys again, says
//! hello and repeats its claims by itself.
//!
//! Not guaranteed: delivery to the device itself (`Delivered` means queued
//! on its node, as a local send); an answer to a send the node handed to
//! NATS as the connection went down (`Timeout`, and the message is written
//! when the connection returns); order between different sending nodes;
//! reachability of a key in the moment between its connection's claim and
//! its subscription reaching the NATS server (one round trip). A broadcast
//! asks each node known through presence messages and adds up their
//! answers; a node that does not answer in time is logged and counted as
//! zero. Subjects, the payload format and its limits are in the README's
//! "Scaling out".
//!
//! # Example
//!
//! ```no_run
//! use flexi_socket::{on_message, Classifier, Connection, FlexiSocket, Framing};
//!
//! #[derive(Classifier)]
//! enum Panel {
//!     #[client_type = "001"]
//!     #[classify(prefix = "!!")]
//!     Alarm,
//!     #[classify(default)]
//!     Other,
//! }
//!
//! #[on_message(client_type = "001")]
//! async fn alarm(conn: Connection, msg: String) -> flexi_socket::Result<()> {
//!     conn.send(format!("ACK {msg}")).await
//! }
//!
//! #[on_message]
//! async fn anything_else(conn: Connection, msg: &str) -> flexi_socket::Result<()> {
//!     conn.send(msg.to_uppercase()).await
//! }
//!
//! #[tokio::main]
//! async fn main() -> flexi_socket::Result<()> {
//!     FlexiSocket::server("127.0.0.1:8081")
//!         .framing(Framing::lines().max_length(64 * 1024))
//!         .classifier::<Panel>()
//!         .serve()
//!         .await
//! }
//! ```
//!
// The cluster's types exist with the `nats` feature only: without it, the
// cluster section above names them without a link rather than a broken one.
#![cfg_attr(feature = "nats", doc = "[`ClusterConfig`]: crate::ClusterConfig")]
#![cfg_attr(
    feature = "nats",
    doc = "[`ClusterConfig::request_timeout`]: crate::ClusterConfig::request_timeout"
)]
#![cfg_attr(
    not(feature = "nats"),
    doc = "[`ClusterConfig`]: #cluster-feature-nats"
)]
#![cfg_attr(
    not(feature = "nats"),
    doc = "[`ClusterConfig::request_timeout`]: #cluster-feature-nats"
)]
// docs.rs (nightly, `--cfg docsrs`) labels each item with the features it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

// Lets the macros' `::flexi_socket::...` paths work inside this crate's own tests.
extern crate self as flexi_socket;

// Leaves: plain types every layer below may use.
mod address;
pub mod checksum;
mod client_type;
mod config;
mod error;
mod future;
mod handler_kind;
mod log_rate;
mod message;
mod metric;
mod peer_addr;
mod proxy_header;
mod spare;
mod stats;
mod sync;

// Layers, each importing only those above it (handler and connection
// refer to each other: a handler takes a Connection, a connection runs
// its before_send). A comment before each keeps rustfmt from sorting them.
// Bytes <-> frames, one codec per file.
pub mod framing;
// Classifier machinery, first-unit classification, per-type framing.
mod classify;
// The handler contract, routing table, registry, invoking one handler.
mod handler;
// One peer whatever carries it, and what its server or client shares.
mod connection;
// The event sequence of one connection.
mod events;
// Stream and datagram drivers, the shared decoder, TLS.
mod transport;
// Listeners, accept, admission, builders, UDP receive loop.
mod server;
// Connect and reconnect, request/reply, the UDP client.
mod client;
// Cross-node addressing over NATS.
#[cfg(feature = "nats")]
mod cluster;
// The in-memory test harness.
#[cfg(feature = "testing")]
pub mod testing;

pub use bytes::Bytes;
pub use classify::FirstUnit;
pub use client::{Client, ClientBuilder, OutboxPolicy, UdpClient, UdpClientBuilder};
pub use client_type::{Classifier, ClientType};
#[cfg(feature = "nats")]
pub use cluster::ClusterConfig;
pub use config::{KeyPolicy, PanicPolicy, Reconnect, ReplyOrder, SlowConsumerPolicy};
pub use connection::{
    Connection, ConnectionStats, Connections, Direction, DisconnectReason, History, HistoryEntry,
    LocateOutcome, Location, SendOutcome, ShutdownReport,
};
pub use error::{Error, Result};
pub use flexi_socket_macros::{
    Classifier, after_receive, before_send, on_connect, on_disconnect, on_error, on_message,
};
pub use framing::Framing;
pub use handler::{Router, State};
pub use handler_kind::HandlerKind;
pub use log_rate::{LogRate, LogVerdict};
pub use message::Message;
pub use peer_addr::PeerAddr;
pub use proxy_header::ProxyHeader;
pub use server::{FlexiSocket, Server, ServerBuilder, ServerHandle, ServerTransport, Tcp, Udp};
pub use stats::{ErrorCounts, ServerStats};
pub use transport::proxy::ProxyProtocol;
// rustls itself is not re-exported: its `Connection` would make compile
// errors spell ours out in full (`flexi_socket::Connection`).
#[cfg(feature = "tls")]
pub use transport::tls::{TlsClientConfig, TlsServerConfig};

/// What the macros expand to. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    /// The PROXY header reader over `bytes`, for the fuzz target.
    pub fn proxy_header_leftover(bytes: &[u8]) -> usize {
        crate::transport::proxy::leftover_after_header(bytes)
    }
    /// The cluster message decoder over `bytes`, for the fuzz target:
    /// whether they decoded (a message that decodes must encode back to itself).
    #[cfg(feature = "nats")]
    pub fn cluster_message_round_trip(bytes: &[u8]) -> bool {
        crate::cluster::check_round_trip(bytes)
    }
    pub use crate::client_type::{Classifier, ClientType};
    pub use crate::connection::Connection;
    pub use crate::handler::{
        BorrowedArg, EventContext, FromEvent, HandlerError, HandlerOutput, HandlerSlot,
        IntoFiltered, IntoHandlerResult, MapOutput, Registration, rejected,
    };
    pub use crate::handler_kind::HandlerKind;
    pub use inventory;
    pub use std::option::Option::{None, Some};
    pub use std::result::Result::{Err, Ok};
    pub use std::task::{Context, Poll};
    pub use std::vec::Vec;
}
