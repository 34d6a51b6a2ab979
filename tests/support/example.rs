//! The examples as real processes: found where `cargo test` builds them,
//! started on 127.0.0.1:0, stopped by their PID.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;

use super::within;

/// `cargo test` builds the examples next to the test binaries' folder.
pub fn example_path(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the whole suite (`cargo test`), which builds the examples, \
         or `cargo build --examples` before running single test files",
        path.display()
    );
    path
}

/// A running example server; killed by PID when dropped.
pub struct ExampleServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub stdout: BufReader<ChildStdout>,
    /// A directory the example writes in (its database), removed with it.
    pub scratch: Option<tempfile::TempDir>,
}

impl ExampleServer {
    pub async fn start(name: &str) -> Self {
        Self::start_command(Command::new(example_path(name)).arg("127.0.0.1:0"), name).await
    }

    /// Starts `command`, which runs example `name`, and waits for `listening on`.
    pub async fn start_command(command: &mut Command, name: &str) -> Self {
        // The examples log to stderr; the tests read what they print.
        Self::spawn(command.stderr(Stdio::null()), name).await
    }

    /// Like [`start_command`](Self::start_command), and each line the
    /// example logs on stderr arrives on the returned channel.
    pub async fn start_logged(
        command: &mut Command,
        name: &str,
    ) -> (Self, mpsc::UnboundedReceiver<String>) {
        let mut server = Self::spawn(command.stderr(Stdio::piped()), name).await;
        let mut stderr = BufReader::new(server.child.stderr.take().unwrap()).lines();
        let (lines, log) = mpsc::unbounded_channel();
        // Drained as it comes, so the example never waits on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let _ = lines.send(line);
            }
        });
        (server, log)
    }

    async fn spawn(command: &mut Command, name: &str) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("example starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        within("`listening on`", stdout.read_line(&mut first))
            .await
            .unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name} printed {first:?} instead of `listening on <addr>`"))
            .parse()
            .expect("an address");
        Self {
            child,
            addr,
            stdout,
            scratch: None,
        }
    }

    pub async fn stop(mut self) {
        self.child.start_kill().expect("kill by PID");
        within("example exit", self.child.wait()).await.unwrap();
    }
}

/// Sends `signal` to `child` by its PID.
#[cfg(unix)]
pub fn send_signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id().expect("the process runs")).expect("a pid");
    send_signal_to(pid, signal);
}

/// Sends `signal` to process `pid`.
#[cfg(unix)]
pub fn send_signal_to(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
}
