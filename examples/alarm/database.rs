//! The `alarm_receiver` example's SQLite file: its schema, created when
//! missing, and the blocking calls that store events and line supervision
//! records. Only the writer thread of `store.rs` makes them, so no tokio
//! worker ever waits on the disk.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a transaction that
//! `COMMIT` returned from has reached the disk (fsync of the WAL) and
//! survives a crash of the process or of the machine.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

/// How long after an event a frame with the same account, receiver, line,
/// sequence, token and data counts as its retransmission (ACKed again, not
/// stored again). Panels retry within tens of seconds, a few times; ten
/// minutes covers any retry schedule, path switch included, and stays far
/// below the time a panel needs to wrap its sequence at 9999 (2 h 46 min at
/// one event a second). A panel that restarts and reuses a sequence number
/// within the window for another event is stored: its data differs.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10 * 60);

/// How long a write waits for a lock another program holds (a backup, an
/// operator's `sqlite3`) before the events of that commit are refused (NAK):
/// the panel retries, and it must hear back before its own timeout.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Created at start when missing; documented in the README's receiver section.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL, -- our clock when the frame arrived, Unix milliseconds
    protocol    TEXT NOT NULL,    -- dc09 or surgard
    token       TEXT NOT NULL,    -- as on the wire (*SIA-DCS when encrypted); contact-id or sia on Sur-Gard lines
    account     TEXT,             -- as on the wire; NULL on a Sur-Gard SIA line
    receiver    TEXT,             -- NULL when the panel left R out
    line        TEXT NOT NULL,
    sequence    TEXT,             -- as on the wire; NULL on Sur-Gard lines, which have none
    data        TEXT NOT NULL,    -- between the data block's brackets, decrypted
    extended    TEXT,             -- JSON array of the extended-data blocks; NULL when none
    panel_time  INTEGER,          -- the frame's timestamp, Unix seconds; NULL when it had none
    peer        TEXT NOT NULL     -- the address the frame came from
);
CREATE INDEX IF NOT EXISTS events_by_sequence ON events (account, sequence, received_at);
CREATE TABLE IF NOT EXISTS supervision (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,  -- Unix milliseconds
    account    TEXT NOT NULL,     -- upper case
    state      TEXT NOT NULL CHECK (state IN ('communication-failure', 'restored')),
    interval_s INTEGER NOT NULL   -- the supervision interval then in force
);
CREATE INDEX IF NOT EXISTS supervision_by_account ON supervision (account, id);
";

/// One row of `events`.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub received_at: i64,
    pub protocol: &'static str,
    pub token: String,
    pub account: Option<String>,
    pub receiver: Option<String>,
    pub line: String,
    pub sequence: Option<String>,
    pub data: String,
    /// A JSON array, or `None` when the frame had no extended data.
    pub extended: Option<String>,
    pub panel_time: Option<i64>,
    pub peer: String,
}

/// A line's change of state, one row of `supervision`.
#[derive(Debug, Clone)]
pub struct SupervisionRecord {
    pub at: i64,
    pub account: String,
    pub state: LineState,
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineState {
    /// No event or link test within the interval.
    CommunicationFailure,
    /// Heard from again after a failure.
    Restored,
}

impl LineState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommunicationFailure => "communication-failure",
            Self::Restored => "restored",
        }
    }
}

/// Something to commit.
#[derive(Debug, Clone)]
pub enum Record {
    Event(EventRecord),
    Supervision(SupervisionRecord),
}

/// What a commit did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    /// A retransmission of an event stored within [`REPEAT_WINDOW`].
    Repeat,
}

/// The open database.
#[derive(Debug)]
pub struct Database {
    connection: Connection,
}

impl Database {
    /// Opens or creates the file at `path`, durable, with the schema.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // The pragma answers with the mode it set: a file on a system
        // without shared memory stays in another mode, which is still
        // durable with synchronous = FULL.
        let mode: String =
            connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!("the database runs in journal mode {mode}, not WAL");
        }
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(SCHEMA)?;
        Ok(Self { connection })
    }

    /// The accounts among `supervised` whose last supervision record is a
    /// communication failure: they stay failed until they report.
    pub fn failed_lines<'a>(
        &self,
        supervised: impl IntoIterator<Item = &'a str>,
    ) -> rusqlite::Result<HashSet<String>> {
        let mut last_state = self
            .connection
            .prepare("SELECT state FROM supervision WHERE account = ?1 ORDER BY id DESC LIMIT 1")?;
        let mut failed = HashSet::new();
        for account in supervised {
            let state: Option<String> = last_state
                .query_row([account], |row| row.get(0))
                .optional()?;
            if state.as_deref() == Some(LineState::CommunicationFailure.as_str()) {
                failed.insert(account.to_owned());
            }
        }
        Ok(failed)
    }

    /// Commits `records` in one transaction: all of them, or none when it
    /// fails.
    pub fn commit<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a Record>,
    ) -> rusqlite::Result<Vec<Outcome>> {
        // IMMEDIATE takes the write lock at BEGIN, so a lock held elsewhere
        // fails here (after the busy timeout), before any work.
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let outcomes = records
            .into_iter()
            .map(|record| match record {
                Record::Event(event) => insert_event(&transaction, event),
                Record::Supervision(change) => insert_supervision(&transaction, change),
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        transaction.commit()?;
        Ok(outcomes)
    }
}

/// Inserts `event` unless it repeats one stored within the window. The
/// lookup runs in the same transaction, so two copies in one batch are
/// stored once too.
fn insert_event(transaction: &Transaction<'_>, event: &EventRecord) -> rusqlite::Result<Outcome> {
    let since = event.received_at - millis(REPEAT_WINDOW);
    let repeat = transaction
        .prepare_cached(
            "SELECT 1 FROM events WHERE account IS ?1 AND sequence = ?2 AND receiver IS ?3 \
             AND line = ?4 AND token = ?5 AND data = ?6 AND received_at >= ?7 LIMIT 1",
        )?
        .exists(params![
            event.account,
            event.sequence,
            event.receiver,
            event.line,
            event.token,
            event.data,
            since
        ])?;
    if repeat {
        return Ok(Outcome::Repeat);
    }
    transaction
        .prepare_cached(
            "INSERT INTO events (received_at, protocol, token, account, receiver, line, \
             sequence, data, extended, panel_time, peer) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            event.received_at,
            event.protocol,
            event.token,
            event.account,
            event.receiver,
            event.line,
            event.sequence,
            event.data,
            event.extended,
            event.panel_time,
            event.peer
        ])?;
    Ok(Outcome::Stored)
}

fn insert_supervision(
    transaction: &Transaction<'_>,
    change: &SupervisionRecord,
) -> rusqlite::Result<Outcome> {
    transaction
        .prepare_cached(
            "INSERT INTO supervision (at, account, state, interval_s) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            change.at,
            change.account,
            change.state.as_str(),
            i64::try_from(change.interval.as_secs()).unwrap_or(i64::MAX)
        ])?;
    Ok(Outcome::Stored)
}

/// Now on our clock, in Unix milliseconds.
pub fn now_millis() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    millis(since)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).expect("milliseconds fit in i64")
}
