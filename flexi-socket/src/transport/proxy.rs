//! The PROXY protocol (v1 text, v2 binary), which an L4 load balancer
//! (HAProxy, nginx stream, cloud NLBs) puts before a connection's first
//! byte to say whom it carries: the client's address, the address the
//! client connected to, and (v2) type-length-value extensions. Parsing is
//! the `ppp` crate's; this reads exactly the header off the stream (what
//! follows is the client's, and TLS's ClientHello comes after it) and
//! decides what the connection becomes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use ppp::v2;
use ppp::{HeaderResult, v1};
use std::future::Future;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};
pub(crate) use crate::proxy_header::ProxyHeader;

/// The v2 header's signature, its first 12 bytes.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The shortest header: v1's `PROXY UNKNOWN\r\n`.
const SHORTEST: usize = 15;
/// The longest v1 header, CRLF included (the spec's limit).
const V1_LONGEST: usize = 107;

/// Which PROXY headers a server accepts, and from whom; give it to
/// [`ServerBuilder::proxy_protocol`](crate::ServerBuilder::proxy_protocol).
///
/// Every connection must then start with a v1 or v2 header, from a
/// trusted network (loopback unless [`trust`](Self::trust) says more), within
/// the header timeout; anything else is closed without events and counted in
/// [`ServerStats::proxy_rejected`](crate::ServerStats::proxy_rejected). On a
/// Unix socket every peer may send headers: the socket file's permissions
/// decide who connects.
///
/// ```
/// use flexi_socket::ProxyProtocol;
///
/// let proxy = ProxyProtocol::new()
///     .trust("10.0.0.0/8")?          // the balancers' network, besides loopback
///     .header_timeout(std::time::Duration::from_secs(3));
/// # let _ = proxy;
/// # Ok::<(), flexi_socket::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProxyProtocol {
    trusted: Vec<IpNet>,
    header_timeout: Duration,
}

impl Default for ProxyProtocol {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyProtocol {
    /// Trusts loopback (`127.0.0.0/8`, `::1`), with a 5 s header timeout.
    pub fn new() -> Self {
        let loopback = ["127.0.0.0/8", "::1/128"].map(|net| net.parse().expect("a valid network"));
        Self {
            trusted: loopback.to_vec(),
            header_timeout: Duration::from_secs(5),
        }
    }

    /// Trusts exactly `networks` (CIDR blocks or addresses), not loopback
    /// unless listed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNetwork`] for an entry that is neither.
    pub fn trusting<'a>(networks: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut policy = Self {
            trusted: Vec::new(),
            ..Self::new()
        };
        for network in networks {
            policy = policy.trust(network)?;
        }
        Ok(policy)
    }

    /// Also trusts headers from `network`, a CIDR block (`"10.0.0.0/8"`,
    /// `"fd00::/8"`) or a single address.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNetwork`] if `network` is neither.
    pub fn trust(mut self, network: &str) -> Result<Self> {
        let parsed = network
            .parse::<IpNet>()
            .or_else(|_| network.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| Error::InvalidNetwork {
                network: network.to_owned(),
            })?;
        self.trusted.push(ipv4_form(parsed));
        Ok(self)
    }

    /// How long a connection may take to send its header (default 5 s).
    #[must_use]
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Whether `peer` (the balancer) may send headers. An IPv4 address and
    /// its IPv4-mapped IPv6 form (`::ffff:10.1.2.3`, how a dual-stack socket
    /// shows an IPv4 peer) are one peer, whichever form the trusted network
    /// was written in.
    pub(crate) fn trusts(&self, peer: IpAddr) -> bool {
        // Both sides in IPv4 form (networks since `trust`): an IPv6 network
        // around the mapped block, `::/0`, then holds no IPv4 peer.
        let peer = peer.to_canonical();
        self.trusted.iter().any(|network| network.contains(&peer))
    }

    /// Reads the header at the start of `stream`, within the header timeout.
    pub(crate) async fn read(&self, stream: &mut (impl AsyncRead + Unpin)) -> Received {
        match tokio::time::timeout(self.header_timeout, read_header(stream)).await {
            Ok(received) => received,
            Err(_elapsed) => {
                Received::Rejected(format!("no PROXY header within {:?}", self.header_timeout))
            }
        }
    }
}

