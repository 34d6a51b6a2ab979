//! Unix domain socket listeners (`FlexiSocket::server("unix:/path")`): the
//! same accept loop and stream driver as TCP. A socket file left by a
//! server that crashed is replaced at bind; a live server's, or any other
//! kind of file, is not. The file is removed when the listener closes.
//! Binds at one path take turns through the lock file `<path>.lock`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;

use crate::peer_addr::PeerAddr;

/// A listening Unix socket; its file goes when it is dropped.
#[derive(Debug)]
pub(crate) struct UnixSocketListener {
    listener: UnixListener,
    path: PathBuf,
    /// The file this listener created (device, inode), removed when it
    /// closes if it is still that file; `None` for a socket handed in.
    owned_file: Option<(u64, u64)>,
}

impl UnixSocketListener {
    /// Listens at `path`, replacing a stale socket file there.
    pub(crate) async fn bind(path: &Path, backlog: u32) -> io::Result<Self> {
        // Absolute: the file is removed by this path, whatever the process's
        // working directory is by then.
        let path = std::path::absolute(path)?;
        // Until this one listens (or failed to), the path is this one's to
        // decide about.
        let _bind_lock = lock_binds_at(&path).await?;
        remove_stale(&path)?;
        let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
        socket.bind(&socket2::SockAddr::unix(&path)?)?;
        let file = file_id(&path)?;
        let listening = socket
            .listen(i32::try_from(backlog).unwrap_or(i32::MAX))
            .and_then(|()| socket.set_nonblocking(true))
            .and_then(|()| {
                UnixListener::from_std(std::os::unix::net::UnixListener::from(
                    std::os::fd::OwnedFd::from(socket),
                ))
            });
        match listening {
            Ok(listener) => Ok(Self {
                listener,
                path,
                owned_file: Some(file),
            }),
            Err(error) => {
                // Bound but not listening: the file is ours, and useless.
                let _ = std::fs::remove_file(&path);
                Err(error)
            }
        }
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
            owned_file: None,
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
        if self.path.as_os_str().is_empty() {
            PeerAddr::Unix(None)
        } else {
            PeerAddr::unix(&self.path)
        }
    }
}

impl Drop for UnixSocketListener {
    fn drop(&mut self) {
        // Only the file this listener created: not one another server has
        // put at the path since (after deciding this one's was stale).
        if self.owned_file.is_none() || file_id(&self.path).ok() != self.owned_file {
            return;
        }
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), %error, "cannot remove the socket file");
        }
    }
}

/// How long a bind waits for another's at the same path: a bind holds the
/// lock for microseconds, so a lock held longer is someone else's (a stopped
/// process, a script's `flock`), and the server says so rather than hang.
const BIND_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Holds the lock of `path`'s binds: `<path>.lock`, created when missing,
/// locked (`flock`) until the returned file is dropped. Without it two
/// servers starting at once on one path could both take its file for stale,
/// or the later one the earlier one's file, bound but not yet listening,
/// and unlink a live socket. Like PostgreSQL's `.s.PGSQL.5432.lock`, the
/// lock file stays: unlinking it would let a third server lock a new file
/// while a second still holds the old one.
async fn lock_binds_at(path: &Path) -> io::Result<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let about = |error: io::Error| {
        io::Error::new(error.kind(), format!("{}: {error}", lock_path.display()))
    };
    let lock = open_lock_file(&lock_path).map_err(about)?;
    let deadline = Instant::now() + BIND_LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(TryLockError::Error(error)) => return Err(about(error)),
            // flock has no asynchronous wait: look again a little later.
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} is locked by another process for over {} s",
                        lock_path.display(),
                        BIND_LOCK_WAIT.as_secs()
                    ),
                ));
            }
        }
    }
}

/// Opens (or creates) a lock file without following a symbolic link: in a
/// directory anyone may write to, a planted link would otherwise make the
/// server create the file it points to. Readable by all, as another user's
/// server locks it too, with read access only (flock needs no more).
fn open_lock_file(path: &Path) -> io::Result<File> {
    let opened = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    match opened {
        // Another user's lock file.
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path),
        opened => opened,
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
    // Not blocking: a live server with a full backlog must not stall us.
    let probe = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&socket2::SockAddr::unix(path)?) {
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing a stale socket file");
            match std::fs::remove_file(path) {
                // Someone else (not a flexi-socket server) removed it first.
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
                removed => removed,
            }
        }
        // Someone listens there (or is busy): leave it; the bind reports
        // the address in use.
        _ => Ok(()),
    }
}

/// The device and inode of the file at `path`.
fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::symlink_metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}
