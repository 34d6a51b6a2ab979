//! A session's inbox: the bounded queue between whoever receives a peer's
//! datagrams (the server's receive loop, a client's receive loop) and the
//! session that handles them; the session's writer puts its failed sends
//! in it too. Offering never waits: a full inbox drops the datagram and
//! counts it, for the session to report.
//!
//! A short lock around a `VecDeque` and the session's waker: one lock on
//! each side per datagram. (A tokio channel cost some 800 instructions per
//! datagram here, and allocated a block of 32 slots for every session.)

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::in_place::{InPlace, Unsent};
use super::session::Inbound;
use crate::connection::Connection;
use crate::connection::outbound::Frames;
use crate::error::Error;
use crate::handler::HandlerSlot;
use crate::sync;

/// Opens the inbox of session `id`, which holds at most `capacity`
/// datagrams: the receiving side's end and the session's end.
/// `in_place`: how the receiving side may handle datagrams itself.
pub(crate) fn inbox(id: u64, capacity: usize, in_place: Option<InPlace>) -> (Inbox, Datagrams) {
    let shared = Arc::new(Shared {
        state: Mutex::default(),
        capacity,
        dropped: AtomicU64::new(0),
    });
    let inbox = Inbox {
        id,
        shared: Arc::clone(&shared),
        in_place,
    };
    (inbox, Datagrams { shared })
}

/// The receiving side's end: offers datagrams without waiting.
#[derive(Debug)]
pub(crate) struct Inbox {
    id: u64,
    shared: Arc<Shared>,
    in_place: Option<InPlace>,
}

/// The session's end: takes the datagrams in the order they came.
#[derive(Debug)]
pub(crate) struct Datagrams {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Datagrams dropped at a full inbox and not yet reported. Apart from
    /// the lock: the session looks at it before every datagram.
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    waiting: VecDeque<Inbound>,
    /// The session takes no more: it ended, or is ending.
    closed: bool,
    /// The receiving side is gone: nothing more will come.
    abandoned: bool,
    /// The session, while it waits for a datagram.
    session: Option<Waker>,
    /// The session waits for a datagram with nothing left to handle: the
    /// receiving side may handle the next one itself (see `in_place`).
    parked: bool,
    /// The receiving side is handling one of the session's datagrams: the
    /// session waits until it is done.
    in_place: bool,
    /// The session asked for a datagram while one was handled in place.
    session_waits_in_place: bool,
    /// The handler slot of the datagrams handled in place, between them.
    slot: HandlerSlot,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic elsewhere cannot poison it.
        sync::lock(&self.state)
    }
}

/// Why an inbox did not take a datagram.
#[derive(Debug)]
pub(crate) enum InboxRefused {
    /// The inbox is full: the datagram was dropped, and the session will
    /// report it to on_error.
    Full,
    /// The session has ended or is ending; the datagram is handed back.
    Ended(Inbound),
}

impl Inbox {
    /// The id of the session's connection.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Handles `inbound` in place if the session lets it (see `in_place`)
    /// and the receiving side can (`frames`, empty, for the replies; `None`:
    /// it is behind), or offers it. `Ok` with the replies the socket did not
    /// take at once.
    pub(crate) fn deliver(
        &self,
        inbound: Inbound,
        frames: Option<&mut Frames>,
    ) -> Result<Option<Unsent>, InboxRefused> {
        let inbound = match (&self.in_place, frames) {
            (Some(in_place), Some(frames)) => match in_place.handle(self, inbound, frames) {
                Ok(unsent) => return Ok(unsent),
                Err(inbound) => inbound,
            },
            _ => inbound,
        };
        self.offer(inbound).map(|()| None)
    }

    /// The way the session's failed sends take, for replies sent in place.
    pub(super) fn send_failures(&self) -> SendFailures {
        SendFailures {
            shared: Arc::clone(&self.shared),
        }
    }

