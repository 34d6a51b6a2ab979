//! The read deadlines of connections (first message, partial frame, idle;
//! a datagram session has only the idle one), kept by one sweeper per
//! server instead of a timer per connection.
//!
//! A connection's task records what happens to it (a read, a partial frame
//! pending since) in ticks of the endpoint's coarse clock: an atomic load and
//! store per read. The sweeper advances that clock and closes each
//! connection whose deadline passed, so no connection carries a timer, and
//! none pays for one on every read. A deadline fires after at least its
//! duration and at most two ticks more; a tick is a sixteenth of the
//! shortest deadline (from 5 ms to 1 s).
//!
//! The same clock tells a quiet peer from a busy one ([`Activity::is_quiet`]):
//! a quiet peer's connection rests without a task (`transport::stream::rest`),
//! and the sweeper wakes the task of a busy peer that went quiet to rest.
//! For this the sweeper runs on a server's every listener, with no
//! deadline too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::config::Limits;
use crate::connection::Endpoint;
use crate::connection::{Connection, DisconnectReason};

/// The deadlines of one server's (or client's) connections, and the coarse
/// clock they are measured in.
#[derive(Debug)]
pub(crate) struct Deadlines {
    tick: Duration,
    /// Ticks since the endpoint started; starts at 1, so 0 means "never".
    now: AtomicU64,
    first_message: Option<u64>,
    frame: Option<u64>,
    idle: Option<u64>,
    /// [`QUIET_AFTER`] in ticks, and at least two: a peer is quiet after
    /// this many ticks to one more without a read.
    quiet: u64,
}

const SHORTEST_TICK: Duration = Duration::from_millis(5);
/// How long a connection has read nothing, at least, to count as quiet (see
/// [`Activity::is_quiet`]): a peer that sends more often keeps its task,
/// as coming back from resting costs a task's spawn. Measured in ticks (two
/// at least), so a quiet while is this to this and a tick more.
const QUIET_AFTER: Duration = Duration::from_secs(1);
const LONGEST_TICK: Duration = Duration::from_secs(1);

impl Deadlines {
    /// The deadlines of `limits`; the first-message deadline only applies
    /// when there is a classifier to wait for.
    pub(crate) fn new(limits: &Limits, classifies: bool) -> Self {
        let first_message = limits.first_message_timeout.filter(|_| classifies);
        let all = [first_message, limits.frame_timeout, limits.idle_timeout];
        let shortest = all.iter().flatten().min().copied();
        let tick = shortest
            .map_or(LONGEST_TICK, |shortest| shortest / 16)
            .clamp(SHORTEST_TICK, LONGEST_TICK);
        let in_ticks = |limit: Duration| limit.as_nanos().div_ceil(tick.as_nanos()) as u64;
        Self {
            tick,
            now: AtomicU64::new(1),
            first_message: first_message.map(in_ticks),
            frame: limits.frame_timeout.map(in_ticks),
            idle: limits.idle_timeout.map(in_ticks),
            quiet: in_ticks(QUIET_AFTER).max(2),
        }
    }

    /// Whether any deadline is set: a client's sweeper runs only then (a
    /// server's always runs, its clock telling quiet peers too).
    pub(crate) fn any(&self) -> bool {
        self.first_message.is_some() || self.frame.is_some() || self.idle.is_some()
    }

    /// The coarse time now, in ticks.
    pub(crate) fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    /// Which deadline of a connection with `activity` passed, if any: the
    /// one that passed first. Measured from one tick after the event, as
    /// the event may have happened at the very end of its tick.
    fn expired(
        &self,
        activity: &Activity,
        awaiting_first_message: bool,
    ) -> Option<DisconnectReason> {
        if activity.handling.load(Ordering::Relaxed) {
            return None;
        }
        let now = self.now();
        let since = |start: u64, limit: Option<u64>| {
            let limit = limit?;
            (start != 0 && now > start + limit).then_some(start + limit)
        };
        let candidates = [
            since(activity.started.load(Ordering::Relaxed), self.first_message)
                .filter(|_| awaiting_first_message)
                .map(|at| (at, DisconnectReason::FirstMessageTimeout)),
            since(activity.partial_since.load(Ordering::Relaxed), self.frame)
                .map(|at| (at, DisconnectReason::FrameTimeout)),
            since(activity.last_read.load(Ordering::Relaxed), self.idle)
                .map(|at| (at, DisconnectReason::IdleTimeout)),
        ];
        candidates
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
            .map(|(_, reason)| reason)
    }
}

