//! Unix domain socket listeners (`FlexiSocket::server("unix:/path")`): the
//! same accept loop and stream driver as TCP. A socket file left by a
//! server that crashed is replaced at bind; a live server's, or any other
//! kind of file, is not. The file is removed when the listener closes.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use crate::peer_addr::PeerAddr;

/// The address prefix that names a Unix socket instead of `host:port`.
pub(crate) const PREFIX: &str = "unix:";

/// A listening Unix socket; its file goes when it is dropped.
#[derive(Debug)]
pub(crate) struct UnixSocketListener {
    listener: UnixListener,
    path: PathBuf,
    /// Whether the file is ours to remove (not one systemd handed in).
    owns_file: bool,
}

impl UnixSocketListener {
    /// Listens at `path`, replacing a stale socket file there.
    pub(crate) fn bind(path: &Path, backlog: u32) -> io::Result<Self> {
        remove_stale(path)?;
        let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
        socket.bind(&socket2::SockAddr::unix(path)?)?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        socket.set_nonblocking(true)?;
        let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(
            std::os::fd::OwnedFd::from(socket),
        ))?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            owns_file: true,
        })
    }

    /// A listening socket handed in (by systemd): its file stays.
    pub(crate) fn handed_in(listener: std::os::unix::net::UnixListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let path = listener
            .local_addr()?
            .as_pathname()
            .map(Path::to_owned)
            .unwrap_or_default();
        Ok(Self {
            listener: UnixListener::from_std(listener)?,
            path,
            owns_file: false,
        })
    }

    pub(crate) async fn accept(&self) -> io::Result<(UnixStream, PeerAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        // Clients seldom bind a name: most peers are unnamed.
        let peer = peer
            .as_pathname()
            .map_or(PeerAddr::Unix(None), PeerAddr::unix);
        Ok((stream, peer))
    }

    pub(crate) fn local_addr(&self) -> PeerAddr {
        PeerAddr::unix(&self.path)
    }
}

impl Drop for UnixSocketListener {
    fn drop(&mut self) {
        if !self.owns_file {
            return;
        }
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), %error, "cannot remove the socket file");
        }
    }
}

/// Removes a socket file at `path` that no server listens on any more (a
/// crash left it); leaves a live one, and any other kind of file, alone,
/// which makes the bind fail with "address in use".
fn remove_stale(path: &Path) -> io::Result<()> {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket: not replacing it",
                path.display()
            ),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        // Someone listens there: leave it; the bind reports the address in use.
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing a stale socket file");
            std::fs::remove_file(path)
        }
        Err(_) => Ok(()),
    }
}