/// What a connection's PROXY header said.
#[derive(Debug)]
pub(crate) enum Received {
    /// The balancer relays a client.
    Proxied(ProxyHeader),
    /// The balancer speaks for itself (v2 LOCAL: a health check): no client.
    Local,
    /// The balancer relays a client whose address it cannot express (v1
    /// `UNKNOWN`, v2 UNSPEC or a Unix socket): the spec says to serve it
    /// with the connection's own addresses.
    Unknown,
    /// No valid header; the text says what came instead.
    Rejected(String),
}

/// For the fuzz target: reads a header off `bytes` as off a stream, and
/// says how many of them it left unread (what follows the header).
pub(crate) fn leftover_after_header(mut bytes: &[u8]) -> usize {
    {
        let mut reading = std::pin::pin!(read_header(&mut bytes));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        // A slice never makes a read wait: one poll finishes.
        let polled = reading.as_mut().poll(&mut context);
        assert!(polled.is_ready(), "reading a slice does not wait");
    }
    bytes.len()
}

/// Reads exactly one header off `stream`: never a byte of what follows it.
async fn read_header(stream: &mut (impl AsyncRead + Unpin)) -> Received {
    match read_header_bytes(stream).await {
        Ok(bytes) => parse(&bytes),
        Err(error) => Received::Rejected(format!("reading the PROXY header failed: {error}")),
    }
}

/// The header's bytes: v2's fixed 16 and the length they announce, or v1's
/// line up to its CRLF (read a byte at a time past the shortest header,
/// once per connection, so nothing after it is consumed).
async fn read_header_bytes(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0; SHORTEST];
    stream.read_exact(&mut bytes).await?;
    if bytes[..V2_SIGNATURE.len()] == V2_SIGNATURE {
        let mut rest = [0; 1];
        stream.read_exact(&mut rest).await?;
        bytes.push(rest[0]);
        let length = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
        let fixed = bytes.len();
        bytes.resize(fixed + length, 0);
        stream.read_exact(&mut bytes[fixed..]).await?;
        return Ok(bytes);
    }
    if !bytes.starts_with(b"PROXY ") {
        return Ok(bytes);
    }
    while !bytes.ends_with(b"\r\n") && bytes.len() < V1_LONGEST {
        let mut next = [0; 1];
        stream.read_exact(&mut next).await?;
        bytes.push(next[0]);
    }
    Ok(bytes)
}

/// What `bytes`, a whole header if any, says.
fn parse(bytes: &[u8]) -> Received {
    match HeaderResult::parse(bytes) {
        HeaderResult::V1(Ok(header)) => match header.addresses {
            v1::Addresses::Tcp4(ip) => proxied(
                1,
                SocketAddr::new(ip.source_address.into(), ip.source_port),
                SocketAddr::new(ip.destination_address.into(), ip.destination_port),
                Vec::new(),
            ),
            v1::Addresses::Tcp6(ip) => proxied(
                1,
                SocketAddr::new(ip.source_address.into(), ip.source_port),
                SocketAddr::new(ip.destination_address.into(), ip.destination_port),
                Vec::new(),
            ),
            v1::Addresses::Unknown => Received::Unknown,
        },
        HeaderResult::V2(Ok(header)) => {
            if header.command == v2::Command::Local {
                return Received::Local;
            }
            let tlvs = header
                .tlvs()
                .filter_map(std::result::Result::ok)
                .map(|tlv| (tlv.kind, tlv.value.into_owned()))
                .collect();
            match header.addresses {
                v2::Addresses::IPv4(ip) => proxied(
                    2,
                    SocketAddr::new(ip.source_address.into(), ip.source_port),
                    SocketAddr::new(ip.destination_address.into(), ip.destination_port),
                    tlvs,
                ),
                v2::Addresses::IPv6(ip) => proxied(
                    2,
                    SocketAddr::new(ip.source_address.into(), ip.source_port),
                    SocketAddr::new(ip.destination_address.into(), ip.destination_port),
                    tlvs,
                ),
                // No IP client to report (UNSPEC, or a Unix socket behind the balancer).
                v2::Addresses::Unspecified | v2::Addresses::Unix(_) => Received::Unknown,
            }
        }
        HeaderResult::V1(Err(error)) => Received::Rejected(format!(
            "not a PROXY header ({error:?}): {}",
            printable(bytes)
        )),
        HeaderResult::V2(Err(error)) => {
            Received::Rejected(format!("not a valid PROXY v2 header ({error:?})"))
        }
    }
}

