//! The `alarm_receiver` example's writer: one thread owns the database and
//! commits what the handlers hand it, in groups. A handler waits for its
//! record's commit and only then answers the panel, so no ACK leaves before
//! its event is on disk; the tokio workers never block on SQLite.
//!
//! Grouping: while one commit (and its fsync) runs, the records of other
//! connections queue up; the next commit takes all of them, up to
//! `max_batch`, in one transaction. A lone panel waits for one fsync, as
//! without grouping; a thousand panels share a few.

use std::fmt;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::database::{Database, Outcome, Record};

/// Records waiting for the writer before handlers wait to hand in theirs.
const QUEUE: usize = 4096;

/// Why a record was not stored: the panel gets no ACK.
#[derive(Debug, Clone)]
pub struct StoreError(Arc<str>);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the database refused the commit: {}", self.0)
    }
}

/// A record and whom to tell once it is committed or refused.
struct Job {
    record: Record,
    done: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// The handlers' side of the writer thread.
#[derive(Debug, Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Starts the writer thread, which commits at most `max_batch` records
    /// per transaction (1: one commit per record).
    pub fn start(database: Database, max_batch: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("alarm-store".into())
            .spawn(move || write_batches(database, queue, max_batch.max(1)))?;
        Ok(Self { jobs })
    }

    /// Commits `record`; returns once it is on disk, or why it is not.
    pub async fn commit(&self, record: Record) -> Result<Outcome, StoreError> {
        let (done, outcome) = oneshot::channel();
        let gone = || StoreError("the writer thread has stopped".into());
        self.jobs
            .send(Job { record, done })
            .await
            .map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

/// The writer thread: takes what is queued, commits it, answers each job.
fn write_batches(mut database: Database, mut queue: mpsc::Receiver<Job>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match database.commit(batch.iter().map(|job| &job.record)) {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    // A handler whose connection ended no longer listens.
                    let _ = job.done.send(Ok(outcome));
                }
            }
            Err(error) => {
                let error = StoreError(error.to_string().into());
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(error.clone()));
                }
            }
        }
    }
}
