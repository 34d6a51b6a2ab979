//! Line supervision for the `alarm_receiver` example (`--supervise
//! ACCOUNT=SECONDS`): an account that sends neither an event nor a link test
//! within its interval gets a `communication-failure` record, printed and
//! stored, and a `restored` record when it is heard from again.
//!
//! Across a restart of the receiver: an account whose last stored record is
//! a failure stays failed until it reports. For every other account the
//! interval counts from the restart, not from its last report: while the
//! receiver was down the panel could not get through, and it is owed a whole
//! interval to do so once we listen again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use crate::database::{LineState, Record, SupervisionRecord, now_millis};
use crate::event::Event;
use crate::store::Store;

/// One supervised account.
#[derive(Debug)]
struct Line {
    interval: Duration,
    /// When it fails unless heard from.
    deadline: Instant,
    failed: bool,
}

/// The supervised accounts, upper case.
#[derive(Debug)]
pub struct Supervisor {
    /// An async lock: a change of state is stored and printed while it is
    /// held, so an account's failure and restore records never swap places.
    lines: Mutex<HashMap<String, Line>>,
    /// Woken when a failed line comes back: it has a deadline again.
    restored: Notify,
    store: Store,
    json: bool,
}

impl Supervisor {
    /// Supervises each account at its interval; those in `failed` start
    /// failed (their state before a restart).
    pub fn new(
        intervals: &[(String, Duration)],
        failed: &HashSet<String>,
        store: Store,
        json: bool,
    ) -> Arc<Self> {
        let now = Instant::now();
        let lines = intervals
            .iter()
            .map(|(account, interval)| {
                let line = Line {
                    interval: *interval,
                    deadline: now + *interval,
                    failed: failed.contains(account),
                };
                (account.clone(), line)
            })
            .collect();
        Arc::new(Self {
            lines: Mutex::new(lines),
            restored: Notify::new(),
            store,
            json,
        })
    }

    /// `account` sent an event or a link test that we accepted.
    pub async fn heard(&self, account: &str) {
        let account = account.to_ascii_uppercase();
        let mut lines = self.lines.lock().await;
        let Some(line) = lines.get_mut(&account) else {
            return;
        };
        line.deadline = Instant::now() + line.interval;
        if line.failed {
            line.failed = false;
            let interval = line.interval;
            self.record(&account, LineState::Restored, interval).await;
            self.restored.notify_one();
        }
    }

    /// Runs for as long as the receiver does: fails each line at its deadline.
    pub async fn watch(self: Arc<Self>) {
        loop {
            let next_deadline = {
                let mut lines = self.lines.lock().await;
                let now = Instant::now();
                for (account, line) in lines.iter_mut() {
                    if !line.failed && line.deadline <= now {
                        line.failed = true;
                        let interval = line.interval;
                        self.record(account, LineState::CommunicationFailure, interval)
                            .await;
                    }
                }
                lines
                    .values()
                    .filter(|line| !line.failed)
                    .map(|line| line.deadline)
                    .min()
            };
            // A report only moves a deadline later, so waking at the old
            // one is early at worst; a restore brings a new deadline.
            match next_deadline {
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.restored.notified() => {}
                    }
                }
                None => self.restored.notified().await,
            }
        }
    }

    /// Stores the change, then prints it; a change that cannot be stored is
    /// printed all the same (with the reason on stderr): the operator must
    /// see it.
    async fn record(&self, account: &str, state: LineState, interval: Duration) {
        let change = SupervisionRecord {
            at: now_millis(),
            account: account.to_owned(),
            state,
            interval,
        };
        if let Err(error) = self.store.commit(Record::Supervision(change)).await {
            tracing::error!(
                account,
                "supervision record {} not stored: {error}",
                state.as_str()
            );
        }
        let mut event = Event::new()
            .with("supervision", state.as_str())
            .with("account", account);
        if state == LineState::CommunicationFailure {
            event = event.with("interval", format!("{}s", interval.as_secs()));
        }
        println!("{}", event.line(self.json));
    }
}
