//! What the log says. A peer flooding a server with bad frames does not
//! flood it: of each kind of error, the first ten a second are logged, then
//! one line counts the rest; every error is still counted in the stats
//! (driven through the in-memory harness, in paused time, with the log
//! captured). The routing table at start-up says which typed handlers
//! replace a default one.

mod support;

use std::time::Duration;

use flexi_socket::testing::TestServer;
use flexi_socket::{Connection, FlexiSocket, Framing, Message, Router};
use support::log::Captured;

/// An echo whose lines may be 16 bytes at most: a longer one is a
/// `frame_too_large` error, logged within the budget.
fn echo_with_short_lines() -> TestServer {
    let echo = Router::new()
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await });
    TestServer::start(
        FlexiSocket::server("in memory")
            .router(echo)
            .framing(Framing::lines().max_length(16)),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_oversize_frames_is_logged_within_a_budget() {
    let captured = Captured::default();
    // This test's runtime is the current thread: the server's tasks log here.
    let _logging = captured.install();

    let server = echo_with_short_lines();
    let mut peer = server.connect().await;
    let oversize = format!("{}\n", "x".repeat(40));
    for _ in 0..200 {
        peer.write(&oversize).await.unwrap();
    }
    peer.send("ok").await.unwrap();
    assert_eq!(peer.receive_str().await.unwrap(), "ok");
    assert_eq!(
        server.stats().errors.frame_too_large,
        200,
        "every one counted"
    );
    assert_eq!(captured.count("connection error"), 10, "ten logged");

    // A second later the next one is logged, after a line counting the rest.
    tokio::time::sleep(Duration::from_secs(1)).await;
    peer.write(&oversize).await.unwrap();
    peer.send("ok again").await.unwrap();
    assert_eq!(peer.receive_str().await.unwrap(), "ok again");
    assert_eq!(captured.count("190 more connection errors"), 1);
    // Eleven error lines, and the counting line ("... connection errors ...").
    assert_eq!(captured.count("connection error"), 11 + 1);
    server.shutdown().await;
}

/// The kind's budget is the server's: one connection's flood spends it.
/// Another connection's first error of that kind is still logged, and so
/// are the first errors of many connections, up to a second budget: the
/// log stays bounded whatever the number of connections (issue 18).
#[tokio::test(start_paused = true)]
async fn a_connections_first_error_is_logged_through_anothers_flood() {
    let captured = Captured::default();
    let _logging = captured.install();

    let server = echo_with_short_lines();
    let oversize = format!("{}\n", "x".repeat(40));
    let mut flooder = server.connect_from("10.0.0.1:4000".parse().unwrap()).await;
    for _ in 0..200 {
        flooder.write(&oversize).await.unwrap();
    }
    flooder.send("ok").await.unwrap();
    assert_eq!(flooder.receive_str().await.unwrap(), "ok");
    assert_eq!(captured.count("connection error"), 10, "the kind's budget");

    let mut quiet = server.connect_from("10.0.0.2:4000".parse().unwrap()).await;
    quiet.write(&oversize).await.unwrap();
    quiet.send("ok").await.unwrap();
    assert_eq!(quiet.receive_str().await.unwrap(), "ok");
    assert_eq!(
        captured.count("peer=10.0.0.2:4000"),
        1,
        "the quiet connection's first oversize frame is logged"
    );
    // Its second one is not: the kind's budget is spent.
    quiet.write(&oversize).await.unwrap();
    quiet.send("ok").await.unwrap();
    assert_eq!(quiet.receive_str().await.unwrap(), "ok");
    assert_eq!(captured.count("peer=10.0.0.2:4000"), 1);

    // Many connections' first errors in the same second: bounded all the same.
    let before = captured.text().len();
    for n in 0..200u16 {
        let mut peer = server
            .connect_from(format!("10.0.1.{}:{}", n % 250, 5000 + n).parse().unwrap())
            .await;
        peer.write(&oversize).await.unwrap();
        peer.send("ok").await.unwrap();
        assert_eq!(peer.receive_str().await.unwrap(), "ok");
    }
    let lines = captured.count("connection error");
    assert_eq!(
        lines,
        10 + 20,
        "the kind's ten, then twenty first errors a second beyond it"
    );
    assert_eq!(server.stats().errors.frame_too_large, 200 + 2 + 200);
    let logged = captured.text().len() - before;
    eprintln!("200 connections' first errors after a flood: {logged} bytes of log");
    assert!(logged < 20 * 400, "{logged} bytes of log");
    server.shutdown().await;
}

/// The alarm receiver example answers each of a flood of 3-byte garbage
/// frames with a NAK, and logs its NAK lines within its rate: ten a second
/// and a line counting the rest, not one line per frame (issue 18: 40x
/// amplification of hostile input into the log).
#[tokio::test]
async fn the_alarm_receivers_nak_lines_are_logged_within_a_rate() {
    use std::process::Stdio;

    use support::example::example_path;
    use support::within;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    const FRAMES: usize = 2_000;
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let mut receiver = tokio::process::Command::new(example_path("alarm_receiver"))
        .args(["127.0.0.1:0", "--accounts", "1234", "--db"])
        .arg(scratch.path().join("alarm-events.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the receiver starts");
    let mut stdout = BufReader::new(receiver.stdout.take().unwrap());
    // Drained as it comes, so the receiver never waits on a full pipe.
    let mut stderr = receiver.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut log = Vec::new();
        let _ = stderr.read_to_end(&mut log).await;
        String::from_utf8_lossy(&log).into_owned()
    });
    let mut first = String::new();
    within("listening on", stdout.read_line(&mut first))
        .await
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();

    let started = std::time::Instant::now();
    let mut panel = within("connect", tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    let garbage = b"\nX\r".repeat(FRAMES);
    let (mut reader, mut writer) = panel.split();
    let (written, replies) = tokio::join!(writer.write_all(&garbage), async {
        let mut replies = 0;
        let mut chunk = [0; 4096];
        while replies < FRAMES {
            let read = within("a NAK", reader.read(&mut chunk)).await.unwrap();
            assert!(read > 0, "the receiver closed after {replies} replies");
            replies += chunk[..read].iter().filter(|&&b| b == b'\r').count();
        }
        replies
    });
    written.unwrap();
    assert_eq!(replies, FRAMES, "every garbage frame is answered");
    let seconds = started.elapsed().as_secs() as usize + 1;
    receiver.start_kill().expect("kill by PID");
    within("the receiver to exit", receiver.wait())
        .await
        .unwrap();
    let log = within("the receiver's log", log).await.unwrap();

    let nak_lines = log.matches("NAK: ").count();
    assert!(nak_lines >= 1, "NAKs are logged: {log}");
    assert!(
        nak_lines <= 10 * seconds,
        "{nak_lines} NAK lines in {seconds} s for {FRAMES} frames"
    );
    eprintln!(
        "{FRAMES} garbage frames ({} bytes) in {seconds} s: {} bytes of log, {nak_lines} NAK lines",
        garbage.len(),
        log.len()
    );
}

/// The routing table logged at start-up says which typed handler stands in
/// for a default one: for its client type it runs instead, not after it.
#[tokio::test]
async fn the_routing_table_says_which_typed_handler_replaces_a_default() {
    let captured = Captured::default();
    let _logging = captured.install();

    let router = Router::new()
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await })
        .after_receive(|_conn: Connection, msg: Message| async move { msg })
        .after_receive_for("001", |_conn: Connection, msg: Message| async move { msg })
        .on_message_for("002", |conn: Connection, msg: Message| async move {
            conn.send(msg).await
        });
    let server = FlexiSocket::server("127.0.0.1:0")
        .router(router)
        .classifier::<support::servers::Panel>()
        .bind()
        .await
        .unwrap();
    drop(server);
    let log = captured.text();
    let route = |client_type: &str, event: &str| {
        log.lines()
            .find(|line| {
                line.contains(&format!("client_type={client_type}"))
                    && line.contains(&format!("event={event}"))
            })
            .unwrap_or_else(|| panic!("no {event} route for {client_type} in:\n{log}"))
            .to_owned()
    };
    assert!(route("001", "after_receive").contains("replaces=\"closure at"));
    assert!(route("002", "on_message").contains("replaces=\"closure at"));
    assert!(!route("(default)", "on_message").contains("replaces"));
}
