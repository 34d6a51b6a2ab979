//! Unix domain sockets: `FlexiSocket::server("unix:PATH")` runs the same
//! handlers, limits and shutdown as TCP; peers show as `unix:...`; a stale
//! socket file is replaced and a live one is not, also with two servers
//! racing for the path; the file is removed at exit; `nc -U` talks to it;
//! a client connects with `unix:PATH` too.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use flexi_socket::{Connection, DisconnectReason, Error, FlexiSocket, PeerAddr, Router};
use support::{Events, missing_tool, within};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Command;

/// A fresh directory for socket files, removed at the end.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flexi-unix-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("server.sock")
    }

    /// The address of [`socket`](Self::socket), as builders take it.
    fn address(&self) -> String {
        format!("unix:{}", self.socket().display())
    }
}

/// A server answering `who_router` at `dir`'s socket, served in the background.
async fn serving(
    dir: &SocketDir,
    events: &Events,
) -> tokio::task::JoinHandle<flexi_socket::Result<flexi_socket::ShutdownReport>> {
    let server = FlexiSocket::server(dir.address())
        .router(who_router(events))
        .bind()
        .await
        .unwrap();
    tokio::spawn(server.serve_with_shutdown(std::future::pending()))
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Answers each line with `<peer> <local> <line>`; reports disconnects.
fn who_router(events: &Events) -> Router {
    let events = events.clone();
    Router::new()
        .on_message(|conn: Connection, line: String| async move {
            let reply = format!("{} {} {line}", conn.peer_addr(), conn.local_addr());
            conn.send(reply).await
        })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            events.push(format!("disconnect {reason}"));
            async {}
        })
}

async fn ask(path: &std::path::Path, line: &str) -> String {
    let mut stream = within("connect", UnixStream::connect(path)).await.unwrap();
    support::ask_line(&mut stream, line).await
}

#[tokio::test]
async fn handlers_limits_and_shutdown_over_a_unix_socket() {
    let dir = SocketDir::new("serve");
    let path = dir.socket();
    let (events, mut log) = Events::new();
    let server = FlexiSocket::server(dir.address())
        .router(who_router(&events))
        .idle_timeout(Duration::from_millis(300))
        .bind()
        .await
        .unwrap();
    assert_eq!(server.local_addr(), PeerAddr::unix(&path));
    assert_eq!(
        server.local_addr().to_string(),
        format!("unix:{}", path.display())
    );
    let handle = server.handle();
    let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));

    let reply = ask(&path, "hello").await;
    assert_eq!(
        reply,
        format!("unix:(unnamed) unix:{} hello", path.display())
    );
    assert_eq!(log.next().await, "disconnect peer closed the connection");

    // The idle timeout applies as over TCP.
    let mut idle = within("connect", UnixStream::connect(&path)).await.unwrap();
    let mut rest = Vec::new();
    within("the idle close", idle.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(log.next().await, "disconnect idle timeout");

    // Shutdown drains and removes the socket file.
    let mut open = within("connect", UnixStream::connect(&path)).await.unwrap();
    open.write_all(b"last\n").await.unwrap();
    let mut lines = BufReader::new(open).lines();
    let last = within("the last reply", lines.next_line()).await.unwrap();
    assert!(last.unwrap().ends_with(" last"));
    handle.shutdown();
    let report = within("shutdown", serving).await.unwrap().unwrap();
    assert_eq!(report.connections_aborted, 0);
    assert_eq!(within("EOF", lines.next_line()).await.unwrap(), None);
    assert!(!path.exists(), "the socket file is removed at exit");
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_and_a_live_one_is_not() {
    let dir = SocketDir::new("stale");
    let path = dir.socket();
    // A crashed server's file: bound, then dropped without removing it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let (events, _log) = Events::new();
    let serving = serving(&dir, &events).await;
    within("the server answers", async {
        while UnixStream::connect(&path).await.is_err() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // A second server on the same live socket is refused, and the file stays.
    let second = FlexiSocket::server(dir.address())
        .router(who_router(&events))
        .bind()
        .await;
    assert!(matches!(second, Err(Error::Bind { .. })), "{second:?}");
    assert!(ask(&path, "still").await.ends_with(" still"));
    serving.abort();
}

/// Two servers starting at once on one path, over a crashed server's file:
/// one binds and is the one that answers there, the other is refused. (Each
/// taking the other's file, bound but not yet listening, for stale would
/// let the later one unlink a live socket: binds take turns.) Each racer is
/// a thread of its own released by a spinning barrier: racers on one tokio
/// runtime, woken by its barrier one after the other, never overlapped, and
/// the race passed without the lock.
#[test]
fn two_servers_racing_for_one_path_leave_one_live_socket() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = SocketDir::new("race");
    let path = dir.socket();
    let (events, _log) = Events::new();
    for round in 0..1000 {
        // A crashed server's file (the last round's server removed its own).
        let _ = std::fs::remove_file(&path);
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let ready = AtomicUsize::new(0);
        let bound = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    let (ready, builder) = (&ready, FlexiSocket::server(dir.address()));
                    let builder = builder.router(who_router(&events));
                    scope.spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        ready.fetch_add(1, Ordering::SeqCst);
                        while ready.load(Ordering::SeqCst) < 2 {
                            std::hint::spin_loop();
                        }
                        let server = runtime.block_on(builder.bind());
                        (server, runtime)
                    })
                })
                .collect();
            let mut bound = Vec::new();
            for racer in racers {
                match racer.join().unwrap() {
                    (Ok(server), runtime) => bound.push((server, runtime)),
                    (Err(error), _) => assert!(
                        matches!(error, Error::Bind { .. }),
                        "round {round}: {error:?}"
                    ),
                }
            }
            bound
        });
        assert_eq!(bound.len(), 1, "round {round}: both bound");
        // Listening: a connection waits in its backlog, served or not.
        assert!(
            std::os::unix::net::UnixStream::connect(&path).is_ok(),
            "round {round}: the socket at the path is not the live one"
        );
    }
    let lock = dir.0.join("server.sock.lock");
    assert!(lock.exists(), "binds take turns through {}", lock.display());
}

