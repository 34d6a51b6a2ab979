//! Two gateway nodes joined through a real nats-server (`--nats URL --node
//! NAME`), as the README's "Scaling out" runs them: operators on one node
//! reach devices on the other, broadcasts count every node's devices, a key
//! taken on one node closes it on the other, and the failures answer within
//! their bounds: a killed node's devices are offline, a stopped nats-server
//! leaves local operations working and remote ones answering `ERROR`, and a
//! restarted one brings the nodes back by themselves. nats-server and
//! HAProxy are started by the tests on free ports and stopped by their PIDs.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use flexi_socket::{ClusterConfig, Connection, FlexiSocket, Message, Router};
use futures_util::StreamExt;
use support::example::{ExampleServer, example_path};
use support::haproxy::Haproxy;
use support::nats::NatsServer;
use support::{LineClient, WAIT, free_port, within};
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedReceiver;

/// A gateway node in the cluster of `nats`.
async fn node(nats: &NatsServer, name: &str, extra: &[&str]) -> ExampleServer {
    let url = nats.url();
    let mut args = vec!["127.0.0.1:0", "--nats", url.as_str(), "--node", name];
    args.extend_from_slice(extra);
    ExampleServer::start_command(Command::new(example_path("gateway")).args(&args), "gateway").await
}

async fn device(addr: SocketAddr, id: &str, node: &str) -> LineClient {
    let mut device = LineClient::connect(addr).await;
    assert_eq!(
        device.ask(&format!("HELLO {id}")).await,
        format!("WELCOME {id} {node}")
    );
    device
}

async fn operator(addr: SocketAddr, node: &str) -> LineClient {
    let mut operator = LineClient::connect(addr).await;
    assert_eq!(
        operator.ask("OPERATOR").await,
        format!("WELCOME operator {node}")
    );
    operator
}

/// Asks `line` until the answer is `expected` (a key reaches the other
/// nodes once its subscription reaches the NATS server, a moment after the
/// device's WELCOME), for at most [`WAIT`].
async fn ask_until(operator: &mut LineClient, line: &str, expected: &str) {
    let mut last = String::new();
    let reached = tokio::time::timeout(WAIT, async {
        loop {
            last = operator.ask(line).await;
            if last == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "`{line}` never answered `{expected}`; last: `{last}`"
    );
}

/// Two nodes, a device on each (one behind HAProxy's PROXY header): an
/// operator on either reaches, finds and names both, and a broadcast counts
/// them all.
#[tokio::test]
async fn operators_reach_find_and_count_devices_on_every_node() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &["--proxy-protocol"]).await;
    let front_b = free_port();
    let Some(haproxy) = Haproxy::start(&format!(
        "frontend front_b\n    bind 127.0.0.1:{front_b}\n    default_backend node_b\n\
         backend node_b\n    server b {} send-proxy\n",
        b.addr
    ))
    .await
    else {
        return;
    };
    let front_b = SocketAddr::from(([127, 0, 0, 1], front_b));

    let mut on_a = device(a.addr, "42", "a").await;
    // Another loopback address is another host: HAProxy's header names it.
    let device_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let mut on_b = LineClient::connect_from(device_ip, front_b).await;
    assert_eq!(on_b.ask("HELLO 43").await, "WELCOME 43 b");
    let on_b_addr = on_b.writer.local_addr().unwrap();
    let mut operator_a = operator(a.addr, "a").await;
    let mut operator_b = operator(front_b, "b").await;

    ask_until(&mut operator_a, "WHERE 43", "AT 43 b").await;
    ask_until(&mut operator_b, "WHERE 42", "AT 42 a").await;
    assert_eq!(operator_a.ask("WHERE 42").await, "AT 42 a");
    assert_eq!(operator_a.ask("WHERE 7").await, "OFFLINE 7");

    assert_eq!(
        operator_a.ask("SEND 43 open the door").await,
        "DELIVERED 43 b"
    );
    assert_eq!(on_b.recv_line().await, "open the door");
    assert_eq!(operator_b.ask("SEND 42 and you").await, "DELIVERED 42 a");
    assert_eq!(on_a.recv_line().await, "and you");
    assert_eq!(operator_a.ask("SEND 7 anyone?").await, "OFFLINE 7");

    assert_eq!(
        operator_a.ask("PEER 43").await,
        format!("PEER 43 {on_b_addr}"),
        "the address in HAProxy's header, read on node b, named on node a"
    );

    assert_eq!(operator_a.ask("BROADCAST all devices").await, "BROADCAST 2");
    assert_eq!(on_a.recv_line().await, "all devices");
    assert_eq!(on_b.recv_line().await, "all devices");

    haproxy.stop().await;
    a.stop().await;
    b.stop().await;
}

