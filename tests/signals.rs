//! Stopping a server process the way service managers do: SIGTERM drains
//! like SIGINT (every line read is answered, in order, and each connection
//! ends with FIN, not a reset, and the process exits 0), and a second signal
//! cuts what a slow peer would otherwise hold open until the shutdown
//! timeout.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use flexi_socket::{Connection, FlexiSocket, Router};
use support::example::{ExampleServer, send_signal, send_signal_to};
use support::within;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const CLIENTS: usize = 20;
const WINDOW: usize = 8;
const MAX_PER_CLIENT: usize = 2_000;

/// Streams `c<client>-<seq>` lines within a window until the server
/// closes; every reply must be the next line sent, and the end a FIN.
async fn stream_until_closed(addr: SocketAddr, client: usize, answered: Arc<Semaphore>) -> usize {
    let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let credits = Arc::clone(&window);
    let writing = tokio::spawn(async move {
        for seq in 0..MAX_PER_CLIENT {
            let Ok(permit) = credits.acquire().await else {
                break;
            };
            permit.forget();
            let line = format!("c{client}-{seq}\n");
            if writer.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut lines = BufReader::new(reader).lines();
    let mut next = 0;
    while let Some(line) = within("a reply or EOF", lines.next_line())
        .await
        .unwrap_or_else(|error| panic!("client {client} saw {error} (a reset?)"))
    {
        assert_eq!(line, format!("c{client}-{next}"), "lost or reordered");
        if next == 0 {
            answered.add_permits(1);
        }
        next += 1;
        window.add_permits(1);
    }
    window.close();
    within("the writer", writing).await.unwrap();
    next
}

async fn drains_on(signal: libc::c_int) {
    let mut server = ExampleServer::start("echo").await;
    let answered = Arc::new(Semaphore::new(0));
    let mut clients = JoinSet::new();
    for client in 0..CLIENTS {
        clients.spawn(stream_until_closed(
            server.addr,
            client,
            Arc::clone(&answered),
        ));
    }
    // Mid-stream: every client has had an answer.
    within(
        "every client answered",
        answered.acquire_many(CLIENTS as u32),
    )
    .await
    .unwrap()
    .forget();
    send_signal(&server.child, signal);
    let mut replies = 0;
    while let Some(answered) = within("the clients", clients.join_next()).await {
        replies += answered.unwrap();
    }
    assert!(replies >= CLIENTS);
    let status = within("the server's exit", server.child.wait())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_connection_and_exits_0() {
    drains_on(libc::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_every_connection_and_exits_0() {
    drains_on(libc::SIGINT).await;
}

/// A handler that never finishes holds the graceful shutdown until the
/// shutdown timeout (30 s); a second signal cuts it at once: Ctrl-C twice,
/// then SIGTERM twice, one server after the other (a signal reaches every
/// server of the process, so these run in one test). In this process, whose
/// `serve()` has taken over both signals by the time a handler runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cuts_what_the_first_waits_for() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        second_signal_cuts(signal).await;
    }
}

async fn second_signal_cuts(signal: libc::c_int) {
    let (held, mut holding) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::new().on_message(move |conn: Connection, _msg: String| {
        let _ = held.send(conn);
        std::future::pending::<()>()
    });
    let server = FlexiSocket::server("127.0.0.1:0")
        .router(router)
        .bind()
        .await
        .unwrap();
    let addr = server.local_addr().socket_addr().unwrap();
    let serving = tokio::spawn(server.serve());
    let mut client = within("connect", TcpStream::connect(addr)).await.unwrap();
    client.write_all(b"hold on\n").await.unwrap();
    let connection = within("the handler runs", holding.recv()).await.unwrap();

    let this_process = libc::pid_t::try_from(std::process::id()).expect("a pid");
    send_signal_to(this_process, signal);
    within("the graceful shutdown begins", async {
        while !connection.is_closing() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(!serving.is_finished(), "the handler holds the shutdown");
    send_signal_to(this_process, signal);
    let report = within("the cut", serving).await.unwrap().unwrap();
    assert_eq!(
        report.connections_aborted, 1,
        "{report:?} after signal {signal}"
    );
}
