//! [`PeerAddr`]: where a connection's peer is, or where a server listens:
//! an IP socket address or a Unix domain socket. A leaf: connections,
//! listeners and errors all name one.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// How an address names a Unix socket: `unix:PATH`, in what builders take
/// and in what [`PeerAddr`] shows.
pub(crate) const UNIX_PREFIX: &str = "unix:";

/// An IP socket address (`192.0.2.7:4000`, `[::1]:80`) or a Unix domain
/// socket (`unix:/run/app.sock`; a client's socket usually has no name).
///
/// Shown as `ip:port` or `unix:PATH`; compares equal to the
/// [`SocketAddr`] it holds.
///
/// ```
/// use flexi_socket::PeerAddr;
/// use std::net::SocketAddr;
///
/// let ip: SocketAddr = "192.0.2.7:4000".parse().unwrap();
/// let peer = PeerAddr::from(ip);
/// assert_eq!(peer, ip);
/// assert_eq!(peer.to_string(), "192.0.2.7:4000");
/// assert_eq!(PeerAddr::unix("/run/app.sock").to_string(), "unix:/run/app.sock");
/// ```
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A TCP or UDP peer.
    Ip(SocketAddr),
    /// A Unix domain socket, with its path if it has one.
    Unix(Option<Arc<Path>>),
}

impl PeerAddr {
    /// The Unix socket at `path`.
    pub fn unix(path: impl AsRef<Path>) -> Self {
        PeerAddr::Unix(Some(Arc::from(path.as_ref())))
    }

    /// The IP socket address, if this is one.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Ip(addr) => Some(*addr),
            PeerAddr::Unix(_) => None,
        }
    }

    /// The IP address, if this is an IP peer (what per-IP limits count).
    pub fn ip(&self) -> Option<IpAddr> {
        self.socket_addr().map(|addr| addr.ip())
    }

    /// The socket file, if this is a named Unix socket.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            PeerAddr::Unix(path) => path.as_deref(),
            PeerAddr::Ip(_) => None,
        }
    }

    /// Whether this is a Unix domain socket.
    pub fn is_unix(&self) -> bool {
        matches!(self, PeerAddr::Unix(_))
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        PeerAddr::Ip(addr)
    }
}

impl PartialEq<SocketAddr> for PeerAddr {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.socket_addr() == Some(*other)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(addr) => fmt::Display::fmt(addr, f),
            PeerAddr::Unix(Some(path)) => write!(f, "{UNIX_PREFIX}{}", path.display()),
            PeerAddr::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

impl fmt::Debug for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
