//! A quiet TCP connection rests: its task ends, and its socket, its
//! outbound queue or its close brings it back in a new task, as if it had
//! only waited. Counted with tokio's own count of alive tasks: with every
//! client quiet, the server runs no more tasks than before they came.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flexi_socket::{Connection, DisconnectReason, FlexiSocket, Router};
use support::{LineClient, Running, eventually, start, within};
use tokio::sync::Semaphore;

const CLIENTS: usize = 30;

/// The disconnects of a server's connections: how many, and why.
#[derive(Clone)]
struct Disconnects {
    count: Arc<Semaphore>,
    reasons: Arc<Mutex<Vec<DisconnectReason>>>,
}

impl Disconnects {
    fn new() -> Self {
        Self {
            count: Arc::new(Semaphore::new(0)),
            reasons: Arc::default(),
        }
    }

    /// Waits for `n` more.
    async fn wait(&self, n: usize) {
        within("disconnects", self.count.acquire_many(n as u32))
            .await
            .unwrap()
            .forget();
    }

    /// The reasons so far, forgotten.
    fn take_reasons(&self) -> Vec<DisconnectReason> {
        std::mem::take(&mut *self.reasons.lock().unwrap())
    }
}

/// An echo whose disconnects are counted and their reasons kept.
fn echo_counting(disconnects: &Disconnects) -> Router {
    let disconnects = disconnects.clone();
    Router::new()
        .on_message(|conn: Connection, msg: String| async move { conn.send(msg).await })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            disconnects.reasons.lock().unwrap().push(reason);
            let count = Arc::clone(&disconnects.count);
            async move { count.add_permits(1) }
        })
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Connects [`CLIENTS`] clients that each had one line echoed, then waits
/// until the server runs no more tasks than before they came.
async fn quiet_clients(running: &Running, disconnects: &Disconnects) -> Vec<LineClient> {
    // A first client that comes and goes: the server's own tasks (its
    // accept loop, its deadline sweeper) surely run by then.
    let mut probe = LineClient::connect(running.addr).await;
    assert_eq!(probe.ask("probe").await, "probe");
    drop(probe);
    disconnects.wait(1).await;
    assert_eq!(disconnects.take_reasons(), [DisconnectReason::PeerClosed]);
    let before = alive_tasks();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut client = LineClient::connect(running.addr).await;
        assert_eq!(
            client.ask(&format!("hello {i}")).await,
            format!("hello {i}")
        );
        clients.push(client);
    }
    eventually("every quiet connection resting", || alive_tasks() <= before).await;
    assert_eq!(running.connections.len(), CLIENTS, "resting, still listed");
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resting_connection_comes_back_for_bytes_sends_and_its_close() {
    let disconnects = Disconnects::new();
    let router = echo_counting(&disconnects);
    let running = start(FlexiSocket::server("127.0.0.1:0").router(router)).await;
    let mut clients = quiet_clients(&running, &disconnects).await;

    // Its socket: the peer sends again.
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(
            client.ask(&format!("again {i}")).await,
            format!("again {i}")
        );
    }
    eventually("resting again", || running.connections.len() == CLIENTS).await;

    // Its queue: a send from outside wakes the writer, which is not there.
    for connection in running.connections.list() {
        within("a send", connection.send(format!("to {}", connection.id())))
            .await
            .unwrap();
    }
    // A broadcast written to each socket by the sender itself.
    assert_eq!(running.connections.broadcast("news").await, CLIENTS);
    let mut ids = running.connections.list();
    ids.sort_by_key(Connection::id);
    for client in &mut clients {
        let sent = client.recv_line().await;
        assert!(sent.starts_with("to "), "{sent}");
        assert_eq!(client.recv_line().await, "news");
    }

    // Its close: the server closes one, its peer closes another.
    let closed_by_server = ids[0].clone();
    closed_by_server.close();
    let mut first = clients.remove(0);
    assert_eq!(first.read_to_end().await, b"");
    drop(first);
    drop(clients.remove(0));
    disconnects.wait(2).await;
    let reasons = disconnects.take_reasons();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.contains(&DisconnectReason::Closed), "{reasons:?}");
    assert!(
        reasons.contains(&DisconnectReason::PeerClosed),
        "{reasons:?}"
    );
    eventually("both gone", || running.connections.len() == CLIENTS - 2).await;

    // The rest, resting, at shutdown: each is flushed, closed and reported.
    let report = running.stop().await;
    assert_eq!(report.connections_aborted, 0, "{report:?}");
    assert_eq!(report.connections_closed, CLIENTS as u64 - 2, "{report:?}");
    disconnects.wait(CLIENTS - 2).await;
    assert!(
        disconnects
            .take_reasons()
            .iter()
            .all(|reason| *reason == DisconnectReason::Shutdown)
    );
    for client in &mut clients {
        assert_eq!(client.read_to_end().await, b"");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resting_connection_still_times_out() {
    let disconnects = Disconnects::new();
    let builder = FlexiSocket::server("127.0.0.1:0")
        .router(echo_counting(&disconnects))
        .idle_timeout(Duration::from_millis(400));
    let running = start(builder).await;
    let mut clients = quiet_clients(&running, &disconnects).await;
    disconnects.wait(CLIENTS).await;
    let reasons = disconnects.take_reasons();
    assert!(
        reasons
            .iter()
            .all(|reason| *reason == DisconnectReason::IdleTimeout),
        "{reasons:?}"
    );
    for client in &mut clients {
        assert_eq!(client.read_to_end().await, b"");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_connection_keeps_its_task_until_its_peer_goes_quiet() {
    let disconnects = Disconnects::new();
    // The default limits: ticks of a second, so a peer is quiet after two
    // to three seconds without a line.
    let builder = FlexiSocket::server("127.0.0.1:0").router(echo_counting(&disconnects));
    let running = start(builder).await;
    let mut clients = quiet_clients(&running, &disconnects).await;
    let resting = alive_tasks();
    // Lines one after the other: each connection's task stays for the next.
    for client in &mut clients {
        for i in 0..20 {
            assert_eq!(client.ask(&format!("busy {i}")).await, format!("busy {i}"));
        }
    }
    assert!(alive_tasks() > resting, "busy connections keep their tasks");
    // The deadline sweeper finds them quiet, and wakes them to rest.
    eventually("every connection resting again", || {
        alive_tasks() <= resting
    })
    .await;
    assert_eq!(running.connections.len(), CLIENTS, "none timed out");
    running.stop().await;
}