/// [`Activity::pace`]: nothing read yet.
const UNREAD: u8 = 0;
/// [`Activity::pace`]: the last read came after a quiet while.
const QUIET: u8 = 1;
/// [`Activity::pace`]: the last read came soon after the one before.
const BUSY: u8 = 2;

/// What a connection's task records for the sweeper, in ticks.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// The connection's task keeps this up to date (from its start).
    tracked: AtomicBool,
    /// Handlers run: deadlines measure the peer, not them, so they wait.
    handling: AtomicBool,
    /// How often the peer sends, as of its last read (see [`Self::is_quiet`]):
    /// [`UNREAD`], [`QUIET`] or [`BUSY`].
    pace: AtomicU8,
    /// The connection may rest (see [`Self::allow_rest`]).
    rests: AtomicBool,
    started: AtomicU64,
    last_read: AtomicU64,
    /// Since when a partial frame is pending; 0 when none is.
    partial_since: AtomicU64,
}

impl Activity {
    /// Starts tracking: the connection counts as started and read just now.
    pub(crate) fn track(&self, deadlines: &Deadlines) {
        let now = deadlines.now();
        self.started.store(now, Ordering::Relaxed);
        self.last_read.store(now, Ordering::Relaxed);
        self.tracked.store(true, Ordering::Release);
    }

    /// Whether [`track`](Self::track) ran: the connection's clock started.
    pub(crate) fn is_tracked(&self) -> bool {
        self.tracked.load(Ordering::Acquire)
    }

    /// Handlers start running for what was read.
    pub(crate) fn handlers_started(&self) {
        self.handling.store(true, Ordering::Relaxed);
    }

    /// Handlers stopped running. The time they took was not the peer's, so
    /// the idle deadline counts from now: what the peer sent meanwhile (still
    /// in the socket, or in a datagram session's inbox) is read next, and a
    /// sweep in between must not find the connection idle.
    pub(crate) fn handlers_done(&self, deadlines: &Deadlines) {
        self.last_read.store(deadlines.now(), Ordering::Relaxed);
        self.handling.store(false, Ordering::Relaxed);
    }

    /// Bytes arrived.
    pub(crate) fn read(&self, deadlines: &Deadlines) {
        let now = deadlines.now();
        // Only the connection's task writes `last_read`: no
        // read-modify-write needed. The sweeper may set `pace` meanwhile
        // (`went_quiet`); a store here that undoes it only makes one quiet
        // or busy guess wrong, which the next read or sweep corrects.
        let before = self.last_read.load(Ordering::Relaxed);
        self.last_read.store(now, Ordering::Relaxed);
        let pace = self.pace.load(Ordering::Relaxed);
        // The first read counts as after a quiet while, however soon it came.
        let next = if pace != UNREAD && before + deadlines.quiet > now {
            BUSY
        } else {
            QUIET
        };
        if pace != next {
            self.pace.store(next, Ordering::Relaxed);
        }
    }

    /// Whether the peer is quiet: its last read came after a quiet while
    /// (nothing read or handled for [`QUIET_AFTER`]), or was its first, or
    /// the sweeper found it quiet since (`went_quiet`): a stream
    /// connection's task then rests once everything waits (see
    /// `transport::stream::rest`), while a busy one keeps its task, since
    /// coming back costs a task's spawn (and its allocation, which glibc
    /// places apart from the connection's other blocks). Before its first
    /// read a peer is not quiet: most send at once, and one that does not
    /// is told to rest by the sweeper a second or two later.
    pub(crate) fn is_quiet(&self) -> bool {
        self.pace.load(Ordering::Relaxed) == QUIET
    }

    /// Lets the connection rest (a server's TCP or Unix connection): the
    /// sweeper tells it when its peer goes quiet.
    pub(crate) fn allow_rest(&self) {
        self.rests.store(true, Ordering::Relaxed);
    }

