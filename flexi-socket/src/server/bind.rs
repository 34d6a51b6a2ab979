//! Opening a server's sockets with the options services need: a listen
//! backlog large enough for connection storms (tokio's own `bind` asks for
//! 128), `SO_REUSEPORT` so several processes can share one port, kernel
//! socket buffers (a UDP server's receive buffer is all that holds a burst
//! while the receive loop is busy), and address resolution that tries every
//! address a name has.

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
    /// `SO_RCVBUF` to ask for; `None`: the default (for TCP the kernel's
    /// autotuning, which a fixed size turns off; for UDP [`UDP_RECEIVE_BUFFER`]).
    pub(super) receive_buffer: Option<usize>,
    /// `SO_SNDBUF` to ask for; `None`: the kernel's default.
    pub(super) send_buffer: Option<usize>,
}

/// The receive buffer a UDP server asks for unless told otherwise. The
/// kernel's default (208 KiB on Linux) holds about 90 full-size datagrams
/// from all peers together: one flooding peer fills it and the others'
/// datagrams are dropped before the receive loop sees them. The kernel caps
/// what it grants at `net.core.rmem_max`.
pub(super) const UDP_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            // The kernel caps it at net.core.somaxconn (4096 on current Linux).
            backlog: 1024,
            reuse_port: false,
            receive_buffer: None,
            send_buffer: None,
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
        // Set on the listener, the sizes are every accepted socket's.
        if let Some(bytes) = options.receive_buffer {
            socket.set_recv_buffer_size(clamp_u32(bytes))?;
            granted("receive", bytes, socket.recv_buffer_size()? as usize, true);
        }
        if let Some(bytes) = options.send_buffer {
            socket.set_send_buffer_size(clamp_u32(bytes))?;
            granted("send", bytes, socket.send_buffer_size()? as usize, true);
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
        let receive = options.receive_buffer.unwrap_or(UDP_RECEIVE_BUFFER);
        socket.set_recv_buffer_size(receive)?;
        let asked = options.receive_buffer.is_some();
        granted("receive", receive, socket.recv_buffer_size()?, asked);
        if let Some(bytes) = options.send_buffer {
            socket.set_send_buffer_size(bytes)?;
            granted("send", bytes, socket.send_buffer_size()?, true);
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        UdpSocket::from_std(socket.into())
    })
    .await
}

/// Says so when the kernel granted a smaller buffer than asked: loudly when
/// the user asked for the size, quietly for a default. (Linux reports
/// twice what it grants, the rest being its own bookkeeping.)
fn granted(which: &str, asked: usize, reported: usize, user_asked: bool) {
    let granted = if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    };
    if granted >= asked {
        return;
    }
    let limit = if which == "receive" {
        "net.core.rmem_max"
    } else {
        "net.core.wmem_max"
    };
    if user_asked {
        tracing::warn!(
            asked,
            granted,
            "the kernel granted a smaller socket {which} buffer than asked; raise {limit}"
        );
    } else {
        tracing::debug!(
            asked,
            granted,
            "the kernel capped the socket {which} buffer at {limit}"
        );
    }
}

fn clamp_u32(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// `open` on each address `addr` resolves to, until one succeeds; the
/// last error otherwise.
async fn each_address<T>(
    addr: &str,
    mut open: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_error = None;
    let resolved = tokio::net::lookup_host(addr).await.map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("the host name does not resolve ({error})"),
        )
    })?;
    for addr in resolved {
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
