//! Shared by the integration tests: a server on 127.0.0.1:0 and a line client,
//! every wait under a timeout.
#![allow(dead_code, unreachable_pub)]

pub mod client;
pub mod dc09;
pub mod encryption;
pub mod example;
pub mod haproxy;
pub mod log;
pub mod nats;
pub mod python;
pub mod servers;
pub mod tls;
pub mod udp;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use flexi_socket::{
    Connections, Server, ServerBuilder, ServerHandle, ServerTransport, ShutdownReport,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A check needs `tool`, which is not installed. Under `.ci/run`
/// (`FLEXI_REQUIRE_TOOLS=1`) that fails the test, so a green CI means the
/// check ran; on a developer's machine it prints a skip notice.
pub fn missing_tool(tool: &str, installed_by: &str) {
    let required = std::env::var_os("FLEXI_REQUIRE_TOOLS").is_some_and(|value| value == "1");
    assert!(
        !required,
        "{tool} is required (FLEXI_REQUIRE_TOOLS=1) but not installed; {installed_by}"
    );
    eprintln!("{tool} is not installed: skipping this check ({installed_by})");
}

/// A port of 127.0.0.1 free now, for a program that must be told its port
/// (it may be taken again before that program binds it; rare on loopback).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every network wait in the tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future` or panics after [`WAIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until `condition` holds, checking every few milliseconds, for at most
/// [`WAIT`]. For state with no event to wait on (e.g. file descriptors closed).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A server running in the background.
pub struct Running {
    pub addr: SocketAddr,
    pub connections: Connections,
    pub handle: ServerHandle,
    pub task: JoinHandle<flexi_socket::Result<ShutdownReport>>,
}

impl Running {
    /// A plain TCP connection to the server.
    pub async fn connect(&self) -> TcpStream {
        within("connect", TcpStream::connect(self.addr))
            .await
            .unwrap()
    }

    /// Shuts the server down and waits until it has.
    pub async fn stop(self) -> ShutdownReport {
        self.handle.shutdown();
        within("server shutdown", self.task)
            .await
            .expect("server task panicked")
            .expect("server failed")
    }
}

/// Reads exactly `n` bytes.
pub async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    within("reply bytes", stream.read_exact(&mut bytes))
        .await
        .unwrap();
    bytes
}

/// Reads until the server closes.
pub async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    within("EOF", stream.read_to_end(&mut bytes)).await.unwrap();
    bytes
}

/// Binds `builder` (which must listen on 127.0.0.1:0) and serves it in the background.
pub async fn start(builder: ServerBuilder<impl ServerTransport>) -> Running {
    let server: Server = builder.bind().await.expect("server should start");
    Running {
        addr: server.local_addr().socket_addr().expect("an IP server"),
        connections: server.connections(),
        handle: server.handle(),
        task: tokio::spawn(server.serve_with_shutdown(std::future::pending())),
    }
}

/// Collects events that handlers report, as text, in order.
#[derive(Clone)]
pub struct Events(pub mpsc::UnboundedSender<String>);

impl Events {
    pub fn new() -> (Self, EventLog) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), EventLog(rx))
    }

    pub fn push(&self, event: impl Into<String>) {
        let _ = self.0.send(event.into());
    }
}

pub struct EventLog(pub mpsc::UnboundedReceiver<String>);

impl EventLog {
    pub async fn next(&mut self) -> String {
        within("an event", self.0.recv())
            .await
            .expect("event channel closed")
    }

    /// Waits for the next event that starts with `prefix`, skipping others.
    pub async fn next_starting(&mut self, prefix: &str) -> String {
        loop {
            let event = self.next().await;
            if event.starts_with(prefix) {
                return event;
            }
        }
    }
}

/// Writes `line` and a newline on `stream`, then reads the reply line,
/// returned without its newline. Reads byte by byte, so nothing after the
/// line is taken from the stream: it can be asked again.
pub async fn ask_line<S>(stream: &mut S, line: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("write", stream.write_all(format!("{line}\n").as_bytes()))
        .await
        .expect("write");
    let mut reply = Vec::new();
    loop {
        let byte = within("a reply", stream.read_u8()).await.expect("a reply");
        if byte == b'\n' {
            return String::from_utf8(reply).expect("UTF-8");
        }
        reply.push(byte);
    }
}

/// A line-oriented TCP client.
pub struct LineClient {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl LineClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        Self::over(stream)
    }

    fn over(stream: TcpStream) -> Self {
        let (reader, writer) = stream.into_split();
        Self {
            reader: BufReader::new(reader),
            writer,
        }
    }

    /// Connects from `local_ip` (another loopback address is another host).
    pub async fn connect_from(local_ip: IpAddr, addr: SocketAddr) -> Self {
        let socket = match local_ip {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("a socket");
        socket.bind(SocketAddr::new(local_ip, 0)).expect("bind");
        let stream = within("connect", socket.connect(addr))
            .await
            .expect("connect");
        Self::over(stream)
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        within("write", self.writer.write_all(bytes))
            .await
            .expect("write");
    }

    pub async fn send_line(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    /// The next line without its `\n`; panics on EOF.
    pub async fn recv_line(&mut self) -> String {
        self.try_recv_line()
            .await
            .expect("server closed the connection")
    }

    /// The next line, or `None` at EOF.
    pub async fn try_recv_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let read = within("a line", self.reader.read_line(&mut line))
            .await
            .expect("read");
        if read == 0 {
            return None;
        }
        assert!(line.ends_with('\n'), "unterminated line {line:?}");
        line.pop();
        Some(line)
    }

    /// Sends a line and returns the reply line.
    pub async fn ask(&mut self, line: &str) -> String {
        self.send_line(line).await;
        self.recv_line().await
    }

    /// Closes the write side (FIN) and keeps reading.
    pub async fn finish_writing(&mut self) {
        within("shutdown", self.writer.shutdown())
            .await
            .expect("shutdown");
    }

    /// Reads until EOF and returns everything.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        within("EOF", self.reader.read_to_end(&mut rest))
            .await
            .expect("read");
        rest
    }
}