fn proxied(
    version: u8,
    source: SocketAddr,
    destination: SocketAddr,
    tlvs: Vec<(u8, Vec<u8>)>,
) -> Received {
    Received::Proxied(ProxyHeader::new(version, source, destination, tlvs))
}

/// The first bytes of `bytes`, readable in a log line.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(32)
        .flat_map(|byte| std::ascii::escape_default(*byte))
        .map(char::from)
        .collect()
}

/// `network` as IPv4 if it lies inside the IPv4-mapped block
/// (`::ffff:10.0.0.0/104` is `10.0.0.0/8`), as [`ProxyProtocol::trusts`]
/// compares peers.
fn ipv4_form(network: IpNet) -> IpNet {
    match network {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(network, IpNet::V4),
            None => network,
        },
        _ => network,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Writes `written` into a pipe and reads a header off the other end,
    /// returning it and what is left unread.
    async fn read(written: &[u8]) -> (Received, Vec<u8>) {
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        ours.write_all(written).await.unwrap();
        drop(ours);
        let received = read_header(&mut theirs).await;
        let mut rest = Vec::new();
        theirs.read_to_end(&mut rest).await.unwrap();
        (received, rest)
    }

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        let length = u16::try_from(addresses.len() + tlvs.len()).unwrap();
        header.extend_from_slice(&length.to_be_bytes());
        header.extend_from_slice(addresses);
        header.extend_from_slice(tlvs);
        header
    }

    #[tokio::test]
    async fn a_v1_header_gives_the_client_and_leaves_its_bytes() {
        let (received, rest) =
            read(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nhello\n").await;
        let Received::Proxied(header) = received else {
            panic!("{received:?}");
        };
        assert_eq!(header.version(), 1);
        assert_eq!(header.source(), "192.0.2.7:56324".parse().unwrap());
        assert_eq!(header.destination(), "198.51.100.1:443".parse().unwrap());
        assert_eq!(rest, b"hello\n");
    }

    #[tokio::test]
    async fn a_v1_ipv6_header_and_unknown() {
        let (received, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n").await;
        let Received::Proxied(header) = received else {
            panic!("{received:?}");
        };
        assert_eq!(header.source(), "[2001:db8::1]:4000".parse().unwrap());
        let (received, rest) = read(b"PROXY UNKNOWN\r\nx").await;
        assert!(matches!(received, Received::Unknown), "{received:?}");
        assert_eq!(rest, b"x");
    }

    #[tokio::test]
    async fn a_v2_header_gives_the_client_and_its_tlvs() {
        let addresses = [192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb];
        let tlvs = [0x02, 0x00, 0x03, b'a', b'.', b'b', 0x05, 0x00, 0x01, 9];
        let mut written = v2(0x1, 0x11, &addresses, &tlvs);
        written.extend_from_slice(b"\x16\x03\x01 the ClientHello");
        let (received, rest) = read(&written).await;
        let Received::Proxied(header) = received else {
            panic!("{received:?}");
        };
        assert_eq!(header.version(), 2);
        assert_eq!(header.source(), "192.0.2.7:56324".parse().unwrap());
        assert_eq!(header.destination(), "198.51.100.1:443".parse().unwrap());
        assert_eq!(header.tlv(0x02), Some(&b"a.b"[..]));
        assert_eq!(header.tlv(0x05), Some(&[9][..]));
        assert_eq!(header.tlvs().count(), 2);
        assert_eq!(
            rest, b"\x16\x03\x01 the ClientHello",
            "TLS comes after it, untouched"
        );
    }

    #[tokio::test]
    async fn a_v2_local_command_is_a_health_check() {
        let (received, rest) = read(&v2(0x0, 0x00, &[], &[])).await;
        assert!(matches!(received, Received::Local), "{received:?}");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn anything_else_is_rejected() {
        for junk in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PROXY TCP4 not an address\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2",
            b"short",
        ] {
            let (received, _) = read(junk).await;
            assert!(
                matches!(received, Received::Rejected(_)),
                "{received:?} for {junk:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_overlong_v1_line_is_not_read_past_its_limit() {
        let mut written = b"PROXY TCP4 ".to_vec();
        written.extend(std::iter::repeat_n(b'1', 300));
        let (received, rest) = read(&written).await;
        assert!(matches!(received, Received::Rejected(_)), "{received:?}");
        assert_eq!(rest.len(), written.len() - V1_LONGEST);
    }

    #[test]
    fn loopback_is_trusted_by_default_and_more_on_request() {
        let proxy = ProxyProtocol::new();
        assert!(proxy.trusts("127.0.0.1".parse().unwrap()));
        assert!(proxy.trusts("::1".parse().unwrap()));
        assert!(proxy.trusts("::ffff:127.0.0.5".parse().unwrap()));
        assert!(!proxy.trusts("10.1.2.3".parse().unwrap()));
        let proxy = proxy
            .trust("10.0.0.0/8")
            .unwrap()
            .trust("192.0.2.9")
            .unwrap();
        assert!(proxy.trusts("10.1.2.3".parse().unwrap()));
        assert!(proxy.trusts("192.0.2.9".parse().unwrap()));
        assert!(!proxy.trusts("192.0.2.10".parse().unwrap()));
        assert!(ProxyProtocol::new().trust("10.0.0.0/33").is_err());
    }

    #[test]
    fn an_ipv4_peer_and_its_mapped_form_are_one_peer_to_either_form_of_network() {
        let plain = ProxyProtocol::trusting(["10.0.0.0/8"]).unwrap();
        let mapped = ProxyProtocol::trusting(["::ffff:10.0.0.0/104"]).unwrap();
        for proxy in [&plain, &mapped] {
            assert!(proxy.trusts("10.1.2.3".parse().unwrap()));
            assert!(proxy.trusts("::ffff:10.1.2.3".parse().unwrap()));
            assert!(!proxy.trusts("11.1.2.3".parse().unwrap()));
            assert!(!proxy.trusts("::ffff:11.1.2.3".parse().unwrap()));
            // Not an IPv4-mapped address, though its last 32 bits match.
            assert!(!proxy.trusts("::10.1.2.3".parse().unwrap()));
        }
    }

    /// A network wider than the IPv4-mapped block (`::/0`, "any IPv6
    /// balancer") holds every mapped address: it must not thereby trust
    /// every IPv4 peer.
    #[test]
    fn an_ipv6_network_around_the_mapped_block_trusts_no_ipv4_peer() {
        let proxy = ProxyProtocol::trusting(["::/0"]).unwrap();
        assert!(proxy.trusts("2001:db8::1".parse().unwrap()));
        assert!(!proxy.trusts("203.0.113.7".parse().unwrap()));
        assert!(!proxy.trusts("::ffff:203.0.113.7".parse().unwrap()));
    }
}
