//! Opening a server's sockets with the options services need: a listen
//! backlog large enough for connection storms (tokio's own `bind` asks for
//! 128), `SO_REUSEPORT` so several processes can share one port, and
//! address resolution that tries every address a name has.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, UdpSocket};

/// How a server's listening socket is opened.
#[derive(Debug, Clone, Copy)]
pub(super) struct SocketOptions {
    /// The listen backlog (TCP).
    pub(super) backlog: u32,
    /// `SO_REUSEPORT`: other sockets with it may bind the same port, and
    /// the kernel spreads connections (or datagrams) among them.
    pub(super) reuse_port: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            // The kernel caps it at net.core.somaxconn (4096 on current Linux).
            backlog: 1024,
            reuse_port: false,
        }
    }
}

/// A TCP listener on the first address of `addr` that binds.
pub(super) async fn tcp(addr: &str, options: SocketOptions) -> io::Result<TcpListener> {
    each_address(addr, |addr| {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // A restarted server rebinds at once, whatever TIME_WAIT is left.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        if options.reuse_port {
            socket.set_reuseport(true)?;
        }
        socket.bind(addr)?;
        socket.listen(options.backlog)
    })
    .await
}

/// A UDP socket on the first address of `addr` that binds.
pub(super) async fn udp(addr: &str, options: SocketOptions) -> io::Result<UdpSocket> {
    each_address(addr, |addr| {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        #[cfg(unix)]
        if options.reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        UdpSocket::from_std(socket.into())
    })
    .await
}

/// `open` on each address `addr` resolves to, until one succeeds; the
/// last error otherwise.
async fn each_address<T>(
    addr: &str,
    mut open: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(addr).await? {
        match open(addr) {
            Ok(opened) => return Ok(opened),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}
