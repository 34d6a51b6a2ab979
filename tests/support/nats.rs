//! A real `nats-server` on a free loopback port, started by the test and
//! stopped by its PID; it can be stopped and started again on the same
//! port (the reconnect tests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::{free_port, missing_tool, within};

/// How often the server pings a client that has been quiet, and how many
/// unanswered pings it allows before it drops the client (and with it the
/// client's subscriptions). The tests keep them short; the README gives a
/// production configuration.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
pub const PING_MAX: u32 = 2;

/// A running (or stopped) nats-server; killed by PID when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    config: PathBuf,
}

impl NatsServer {
    /// Starts nats-server on a free port of 127.0.0.1; `None` (after a skip
    /// notice, or a failure under `FLEXI_REQUIRE_TOOLS=1`) when it is not
    /// installed.
    pub async fn start() -> Option<Self> {
        let port = free_port();
        let config =
            std::env::temp_dir().join(format!("flexi-nats-{port}-{}.conf", std::process::id()));
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\n\
                 ping_interval: \"{}s\"\n\
                 ping_max: {PING_MAX}\n",
                PING_INTERVAL.as_secs()
            ),
        )
        .unwrap();
        let mut server = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            config,
        };
        if server.spawn().is_err() {
            missing_tool("nats-server", ".ci/run installs nats-server");
            return None;
        }
        server.wait_until_it_accepts().await;
        Some(server)
    }

    /// The URL the nodes are given.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_until_it_accepts(&self) {
        within("nats-server accepts", async {
            while TcpStream::connect(self.addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Kills the server by its PID (SIGKILL: its clients see their
    /// connections reset) and waits until it has exited.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill nats-server by PID");
            within("nats-server exits", child.wait()).await.unwrap();
        }
    }

    /// Starts the server again on the same port, after [`stop`](Self::stop).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn().expect("nats-server starts again");
        self.wait_until_it_accepts().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}
