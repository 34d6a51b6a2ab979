//! UDP servers over loopback: each datagram a message, each peer a session
//! with the same events, classification and limits as a TCP connection.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flexi_socket::{
    Classifier, ClientType, Connection, Connections, DisconnectReason, Error, FlexiSocket, Framing,
    Message, Router, ServerBuilder, Udp,
};
use support::udp::UdpClient;
use support::{Events, eventually, start, within};
use tokio::sync::Semaphore;

fn server() -> ServerBuilder<Udp> {
    FlexiSocket::udp("127.0.0.1:0")
}

fn echo() -> Router {
    Router::new().on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await })
}

/// Reports connects, errors and disconnects to `events`, with the session's id.
fn observed(router: Router, events: &Events) -> Router {
    let (connects, errors, disconnects) = (events.clone(), events.clone(), events.clone());
    router
        .on_connect(move |conn: Connection| {
            let events = connects.clone();
            async move { events.push(format!("connect {}", conn.id())) }
        })
        .on_error(move |conn: Connection, error: Error| {
            let events = errors.clone();
            async move { events.push(format!("error {} {error}", conn.id())) }
        })
        .on_disconnect(move |conn: Connection, reason: DisconnectReason| {
            let events = disconnects.clone();
            async move { events.push(format!("disconnect {} {reason}", conn.id())) }
        })
}

#[tokio::test]
async fn echoes_each_datagram_to_its_peer() {
    let running = start(server().router(echo())).await;
    let client = UdpClient::connect(running.addr).await;
    assert_eq!(client.ask("hello").await, "hello");
    // A datagram is a message whole: newlines, binary and empty ones included.
    assert_eq!(client.ask("two\nlines\n").await, "two\nlines\n");
    client.send([0_u8, 159, 146, 150]).await;
    assert_eq!(client.recv().await, [0_u8, 159, 146, 150]);
    client.send(b"").await;
    assert_eq!(client.recv().await, b"");

    // Peers that leave before their reply arrives (ICMP port unreachable on
    // the way back) do not disturb the server.
    for round in 0..3 {
        let gone = UdpClient::connect(running.addr).await;
        gone.send("I am leaving").await;
        drop(gone);
        let line = format!("still here {round}");
        assert_eq!(client.ask(&line).await, line);
    }

    // The session is a connection like any other: reachable from outside handlers.
    let session = running
        .connections
        .list()
        .into_iter()
        .find(|conn| conn.peer_addr() == client.addr())
        .expect("the client's session is listed");
    session.send("pushed").await.unwrap();
    assert_eq!(client.recv_text().await, "pushed");
    let stats = running.handle.stats();
    assert!(stats.messages_in >= 9, "{stats:?}");
    assert_eq!(stats.datagrams_dropped, 0);
    running.stop().await;
}