/// 200 sends from one node to a device on another arrive in the order made.
#[tokio::test]
async fn two_hundred_cross_node_sends_arrive_in_order() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    let mut on_b = device(b.addr, "42", "b").await;
    let mut operator_a = operator(a.addr, "a").await;
    ask_until(&mut operator_a, "WHERE 42", "AT 42 b").await;

    // All 200 written at once, so they are in flight together.
    let sends: String = (0..200).map(|i| format!("SEND 42 message {i}\n")).collect();
    operator_a.send_raw(sends.as_bytes()).await;
    for i in 0..200 {
        assert_eq!(operator_a.recv_line().await, "DELIVERED 42 b");
        assert_eq!(on_b.recv_line().await, format!("message {i}"));
    }
    a.stop().await;
    b.stop().await;
}

/// A HELLO on node b for an id held on node a closes a's connection: the
/// newest wins across nodes as on one.
#[tokio::test]
async fn the_newest_connection_wins_across_nodes() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    let mut older = device(a.addr, "42", "a").await;
    let mut operator_b = operator(b.addr, "b").await;
    ask_until(&mut operator_b, "WHERE 42", "AT 42 a").await;

    let mut newer = device(b.addr, "42", "b").await;
    assert_eq!(
        older.try_recv_line().await,
        None,
        "node a closed the older connection"
    );
    let mut operator_a = operator(a.addr, "a").await;
    ask_until(&mut operator_a, "WHERE 42", "AT 42 b").await;
    assert_eq!(
        operator_a.ask("SEND 42 to the newest").await,
        "DELIVERED 42 b"
    );
    assert_eq!(newer.recv_line().await, "to the newest");
    a.stop().await;
    b.stop().await;
}

/// A node killed with SIGKILL takes its keys with it: its NATS connection
/// closes, the NATS server drops its subscriptions, and sends to its
/// devices answer OFFLINE (a host that vanishes without closing its
/// connections is dropped after the server's unanswered pings). Started
/// again, it is reached again by the node that kept running.
#[tokio::test]
async fn a_killed_nodes_devices_are_offline() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    let _on_b = device(b.addr, "42", "b").await;
    let mut operator_a = operator(a.addr, "a").await;
    ask_until(&mut operator_a, "WHERE 42", "AT 42 b").await;

    b.stop().await; // SIGKILL, by PID
    ask_until(&mut operator_a, "SEND 42 still there?", "OFFLINE 42").await;
    assert_eq!(operator_a.ask("WHERE 42").await, "OFFLINE 42");
    let _on_a = device(a.addr, "9", "a").await;
    assert_eq!(
        operator_a.ask("BROADCAST who is left").await,
        "BROADCAST 1",
        "only node a's device; node b is forgotten"
    );

    // Node b started again: node a, never restarted, reaches it again.
    let b = node(&nats, "b", &[]).await;
    let mut back_on_b = device(b.addr, "42", "b").await;
    ask_until(&mut operator_a, "SEND 42 welcome back", "DELIVERED 42 b").await;
    assert_eq!(back_on_b.recv_line().await, "welcome back");
    assert_eq!(operator_a.ask("BROADCAST both again").await, "BROADCAST 2");
    b.stop().await;
    a.stop().await;
}

/// Without nats-server, each node still serves its own devices and says
/// `ERROR` for the others at once; when nats-server is back on the same
/// port, the nodes reconnect and announce their devices again by
/// themselves.
#[tokio::test]
async fn without_nats_local_works_and_remote_fails_fast_then_recovers() {
    let Some(mut nats) = NatsServer::start().await else {
        return;
    };
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    let mut on_a = device(a.addr, "1", "a").await;
    let mut on_b = device(b.addr, "2", "b").await;
    let mut operator_a = operator(a.addr, "a").await;
    ask_until(&mut operator_a, "WHERE 2", "AT 2 b").await;

    nats.stop().await;
    assert_eq!(operator_a.ask("SEND 1 local").await, "DELIVERED 1 a");
    assert_eq!(on_a.recv_line().await, "local");
    assert_eq!(operator_a.ask("WHERE 1").await, "AT 1 a");
    ask_until(
        &mut operator_a,
        "SEND 2 remote",
        "ERROR cluster unavailable",
    )
    .await;
    assert_eq!(operator_a.ask("WHERE 2").await, "ERROR cluster unavailable");
    // A device that arrives while NATS is away is announced when it returns.
    let mut late = device(b.addr, "3", "b").await;

    nats.restart().await;
    ask_until(&mut operator_a, "SEND 2 back again", "DELIVERED 2 b").await;
    // A send handed to NATS just as it went (answered TIMEOUT, not ERROR)
    // is written when the connection returns: at most once, maybe late.
    let mut line = on_b.recv_line().await;
    while line == "remote" {
        line = on_b.recv_line().await;
    }
    assert_eq!(line, "back again");
    ask_until(&mut operator_a, "SEND 3 welcome", "DELIVERED 3 b").await;
    assert_eq!(late.recv_line().await, "welcome");
    within("the nodes", async {
        a.stop().await;
        b.stop().await;
    })
    .await;
}

