//! The device side of the broadcast measurement, in a process of its own
//! (`cluster devices ...`, started by the measuring process): the devices'
//! sockets and the nodes' sockets together are more file descriptors than
//! one process may open here.
//!
//! It talks to its parent in lines, on stdin and stdout:
//!
//! | parent says | it does, then says |
//! |---|---|
//! | (start) | connects every device, alternating between the nodes: `connected` |
//! | `hello` | sends `HELLO d<i>` on each, waits for every `OK`, starts reading: `keyed` |
//! | | each time every device has received the same line `<text>`: `received <text>` |
//!
//! It ends when its stdin closes (or its parent kills it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long the whole connect phase, or the whole HELLO phase, may take.
const PHASE: Duration = Duration::from_secs(120);

/// Runs the device side: `count` devices over `nodes`.
pub(crate) async fn drive(nodes: &[SocketAddr], count: usize) -> Result<(), String> {
    if nodes.is_empty() {
        return Err("no node address (--node)".to_owned());
    }
    let mut parent = BufReader::new(tokio::io::stdin()).lines();
    let mut streams = Vec::with_capacity(count);
    within("connecting the devices", async {
        for i in 0..count {
            let stream = TcpStream::connect(nodes[i % nodes.len()])
                .await
                .map_err(|e| format!("device {i}: {e}"))?;
            streams.push(stream);
        }
        Ok::<_, String>(())
    })
    .await??;
    say("connected");
    match parent.next_line().await.map_err(|e| e.to_string())? {
        Some(line) if line == "hello" => {}
        other => return Err(format!("expected `hello` from the parent, got {other:?}")),
    }
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    within("every device's HELLO answered", async {
        for (i, stream) in streams.into_iter().enumerate() {
            let (read, mut write) = stream.into_split();
            write
                .write_all(format!("HELLO d{i}\n").as_bytes())
                .await
                .map_err(|e| format!("device {i}: {e}"))?;
            let mut read = BufReader::new(read);
            let mut line = String::new();
            read.read_line(&mut line)
                .await
                .map_err(|e| format!("device {i}: {e}"))?;
            if line != "OK\n" {
                return Err(format!("device {i} got {line:?}"));
            }
            let lines_tx = lines_tx.clone();
            tokio::spawn(async move {
                // The write half lives as long as the reader: the connection stays open.
                let _write = write;
                let mut line = String::new();
                while read.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let _ = lines_tx.send(line.trim_end().to_owned());
                    line.clear();
                }
            });
        }
        Ok(())
    })
    .await??;
    say("keyed");
    let mut seen: HashMap<String, usize> = HashMap::new();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { return Ok(()) };
                let times = seen.entry(line.clone()).or_default();
                *times += 1;
                if *times == count {
                    seen.remove(&line);
                    say(&format!("received {line}"));
                }
            }
            from_parent = parent.next_line() => {
                if !matches!(from_parent, Ok(Some(_))) {
                    return Ok(());
                }
            }
        }
    }
}

fn say(line: &str) {
    println!("{line}");
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(PHASE, future)
        .await
        .map_err(|_| format!("{what}: not within {PHASE:?}"))
}
