//! Line supervision in the `alarm_receiver` example (issue 15, part 5):
//! `--supervise ACCOUNT=SECONDS` prints and stores a communication failure
//! when an account stays silent for its interval, and a restore when it is
//! heard from again; a failure survives a restart. Intervals are short, and
//! every wait is for a printed line or a row, never for a time.

mod support;

use std::path::Path;

use rusqlite::Connection;
use support::dc09::{Peer, printed, receiver_command};
use support::example::{ExampleServer, example_path};
use support::within;

const FAILURE: &str = "supervision=communication-failure account=1234 interval=1s";
const RESTORED: &str = "supervision=restored account=1234";

async fn start(db: &Path) -> ExampleServer {
    ExampleServer::start_command(
        &mut receiver_command(db, &["--accounts", "1234,ABC", "--supervise", "1234=1"]),
        "alarm_receiver",
    )
    .await
}

/// The supervision rows of account 1234, oldest first.
fn supervision_rows(db: &Path) -> Vec<(String, i64)> {
    let connection = Connection::open(db).unwrap();
    connection
        .prepare("SELECT state, interval_s FROM supervision WHERE account = '1234' ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Account 1234's link test is ACKed and printed, and restores the line.
async fn link_test_restores(panel: &mut Peer, server: &mut ExampleServer) {
    assert_eq!(
        panel.ask("\"NULL\"0001R1L0#1234[]").await,
        "\"ACK\"0001R1L0#1234[]"
    );
    let link_test = printed(server).await;
    assert!(link_test.starts_with("protocol=dc09 token=NULL account=1234 "));
    assert_eq!(printed(server).await, RESTORED);
}

#[tokio::test]
async fn a_silent_account_fails_and_is_restored_by_a_link_test_or_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let mut server = start(&db).await;
    // Nothing arrives: the failure comes after the interval.
    assert_eq!(printed(&mut server).await, FAILURE);

    let mut panel = Peer::connect(server.addr).await;
    link_test_restores(&mut panel, &mut server).await;

    // Silent again: failed again, and this time an event restores it.
    assert_eq!(printed(&mut server).await, FAILURE);
    assert_eq!(
        panel.ask("\"SIA-DCS\"0002R1L0#1234[#1234|Nri1/BA01]").await,
        "\"ACK\"0002R1L0#1234[]"
    );
    let event = printed(&mut server).await;
    assert!(event.starts_with("protocol=dc09 token=SIA-DCS account=1234 "));
    assert_eq!(printed(&mut server).await, RESTORED);

    let rows = supervision_rows(&db);
    let expected = ["communication-failure", "restored"].repeat(2);
    assert!(rows.len() >= 4, "{rows:?}");
    for ((state, interval), expected) in rows.iter().zip(expected) {
        assert_eq!((state.as_str(), *interval), (expected, 1));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_failed_account_stays_failed_across_a_restart_until_it_reports() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let mut server = start(&db).await;
    assert_eq!(printed(&mut server).await, FAILURE);
    server.stop().await;

    let mut server = start(&db).await;
    let mut panel = Peer::connect(server.addr).await;
    // Restored at once: the receiver knew from its database that the line
    // was down. Had it forgotten, the next line would be a new failure.
    link_test_restores(&mut panel, &mut server).await;
    let rows = supervision_rows(&db);
    assert_eq!(
        rows[..2],
        [
            ("communication-failure".to_owned(), 1),
            ("restored".to_owned(), 1)
        ],
        "no second failure before the restore"
    );
    server.stop().await;
}

#[tokio::test]
async fn only_a_served_account_can_be_supervised() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(example_path("alarm_receiver"))
        .args([
            "127.0.0.1:0",
            "--accounts",
            "1234",
            "--supervise",
            "9999=60",
        ])
        .arg("--db")
        .arg(dir.path().join("events.db"))
        .output();
    let output = within("the receiver to refuse", output).await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--supervise 9999"), "{stderr}");
}
