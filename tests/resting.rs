//! A quiet TCP or Unix connection rests: its task ends, and its socket, its
//! outbound queue or its close brings it back in a new task, as if it had
//! only waited. Counted with tokio's own count of alive tasks: with every
//! client quiet, the server runs no more tasks than with none. Each poke
//! below waits first until every connection rests, so it reaches resting
//! connections, not tasks that a busy peer kept.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flexi_socket::{
    Classifier, Connection, DisconnectReason, FlexiSocket, Framing, Router, ServerBuilder, Tcp,
};
use support::{LineClient, Running, eventually, start, within};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

const CLIENTS: usize = 20;

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

/// A server whose tasks of its own (accept loop, deadline sweeper) surely
/// run, and how many tasks are alive then, with no connection.
async fn started(builder: ServerBuilder<Tcp>, disconnects: &Disconnects) -> (Running, usize) {
    let running = start(builder).await;
    // A first client that comes and goes: the server's own tasks run by then.
    let mut probe = LineClient::connect(running.addr).await;
    assert_eq!(probe.ask("probe").await, "probe");
    drop(probe);
    disconnects.wait(1).await;
    assert_eq!(disconnects.take_reasons(), [DisconnectReason::PeerClosed]);
    eventually("the probe gone", || running.connections.is_empty()).await;
    let without_connections = alive_tasks();
    (running, without_connections)
}

/// Waits until no connection has a task: the server runs no more tasks
/// than `without_connections`.
async fn all_resting(without_connections: usize) {
    eventually("every connection resting", || {
        alive_tasks() <= without_connections
    })
    .await;
}

/// [`CLIENTS`] clients that each had a line echoed, all resting.
async fn quiet_clients(running: &Running, without_connections: usize) -> Vec<LineClient> {
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut client = LineClient::connect(running.addr).await;
        assert_eq!(
            client.ask(&format!("hello {i}")).await,
            format!("hello {i}")
        );
        clients.push(client);
    }
    all_resting(without_connections).await;
    assert_eq!(running.connections.len(), CLIENTS, "resting, still listed");
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resting_connection_comes_back_for_bytes_sends_and_its_close() {
    let disconnects = Disconnects::new();
    let builder = FlexiSocket::server("127.0.0.1:0").router(echo_counting(&disconnects));
    let (running, without_connections) = started(builder, &disconnects).await;
    let mut clients = quiet_clients(&running, without_connections).await;

    // Its socket: the peer sends again.
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(
            client.ask(&format!("again {i}")).await,
            format!("again {i}")
        );
    }
    // Busy for a second or two (two lines close together), then nudged to
    // rest by the deadline sweeper.
    all_resting(without_connections).await;

    // Its queue: a send from outside wakes the writer, which is not there.
    let mut connections = running.connections.list();
    connections.sort_by_key(Connection::id);
    for connection in &connections {
        within("a send", connection.send(format!("to {}", connection.id())))
            .await
            .unwrap();
    }
    for (client, connection) in clients.iter_mut().zip(&connections) {
        assert_eq!(client.recv_line().await, format!("to {}", connection.id()));
    }
    all_resting(without_connections).await;

    // A broadcast written to each socket by the sender itself.
    assert_eq!(running.connections.broadcast("news").await, CLIENTS);
    for client in &mut clients {
        assert_eq!(client.recv_line().await, "news");
    }
    all_resting(without_connections).await;

    // Its close: the server closes one, its peer closes another.
    connections[0].close();
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
    all_resting(without_connections).await;

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
        // Long enough that every client is connected, and its connection
        // resting, well before the first times out (the helper asserts
        // they are all listed then).
        .idle_timeout(Duration::from_millis(1600));
    let (running, without_connections) = started(builder, &disconnects).await;
    let mut clients = quiet_clients(&running, without_connections).await;
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

