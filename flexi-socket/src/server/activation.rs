//! Running under systemd: listening sockets handed in by socket activation
//! (`LISTEN_FDS`, through the `listenfd` crate), addressed as `"systemd"`
//! (the first) or `"systemd:N"`; and the service notifications (`READY=1`
//! once serving, `STOPPING=1` when shutting down, through `sd-notify`), sent
//! only when systemd asks for them (`NOTIFY_SOCKET`).

use std::io;
use std::sync::{Mutex, OnceLock};

use listenfd::ListenFd;

use crate::sync;

/// The sockets systemd handed in, read from the environment once: reading
/// it removes `LISTEN_FDS`, so every server of the process takes its
/// socket from this one table.
fn handed_in() -> &'static Mutex<ListenFd> {
    static SOCKETS: OnceLock<Mutex<ListenFd>> = OnceLock::new();
    SOCKETS.get_or_init(|| Mutex::new(ListenFd::from_env()))
}

use super::accept::StreamListener;

/// The address that names a socket systemd handed in.
const PREFIX: &str = "systemd";

/// The index of the handed-in socket `addr` names, if it names one:
/// `"systemd"` is 0, `"systemd:N"` is N.
pub(super) fn socket_index(addr: &str) -> Option<io::Result<usize>> {
    let rest = addr.strip_prefix(PREFIX)?;
    if rest.is_empty() {
        return Some(Ok(0));
    }
    let index = rest.strip_prefix(':')?;
    Some(index.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{addr}`: write systemd or systemd:N, N the socket's index in LISTEN_FDS"),
        )
    }))
}

/// The stream socket systemd handed in at `index`: TCP or Unix.
pub(super) fn stream_listener(index: usize) -> io::Result<StreamListener> {
    let mut fds = sync::lock(handed_in());
    if let Ok(Some(listener)) = fds.take_tcp_listener(index) {
        listener.set_nonblocking(true)?;
        return tokio::net::TcpListener::from_std(listener).map(StreamListener::Tcp);
    }
    #[cfg(unix)]
    if let Some(listener) = fds.take_unix_listener(index)? {
        return super::unix::UnixSocketListener::handed_in(listener).map(StreamListener::Unix);
    }
    Err(missing(index, fds.len(), "stream"))
}

/// The UDP socket systemd handed in at `index`.
pub(super) fn udp_socket(index: usize) -> io::Result<tokio::net::UdpSocket> {
    let mut fds = sync::lock(handed_in());
    let count = fds.len();
    let socket = fds
        .take_udp_socket(index)?
        .ok_or_else(|| missing(index, count, "datagram"))?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket)
}

fn missing(index: usize, count: usize, kind: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "no {kind} socket {index} from systemd (LISTEN_FDS has {count}): is the service \
             started by its .socket unit, or by systemd-socket-activate?"
        ),
    )
}

/// Tells systemd the service is ready, or stopping, if it runs as a
/// `Type=notify` service (nothing otherwise).
pub(super) fn notify(state: Notify) {
    let state = match state {
        Notify::Ready => sd_notify::NotifyState::Ready,
        Notify::Stopping => sd_notify::NotifyState::Stopping,
    };
    // Does nothing without NOTIFY_SOCKET.
    if let Err(error) = sd_notify::notify(&[state]) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// What [`notify`] tells.
#[derive(Debug, Clone, Copy)]
pub(super) enum Notify {
    Ready,
    Stopping,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_addresses_name_an_index() {
        assert_eq!(socket_index("systemd").unwrap().unwrap(), 0);
        assert_eq!(socket_index("systemd:2").unwrap().unwrap(), 2);
        assert!(socket_index("systemd:x").unwrap().is_err());
        assert!(socket_index("127.0.0.1:80").is_none());
        assert!(socket_index("systemdx").is_none());
    }
}
