//! [`ProxyHeader`]: what a load balancer's PROXY protocol header said about
//! a connection. A leaf: the transport reads it (`transport/proxy.rs`), a
//! connection keeps it.

use std::fmt;
use std::net::SocketAddr;

/// What a load balancer's PROXY header said about a connection; see
/// [`Connection::proxy_header`](crate::Connection::proxy_header).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    version: u8,
    source: SocketAddr,
    destination: SocketAddr,
    tlvs: Vec<(u8, Vec<u8>)>,
}

impl ProxyHeader {
    pub(crate) fn new(
        version: u8,
        source: SocketAddr,
        destination: SocketAddr,
        tlvs: Vec<(u8, Vec<u8>)>,
    ) -> Self {
        Self {
            version,
            source,
            destination,
            tlvs,
        }
    }

    /// 1 (text) or 2 (binary).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The client's address: what the connection's `peer_addr()` reports.
    pub fn source(&self) -> SocketAddr {
        self.source
    }

    /// The address the client connected to (the balancer's front end).
    pub fn destination(&self) -> SocketAddr {
        self.destination
    }

    /// The value of the first v2 extension of type `kind` (`0x01` ALPN,
    /// `0x02` authority, `0x05` unique id, `0x20` SSL, ...), if present.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find_map(|(found, value)| (*found == kind).then_some(value.as_slice()))
    }

    /// Every v2 extension, as (type, value), in order (malformed ones,
    /// which the header's length allows but their own does not, left out).
    pub fn tlvs(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.tlvs
            .iter()
            .map(|(kind, value)| (*kind, value.as_slice()))
    }
}

impl fmt::Debug for ProxyHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyHeader")
            .field("version", &self.version)
            .field("source", &self.source)
            .field("destination", &self.destination)
            .field("tlvs", &self.tlvs.len())
            .finish()
    }
}
