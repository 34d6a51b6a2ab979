//! A real HAProxy, started by the test with a configuration of its own and
//! stopped by its PID.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::{free_port, missing_tool, within};

/// A running HAProxy; killed by PID when dropped.
pub struct Haproxy {
    child: Child,
    config: PathBuf,
}

impl Haproxy {
    /// Starts HAProxy in TCP mode with `sections` (frontends, backends)
    /// after the global and default ones, and waits until it listens;
    /// `None` when haproxy is not installed.
    pub async fn start(sections: &str) -> Option<Self> {
        let ready = free_port();
        let config =
            std::env::temp_dir().join(format!("flexi-haproxy-{ready}-{}.cfg", std::process::id()));
        std::fs::write(
            &config,
            format!(
                "global\n    maxconn 200\n\
                 defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
                 {sections}\
                 frontend ready\n    bind 127.0.0.1:{ready}\n    tcp-request connection reject\n"
            ),
        )
        .unwrap();
        let spawned = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let Ok(child) = spawned else {
            missing_tool("haproxy", ".ci/run installs haproxy");
            return None;
        };
        // HAProxy binds every front end before it accepts on any; this one
        // refuses at once, so probing it reaches no backend.
        let ready = SocketAddr::from(([127, 0, 0, 1], ready));
        within("haproxy listens", async {
            while TcpStream::connect(ready).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        Some(Self { child, config })
    }

    pub async fn stop(mut self) {
        self.child.start_kill().expect("kill haproxy by PID");
        within("haproxy exits", self.child.wait()).await.unwrap();
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}