    pub(crate) fn offer(&self, inbound: Inbound) -> Result<(), InboxRefused> {
        self.shared.push(inbound).map_err(|rejected| {
            if rejected.ended {
                return InboxRefused::Ended(rejected.inbound);
            }
            // Only datagrams count as dropped; the caller logs a lost error.
            if rejected.inbound.is_from_peer() {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            InboxRefused::Full
        })
    }
}

/// What [`Shared::push`] did not queue, and why.
struct Rejected {
    inbound: Inbound,
    /// The session takes no more; otherwise the inbox is full.
    ended: bool,
}

impl Shared {
    /// Queues `inbound` and wakes the session.
    fn push(&self, inbound: Inbound) -> Result<(), Rejected> {
        let session = {
            let mut state = self.lock();
            if state.closed || state.waiting.len() >= self.capacity {
                let ended = state.closed;
                return Err(Rejected { inbound, ended });
            }
            state.waiting.push_back(inbound);
            state.session.take()
        };
        // Woken after the lock is released, so the session does not wait for it.
        if let Some(session) = session {
            session.wake();
        }
        Ok(())
    }
}

/// A failed send that on_error will not hear of: only counted and logged.
fn unreported(connection: &Connection, error: io::Error) {
    tracing::warn!(%error, "sending a datagram failed");
    connection
        .endpoint()
        .counters
        .count_error(&Error::Io(error));
}

/// The session's own way into its inbox, for its failed sends: reported
/// to on_error in order with the datagrams, by the same code as a failed
/// receive. Unlike the [`Inbox`], it is not the receiving side: dropping
/// it abandons nothing.
#[derive(Debug)]
pub(crate) struct SendFailures {
    shared: Arc<Shared>,
}

impl SendFailures {
    /// Queues `error` for on_error; when the inbox is full or the session
    /// ends, the failure is only counted and logged.
    pub(crate) fn offer(&self, connection: &Connection, error: io::Error) {
        if let Err(Rejected {
            inbound: Inbound::Failed(error),
            ..
        }) = self.shared.push(Inbound::Failed(error))
        {
            unreported(connection, error);
        }
    }
}

impl Inbox {
    /// Takes the session's turn to handle one datagram in place, if the
    /// session waits with nothing to handle and nothing to report; returns
    /// the slot to handle it in. [`end_in_place`](Self::end_in_place) gives
    /// the turn back.
    pub(super) fn begin_in_place(&self) -> Option<HandlerSlot> {
        let mut state = self.shared.lock();
        let free = state.parked
            && !state.in_place
            && !state.closed
            && state.waiting.is_empty()
            && self.shared.dropped.load(Ordering::Relaxed) == 0;
        if !free {
            return None;
        }
        state.in_place = true;
        Some(std::mem::take(&mut state.slot))
    }

    /// Gives the turn back, with the slot, or with what the session goes on
    /// with (the slot travels in it), which it gets before anything else.
    pub(super) fn end_in_place(&self, ended: InPlaceEnd) {
        let session = {
            let mut state = self.shared.lock();
            state.in_place = false;
            let mut wake = std::mem::take(&mut state.session_waits_in_place);
            match ended {
                InPlaceEnd::Done(slot) => state.slot = slot,
                InPlaceEnd::GoOn(inbound) => {
                    state.waiting.push_front(inbound);
                    wake = true;
                }
            }
            if wake { state.session.take() } else { None }
        };
        if let Some(session) = session {
            session.wake();
        }
    }
}

/// How a datagram handled in place ended.
pub(crate) enum InPlaceEnd {
    /// Its handling is over: the slot goes back.
    Done(HandlerSlot),
    /// The session goes on with this.
    GoOn(Inbound),
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let session = {
            let mut state = self.shared.lock();
            state.abandoned = true;
            state.session.take()
        };
        if let Some(session) = session {
            session.wake();
        }
    }
}

