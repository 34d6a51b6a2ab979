//! The read deadlines of a stream connection: first message, partial frame
//! (slowloris), idle.

use std::time::Duration;

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

use crate::connection::DisconnectReason;
use crate::server::ServerContext;

/// The read deadlines of one connection: first message, partial frame, idle.
pub(crate) struct Clock {
    started: Instant,
    last_read: Instant,
    partial_since: Option<Instant>,
    first_message: Option<Duration>,
    frame: Option<Duration>,
    idle: Option<Duration>,
}

impl Clock {
    pub(crate) fn new(server: &ServerContext) -> Self {
        let now = Instant::now();
        let limits = &server.limits;
        Self {
            started: now,
            last_read: now,
            partial_since: None,
            // Without a classifier nothing waits for a first message.
            first_message: limits
                .first_message_timeout
                .filter(|_| server.classifier.is_some()),
            // Whether pending bytes are a partial frame is the framing's call:
            // the reader says so in `pending_bytes`.
            frame: limits.frame_timeout,
            idle: limits.idle_timeout,
        }
    }

    pub(crate) fn read_now(&mut self) {
        self.last_read = Instant::now();
    }

    /// Starts the frame deadline when a partial frame appears, stops it when none is left.
    /// `partial`: bytes of an unfinished frame are buffered; `framed_some`:
    /// the decoder just took complete frames off the buffer. The deadline
    /// covers one frame: a busy stream whose reads end mid-frame is not slow.
    pub(crate) fn pending_bytes(&mut self, partial: bool, framed_some: bool) {
        match (partial, self.partial_since) {
            (true, None) => self.partial_since = Some(Instant::now()),
            (true, Some(_)) if framed_some => self.partial_since = Some(Instant::now()),
            (false, Some(_)) => self.partial_since = None,
            _ => {}
        }
    }

    pub(crate) fn next_deadline(
        &self,
        awaiting_first_message: bool,
    ) -> (Option<Instant>, DisconnectReason) {
        let candidates = [
            self.first_message
                .filter(|_| awaiting_first_message)
                .map(|limit| (self.started + limit, DisconnectReason::FirstMessageTimeout)),
            self.frame
                .zip(self.partial_since)
                .map(|(limit, since)| (since + limit, DisconnectReason::FrameTimeout)),
            self.idle
                .map(|limit| (self.last_read + limit, DisconnectReason::IdleTimeout)),
        ];
        candidates
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
            .map_or((None, DisconnectReason::IdleTimeout), |(at, reason)| {
                (Some(at), reason)
            })
    }
}

/// A timer armed far in the future, to be passed to [`wait_for`].
pub(crate) fn idle_timer() -> Sleep {
    tokio::time::sleep_until(Instant::now() + Duration::from_secs(365 * 24 * 3600))
}

/// Waits until `deadline` with one long-lived timer. The timer is moved only
/// when the deadline comes earlier than it; when it fires early (the deadline
/// moved on, as the idle deadline does with every read) it is re-armed. So a
/// busy connection costs no timer operation per read.
pub(crate) async fn wait_for(mut timer: Pin<&mut Sleep>, deadline: Option<Instant>) {
    let Some(deadline) = deadline else {
        return std::future::pending().await;
    };
    if deadline < timer.deadline() {
        timer.as_mut().reset(deadline);
    }
    loop {
        timer.as_mut().await;
        if Instant::now() >= deadline {
            return;
        }
        timer.as_mut().reset(deadline);
    }
}
