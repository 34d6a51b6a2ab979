//! Addressable connections on one server, over real loopback sockets: keys
//! (newest wins, oldest wins), groups, broadcasts through the group and
//! client-type indexes, the outcomes of a send to a key, `Connections` as
//! a handler argument, server-side requests, and nothing left in the
//! indexes once the connections are gone.
//!
//! One set of attribute handlers serves every test (one registry per test
//! file); `Connections` is one of their arguments.

mod support;

use std::sync::Arc;
use std::time::Duration;

use flexi_socket::{
    Classifier, Connection, Connections, DisconnectReason, Error, FlexiSocket, KeyPolicy,
    LocateOutcome, SendOutcome, ServerBuilder, SlowConsumerPolicy, State, on_disconnect,
    on_message,
};
use support::{EventLog, Events, LineClient, Running, eventually, start, within};
use tokio::sync::Semaphore;

/// Devices say `HELLO <id>` first; anything else is an operator.
#[derive(Classifier)]
enum Role {
    #[client_type = "device"]
    #[classify(prefix = "HELLO ")]
    Device,
    #[client_type = "operator"]
    #[classify(default)]
    Operator,
}

/// What the handlers share: where they report, and a gate that holds a
/// leaving connection named `held` in on_disconnect until the test opens it.
#[derive(Clone)]
struct Shared {
    events: Events,
    gate: Arc<Semaphore>,
}

/// The line protocol of the test server:
/// - `HELLO <id>` -> `WELCOME <id>` (key set) or `TAKEN <id>`;
/// - `JOIN <g>` -> `JOINED <g>`; `LEAVE <g>` -> `LEFT <g> <true|false>`;
/// - `SEND <id> <text>` -> `OUTCOME <outcome>` (through a `Connections` argument);
/// - `GROUP <g> <text>` -> `REACHED <n>`;
/// - `ASK <id> <text>` -> `GOT <reply>` (a request to `<id>` whose reply
///   starts with `RE `) or `FAILED <error>`;
/// - `ASKSELF` -> `FAILED <error>` (a request from the connection's own handler);
/// - anything else is reported as `msg <key> <line>`.
#[on_message]
async fn line(
    conn: Connection,
    line: String,
    connections: Connections,
    shared: State<Shared>,
) -> flexi_socket::Result<()> {
    match command(&conn, &line, &connections).await {
        Some(reply) => conn.send(reply).await,
        None => {
            let key = conn.key().unwrap_or_default();
            shared.events.push(format!("msg {key} {line}"));
            Ok(())
        }
    }
}

#[on_disconnect]
async fn gone(conn: Connection, reason: DisconnectReason, shared: State<Shared>) {
    let key = conn.key().unwrap_or_else(|| "-".to_owned());
    if key == "held" {
        let _permit = shared.gate.acquire().await;
    }
    shared
        .events
        .push(format!("gone {} {key} {reason:?}", conn.id()));
}