impl Datagrams {
    /// The next datagram; `None` once the inbox is empty and closed, or
    /// empty and abandoned by the receiving side.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        let mut state = self.shared.lock();
        if state.in_place {
            // One event at a time: what is handled in place comes first.
            state.session_waits_in_place = true;
            sync::keep_waker(&mut state.session, cx);
            return Poll::Pending;
        }
        if let Some(inbound) = state.waiting.pop_front() {
            state.parked = false;
            return Poll::Ready(Some(inbound));
        }
        if state.closed || state.abandoned {
            state.parked = false;
            return Poll::Ready(None);
        }
        sync::keep_waker(&mut state.session, cx);
        state.parked = true;
        Poll::Pending
    }

    pub(crate) async fn recv(&mut self) -> Option<Inbound> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Where the session's writer puts its failed sends.
    pub(crate) fn send_failures(&self) -> SendFailures {
        SendFailures {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Takes no more datagrams; those already in are still received.
    pub(crate) fn close(&mut self) {
        self.shared.lock().closed = true;
    }

    /// Takes no more datagrams and drops those still in, for a session that
    /// ends without handling them; returns how many came from the peer.
    /// Failed sends among them are counted and logged, as those the inbox
    /// has no room for.
    pub(crate) fn close_dropping_waiting(&mut self, connection: &Connection) -> u64 {
        let waiting = {
            let mut state = self.shared.lock();
            state.closed = true;
            std::mem::take(&mut state.waiting)
        };
        // Dropped here, after the lock: one may hold a handler's future.
        let mut from_peer = 0;
        for inbound in waiting {
            // What in-place handling hands back goes to the front, and the
            // session takes it before anything could end it.
            debug_assert!(!matches!(inbound, Inbound::Resumed(_) | Inbound::Ended(_)));
            match inbound {
                Inbound::Failed(error) => unreported(connection, error),
                _ => from_peer += 1,
            }
        }
        from_peer
    }

    /// How many datagrams were dropped at the full inbox since the last call.
    pub(crate) fn take_dropped(&self) -> u64 {
        let dropped = &self.shared.dropped;
        // A plain load first: nothing was dropped, nearly always.
        if dropped.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Datagrams {
    fn drop(&mut self) {
        // A session dropped without closing (cut): later datagrams go to a new one.
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::task::{Wake, Waker};

    use bytes::Bytes;

    use super::*;

    fn datagram(text: &'static str) -> Inbound {
        Inbound::Datagram(Bytes::from_static(text.as_bytes()))
    }

    fn received(datagrams: &mut Datagrams) -> Poll<Option<String>> {
        let mut cx = Context::from_waker(Waker::noop());
        datagrams.poll_recv(&mut cx).map(|inbound| {
            inbound.map(|inbound| match inbound {
                Inbound::Datagram(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                other => panic!("expected a datagram, got {other:?}"),
            })
        })
    }

    #[test]
    fn a_full_inbox_drops_and_counts_and_a_closed_one_hands_back() {
        let (inbox, mut datagrams) = inbox(7, 2, None);
        assert_eq!(inbox.id(), 7);
        inbox.offer(datagram("a")).unwrap();
        inbox.offer(datagram("b")).unwrap();
        assert!(matches!(
            inbox.offer(datagram("c")),
            Err(InboxRefused::Full)
        ));
        assert!(matches!(
            inbox.offer(datagram("d")),
            Err(InboxRefused::Full)
        ));
        assert_eq!(datagrams.take_dropped(), 2);
        assert_eq!(datagrams.take_dropped(), 0);
        assert_eq!(received(&mut datagrams), Poll::Ready(Some("a".into())));
        inbox.offer(datagram("e")).unwrap();
        datagrams.close();
        // What was accepted is still received; nothing new is.
        assert!(matches!(
            inbox.offer(datagram("f")),
            Err(InboxRefused::Ended(Inbound::Datagram(_)))
        ));
        assert_eq!(received(&mut datagrams), Poll::Ready(Some("b".into())));
        assert_eq!(received(&mut datagrams), Poll::Ready(Some("e".into())));
        assert_eq!(received(&mut datagrams), Poll::Ready(None));
    }

    #[test]
    fn an_empty_inbox_waits_until_its_receiving_side_is_gone() {
        let (inbox, mut datagrams) = inbox(1, 4, None);
        assert_eq!(received(&mut datagrams), Poll::Pending);
        inbox.offer(datagram("last")).unwrap();
        drop(inbox);
        assert_eq!(received(&mut datagrams), Poll::Ready(Some("last".into())));
        assert_eq!(received(&mut datagrams), Poll::Ready(None));
    }

    /// A waker that records whether it was woken.
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_receiving_side_takes_only_the_turn_of_a_session_that_waits_for_nothing() {
        let (inbox, mut datagrams) = inbox(1, 4, None);
        // Not waiting yet: the session may be busy.
        assert!(inbox.begin_in_place().is_none());
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        assert!(datagrams.poll_recv(&mut cx).is_pending());
        let slot = inbox.begin_in_place().expect("the session waits");
        assert!(inbox.begin_in_place().is_none(), "one at a time");
        // Meanwhile the session does not go on, even with a datagram waiting.
        inbox.offer(datagram("later")).unwrap();
        assert!(flag.0.swap(false, Ordering::SeqCst));
        assert!(datagrams.poll_recv(&mut cx).is_pending());
        // What the receiving side hands over comes before what waited.
        inbox.end_in_place(InPlaceEnd::GoOn(datagram("first")));
        assert!(flag.0.swap(false, Ordering::SeqCst), "woken by the end");
        assert_eq!(received(&mut datagrams), Poll::Ready(Some("first".into())));
        assert_eq!(received(&mut datagrams), Poll::Ready(Some("later".into())));
        drop(slot);
        // Busy, then waiting again; a closed inbox lends no turn.
        assert!(
            inbox.begin_in_place().is_none(),
            "busy since it took a datagram"
        );
        assert!(datagrams.poll_recv(&mut cx).is_pending());
        let slot = inbox.begin_in_place().expect("waiting again");
        inbox.end_in_place(InPlaceEnd::Done(slot));
        assert!(!flag.0.load(Ordering::SeqCst), "nothing to wake it for");
        datagrams.close();
        assert!(inbox.begin_in_place().is_none());
    }

    #[test]
    fn an_offer_and_the_end_of_the_receiving_side_wake_the_waiting_session() {
        let (inbox, mut datagrams) = inbox(1, 4, None);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        assert!(datagrams.poll_recv(&mut cx).is_pending());
        inbox.offer(datagram("hello")).unwrap();
        assert!(flag.0.swap(false, Ordering::SeqCst), "woken by the offer");
        assert!(matches!(datagrams.poll_recv(&mut cx), Poll::Ready(Some(_))));
        assert!(datagrams.poll_recv(&mut cx).is_pending());
        drop(inbox);
        assert!(flag.0.load(Ordering::SeqCst), "woken by the end");
        assert!(matches!(datagrams.poll_recv(&mut cx), Poll::Ready(None)));
    }
}