    /// Whether the peer of a connection that may rest, busy or silent
    /// since it connected until now, has gone quiet (nothing read or
    /// handled for [`QUIET_AFTER`], no handler running): if so it counts as
    /// quiet from now on, and its task, once woken, rests.
    fn went_quiet(&self, deadlines: &Deadlines) -> bool {
        // Not tracked yet (on_connect runs): its clock has not started.
        if !self.is_tracked()
            || !self.rests.load(Ordering::Relaxed)
            || self.pace.load(Ordering::Relaxed) == QUIET
            || self.handling.load(Ordering::Relaxed)
            || self.last_read.load(Ordering::Relaxed) + deadlines.quiet > deadlines.now()
        {
            return false;
        }
        self.pace.store(QUIET, Ordering::Relaxed);
        true
    }

    /// Starts the frame deadline when a partial frame appears, stops it when
    /// none is left. `partial`: bytes of an unfinished frame are buffered;
    /// `framed_some`: complete frames were just taken off the buffer. The
    /// deadline covers one frame: a busy stream whose reads end mid-frame
    /// is not slow.
    pub(crate) fn pending_bytes(&self, deadlines: &Deadlines, partial: bool, framed_some: bool) {
        let since = self.partial_since.load(Ordering::Relaxed);
        let next = match (partial, since) {
            (true, 0) => deadlines.now(),
            (true, _) if framed_some => deadlines.now(),
            (true, _) => since,
            (false, _) => 0,
        };
        if next != since {
            self.partial_since.store(next, Ordering::Relaxed);
        }
    }
}