/// Lines one after the other make a peer busy: its connection keeps its
/// task for the next, until the deadline sweeper finds the peer quiet (a
/// second or more without a line) and wakes the task to rest. With no
/// deadline at all too: the sweeper's clock runs for this alone then.
async fn busy_then_resting(builder: ServerBuilder<Tcp>, disconnects: &Disconnects) {
    let (running, without_connections) = started(builder, disconnects).await;
    let mut clients = quiet_clients(&running, without_connections).await;
    for client in &mut clients {
        for i in 0..20 {
            assert_eq!(client.ask(&format!("busy {i}")).await, format!("busy {i}"));
        }
    }
    assert!(
        alive_tasks() > without_connections,
        "busy connections keep their tasks"
    );
    all_resting(without_connections).await;
    assert_eq!(running.connections.len(), CLIENTS, "none timed out");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_connection_keeps_its_task_until_its_peer_goes_quiet() {
    let disconnects = Disconnects::new();
    let builder = FlexiSocket::server("127.0.0.1:0").router(echo_counting(&disconnects));
    busy_then_resting(builder, &disconnects).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_deadlines_a_busy_connection_still_rests_once_quiet() {
    let disconnects = Disconnects::new();
    let builder = FlexiSocket::server("127.0.0.1:0")
        .router(echo_counting(&disconnects))
        .idle_timeout(None)
        .frame_timeout(None);
    busy_then_resting(builder, &disconnects).await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resting_unix_connection_comes_back() {
    let dir = std::env::temp_dir().join(format!("flexi-resting-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resting.sock");
    let disconnects = Disconnects::new();
    let server = FlexiSocket::server(format!("unix:{}", path.display()))
        .router(echo_counting(&disconnects))
        .bind()
        .await
        .unwrap();
    let handle = server.handle();
    let connections = server.connections();
    let serving = tokio::spawn(server.serve_with_shutdown(std::future::pending()));
    let connect = || async {
        within("connect", tokio::net::UnixStream::connect(&path))
            .await
            .unwrap()
    };
    let mut probe = connect().await;
    assert_eq!(support::ask_line(&mut probe, "probe").await, "probe");
    drop(probe);
    disconnects.wait(1).await;
    eventually("the probe gone", || connections.is_empty()).await;
    let without_connections = alive_tasks();

    let mut client = connect().await;
    assert_eq!(support::ask_line(&mut client, "one").await, "one");
    all_resting(without_connections).await;
    assert_eq!(support::ask_line(&mut client, "two").await, "two");
    all_resting(without_connections).await;
    let connection = connections.list().pop().unwrap();
    within("a send", connection.send("pushed")).await.unwrap();
    let mut pushed = [0; 7];
    within("the line sent", client.read_exact(&mut pushed))
        .await
        .unwrap();
    assert_eq!(&pushed, b"pushed\n");

    handle.shutdown();
    within("shutdown", serving).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_rests_once_the_sweeper_finds_it_quiet() {
    let disconnects = Disconnects::new();
    let builder = FlexiSocket::server("127.0.0.1:0").router(echo_counting(&disconnects));
    let (running, without_connections) = started(builder, &disconnects).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(LineClient::connect(running.addr).await);
    }
    eventually("every connection listed", || {
        running.connections.len() == CLIENTS
    })
    .await;
    // Nothing sent: a second or two later, each rests.
    all_resting(without_connections).await;
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.ask(&format!("late {i}")).await, format!("late {i}"));
    }
    running.stop().await;
}

/// A connection that rests while it drops an oversize line keeps its
/// decoder, which goes on dropping that line when bytes come: a new one
/// would take the line's tail for a line. One that rests between lines
/// keeps none, and gets a new one that reads the next line as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_resting_mid_oversize_line_still_drops_its_tail() {
    let disconnects = Disconnects::new();
    let builder = FlexiSocket::server("127.0.0.1:0")
        .framing(Framing::lines().max_length(8))
        .router(echo_counting(&disconnects));
    let (running, without_connections) = started(builder, &disconnects).await;

    let mut dropping = LineClient::connect(running.addr).await;
    // Over the limit, and no newline yet: its bytes are dropped as they come.
    dropping.send_raw(b"0123456789ab").await;
    let mut between = LineClient::connect(running.addr).await;
    assert_eq!(between.ask("first").await, "first");
    all_resting(without_connections).await;

    dropping.send_raw(b"tail\nnext\n").await;
    assert_eq!(
        dropping.recv_line().await,
        "next",
        "the tail was not dropped"
    );
    assert_eq!(between.ask("second").await, "second");
    all_resting(without_connections).await;
    assert_eq!(between.ask("third").await, "third");
    assert_eq!(running.connections.len(), 2);
    running.stop().await;
}

/// Sends from the server wake a resting connection again and again, its
/// peer sending nothing: each time it comes back (with a new decoder) its
/// idle clock goes on from the peer's last line, so it times out on time
/// while they come. A send every 100 ms, 100 at most (ten seconds, six
/// idle timeouts), stop at the first one refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resting_connection_woken_by_sends_still_times_out() {
    let disconnects = Disconnects::new();
    let builder = FlexiSocket::server("127.0.0.1:0")
        .router(echo_counting(&disconnects))
        .idle_timeout(Duration::from_millis(1600));
    let (running, without_connections) = started(builder, &disconnects).await;
    let mut client = LineClient::connect(running.addr).await;
    assert_eq!(client.ask("hello").await, "hello");
    // Taken now: on a slow machine it may time out before all rest.
    let connection = running.connections.list().pop().unwrap();
    all_resting(without_connections).await;
    pings_until_refused(&connection, &mut client).await;
    disconnects.wait(1).await;
    assert_eq!(disconnects.take_reasons(), [DisconnectReason::IdleTimeout]);
    running.stop().await;
}

