//! The `alarm_receiver` example commits every event to its SQLite file
//! before the ACK (issue 15, part 4), checked by opening that file from the
//! test: what is stored, retransmissions stored once, nothing lost to a
//! SIGKILL right after an ACK, no ACK when the database refuses, and many
//! panels at once sharing commits.

mod support;

use std::collections::HashMap;
use std::path::Path;

use rusqlite::Connection;
use support::dc09::{Peer, assert_nak, frame, now, receiver_command, timestamp};
use support::example::{ExampleServer, example_path, send_signal};
use support::within;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const SURGARD_ACK: u8 = 0x06;

async fn start(db: &Path, args: &[&str]) -> ExampleServer {
    ExampleServer::start_command(&mut receiver_command(db, args), "alarm_receiver").await
}

/// A connection of the test's own to the receiver's file, as an operator's
/// tool would open it while the receiver runs.
fn open(db: &Path) -> Connection {
    Connection::open(db).expect("the receiver's database opens")
}

fn unix_millis() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// How many rows hold each (account, line, sequence).
fn stored_counts(db: &Path) -> HashMap<(String, String, String), i64> {
    let connection = open(db);
    let mut query = connection
        .prepare("SELECT account, line, sequence, COUNT(*) FROM events GROUP BY 1, 2, 3")
        .unwrap();
    query
        .query_map([], |row| {
            Ok(((row.get(0)?, row.get(1)?, row.get(2)?), row.get(3)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn an_acked_event_is_in_the_database_with_what_the_receiver_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let server = start(&db, &["--accounts", "1234"]).await;
    let mut panel = Peer::connect(server.addr).await;
    let before = unix_millis();
    let sent_at = now();
    let body = format!(
        "\"SIA-DCS\"0007R12L3#1234[#1234|Nri1/BA01][Ibig \"fire\"][X52.21]{}",
        timestamp(sent_at)
    );
    assert_eq!(panel.ask(&body).await, "\"ACK\"0007R12L3#1234[]");
    // A link test is supervision, not an event: ACKed, not stored.
    assert_eq!(
        panel.ask("\"NULL\"0008R12L3#1234[]").await,
        "\"ACK\"0008R12L3#1234[]"
    );
    let mut link = Peer::connect(server.addr).await;
    link.send(b"5011 181234E13001015\x14").await;
    assert_eq!(link.byte().await, SURGARD_ACK);
    // Heartbeats supervise the automation link: not stored either.
    link.send(b"1011           @    \x14").await;
    assert_eq!(link.byte().await, SURGARD_ACK);
    let after = unix_millis();

    // Read while the receiver runs: what was ACKed is committed.
    let connection = open(&db);
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        String,
        Option<String>,
        Option<i64>,
        i64,
        String,
    );
    let rows: Vec<Row> = connection
        .prepare(
            "SELECT protocol, token, account, receiver, line, sequence, data, extended, \
             panel_time, received_at, peer FROM events ORDER BY id",
        )
        .unwrap()
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
                row.get(8)?,
                row.get(9)?,
                row.get(10)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let dc09 = &rows[0];
    assert_eq!(
        (
            dc09.0.as_str(),
            dc09.1.as_str(),
            dc09.2.as_deref(),
            dc09.3.as_deref(),
            dc09.4.as_str(),
            dc09.5.as_deref(),
            dc09.6.as_str(),
            dc09.7.as_deref(),
            dc09.8,
            dc09.10.clone(),
        ),
        (
            "dc09",
            "SIA-DCS",
            Some("1234"),
            Some("12"),
            "3",
            Some("0007"),
            "#1234|Nri1/BA01",
            Some(r#"["Ibig \"fire\"","X52.21"]"#),
            Some(sent_at),
            panel.addr().to_string(),
        )
    );
    assert!((before..=after).contains(&dc09.9), "received_at {}", dc09.9);
    let surgard = &rows[1];
    assert_eq!(
        (
            surgard.0.as_str(),
            surgard.1.as_str(),
            surgard.2.as_deref(),
            surgard.3.as_deref(),
            surgard.4.as_str(),
            surgard.5.as_deref(),
            surgard.6.as_str(),
            surgard.7.as_deref(),
            surgard.8,
        ),
        (
            "surgard",
            "contact-id",
            Some("1234"),
            Some("01"),
            "1",
            None,
            "5011 181234E13001015",
            None,
            None,
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn a_retransmission_is_acked_again_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let mut server = start(&db, &["--accounts", "1234"]).await;
    let mut panel = Peer::connect(server.addr).await;
    let event = "\"SIA-DCS\"0002R1L0#1234[#1234|Nri1/BA01]";
    let ack = "\"ACK\"0002R1L0#1234[]";
    assert_eq!(
        panel.ask(&format!("{event}{}", timestamp(now()))).await,
        ack
    );
    // The ACK was lost: the panel sends the same sequence again, with a
    // fresh timestamp, on the same connection and then on a new one.
    assert_eq!(
        panel.ask(&format!("{event}{}", timestamp(now()))).await,
        ack
    );
    let mut again = Peer::connect(server.addr).await;
    assert_eq!(again.ask(event).await, ack);
    // A panel that restarted counts from 0001 again: the same sequence with
    // other data is another event.
    let after_restart = "\"SIA-DCS\"0002R1L0#1234[#1234|Nri1/FA02]";
    assert_eq!(again.ask(after_restart).await, ack);
    // The same event from another line of the same account is another event.
    assert_eq!(
        again.ask("\"SIA-DCS\"0002R1L5#1234[#1234|Nri1/BA01]").await,
        "\"ACK\"0002R1L5#1234[]"
    );

    // Each stored event was printed once, in order: the repeats were not.
    let printed: Vec<String> = [
        support::dc09::printed(&mut server).await,
        support::dc09::printed(&mut server).await,
        support::dc09::printed(&mut server).await,
    ]
    .into();
    for (line, expected) in printed.iter().zip([
        "sequence=0002 receiver=1 line=0 data=#1234|Nri1/BA01 ",
        "sequence=0002 receiver=1 line=0 data=#1234|Nri1/FA02 ",
        "sequence=0002 receiver=1 line=5 data=#1234|Nri1/BA01 ",
    ]) {
        assert!(line.contains(expected), "{line:?} lacks {expected:?}");
    }
    let connection = open(&db);
    let data: Vec<(String, String)> = connection
        .prepare("SELECT line, data FROM events ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        data,
        [
            ("0".to_owned(), "#1234|Nri1/BA01".to_owned()),
            ("0".to_owned(), "#1234|Nri1/FA02".to_owned()),
            ("5".to_owned(), "#1234|Nri1/BA01".to_owned()),
        ]
    );
    server.stop().await;
}

/// One panel of the crash test: sends events one after the other (at most
/// `count`), each waiting for its reply, until the receiver disappears.
/// Reports each ACK on `acked` and returns the event in flight then.
async fn send_until_killed(
    addr: std::net::SocketAddr,
    account: String,
    first_sequence: u32,
    count: u32,
    acked: mpsc::UnboundedSender<(String, String)>,
) -> Option<String> {
    let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    for sequence in first_sequence..first_sequence + count {
        let sequence = format!("{sequence:04}");
        let body = format!("\"SIA-DCS\"{sequence}R1L0#{account}[#{account}|Nri1/BA{sequence}]");
        if writer.write_all(&frame(&body)).await.is_err() {
            return Some(body);
        }
        let mut reply = Vec::new();
        match within("a reply or the end", reader.read_until(b'\r', &mut reply)).await {
            Ok(read) if read > 0 && reply.ends_with(b"\r") => {
                let reply = support::dc09::open(&reply);
                assert_eq!(reply, format!("\"ACK\"{sequence}R1L0#{account}[]"));
                let _ = acked.send((account.clone(), sequence));
            }
            // EOF, a torn reply or a reset: the receiver is gone.
            _ => return Some(body),
        }
    }
    None
}

#[tokio::test]
async fn a_sigkill_right_after_an_ack_loses_nothing_and_stores_nothing_twice() {
    const ACCOUNTS: [&str; 4] = ["1001", "1002", "1003", "1004"];
    // The receiver is killed once this many ACKs were read, in each round.
    const KILL_AFTER: [usize; 3] = [1, 7, 40];
    const PER_ROUND: u32 = 100;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let accounts = ACCOUNTS.join(",");
    let mut everything_acked = Vec::new();
    for (round, kill_after) in KILL_AFTER.into_iter().enumerate() {
        let mut server = start(&db, &["--accounts", &accounts]).await;
        let (acked, mut acks) = mpsc::unbounded_channel();
        let mut panels = JoinSet::new();
        let first_sequence = 1 + PER_ROUND * u32::try_from(round).unwrap();
        for account in ACCOUNTS {
            panels.spawn(send_until_killed(
                server.addr,
                account.to_owned(),
                first_sequence,
                PER_ROUND,
                acked.clone(),
            ));
        }
        drop(acked);
        for _ in 0..kill_after {
            let ack = within("an ACK", acks.recv()).await.expect("an ACK");
            everything_acked.push(ack);
        }
        send_signal(&server.child, libc::SIGKILL);
        within("the receiver to die", server.child.wait())
            .await
            .unwrap();
        let mut in_flight = Vec::new();
        while let Some(pending) = within("the panels to notice", panels.join_next()).await {
            in_flight.extend(pending.expect("a panel task"));
        }
        while let Ok(ack) = acks.try_recv() {
            everything_acked.push(ack);
        }

        // A panel whose event got no reply sends it again to the restarted
        // receiver: ACKed, and stored once even if its commit had made it.
        let server = start(&db, &["--accounts", &accounts]).await;
        for body in in_flight {
            let mut panel = Peer::connect(server.addr).await;
            let reply = panel.ask(&body).await;
            assert!(reply.starts_with("\"ACK\""), "{body}: {reply}");
            let (sequence, account) = (&body[9..13], &body[body.find('#').unwrap() + 1..][..4]);
            everything_acked.push((account.to_owned(), sequence.to_owned()));
        }
        server.stop().await;
    }

    let stored = stored_counts(&db);
    for (account, sequence) in &everything_acked {
        let key = (account.clone(), "0".to_owned(), sequence.clone());
        assert_eq!(
            stored.get(&key),
            Some(&1),
            "ACKed event {account}/{sequence} stored once"
        );
    }
    assert_eq!(
        stored.len(),
        everything_acked.len(),
        "only ACKed events are stored"
    );
}

#[tokio::test]
async fn a_database_that_cannot_be_written_gives_no_ack_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let (server, mut log) = ExampleServer::start_logged(
        &mut receiver_command(&db, &["--accounts", "1234"]),
        "alarm_receiver",
    )
    .await;
    let mut panel = Peer::connect(server.addr).await;
    assert_eq!(
        panel.ask("\"SIA-DCS\"0001L0#1234[#1234|Nri1/BA01]").await,
        "\"ACK\"0001L0#1234[]"
    );

    // Another program holds the write lock for longer than the receiver
    // waits for it.
    let holder = open(&db);
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let event = "\"SIA-DCS\"0002L0#1234[#1234|Nri1/BA02]";
    assert_nak(&panel.ask(event).await, "an event the database refused");
    within("the reason in the log", async {
        loop {
            let line = log.recv().await.expect("the receiver's log");
            if line.contains("NAK: event not stored") {
                assert!(line.contains("database is locked"), "{line}");
                break;
            }
        }
    })
    .await;
    holder.execute_batch("ROLLBACK").unwrap();
    // The panel sends it again, as a NAK asks: now it is stored and ACKed.
    assert_eq!(panel.ask(event).await, "\"ACK\"0002L0#1234[]");
    let stored = stored_counts(&db);
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored.values().all(|&count| count == 1), "{stored:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_database_stops_the_receiver_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    std::fs::write(
        &db,
        b"these are not the pages of a SQLite database".repeat(100),
    )
    .unwrap();
    let output = tokio::process::Command::new(example_path("alarm_receiver"))
        .args(["127.0.0.1:0", "--accounts", "1234", "--db"])
        .arg(&db)
        .output();
    let output = within("the receiver to refuse", output).await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("listening on"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot use the database") && stderr.contains("not a database"),
        "{stderr}"
    );
}

#[tokio::test]
async fn many_panels_at_once_each_acked_event_is_stored_exactly_once() {
    const PANELS: u32 = 40;
    const EVENTS: u32 = 25;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let mut server = start(&db, &["--accounts", "1234"]).await;
    let mut panels = JoinSet::new();
    for line in 1..=PANELS {
        let addr = server.addr;
        panels.spawn(async move {
            let mut panel = Peer::connect(addr).await;
            for sequence in 1..=EVENTS {
                let header = format!("{sequence:04}R1L{line:X}#1234");
                let reply = panel
                    .ask(&format!(
                        "\"SIA-DCS\"{header}[#1234|Nri{line}/BA{sequence}]"
                    ))
                    .await;
                assert_eq!(reply, format!("\"ACK\"{header}[]"));
            }
        });
    }
    // Read what the receiver prints as it comes: a full pipe would stall it.
    let mut printed_events = 0;
    while printed_events < PANELS * EVENTS {
        let line = support::dc09::printed(&mut server).await;
        assert!(line.starts_with("protocol=dc09 token=SIA-DCS"), "{line}");
        printed_events += 1;
    }
    while let Some(panel) = within("every panel", panels.join_next()).await {
        panel.expect("a panel got every ACK");
    }
    let stored = stored_counts(&db);
    assert_eq!(stored.len(), usize::try_from(PANELS * EVENTS).unwrap());
    for line in 1..=PANELS {
        for sequence in 1..=EVENTS {
            let key = (
                "1234".to_owned(),
                format!("{line:X}"),
                format!("{sequence:04}"),
            );
            assert_eq!(stored.get(&key), Some(&1), "{key:?}");
        }
    }
    server.stop().await;
}