/// "!!" alarm panels, "##" sensors, anyone else.
struct Panel(&'static str);

impl Classifier for Panel {
    fn classify(first_frame: &[u8]) -> Self {
        match first_frame {
            [b'!', b'!', ..] => Panel("001"),
            [b'#', b'#', ..] => Panel("002"),
            _ => Panel("other"),
        }
    }

    fn client_type(&self) -> ClientType {
        ClientType::from_static(self.0)
    }

    fn client_types() -> Option<Vec<ClientType>> {
        Some(vec!["001".into(), "002".into(), "other".into()])
    }
}

#[tokio::test]
async fn each_peer_is_classified_by_its_first_datagram() {
    let router = Router::new()
        .on_message_for("001", |conn: Connection, msg: String| async move {
            conn.send(format!("alarm {msg}")).await
        })
        .on_message_for("002", |conn: Connection, msg: String| async move {
            conn.send(format!("sensor {msg}")).await
        })
        .on_message(|conn: Connection, msg: String| async move {
            conn.send(format!("other {msg}")).await
        });
    let running = start(server().classifier::<Panel>().router(router)).await;
    let alarm = UdpClient::connect(running.addr).await;
    let sensor = UdpClient::connect(running.addr).await;
    let stranger = UdpClient::connect(running.addr).await;
    assert_eq!(alarm.ask("!!zone 3").await, "alarm !!zone 3");
    assert_eq!(sensor.ask("##21.5").await, "sensor ##21.5");
    assert_eq!(stranger.ask("hello").await, "other hello");
    // The type sticks to the peer: later datagrams without a marker keep it.
    assert_eq!(alarm.ask("no marker").await, "alarm no marker");
    assert_eq!(sensor.ask("!!not an alarm").await, "sensor !!not an alarm");

    let mut types: Vec<String> = running
        .connections
        .list()
        .iter()
        .map(|conn| conn.client_type().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(types, ["001", "002", "other"]);
    running.stop().await;
}

#[tokio::test]
async fn an_idle_session_ends_and_the_next_datagram_opens_a_new_one() {
    let (events, mut log) = Events::new();
    let running = start(
        server()
            .router(observed(echo(), &events))
            .udp_session_idle(Duration::from_millis(200)),
    )
    .await;
    let client = UdpClient::connect(running.addr).await;
    assert_eq!(client.ask("first").await, "first");
    let first = log.next_starting("connect").await;
    let id = first.strip_prefix("connect ").unwrap().to_owned();
    assert_eq!(
        log.next_starting("disconnect").await,
        format!("disconnect {id} idle timeout")
    );
    eventually("the session to be unlisted", || {
        running.connections.is_empty()
    })
    .await;

    assert_eq!(client.ask("again").await, "again");
    let second = log.next_starting("connect").await;
    assert_ne!(second, first, "a new session, with a new id");
    running.stop().await;
}

#[tokio::test]
async fn a_session_that_hears_from_its_peer_stays_open() {
    const IDLE: Duration = Duration::from_secs(1);
    let router = Router::new().on_message(|conn: Connection, _msg: Message| async move {
        conn.send(conn.id().to_string()).await
    });
    let running = start(server().router(router).udp_session_idle(IDLE)).await;
    let client = UdpClient::connect(running.addr).await;
    let first = client.ask("hello").await;
    // Three idle periods long, a datagram every tenth of one.
    let mut pace = tokio::time::interval(IDLE / 10);
    for _ in 0..30 {
        pace.tick().await;
        assert_eq!(client.ask("still here").await, first, "the same session");
    }
    running.stop().await;
}

#[tokio::test]
async fn a_session_is_not_idle_while_its_handler_runs() {
    const IDLE: Duration = Duration::from_millis(200);
    let router = Router::new().on_message(|conn: Connection, _msg: Message| async move {
        // The handler's own work, three idle periods long.
        tokio::time::sleep(IDLE * 3).await;
        let closing = conn.is_closing();
        conn.send(format!("closing: {closing}")).await
    });
    let running = start(server().router(router).udp_session_idle(IDLE)).await;
    let client = UdpClient::connect(running.addr).await;
    assert_eq!(client.ask("slow").await, "closing: false");
    running.stop().await;
}

#[tokio::test]
async fn two_thousand_peers_against_a_cap_of_one_thousand_stay_bounded() {
    const CAP: usize = 1_000;
    const PEERS: usize = 2_000;
    const WAVE: usize = 100;
    let connections: Arc<OnceLock<Connections>> = Arc::default();
    let most_open = Arc::new(AtomicUsize::new(0));
    let router = {
        let (connections, most_open) = (Arc::clone(&connections), Arc::clone(&most_open));
        echo().on_connect(move |_conn: Connection| {
            let open = connections.get().map_or(0, Connections::len);
            most_open.fetch_max(open, Ordering::Relaxed);
            async {}
        })
    };
    // Every peer is 127.0.0.1: no places are kept for other addresses here.
    let server = server().max_connections(CAP).reserve_for_other_ips(0);
    let running = start(server.router(router)).await;
    connections.set(running.connections.clone()).unwrap();

    // Every socket stays open to the end, so no port (and no peer) repeats.
    let mut peers = Vec::with_capacity(PEERS);
    for wave in 0..PEERS / WAVE {
        let mut clients = Vec::with_capacity(WAVE);
        for _ in 0..WAVE {
            clients.push(UdpClient::connect(running.addr).await);
        }
        for (i, client) in clients.iter().enumerate() {
            client.send(format!("peer {}", wave * WAVE + i)).await;
        }
        // Each datagram was either handled by a new session or dropped at the cap.
        let sent = ((wave + 1) * WAVE) as u64;
        let handle = running.handle.clone();
        eventually("the wave to be handled or dropped", || {
            let stats = handle.stats();
            stats.messages_in + stats.datagrams_dropped == sent
        })
        .await;
        assert!(running.connections.len() <= CAP);
        peers.extend(clients);
    }

    let stats = running.handle.stats();
    assert_eq!(stats.connections_total, CAP as u64, "{stats:?}");
    assert_eq!(stats.datagrams_dropped, (PEERS - CAP) as u64, "{stats:?}");
    assert_eq!(running.connections.len(), CAP);
    assert!(most_open.load(Ordering::Relaxed) <= CAP);
    // The admitted peers got their replies and are still served at the cap.
    for (i, peer) in peers.iter().enumerate().take(CAP) {
        assert_eq!(peer.recv_text().await, format!("peer {i}"));
    }
    assert_eq!(peers[0].ask("still served").await, "still served");
    assert_eq!(running.stop().await.connections_closed, CAP as u64);
}

#[tokio::test]
async fn an_oversize_datagram_is_reported_and_not_delivered() {
    let (events, mut log) = Events::new();
    let delivered = events.clone();
    let router = Router::new().on_message(move |conn: Connection, msg: Message| {
        let events = delivered.clone();
        async move {
            events.push(format!("message {}", msg.len()));
            conn.send(msg).await
        }
    });
    let running = start(
        server()
            .router(observed(router, &events))
            .max_datagram(1_500),
    )
    .await;
    let client = UdpClient::connect(running.addr).await;
    client.send(vec![b'x'; 60_000]).await;
    let connect = log.next().await;
    let id = connect.strip_prefix("connect ").unwrap();
    assert_eq!(
        log.next().await,
        format!(
            "error {id} discarded a datagram of 60000 bytes: the limit is 1500 bytes \
             (raise it with `.max_datagram(n)` if such datagrams are legitimate)"
        )
    );
    // The same peer's next datagram is delivered, and one of exactly the limit too.
    assert_eq!(client.ask("small").await, "small");
    assert_eq!(log.next().await, "message 5");
    client.send(vec![b'y'; 1_500]).await;
    assert_eq!(client.recv().await.len(), 1_500);
    assert_eq!(log.next().await, "message 1500");
    let stats = running.handle.stats();
    assert_eq!(stats.errors.frame_too_large, 1);
    assert_eq!(stats.messages_in, 2);
    running.stop().await;
}

#[tokio::test]
async fn a_reply_too_long_to_send_is_reported_and_the_session_goes_on() {
    let (events, mut log) = Events::new();
    // A reply over the 65,507 bytes an IPv4 datagram holds: the send fails.
    let router = Router::new().on_message(|conn: Connection, msg: String| async move {
        let reply = if msg == "huge" {
            "x".repeat(70_000)
        } else {
            format!("re:{msg}")
        };
        conn.send(reply).await
    });
    let running = start(server().router(observed(router, &events))).await;
    let client = UdpClient::connect(running.addr).await;
    client.send("huge").await;
    let connect = log.next().await;
    let id = connect.strip_prefix("connect ").unwrap();
    let error = log.next().await;
    assert!(
        error.starts_with(&format!("error {id} I/O error:")) && error.contains("too long"),
        "{error}"
    );
    assert_eq!(client.ask("next").await, "re:next");
    running.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_ends_only_its_session() {
    let (events, mut log) = Events::new();
    let router = Router::new().on_message(|conn: Connection, msg: String| async move {
        assert_ne!(msg, "boom", "the handler panicked on purpose");
        conn.send(msg).await
    });
    let running = start(server().router(observed(router, &events))).await;
    let victim = UdpClient::connect(running.addr).await;
    let bystander = UdpClient::connect(running.addr).await;
    assert_eq!(victim.ask("hello").await, "hello");
    let victim_id = log.next_starting("connect").await;
    let victim_id = victim_id.strip_prefix("connect ").unwrap().to_owned();
    assert_eq!(bystander.ask("hello").await, "hello");

    victim.send("boom").await;
    let error = log.next_starting("error").await;
    assert!(
        error.starts_with(&format!("error {victim_id} handler")) && error.contains("panicked"),
        "{error}"
    );
    assert_eq!(
        log.next_starting("disconnect").await,
        format!("disconnect {victim_id} a handler panicked")
    );
    assert_eq!(bystander.ask("still served").await, "still served");
    // The victim's next datagram opens a new session.
    assert_eq!(victim.ask("back").await, "back");
    assert_eq!(running.connections.len(), 2);
    running.stop().await;
}

#[tokio::test]
async fn an_explicit_framing_splits_each_datagram_on_its_own() {
    let (events, mut log) = Events::new();
    let running = start(
        server()
            .framing(Framing::lines())
            .router(observed(echo(), &events)),
    )
    .await;
    let client = UdpClient::connect(running.addr).await;
    client.send("one\ntwo\nthr").await;
    // Each reply is its own datagram, framed.
    assert_eq!(client.recv_text().await, "one\n");
    assert_eq!(client.recv_text().await, "two\n");
    log.next_starting("connect").await;
    let error = log.next_starting("error").await;
    assert!(
        error.ends_with(
            "a datagram ended in the middle of a frame; 3 bytes were not delivered \
             (each datagram is decoded on its own, so a frame cannot span datagrams)"
        ),
        "{error}"
    );
    // The cut frame does not leak into the next datagram.
    client.send("ee\n").await;
    assert_eq!(client.recv_text().await, "ee\n");
    running.stop().await;
}

/// Handles "wait" only once the gate opens; echoes everything.
fn gated(gate: &Arc<Semaphore>, events: &Events) -> Router {
    let (gate, events) = (Arc::clone(gate), events.clone());
    Router::new().on_message(move |conn: Connection, msg: String| {
        let (gate, events) = (Arc::clone(&gate), events.clone());
        async move {
            events.push(format!("handling {msg}"));
            if msg == "wait" {
                drop(gate.acquire().await);
            }
            conn.send(msg).await
        }
    })
}

#[tokio::test]
async fn a_full_session_queue_drops_and_reports_while_others_are_served() {
    let (events, mut log) = Events::new();
    let gate = Arc::new(Semaphore::new(0));
    let running = start(
        server()
            .router(observed(gated(&gate, &events), &events))
            .udp_session_queue(2),
    )
    .await;
    let busy = UdpClient::connect(running.addr).await;
    busy.send("wait").await;
    let busy_id = log.next_starting("connect").await;
    let busy_id = busy_id.strip_prefix("connect ").unwrap().to_owned();
    assert_eq!(log.next_starting("handling").await, "handling wait");
    for i in 1..=5 {
        busy.send(i.to_string()).await;
    }
    // Two fit the queue, three are dropped; the receive loop never waits.
    let handle = running.handle.clone();
    eventually("three drops", || handle.stats().datagrams_dropped == 3).await;
    let other = UdpClient::connect(running.addr).await;
    assert_eq!(other.ask("meanwhile").await, "meanwhile");

    gate.add_permits(1);
    assert_eq!(
        log.next_starting("error").await,
        format!(
            "error {busy_id} dropped 3 datagrams from this peer: its session's queue \
             (2 datagrams) was full; make the handlers faster or raise `.udp_session_queue(n)`"
        )
    );
    for expected in ["wait", "1", "2"] {
        assert_eq!(busy.recv_text().await, expected);
    }
    assert_eq!(busy.ask("after").await, "after");
    running.stop().await;
}

#[tokio::test]
async fn datagrams_left_by_a_session_a_panic_ended_are_counted_as_dropped() {
    let (events, mut log) = Events::new();
    let gate = Arc::new(Semaphore::new(0));
    let (opened, handling) = (Arc::clone(&gate), events.clone());
    let router = Router::new().on_message(move |conn: Connection, msg: String| {
        let (gate, handling) = (Arc::clone(&opened), handling.clone());
        async move {
            handling.push(format!("handling {msg}"));
            match msg.as_str() {
                "wait" => drop(gate.acquire().await),
                "boom" => panic!("the handler panicked on purpose"),
                _ => {}
            }
            conn.send(msg).await
        }
    });
    let running = start(
        server()
            .router(observed(router, &events))
            .udp_session_queue(3),
    )
    .await;
    let peer = UdpClient::connect(running.addr).await;
    peer.send("wait").await;
    let id = log.next_starting("connect").await;
    let id = id.strip_prefix("connect ").unwrap().to_owned();
    assert_eq!(log.next_starting("handling").await, "handling wait");
    // Three fill the session's queue; the fourth is dropped, which shows
    // that the three are in.
    for datagram in ["boom", "left 1", "left 2", "overflow"] {
        peer.send(datagram).await;
    }
    let handle = running.handle.clone();
    eventually("the overflow dropped", || {
        handle.stats().datagrams_dropped == 1
    })
    .await;

    gate.add_permits(1);
    assert_eq!(peer.recv_text().await, "wait");
    assert_eq!(
        log.next_starting(&format!("disconnect {id}")).await,
        format!("disconnect {id} a handler panicked")
    );
    // The two behind the panic are never handled: dropped, and counted.
    eventually("two more drops", || handle.stats().datagrams_dropped == 3).await;
    // The peer's next datagram opens a new session.
    assert_eq!(peer.ask("back").await, "back");
    running.stop().await;
}

/// Handlers that finish at once run in the receive loop, the others go on
/// in their session's task (issue 19): either way a session's datagrams are
/// handled one at a time, in order, and each reply leaves in order, while
/// several peers send at once.
#[tokio::test]
async fn mixing_handlers_that_wait_and_that_finish_at_once_keeps_each_sessions_order() {
    const PEERS: usize = 4;
    const DATAGRAMS: usize = 60;
    /// A session's turn: how many datagrams it handled, whether one runs.
    #[derive(Default)]
    struct Turn {
        handled: usize,
        busy: bool,
    }
    let overlaps = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::clone(&overlaps);
    let router = Router::new().on_message(move |conn: Connection, msg: String| {
        let overlapped = Arc::clone(&overlapped);
        async move {
            if conn.with_state(|_: &mut Turn| ()).is_none() {
                conn.set_state(Turn::default());
            }
            let (nth, overlapping) = conn
                .with_state(|turn: &mut Turn| {
                    turn.handled += 1;
                    (turn.handled, std::mem::replace(&mut turn.busy, true))
                })
                .expect("the turn was set");
            if overlapping {
                overlapped.fetch_add(1, Ordering::SeqCst);
            }
            let number: usize = msg.parse().expect("a number");
            // Every third one waits (its handler goes on in the session's task).
            if number.is_multiple_of(3) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            conn.with_state(|turn: &mut Turn| turn.busy = false);
            conn.send(format!("{number} {nth}")).await
        }
    });
    let running = start(server().router(router).udp_session_queue(DATAGRAMS)).await;
    let mut peers = Vec::new();
    for _ in 0..PEERS {
        peers.push(UdpClient::connect(running.addr).await);
    }
    // The first datagram opens each session; then all at once.
    for peer in &peers {
        assert_eq!(peer.ask("0").await, "0 1");
    }
    for number in 1..DATAGRAMS {
        for peer in &peers {
            peer.send(number.to_string()).await;
        }
    }
    for peer in &peers {
        for number in 1..DATAGRAMS {
            // Handled in the order sent: the n-th datagram is the session's n-th.
            assert_eq!(peer.recv_text().await, format!("{number} {}", number + 1));
        }
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert_eq!(running.handle.stats().datagrams_dropped, 0);
    running.stop().await;
}

#[tokio::test]
async fn messages_kept_after_their_handler_keep_their_bytes() {
    // Datagrams are copied into a shared buffer the next ones reuse once no
    // message holds a part of it: kept ones (every fiftieth, so that some
    // buffers are reused and some held) must stay as they came while many
    // buffers' worth follow, from several peers at once.
    const PEERS: usize = 3;
    const DATAGRAMS: usize = 200;
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keeping = Arc::clone(&kept);
    let router = Router::new().on_message(move |conn: Connection, msg: Message| {
        let keeping = Arc::clone(&keeping);
        async move {
            if msg.ends_with(b"00") || msg.ends_with(b"50") {
                keeping.lock().unwrap().push(msg);
            }
            conn.send("ok").await
        }
    });
    let running = start(server().router(router)).await;
    let mut peers = Vec::new();
    for _ in 0..PEERS {
        peers.push(UdpClient::connect(running.addr).await);
    }
    // 100 bytes each: a 4 KiB buffer holds about 40.
    let datagram = |peer: usize, number: usize| format!("{peer:>50}{number:050}");
    for number in 0..DATAGRAMS {
        for (index, peer) in peers.iter().enumerate() {
            assert_eq!(peer.ask(&datagram(index, number)).await, "ok");
        }
    }
    let mut kept: Vec<String> = kept
        .lock()
        .unwrap()
        .iter()
        .map(|msg| msg.to_str().expect("text").to_owned())
        .collect();
    kept.sort();
    let mut sent: Vec<String> = (0..DATAGRAMS)
        .filter(|number| number % 50 == 0)
        .flat_map(|number| (0..PEERS).map(move |peer| datagram(peer, number)))
        .collect();
    sent.sort();
    assert_eq!(kept, sent);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ending_while_a_handler_runs_in_place_does_not_hold_up_its_worker() {
    // The receive loop runs a datagram's handler in place when it finishes
    // without waiting; this one blocks its worker's thread until told to go
    // on (a handler should not, but nothing stops one). Another session,
    // closed meanwhile, leaves the sessions table from the other worker: if
    // that waited for the handler, both workers would be stuck, and the
    // handler would only go on at its own timeout, answering "gave up".
    let (events, mut log) = Events::new();
    let (go_on, told) = std::sync::mpsc::channel::<()>();
    let told = Arc::new(std::sync::Mutex::new(told));
    let blocking = events.clone();
    let router = Router::new().on_message(move |conn: Connection, msg: String| {
        let (told, blocking) = (Arc::clone(&told), blocking.clone());
        async move {
            if msg != "block" {
                return conn.send(msg).await;
            }
            blocking.push("blocking");
            // Shorter than the client's wait for its reply.
            let waited = told.lock().unwrap().recv_timeout(Duration::from_secs(5));
            conn.send(if waited.is_ok() { "went on" } else { "gave up" })
                .await
        }
    });
    let running = start(server().router(observed(router, &events))).await;
    let blocker = UdpClient::connect(running.addr).await;
    let leaving = UdpClient::connect(running.addr).await;
    assert_eq!(blocker.ask("hello").await, "hello");
    assert_eq!(leaving.ask("hello").await, "hello");
    let session = running
        .connections
        .list()
        .into_iter()
        .find(|conn| conn.peer_addr() == leaving.addr())
        .expect("the leaving peer's session is listed");

    blocker.send("block").await;
    assert_eq!(log.next_starting("blocking").await, "blocking");
    session.close();
    let disconnect = log.next_starting("disconnect").await;
    assert!(
        disconnect.starts_with(&format!("disconnect {} ", session.id())),
        "{disconnect}"
    );
    // A task needs a free worker: the one that ended the session (this
    // test's own code runs on a thread of its own, not a worker).
    within("a free worker", tokio::spawn(async {}))
        .await
        .expect("an empty task");
    go_on.send(()).expect("the handler waits");
    assert_eq!(blocker.recv_text().await, "went on");
    assert_eq!(blocker.ask("after").await, "after");
    running.stop().await;
}

#[tokio::test]
async fn shutdown_handles_what_was_received_and_sends_every_reply() {
    let (events, mut log) = Events::new();
    let gate = Arc::new(Semaphore::new(0));
    let running = start(server().router(observed(gated(&gate, &events), &events))).await;
    let slow = UdpClient::connect(running.addr).await;
    for datagram in ["wait", "queued 1", "queued 2"] {
        slow.send(datagram).await;
    }
    assert_eq!(log.next_starting("handling").await, "handling wait");
    // The receive loop takes datagrams in order: once a later peer is
    // handled, the slow peer's queued datagrams are in its session's queue.
    let marker = UdpClient::connect(running.addr).await;
    assert_eq!(marker.ask("marker").await, "marker");

    running.handle.shutdown();
    gate.add_permits(1);
    for expected in ["wait", "queued 1", "queued 2"] {
        assert_eq!(slow.recv_text().await, expected);
    }
    let report = within("shutdown", running.task).await.unwrap().unwrap();
    assert_eq!(report.connections_closed, 2);
    assert_eq!(report.connections_aborted, 0);
    let mut disconnects = Vec::new();
    for _ in 0..2 {
        let event = log.next_starting("disconnect").await;
        disconnects.push(
            event
                .split_once(' ')
                .unwrap()
                .1
                .split_once(' ')
                .unwrap()
                .1
                .to_owned(),
        );
    }
    assert_eq!(disconnects, ["server shutdown", "server shutdown"]);
}

/// What a UDP server's kernel receive buffer holds, the bytes counted as
/// Linux counts them (each datagram costs its payload plus bookkeeping:
/// 4 KiB is a generous bound for the 512-byte datagrams sent here).
#[cfg(target_os = "linux")]
fn datagrams_the_default_buffer_holds() -> usize {
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("rmem_max")
        .trim()
        .parse()
        .expect("a number");
    // The server asks for 4 MiB; Linux grants at most rmem_max and then
    // lets twice the granted size in.
    2 * rmem_max.min(4 * 1024 * 1024) / 4096
}

/// Sends `burst` datagrams of 512 bytes while the server cannot read (this
/// test's single-threaded runtime runs the server only when the test
/// awaits), then numbered markers until one comes back, and returns how
/// many of the burst the server's handlers got.
#[cfg(target_os = "linux")]
async fn burst_received(builder: ServerBuilder<Udp>, burst: usize) -> usize {
    let counted = Arc::new(AtomicUsize::new(0));
    let router = Router::new().on_message({
        let counted = Arc::clone(&counted);
        move |conn: Connection, msg: Message| {
            let counted = Arc::clone(&counted);
            async move {
                if msg.starts_with(b"marker") {
                    conn.send(msg).await
                } else {
                    counted.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            }
        }
    });
    // The session's own queue is not what is tested: room for the whole burst.
    let running = start(builder.udp_session_queue(burst + 16).router(router)).await;
    let blocking = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    blocking.connect(running.addr).unwrap();
    let datagram = [b'x'; 512];
    for _ in 0..burst {
        blocking.send(&datagram).unwrap();
    }
    // A marker is handled after every datagram the same peer sent before it.
    let blocking = tokio::net::UdpSocket::from_std({
        blocking.set_nonblocking(true).unwrap();
        blocking
    })
    .unwrap();
    let mut reply = [0; 64];
    for marker in 0..50 {
        let text = format!("marker {marker}");
        blocking.send(text.as_bytes()).await.unwrap();
        let answered = tokio::time::timeout(Duration::from_millis(200), blocking.recv(&mut reply));
        if let Ok(Ok(length)) = answered.await {
            assert!(reply[..length].starts_with(b"marker"));
            running.stop().await;
            return counted.load(Ordering::Relaxed);
        }
    }
    panic!("no marker came back");
}

/// The receive buffer a UDP server asks for holds a burst while the
/// receive loop is busy; a small one, asked for, drops most of it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_burst_waits_in_the_receive_buffer_the_server_asked_for() {
    let burst = datagrams_the_default_buffer_holds();
    assert_eq!(burst_received(server(), burst).await, burst);
    let small = burst_received(server().socket_receive_buffer(4096), burst).await;
    assert!(
        small < burst / 2,
        "{small} of {burst} got through a 4 KiB buffer"
    );
}