/// Whatever arrives through NATS, a node drops what it cannot read and
/// goes on: malformed payloads on its presence, broadcast and key
/// subjects, each with and without a reply subject, one nearly as large as
/// NATS allows, leave it answering as before.
#[tokio::test]
async fn garbage_through_nats_neither_crashes_nor_blocks_a_node() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let a = node(&nats, "a", &[]).await;
    let b = node(&nats, "b", &[]).await;
    let mut on_b = device(b.addr, "42", "b").await;
    let mut operator_a = operator(a.addr, "a").await;
    ask_until(&mut operator_a, "WHERE 42", "AT 42 b").await;

    let intruder = intruder(&nats).await;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![2, 1],
        vec![1, 99],
        vec![1, 4, 9, 0, 0],
        vec![1, 5, 0xff, 0xff, b'a'],
        vec![1, 6, 0, 1, 0xff],
        vec![1, 16, 0],
        vec![1, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
        vec![0xff; 1024 * 1024 + 1 - 64],
    ];
    // The subject of key "42": `k` and the key in URL-safe base64.
    for subject in ["flexi.presence", "flexi.node.b", "flexi.key.kNDI"] {
        for payload in &garbage {
            let payload = bytes::Bytes::from(payload.clone());
            intruder.publish(subject, payload.clone()).await.unwrap();
            intruder
                .publish_with_reply(subject, "intruder.inbox", payload)
                .await
                .unwrap();
        }
    }
    within("NATS takes it all", intruder.flush()).await.unwrap();

    assert_eq!(operator_a.ask("SEND 42 still fine").await, "DELIVERED 42 b");
    assert_eq!(on_b.recv_line().await, "still fine");
    assert_eq!(operator_a.ask("WHERE 42").await, "AT 42 b");
    assert_eq!(operator_a.ask("BROADCAST still one").await, "BROADCAST 1");
    assert_eq!(on_b.recv_line().await, "still one");
    a.stop().await;
    b.stop().await;
}

/// The group router of the in-process nodes: `JOIN <group>` -> `OK`. A
/// message `held` waits in `before_send` (a device that is slow to take it)
/// until `release` has a permit, and says so on `entered`.
fn group_router(entered: Arc<Semaphore>, release: Arc<Semaphore>) -> Router {
    Router::new()
        .on_message(|conn: Connection, line: String| async move {
            if let Some(group) = line.strip_prefix("JOIN ") {
                conn.join(group)?;
                conn.send("OK").await?;
            }
            Ok::<(), flexi_socket::Error>(())
        })
        .before_send(move |_conn: Connection, message: Message| {
            let (entered, release) = (Arc::clone(&entered), Arc::clone(&release));
            async move {
                if &message[..] == b"held" {
                    entered.add_permits(1);
                    let _ = tokio::time::timeout(WAIT, release.acquire()).await;
                }
                Some(message)
            }
        })
}

async fn in_process_node(
    nats: &NatsServer,
    name: &str,
    entered: &Arc<Semaphore>,
    release: &Arc<Semaphore>,
) -> support::Running {
    // Half the tests' wait: a broadcast held up on node b still gets its
    // answer on a loaded machine, and one answered only after the held one
    // (the fault this guards against) times out before the test gives up.
    let cluster = ClusterConfig::new([nats.url()]).request_timeout(WAIT / 2);
    support::start(
        FlexiSocket::server("127.0.0.1:0")
            .router(group_router(Arc::clone(entered), Arc::clone(release)))
            .node_name(name)
            .cluster(cluster),
    )
    .await
}