/// A bind waits for the path's lock only so long: one held for longer is
/// not another server's bind, and the server says whose lock it waits for
/// rather than hang. (Paused time: the wait passes at once.)
#[tokio::test(start_paused = true)]
async fn a_lock_held_by_someone_else_fails_the_bind_and_names_the_lock() {
    let dir = SocketDir::new("held");
    let lock_path = dir.0.join("server.sock.lock");
    let held = std::fs::File::create(&lock_path).unwrap();
    held.lock().unwrap();
    let source = bind_refused(&dir, "while the lock was held").await;
    assert_eq!(source.kind(), std::io::ErrorKind::TimedOut);
    assert!(source.to_string().contains("server.sock.lock"), "{source}");
    assert!(!dir.socket().exists());
    drop(held);
    let (events, _log) = Events::new();
    let bound = FlexiSocket::server(dir.address())
        .router(who_router(&events))
        .bind()
        .await;
    assert!(bound.is_ok(), "{bound:?}");
}

/// In a directory anyone may write to, a link planted where the lock file
/// goes must not make the server create (or open) what it points to.
#[tokio::test]
async fn a_symbolic_link_in_place_of_the_lock_file_is_not_followed() {
    let dir = SocketDir::new("link");
    let target = dir.0.join("planted-target");
    std::os::unix::fs::symlink(&target, dir.0.join("server.sock.lock")).unwrap();
    let source = bind_refused(&dir, "through a planted link").await;
    assert!(source.to_string().contains("server.sock.lock"), "{source}");
    assert!(!target.exists(), "the link's target was created");
}

/// Why a server at `dir`'s socket could not bind, which it should not have.
async fn bind_refused(dir: &SocketDir, when: &str) -> std::io::Error {
    let (events, _log) = Events::new();
    let refused = FlexiSocket::server(dir.address())
        .router(who_router(&events))
        .bind()
        .await;
    match refused {
        Err(Error::Bind { source, .. }) => source,
        other => panic!("bound {when}: {other:?}"),
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = SocketDir::new("regular");
    let path = dir.socket();
    std::fs::write(&path, "precious").unwrap();
    let (events, _log) = Events::new();
    let refused = FlexiSocket::server(dir.address())
        .router(who_router(&events))
        .bind()
        .await;
    assert!(matches!(refused, Err(Error::Bind { .. })), "{refused:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[tokio::test]
async fn nc_talks_to_a_unix_socket_server() {
    let dir = SocketDir::new("nc");
    let path = dir.socket();
    let (events, _log) = Events::new();
    let serving = serving(&dir, &events).await;
    let spawned = Command::new("nc")
        .arg("-U")
        .arg("-N")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut nc) = spawned else {
        missing_tool("nc", ".ci/run installs netcat-openbsd");
        return;
    };
    let mut stdin = nc.stdin.take().unwrap();
    stdin.write_all(b"from nc\n").await.unwrap();
    drop(stdin);
    let output = within("nc", nc.wait_with_output()).await.unwrap();
    let reply = String::from_utf8(output.stdout).unwrap();
    assert!(reply.trim_end().ends_with(" from nc"), "{reply:?}");
    serving.abort();
}

#[tokio::test]
async fn a_client_connects_with_a_unix_address() {
    let dir = SocketDir::new("client");
    let path = dir.socket();
    let (events, _log) = Events::new();
    let serving = serving(&dir, &events).await;
    let client = FlexiSocket::client(dir.address())
        .router(Router::new())
        .connect()
        .await
        .unwrap();
    let connection = client.connection().unwrap();
    assert_eq!(connection.peer_addr(), PeerAddr::unix(&path));
    let reply = client
        .request("over unix", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&reply).ends_with(" over unix"),
        "{reply:?}"
    );
    client.close().await;
    serving.abort();
}

/// Unix peers have no IP address: a per-IP cap does not count them.
#[tokio::test]
async fn per_ip_limits_do_not_apply_to_unix_peers() {
    let dir = SocketDir::new("per-ip");
    let (events, _log) = Events::new();
    let server = FlexiSocket::server(dir.address())
        .router(who_router(&events))
        .max_connections_per_ip(1)
        .bind()
        .await
        .unwrap();
    let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));
    let _first = within("connect", UnixStream::connect(dir.socket()))
        .await
        .unwrap();
    assert!(ask(&dir.socket(), "second").await.ends_with(" second"));
    serving.abort();
}

/// TLS clients connect over TCP: a Unix address is refused at start.
#[tokio::test]
async fn a_tls_client_refuses_a_unix_address() {
    let identity = support::tls::server_identity();
    let tls = flexi_socket::TlsClientConfig::with_root_pem(&identity.cert_pem)
        .unwrap()
        .server_name("localhost")
        .unwrap();
    let refused = FlexiSocket::client("unix:/run/nothing.sock")
        .router(Router::new())
        .tls(tls)
        .spawn();
    assert!(
        matches!(&refused, Err(Error::Tls { reason }) if reason.contains("Unix socket")),
        "{refused:?}"
    );
}