/// The reply to one line, or `None` for a line that is no command.
async fn command(conn: &Connection, line: &str, connections: &Connections) -> Option<String> {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let reply = match verb {
        "HELLO" => match conn.set_key(rest).await {
            Ok(()) => format!("WELCOME {rest}"),
            Err(Error::KeyTaken { key }) => format!("TAKEN {key}"),
            Err(other) => format!("FAILED {other}"),
        },
        "JOIN" => {
            conn.join(rest).expect("open");
            format!("JOINED {rest}")
        }
        "LEAVE" => format!("LEFT {rest} {}", conn.leave(rest)),
        "SEND" => {
            let (id, text) = rest.split_once(' ').unwrap_or((rest, ""));
            match connections.send_to_key(id, text).await {
                Ok(outcome) => format!("OUTCOME {outcome:?}"),
                Err(error) => format!("FAILED {error}"),
            }
        }
        "GROUP" => {
            let (group, text) = rest.split_once(' ').unwrap_or((rest, ""));
            format!(
                "REACHED {}",
                connections.broadcast_to_group(group, text).await
            )
        }
        "ASK" => {
            let (id, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let is_reply = |m: &flexi_socket::Message| m.starts_with(b"RE ");
            match connections
                .request_to_key(id, text, Duration::from_secs(5), is_reply)
                .await
            {
                Ok(reply) => format!("GOT {}", String::from_utf8_lossy(&reply)),
                Err(error) => format!("FAILED {error}"),
            }
        }
        "ASKSELF" => {
            let asked = conn
                .request_matching("ping", Duration::from_secs(5), |_| true)
                .await;
            match asked {
                Err(Error::RequestInOwnTask { .. }) => "FAILED own task".to_owned(),
                other => format!("UNEXPECTED {other:?}"),
            }
        }
        _ => return None,
    };
    Some(reply)
}

fn server() -> (ServerBuilder, EventLog, Arc<Semaphore>) {
    let (events, log) = Events::new();
    let gate = Arc::new(Semaphore::new(0));
    let shared = Shared {
        events,
        gate: Arc::clone(&gate),
    };
    let builder = FlexiSocket::server("127.0.0.1:0")
        .classifier::<Role>()
        .state(shared);
    (builder, log, gate)
}

async fn device(running: &Running, id: &str) -> LineClient {
    let mut device = LineClient::connect(running.addr).await;
    assert_eq!(
        device.ask(&format!("HELLO {id}")).await,
        format!("WELCOME {id}")
    );
    device
}

#[tokio::test]
async fn a_new_connection_with_a_taken_key_replaces_the_older_one() {
    let (builder, mut log, _gate) = server();
    let running = start(builder).await;
    let mut first = device(&running, "42").await;
    let older = running.connections.by_key("42").expect("keyed").id();
    let mut second = device(&running, "42").await;

    assert_eq!(first.try_recv_line().await, None, "the older one is closed");
    let gone = log.next_starting("gone").await;
    assert_eq!(gone, format!("gone {older} - Replaced"));
    let holder = running.connections.by_key("42").expect("keyed");
    assert_ne!(holder.id(), older);
    let LocateOutcome::Found(at) = running.connections.locate("42").await else {
        panic!("42 is connected");
    };
    assert_eq!(at.connection, holder.id());
    assert_eq!(at.node.as_ref(), "local");
    assert_eq!(
        at.peer_addr.socket_addr(),
        Some(second.writer.local_addr().unwrap())
    );
    assert_eq!(at.client_type.as_ref().map(|t| t.as_str()), Some("device"));

    let sent = running.connections.send_to_key("42", "to the newer").await;
    assert!(sent.unwrap().is_delivered());
    assert_eq!(second.recv_line().await, "to the newer");
    running.stop().await;
}

#[tokio::test]
async fn under_oldest_wins_the_holder_keeps_its_key_and_the_newcomer_stays_keyless() {
    let (builder, _log, _gate) = server();
    let running = start(
        builder
            .key_policy(KeyPolicy::OldestWins)
            .node_name("edge-1"),
    )
    .await;
    let mut first = device(&running, "42").await;
    let mut second = LineClient::connect(running.addr).await;
    assert_eq!(second.ask("HELLO 42").await, "TAKEN 42");

    let outcome = running.connections.send_to_key("42", "still yours").await;
    let Ok(SendOutcome::Delivered { node, .. }) = outcome else {
        panic!("delivered, not {outcome:?}");
    };
    assert_eq!(node.as_ref(), "edge-1");
    assert_eq!(first.recv_line().await, "still yours");
    // The newcomer is open, without a key.
    assert_eq!(second.ask("JOIN lobby").await, "JOINED lobby");
    assert_eq!(running.connections.keys(), ["42"]);
    running.stop().await;
}

#[tokio::test]
async fn groups_are_joined_left_and_emptied_by_closing_and_broadcasts_count_their_members() {
    let (builder, mut log, _gate) = server();
    let running = start(builder).await;
    let mut a = device(&running, "a").await;
    let mut b = device(&running, "b").await;
    let mut operator = LineClient::connect(running.addr).await;
    assert_eq!(a.ask("JOIN north").await, "JOINED north");
    assert_eq!(b.ask("JOIN north").await, "JOINED north");
    assert_eq!(b.ask("JOIN south").await, "JOINED south");
    assert_eq!(operator.ask("JOIN north").await, "JOINED north");
    assert_eq!(running.connections.groups(), ["north", "south"]);
    let b_connection = running.connections.by_key("b").unwrap();
    assert_eq!(b_connection.groups(), ["north", "south"]);

    // Through a handler's `Connections`, and from outside.
    // The operator is in north too: the broadcast reaches it before the reply.
    assert_eq!(operator.ask("GROUP north hello").await, "hello");
    assert_eq!(operator.recv_line().await, "REACHED 3");
    assert_eq!(a.recv_line().await, "hello");
    assert_eq!(b.recv_line().await, "hello");
    assert_eq!(
        running.connections.broadcast_to_group("south", "s").await,
        1
    );
    assert_eq!(b.recv_line().await, "s");
    assert_eq!(running.connections.broadcast_to_group("west", "w").await, 0);
    // By client type: the devices only, not the operator.
    assert_eq!(running.connections.of_type("device").len(), 2);
    assert_eq!(running.connections.broadcast_to("device", "dev").await, 2);
    assert_eq!(a.recv_line().await, "dev");
    assert_eq!(b.recv_line().await, "dev");
    assert_eq!(running.connections.broadcast("all").await, 3);
    for client in [&mut a, &mut b, &mut operator] {
        assert_eq!(client.recv_line().await, "all");
    }

    assert_eq!(b.ask("LEAVE north").await, "LEFT north true");
    assert_eq!(b.ask("LEAVE north").await, "LEFT north false");
    assert_eq!(operator.ask("GROUP north again").await, "again");
    assert_eq!(operator.recv_line().await, "REACHED 2");
    assert_eq!(a.recv_line().await, "again");

    // Closing takes b out of south, which goes with its last member.
    drop(b);
    log.next_starting("gone").await;
    assert_eq!(running.connections.groups(), ["north"]);
    assert_eq!(
        running.connections.broadcast_to_group("south", "s").await,
        0
    );
    assert_eq!(running.connections.of_type("device").len(), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_send_to_a_key_reports_offline_delivered_queue_full_and_closing() {
    let (builder, mut log, gate) = server();
    let running = start(
        builder
            .outbound_queue(1)
            .slow_consumer(SlowConsumerPolicy::Fail)
            .socket_send_buffer(4096),
    )
    .await;
    let connections = &running.connections;
    assert_eq!(
        connections.send_to_key("nobody", "x").await.unwrap(),
        SendOutcome::Offline
    );

    // A device that stops reading: its socket buffers fill, then its queue.
    let _stuck = device(&running, "stuck").await;
    let chunk = "x".repeat(16 * 1024);
    let mut outcomes = Vec::new();
    for _ in 0..5_000 {
        let outcome = connections
            .send_to_key("stuck", chunk.as_str())
            .await
            .unwrap();
        let full = outcome == SendOutcome::QueueFull;
        outcomes.push(outcome);
        if full {
            break;
        }
    }
    assert!(outcomes.first().unwrap().is_delivered());
    assert_eq!(outcomes.last(), Some(&SendOutcome::QueueFull));

    // A device that is leaving, held in on_disconnect: it still holds its
    // key, and a send to it reports so.
    let _held = device(&running, "held").await;
    let leaving = connections.by_key("held").unwrap();
    leaving.close();
    assert_eq!(
        connections.send_to_key("held", "too late").await.unwrap(),
        SendOutcome::Closing
    );
    gate.add_permits(1);
    assert_eq!(
        log.next_starting("gone").await,
        format!("gone {} held Closed", leaving.id())
    );
    eventually("the key goes with its connection", || {
        connections.by_key("held").is_none()
    })
    .await;
    assert_eq!(
        connections.send_to_key("held", "gone").await.unwrap(),
        SendOutcome::Offline
    );
    running.stop().await;
}

#[tokio::test]
async fn a_handler_reaches_other_connections_through_its_connections_argument() {
    let (builder, _log, _gate) = server();
    let running = start(builder).await;
    let mut device_7 = device(&running, "7").await;
    let mut operator = LineClient::connect(running.addr).await;
    let delivered = operator.ask("SEND 7 open the door").await;
    assert!(delivered.starts_with("OUTCOME Delivered"), "{delivered}");
    assert_eq!(device_7.recv_line().await, "open the door");
    assert_eq!(operator.ask("SEND 8 anyone?").await, "OUTCOME Offline");
    running.stop().await;
}

#[tokio::test]
async fn a_request_takes_its_reply_and_leaves_other_messages_to_on_message() {
    let (builder, mut log, _gate) = server();
    let running = start(builder).await;
    let mut panel = device(&running, "panel").await;
    let connections = running.connections.clone();
    let request = tokio::spawn(async move {
        connections
            .request_to_key("panel", "STATUS? 1", Duration::from_secs(10), |m| {
                m.starts_with(b"STATUS 1 ")
            })
            .await
    });
    assert_eq!(panel.recv_line().await, "STATUS? 1");
    panel.send_line("an event of its own").await;
    panel.send_line("STATUS 1 armed").await;
    panel.send_line("after").await;
    let reply = within("the reply", request).await.unwrap().unwrap();
    assert_eq!(reply.as_bytes(), b"STATUS 1 armed");
    assert_eq!(log.next().await, "msg panel an event of its own");
    assert_eq!(
        log.next().await,
        "msg panel after",
        "the reply skipped on_message"
    );

    // From another connection's handler: an operator polls the panel.
    let mut operator = LineClient::connect(running.addr).await;
    operator.send_line("ASK panel PING").await;
    assert_eq!(panel.recv_line().await, "PING");
    panel.send_line("RE PONG").await;
    assert_eq!(operator.recv_line().await, "GOT RE PONG");
    // From the panel's own handler it cannot be answered: it fails at once.
    assert_eq!(panel.ask("ASKSELF").await, "FAILED own task");
    running.stop().await;
}

#[tokio::test]
async fn a_request_ends_with_a_typed_error_on_timeout_close_and_offline_key() {
    let (builder, _log, _gate) = server();
    let running = start(builder).await;
    let mut silent = device(&running, "silent").await;
    let timed_out = running
        .connections
        .request_to_key("silent", "ping", Duration::from_millis(200), |_| true)
        .await;
    assert!(
        matches!(timed_out, Err(Error::RequestTimeout { .. })),
        "{timed_out:?}"
    );
    assert_eq!(silent.recv_line().await, "ping");

    let connections = running.connections.clone();
    let request = tokio::spawn(async move {
        connections
            .request_to_key("silent", "ping", Duration::from_secs(10), |_| false)
            .await
    });
    assert_eq!(silent.recv_line().await, "ping");
    drop(silent);
    let closed = within("the request's end", request).await.unwrap();
    assert!(
        matches!(closed, Err(Error::ConnectionClosed { .. })),
        "{closed:?}"
    );

    let offline = running
        .connections
        .request_to_key("silent", "ping", Duration::from_secs(1), |_| true)
        .await;
    assert!(
        matches!(offline, Err(Error::KeyOffline { ref key }) if key == "silent"),
        "{offline:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn keys_and_groups_leave_no_trace_after_200_connections_come_and_go() {
    let (builder, _log, _gate) = server();
    let running = start(builder.max_connections(1_000)).await;
    for batch in 0..10 {
        let mut devices = Vec::new();
        for i in 0..20 {
            let id = format!("dev-{batch}-{i}");
            let mut device = device(&running, &id).await;
            assert_eq!(device.ask("JOIN everyone").await, "JOINED everyone");
            assert_eq!(
                device.ask(&format!("JOIN batch-{batch}")).await,
                format!("JOINED batch-{batch}")
            );
            devices.push(device);
        }
        assert_eq!(running.connections.keys().len(), 20);
        assert_eq!(
            running
                .connections
                .broadcast_to_group(&format!("batch-{batch}"), "hi")
                .await,
            20
        );
        drop(devices);
    }
    let connections = &running.connections;
    eventually("every connection gone", || connections.is_empty()).await;
    assert!(connections.keys().is_empty(), "{:?}", connections.keys());
    assert!(
        connections.groups().is_empty(),
        "{:?}",
        connections.groups()
    );
    assert!(connections.of_type("device").is_empty());
    assert_eq!(connections.locate("dev-0-0").await, LocateOutcome::Offline);
    running.stop().await;
}

#[tokio::test]
async fn a_replaced_connection_cannot_take_its_key_back_while_it_closes() {
    let (builder, mut log, _gate) = server();
    let running = start(builder).await;
    let mut silent = device(&running, "silent").await;
    let mut first = device(&running, "42").await;
    let older = running.connections.by_key("42").expect("keyed");
    // The older one's handler waits on a request, so the connection stays
    // listed (closing) after it is replaced, until the handler returns.
    first.send_line("ASK silent ping").await;
    assert_eq!(silent.recv_line().await, "ping");
    let mut second = device(&running, "42").await;
    assert!(older.is_closing(), "replaced");

    let again = older.set_key("42").await;
    assert!(
        matches!(again, Err(Error::ConnectionClosed { .. })),
        "{again:?}"
    );
    let holder = running.connections.by_key("42").expect("still held");
    assert_ne!(holder.id(), older.id());
    assert!(!holder.is_closing(), "the newer one is not replaced back");
    assert_eq!(second.ask("JOIN still-here").await, "JOINED still-here");

    silent.send_line("RE pong").await;
    assert_eq!(
        log.next_starting("gone").await,
        format!("gone {} - Replaced", older.id())
    );
    drop((first, second, silent));
    running.stop().await;
}

#[tokio::test]
async fn a_request_to_a_client_side_connection_takes_its_reply() {
    let (builder, mut log, _gate) = server();
    let running = start(builder).await;
    let (events, _client_log) = support::Events::new();
    let client = FlexiSocket::client(running.addr.to_string())
        .state(Shared {
            events,
            gate: Arc::new(Semaphore::new(0)),
        })
        .connect()
        .await
        .expect("connected");
    within("connected", client.connected()).await.unwrap();
    let conn = client.connection().expect("connected");
    let reply = within(
        "the reply",
        conn.request_matching("HELLO c", Duration::from_secs(5), |m| {
            m.starts_with(b"WELCOME ")
        }),
    )
    .await;
    assert_eq!(reply.expect("answered").as_bytes(), b"WELCOME c");
    assert!(running.connections.by_key("c").is_some());
    client.close().await;
    log.next_starting("gone").await;
    running.stop().await;
}

#[tokio::test]
async fn a_request_given_up_by_its_caller_leaves_the_next_ones_reply_alone() {
    let (builder, mut log, _gate) = server();
    let running = start(builder).await;
    let mut panel = device(&running, "panel").await;
    let is_reply = |m: &flexi_socket::Message| m.starts_with(b"RE ");

    // A caller that gives up (its task is cancelled) once the request is out.
    let connections = running.connections.clone();
    let abandoned = tokio::spawn(async move {
        connections
            .request_to_key("panel", "first", Duration::from_secs(30), is_reply)
            .await
    });
    assert_eq!(panel.recv_line().await, "first");
    abandoned.abort();
    assert!(within("the cancellation", abandoned).await.is_err());

    let connections = running.connections.clone();
    let next = tokio::spawn(async move {
        connections
            .request_to_key("panel", "second", Duration::from_secs(5), is_reply)
            .await
    });
    assert_eq!(panel.recv_line().await, "second");
    panel.send_line("RE second").await;
    let reply = within("the reply", next).await.unwrap();
    assert_eq!(reply.expect("answered").as_bytes(), b"RE second");
    // Nothing of it reached on_message.
    panel.send_line("after").await;
    assert_eq!(log.next().await, "msg panel after");
    drop(panel);
    running.stop().await;
}

#[tokio::test]
async fn a_request_from_a_udp_sessions_own_on_connect_fails_at_once() {
    let (events, mut log) = Events::new();
    let router = flexi_socket::Router::new()
        .on_connect(move |conn: Connection| {
            let events = events.clone();
            async move {
                let asked = conn
                    .request_matching("ping", Duration::from_secs(5), |_| true)
                    .await;
                events.push(match asked {
                    Err(Error::RequestInOwnTask { .. }) => "own task".to_owned(),
                    other => format!("UNEXPECTED {other:?}"),
                });
            }
        })
        .on_message(|_conn: Connection, _msg: flexi_socket::Message| async {});
    let running = start(FlexiSocket::udp("127.0.0.1:0").router(router)).await;
    let peer = support::udp::UdpClient::connect(running.addr).await;
    peer.send(b"hello").await;
    // Its session's task runs on_connect: no reply could be read meanwhile.
    assert_eq!(log.next().await, "own task");
    drop(peer);
    running.stop().await;
}