/// Broadcasts other nodes ask of a node are answered side by side: one
/// held up by a slow device there does not hold up the next, which would
/// otherwise time out on the asking node and count none.
#[tokio::test]
async fn a_broadcast_held_up_on_a_node_does_not_hold_up_the_next() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let (entered, release) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let a = in_process_node(&nats, "a", &entered, &release).await;
    let b = in_process_node(&nats, "b", &entered, &release).await;
    let mut slow = LineClient::connect(b.addr).await;
    assert_eq!(slow.ask("JOIN slow").await, "OK");
    let mut fast = LineClient::connect(b.addr).await;
    assert_eq!(fast.ask("JOIN fast").await, "OK");
    // Until node a knows node b.
    within("node a reaches node b", async {
        while a.connections.broadcast_to_group("fast", "ping").await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(fast.recv_line().await, "ping");

    let held = tokio::spawn({
        let connections = a.connections.clone();
        async move { connections.broadcast_to_group("slow", "held").await }
    });
    within("node b takes the held broadcast", entered.acquire())
        .await
        .unwrap()
        .forget();
    assert_eq!(
        within(
            "the second broadcast",
            a.connections.broadcast_to_group("fast", "not held")
        )
        .await,
        1,
        "node b answered the second broadcast only after the first"
    );
    // A warm-up broadcast that timed out after it was delivered was sent
    // again: its extra "ping"s come first.
    let mut not_held = fast.recv_line().await;
    while not_held == "ping" {
        not_held = fast.recv_line().await;
    }
    assert_eq!(not_held, "not held");

    release.add_permits(1);
    assert_eq!(within("the held broadcast", held).await.unwrap(), 1);
    assert_eq!(slow.recv_line().await, "held");
    a.stop().await;
    b.stop().await;
}

/// Anyone who can publish on the cluster's subjects decides how often a
/// node meets an unreadable payload: it logs a few a second, then one line
/// that counts the rest, not a line per payload.
#[tokio::test]
async fn garbage_through_nats_is_logged_within_a_rate() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let url = nats.url();
    let (b, mut log) = logged_node(&url, "b").await;
    let intruder = intruder(&nats).await;
    // Fewer than a subscription holds (1,024), so none is dropped unread.
    for _ in 0..1000 {
        intruder
            .publish("flexi.presence", bytes::Bytes::from_static(&[1, 99]))
            .await
            .unwrap();
    }
    // Then a hello, read after all of them: node b logs that `zz` joined.
    let hello = bytes::Bytes::from_static(&[1, 5, 0, 2, b'z', b'z', 0]);
    intruder.publish("flexi.presence", hello).await.unwrap();
    within("NATS takes it all", intruder.flush()).await.unwrap();
    let mut unreadable = 0;
    read_log_until(
        &mut log,
        "node b reads up to the hello",
        joined("zz"),
        |line| {
            unreadable += usize::from(line.contains("unreadable cluster message"));
        },
    )
    .await;
    assert!(
        (1..100).contains(&unreadable),
        "{unreadable} warnings for 1,000 unreadable payloads"
    );
    b.stop().await;
}

/// Two processes given the same node name: each hears the other's hello
/// (its own come back with its own instance) and says so in its log.
#[tokio::test]
async fn a_second_process_with_the_same_node_name_is_logged_by_both() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let url = nats.url();
    let args = ["127.0.0.1:0", "--nats", url.as_str(), "--node", "b"];
    let gateway = || {
        let mut command = Command::new(example_path("gateway"));
        command.args(args);
        command
    };
    let (first, mut first_log) = ExampleServer::start_logged(&mut gateway(), "gateway").await;
    let (second, mut second_log) = ExampleServer::start_logged(&mut gateway(), "gateway").await;
    for log in [&mut first_log, &mut second_log] {
        let same_name = |line: &str| line.contains(SAME_NAME_WARNING);
        read_log_until(
            log,
            "a node notices the other with its name",
            same_name,
            |_| {},
        )
        .await;
    }
    first.stop().await;
    second.stop().await;
}

/// A node hears its own hellos back from NATS: those are not another
/// process with its name. Its hellos are echoed before it starts listening
/// (it flushes them), so they are read before the hello of `zz`, sent after.
#[tokio::test]
async fn a_node_does_not_take_its_own_echoed_hello_for_another_process() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let url = nats.url();
    let (b, mut log) = logged_node(&url, "b").await;
    let intruder = intruder(&nats).await;
    let hello = bytes::Bytes::from_static(&[1, 5, 0, 2, b'z', b'z', 0]);
    intruder.publish("flexi.presence", hello).await.unwrap();
    within("NATS takes it", intruder.flush()).await.unwrap();
    read_log_until(
        &mut log,
        "node b reads up to the hello of zz",
        joined("zz"),
        |line| {
            assert!(
                !line.contains(SAME_NAME_WARNING),
                "node b took its own hello for another process's: {line}"
            );
        },
    )
    .await;
    b.stop().await;
}