/// Advances `endpoint`'s clock every tick and closes the connections whose
/// deadline passed, until the endpoint shuts down.
pub(crate) async fn sweep(endpoint: Arc<Endpoint>) {
    let deadlines = &endpoint.deadlines;
    let mut ticks = tokio::time::interval(deadlines.tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick of an interval is immediate.
    ticks.tick().await;
    loop {
        tokio::select! {
            biased;
            () = endpoint.shutdown.begun() => return,
            _ = ticks.tick() => {}
        }
        deadlines.now.fetch_add(1, Ordering::Relaxed);
        // Collected under the list's lock, closed (or woken) after it:
        // closing wakes tasks and logs, which the list should not wait for.
        let mut expired = Vec::new();
        let mut gone_quiet = Vec::new();
        endpoint.connections.for_each(|connection| {
            // A server's listeners share one list, each with its own limits
            // and clock: a listener's sweeper judges its own connections only.
            if !Arc::ptr_eq(connection.endpoint(), &endpoint) {
                return;
            }
            if let Some(reason) = expired_for(deadlines, connection) {
                expired.push((connection.clone(), reason));
            } else if !connection.is_closing() && connection.activity().went_quiet(deadlines) {
                gone_quiet.push(connection.clone());
            }
        });
        for connection in gone_quiet {
            // Its task, which a busy peer kept, may rest now (see
            // `transport::stream::rest`): woken, it finds it may.
            connection.close_signal().wake_driver();
        }
        for (connection, reason) in expired {
            let (id, peer) = (connection.id(), connection.peer_addr());
            if reason == DisconnectReason::IdleTimeout {
                // Routine: how every UDP session ends, and many quiet peers.
                tracing::debug!(connection = id, %peer, %reason, "closing");
            } else {
                tracing::info!(connection = id, %peer, %reason, "closing");
            }
            connection.close_because(reason);
        }
    }
}

/// Runs `future` with `endpoint`'s sweeper beside it, until `future` ends.
pub(crate) async fn swept<T>(endpoint: Arc<Endpoint>, future: impl Future<Output = T>) -> T {
    if !endpoint.deadlines.any() {
        return future.await;
    }
    // A task of its own: joined with `future` in one task, it would be
    // polled at every wake-up of the connection, that is, for every message.
    // It stops at shutdown by itself, and with `future` at the latest.
    let _sweeper = AbortOnDropHandle::new(tokio::spawn(sweep(endpoint).in_current_span()));
    future.await
}

/// Why `connection` is to close now, if a deadline of its passed.
fn expired_for(deadlines: &Deadlines, connection: &Connection) -> Option<DisconnectReason> {
    let activity = connection.activity();
    if !activity.is_tracked() || connection.is_closing() {
        return None;
    }
    deadlines.expired(activity, connection.is_first_message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(first: u64, frame: u64, idle: u64) -> Limits {
        let millis = |ms| (ms > 0).then(|| Duration::from_millis(ms));
        Limits {
            first_message_timeout: millis(first),
            frame_timeout: millis(frame),
            idle_timeout: millis(idle),
            ..Limits::default()
        }
    }

    fn advance(deadlines: &Deadlines, ticks: u64) {
        deadlines.now.fetch_add(ticks, Ordering::Relaxed);
    }

    #[test]
    fn the_tick_is_a_sixteenth_of_the_shortest_deadline_within_bounds() {
        assert_eq!(
            Deadlines::new(&limits(0, 0, 320), false).tick,
            Duration::from_millis(20)
        );
        assert_eq!(Deadlines::new(&limits(0, 0, 10), false).tick, SHORTEST_TICK);
        assert_eq!(Deadlines::new(&Limits::default(), false).tick, LONGEST_TICK);
        let none = Deadlines::new(&limits(0, 0, 0), true);
        assert!(!none.any());
    }

    #[test]
    fn a_deadline_fires_after_its_duration_and_one_tick() {
        let deadlines = Deadlines::new(&limits(0, 0, 320), false);
        let activity = Activity::default();
        activity.track(&deadlines);
        advance(&deadlines, 16);
        assert_eq!(deadlines.expired(&activity, false), None);
        advance(&deadlines, 1);
        assert_eq!(
            deadlines.expired(&activity, false),
            Some(DisconnectReason::IdleTimeout)
        );
        activity.read(&deadlines);
        assert_eq!(
            deadlines.expired(&activity, false),
            None,
            "a read restarts it"
        );
    }

    #[test]
    fn a_peer_is_quiet_after_its_first_read_and_after_a_quiet_while() {
        let deadlines = Deadlines::new(&limits(0, 0, 320), false);
        let activity = Activity::default();
        activity.track(&deadlines);
        assert!(!activity.is_quiet(), "nothing read yet: bytes may come");
        activity.read(&deadlines);
        assert!(activity.is_quiet(), "the first read, however soon");
        activity.read(&deadlines);
        assert!(!activity.is_quiet(), "a second read in the same tick");
        advance(&deadlines, deadlines.quiet - 1);
        activity.read(&deadlines);
        assert!(!activity.is_quiet(), "not quiet for long enough");
        advance(&deadlines, deadlines.quiet);
        activity.read(&deadlines);
        assert!(activity.is_quiet(), "after a quiet while");
    }

    #[test]
    fn a_silent_peer_goes_quiet_a_while_after_it_connected() {
        let deadlines = Deadlines::new(&limits(0, 0, 320), false);
        let activity = Activity::default();
        activity.allow_rest();
        activity.track(&deadlines);
        assert!(!activity.went_quiet(&deadlines), "it just connected");
        advance(&deadlines, deadlines.quiet);
        assert!(activity.went_quiet(&deadlines));
        assert!(activity.is_quiet());
    }

    #[test]
    fn quiet_is_a_second_at_least_however_short_the_tick() {
        let short = Deadlines::new(&limits(0, 80, 0), false);
        assert_eq!(short.tick, SHORTEST_TICK);
        assert_eq!(short.quiet, 200, "a second of 5-ms ticks");
        let long = Deadlines::new(&Limits::default(), false);
        assert_eq!((long.tick, long.quiet), (LONGEST_TICK, 2));
    }

    #[test]
    fn a_busy_peer_goes_quiet_once_nothing_came_for_a_while() {
        let deadlines = Deadlines::new(&limits(0, 0, 320), false);
        let activity = Activity::default();
        activity.track(&deadlines);
        activity.read(&deadlines);
        activity.read(&deadlines);
        assert!(!activity.is_quiet());
        advance(&deadlines, deadlines.quiet);
        assert!(
            !activity.went_quiet(&deadlines),
            "a connection that may not rest is left alone"
        );
        activity.allow_rest();
        activity.handlers_started();
        assert!(!activity.went_quiet(&deadlines), "a handler runs");
        activity.handlers_done(&deadlines);
        assert!(!activity.went_quiet(&deadlines), "it just finished");
        advance(&deadlines, deadlines.quiet);
        assert!(activity.went_quiet(&deadlines));
        assert!(activity.is_quiet());
        assert!(!activity.went_quiet(&deadlines), "once");
    }

    #[test]
    fn the_first_message_deadline_needs_a_classifier_and_a_first_message() {
        let activity = Activity::default();
        let unclassified = Deadlines::new(&limits(160, 0, 0), false);
        activity.track(&unclassified);
        advance(&unclassified, 100);
        assert_eq!(unclassified.expired(&activity, true), None);
        let classifying = Deadlines::new(&limits(160, 0, 0), true);
        activity.track(&classifying);
        advance(&classifying, 17);
        assert_eq!(classifying.expired(&activity, false), None, "it came");
        assert_eq!(
            classifying.expired(&activity, true),
            Some(DisconnectReason::FirstMessageTimeout)
        );
    }

    #[test]
    fn the_frame_deadline_covers_one_frame() {
        let deadlines = Deadlines::new(&limits(0, 160, 1600), false);
        let activity = Activity::default();
        activity.track(&deadlines);
        activity.pending_bytes(&deadlines, true, false);
        advance(&deadlines, 10);
        // Frames keep completing while a partial one is pending: not slow.
        activity.read(&deadlines);
        activity.pending_bytes(&deadlines, true, true);
        advance(&deadlines, 10);
        assert_eq!(deadlines.expired(&activity, false), None);
        activity.pending_bytes(&deadlines, true, false);
        advance(&deadlines, 7);
        assert_eq!(
            deadlines.expired(&activity, false),
            Some(DisconnectReason::FrameTimeout)
        );
        activity.pending_bytes(&deadlines, false, true);
        assert_eq!(deadlines.expired(&activity, false), None, "nothing pending");
    }

    #[test]
    fn no_deadline_passes_while_handlers_run() {
        let deadlines = Deadlines::new(&limits(160, 160, 320), true);
        let activity = Activity::default();
        activity.track(&deadlines);
        activity.pending_bytes(&deadlines, true, false);
        activity.handlers_started();
        advance(&deadlines, 100);
        assert_eq!(
            deadlines.expired(&activity, true),
            None,
            "the handler is slow, not the peer"
        );
        activity.handlers_done(&deadlines);
        assert!(deadlines.expired(&activity, true).is_some());
    }

    #[test]
    fn idle_counts_from_when_the_handlers_stopped() {
        // Idle is 16 ticks of 20 ms.
        let deadlines = Deadlines::new(&limits(0, 0, 320), false);
        let activity = Activity::default();
        activity.track(&deadlines);
        activity.handlers_started();
        advance(&deadlines, 100);
        activity.handlers_done(&deadlines);
        assert_eq!(
            deadlines.expired(&activity, false),
            None,
            "the peer's next bytes may be waiting to be read"
        );
        advance(&deadlines, 17);
        assert_eq!(
            deadlines.expired(&activity, false),
            Some(DisconnectReason::IdleTimeout)
        );
    }

    #[test]
    fn datagram_limits_keep_only_the_idle_deadline() {
        let limits = limits(160, 160, 320).for_datagrams(Some(Duration::from_millis(480)));
        let deadlines = Deadlines::new(&limits, true);
        let activity = Activity::default();
        activity.track(&deadlines);
        activity.pending_bytes(&deadlines, true, false);
        // The tick follows the session's idle time alone: 30 ms.
        assert_eq!(deadlines.tick, Duration::from_millis(30));
        advance(&deadlines, 16);
        assert_eq!(
            deadlines.expired(&activity, true),
            None,
            "no first-message or frame deadline"
        );
        advance(&deadlines, 1);
        assert_eq!(
            deadlines.expired(&activity, true),
            Some(DisconnectReason::IdleTimeout)
        );
        let never = Limits::default().for_datagrams(None);
        assert!(!Deadlines::new(&never, true).any());
    }

    #[test]
    fn the_deadline_that_passed_first_is_the_reason() {
        let deadlines = Deadlines::new(&limits(0, 160, 320), false);
        let activity = Activity::default();
        activity.track(&deadlines);
        advance(&deadlines, 20);
        activity.pending_bytes(&deadlines, true, false);
        advance(&deadlines, 40);
        assert_eq!(
            deadlines.expired(&activity, false),
            Some(DisconnectReason::IdleTimeout),
            "10-ms ticks: idle passed at tick 33, the frame deadline at tick 37"
        );
    }
}
