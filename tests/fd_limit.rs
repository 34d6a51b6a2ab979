//! The `echo` example as a child process with RLIMIT_NOFILE = 64, flooded
//! with connections: while it cannot accept (EMFILE) it backs off instead of
//! spinning, and once clients leave it accepts again.

mod support;

use std::time::Duration;

use support::example::{ExampleServer, example_path};
use support::{LineClient, eventually, within};
use tokio::net::TcpStream;
use tokio::process::Command;

/// CPU time (user + system, in clock ticks) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name, which is in parentheses: utime and stime
    // are the 12th and 13th of them.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooded_server_at_the_fd_limit_idles_then_recovers() {
    let script = format!(
        "ulimit -n 64 && exec {} 127.0.0.1:0",
        example_path("echo").display()
    );
    let server =
        ExampleServer::start_command(Command::new("sh").args(["-c", &script]), "echo").await;
    let pid = server.child.id().expect("running");

    // Far more connections than 64 descriptors allow; the kernel completes the
    // handshakes into the backlog whether or not the server can accept them.
    let mut flood = Vec::new();
    for _ in 0..150 {
        flood.push(
            within("connect", TcpStream::connect(server.addr))
                .await
                .unwrap(),
        );
    }
    // It accepts until its descriptor table is full.
    eventually("the fd limit", || open_fds(pid) >= 60).await;

    // Measurement window, not synchronisation: how busy is it at the limit?
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_ticks(pid) - before;
    eprintln!("CPU at the fd limit: {used} ticks in one second");
    // 100 ticks = one core for the whole second; a spinning accept loop uses all of it.
    assert!(
        used < 30,
        "{used} ticks of CPU in one second at the fd limit"
    );

    drop(flood);
    let mut late = LineClient::connect(server.addr).await;
    assert_eq!(late.ask("accepted again").await, "accepted again");
    server.stop().await;
}