/// Anyone who can publish on the presence subject can send hellos that ask
/// every node to say hello too: a node answers at most once a second, the
/// asks made meanwhile together (one answer reaches them all), not once per
/// hello. Its answers are counted up to its goodbye, which it says on
/// SIGTERM after it read the flood.
#[tokio::test]
async fn a_flood_of_hellos_asking_for_an_answer_gets_few_answers() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let url = nats.url();
    let (mut b, mut log) = logged_node(&url, "b").await;
    let intruder = intruder(&nats).await;
    let mut presence = intruder.subscribe("flexi.presence").await.unwrap();
    let asking = bytes::Bytes::from_static(&[1, 5, 0, 2, b'z', b'z', 1]);
    // Half what a subscription holds (1,024), so none is dropped unread
    // even if the node reads slowly.
    for _ in 0..500 {
        intruder
            .publish("flexi.presence", asking.clone())
            .await
            .unwrap();
    }
    // Read after all of them: node b logs that `yy` joined.
    let last = bytes::Bytes::from_static(&[1, 5, 0, 2, b'y', b'y', 1]);
    intruder.publish("flexi.presence", last).await.unwrap();
    within("NATS takes it all", intruder.flush()).await.unwrap();
    read_log_until(
        &mut log,
        "node b reads up to the last hello",
        joined("yy"),
        |_| {},
    )
    .await;
    support::example::send_signal(&b.child, libc::SIGTERM);
    within("node b exits on SIGTERM", b.child.wait())
        .await
        .unwrap();
    let (hello_of_b, goodbye_of_b) = (&[1, 5, 0, 1, b'b', 0][..], &[1, 6, 0, 1, b'b'][..]);
    let mut answers = 0;
    within("node b's goodbye", async {
        while let Some(message) = presence.next().await {
            if *message.payload == *goodbye_of_b {
                return;
            }
            answers += usize::from(*message.payload == *hello_of_b);
        }
        panic!("the subscription ended");
    })
    .await;
    eprintln!("node b said hello {answers} times");
    assert!(
        (1..20).contains(&answers),
        "node b said hello {answers} times for 501 hellos asking it to"
    );
}

/// While NATS is away every broadcast reaches this node only, and the
/// application decides how often it broadcasts: the warning that says so
/// is written within a rate, not once per broadcast.
#[tokio::test]
async fn broadcasts_while_nats_is_away_are_logged_within_a_rate() {
    // Nothing listens there: the node never reaches NATS.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let (a, mut log) = logged_node(&url, "a").await;
    let mut operator_a = operator(a.addr, "a").await;
    for _ in 0..200 {
        assert_eq!(operator_a.ask("BROADCAST anyone?").await, "BROADCAST 0");
    }
    // Every warning was written before its answer: all are in the log once
    // the process is gone.
    a.stop().await;
    let mut unavailable = 0;
    while let Some(line) = within("node a's log", log.recv()).await {
        unavailable += usize::from(line.contains("the cluster is unavailable"));
    }
    assert!(
        (1..100).contains(&unavailable),
        "{unavailable} warnings for 200 broadcasts while NATS is away"
    );
}

/// A gateway node `node` joined through the NATS server at `url`, and its
/// log (stderr, line by line).
async fn logged_node(url: &str, node: &str) -> (ExampleServer, UnboundedReceiver<String>) {
    ExampleServer::start_logged(
        Command::new(example_path("gateway")).args(["127.0.0.1:0", "--nats", url, "--node", node]),
        "gateway",
    )
    .await
}

/// What a node logs when another process says hello with its name.
const SAME_NAME_WARNING: &str = "another process says hello with this node's name";

/// Whether a log line says that `node` joined the cluster.
fn joined(node: &str) -> impl Fn(&str) -> bool + '_ {
    move |line| line.contains("node joined the cluster") && line.contains(node)
}

/// Reads a node's `log` up to the first line `is_last` holds for, handing
/// each line before it to `each`, for at most [`WAIT`].
async fn read_log_until(
    log: &mut UnboundedReceiver<String>,
    what: &str,
    is_last: impl Fn(&str) -> bool,
    mut each: impl FnMut(&str),
) {
    within(what, async {
        while let Some(line) = log.recv().await {
            if is_last(&line) {
                return;
            }
            each(&line);
        }
        panic!("the node's log ended before: {what}");
    })
    .await;
}

/// A NATS client that publishes on the cluster's subjects as anyone who
/// can reach the NATS server could.
async fn intruder(nats: &NatsServer) -> async_nats::Client {
    within("connect to NATS", async_nats::connect(nats.url()))
        .await
        .expect("NATS accepts a client")
}