/// Sends `ping` to `connection` every 100 ms, each read by `client`, until
/// one is refused (the connection closed); 100 at most, and fewer there were.
async fn pings_until_refused(connection: &Connection, client: &mut LineClient) {
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut delivered = 0;
    for _ in 0..100 {
        pace.tick().await;
        if within("a send", connection.send("ping")).await.is_err() {
            break;
        }
        assert_eq!(client.recv_line().await, "ping");
        delivered += 1;
    }
    assert!(delivered < 100, "still open after {delivered} sends");
}

/// A classifier whose one client type takes anyone: what it decides does
/// not matter here, only that the first bytes are waited for.
#[derive(Classifier)]
enum Anyone {
    #[client_type = "anyone"]
    #[classify(default)]
    Anyone,
}

/// A silent peer's connection on a server with a classifier rests once the
/// sweeper finds it quiet, its decoder still offering the classifier an
/// early look. It keeps that decoder: a new one would look at the empty
/// buffer in a drain at every wake, and a drain moves the idle clock. So
/// sends that wake it again and again (its peer still silent) do not keep
/// it open past its idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_unclassified_connection_woken_by_sends_still_times_out() {
    let disconnects = Disconnects::new();
    let builder = FlexiSocket::server("127.0.0.1:0")
        .classifier::<Anyone>()
        .first_message_timeout(None)
        .router(echo_counting(&disconnects))
        // Past the quiet second after which the sweeper lets it rest.
        .idle_timeout(Duration::from_secs(3));
    let (running, without_connections) = started(builder, &disconnects).await;
    let mut client = LineClient::connect(running.addr).await;
    eventually("the silent one listed", || running.connections.len() == 1).await;
    let connection = running.connections.list().pop().unwrap();
    assert_eq!(connection.client_type(), None);
    all_resting(without_connections).await;
    pings_until_refused(&connection, &mut client).await;
    disconnects.wait(1).await;
    assert_eq!(disconnects.take_reasons(), [DisconnectReason::IdleTimeout]);
    running.stop().await;
}
