//! Handling a datagram in place: in the receiving task, without the hop to
//! the session's own task, when the session waits with nothing else to do
//! and its handler finishes at once (an echo's does). Its replies leave
//! right after, from the same task. The session's contract holds: it is
//! its turn that the receiving side takes (one event at a time, in order),
//! and whatever cannot finish at once goes on in the session's task.

use std::ops::ControlFlow;
use std::task::{Context, Waker};

use super::inbox::{InPlaceEnd, Inbox, SendFailures};
use super::session::{DatagramPeer, Inbound, Resumption, send_datagrams};
use crate::connection::Connection;
use crate::connection::outbound::{Flusher, Frames};
use crate::events::{Delivered, deliver_here, suspendable};

/// What a server's session lends its receive loop to handle its datagrams
/// in place.
#[derive(Debug)]
pub(crate) struct InPlace {
    pub(super) connection: Connection,
    pub(super) flusher: Flusher,
    pub(super) peer: DatagramPeer,
    /// Whether the framing splits each datagram (then the session does).
    pub(super) framed: bool,
}

/// Replies a datagram handled in place made that the socket did not take
/// at once: [`send`](Self::send) them.
#[derive(Debug)]
#[must_use]
pub(crate) struct Unsent {
    connection: Connection,
    flusher: Flusher,
    peer: DatagramPeer,
    failures: SendFailures,
    frames: Frames,
    /// How many of `frames` went out already.
    sent: usize,
}

impl Unsent {
    /// Sends the rest, waiting for the socket as the session's writer does.
    pub(crate) async fn send(mut self) {
        let (connection, peer) = (&self.connection, &self.peer);
        send_datagrams(connection, peer, &self.frames, self.sent, &self.failures).await;
        self.flusher.written(&mut self.frames);
    }
}

impl InPlace {
    /// Handles `inbound` for the session of `inbox` if it can be done here;
    /// otherwise hands it back for the inbox. `Ok` with replies left to send.
    /// `frames`: empty, the receiving side's to reuse from one datagram to
    /// the next (its allocations go round between it and the queues).
    pub(super) fn handle(
        &self,
        inbox: &Inbox,
        inbound: Inbound,
        frames: &mut Frames,
    ) -> Result<Option<Unsent>, Inbound> {
        let connection = &self.connection;
        let Inbound::Datagram(datagram) = inbound else {
            return Err(inbound);
        };
        // Not what the session would do first otherwise: open, classify,
        // deframe, run after_receive or a handler that may block. Asked
        // once, without the inbox's lock: classification is over only once
        // what it decided is set, which does not change after. The client
        // type's framing is looked at after `suspendable`, which has seen
        // classification over (on the session's thread, it may be
        // classifying this very moment).
        let plain = !self.framed && suspendable(connection) && connection.own_framing().is_none();
        if !plain {
            return Err(Inbound::Datagram(datagram));
        }
        let Some(mut slot) = inbox.begin_in_place() else {
            return Err(Inbound::Datagram(datagram));
        };
        self.flusher.hold();
        let activity = connection.activity();
        activity.handlers_started();
        // Whatever waits is polled again in the session's task, with its
        // waker: none is needed here.
        let mut cx = Context::from_waker(Waker::noop());
        let ended = match deliver_here(connection, datagram, &mut slot, &mut cx) {
            Delivered::Over(ControlFlow::Continue(())) => {
                activity.handlers_done(&connection.endpoint().deadlines);
                InPlaceEnd::Done(slot)
            }
            // The session ends it, as if it had handled the datagram.
            Delivered::Over(ControlFlow::Break(reason)) => InPlaceEnd::GoOn(Inbound::Ended(reason)),
            Delivered::Waits(suspended) => {
                InPlaceEnd::GoOn(Inbound::Resumed(Box::new(Resumption { suspended, slot })))
            }
        };
        inbox.end_in_place(ended);
        if !self.flusher.take(frames) {
            return Ok(None);
        }
        // A full socket, a refusal, an error: the way the writer sends takes
        // over, from the datagram that failed on (and tries it again).
        let first_unsent = frames.datagrams().position(|frame| {
            let Err(error) = self.peer.try_send(frame) else {
                return false;
            };
            if super::is_refusal(&error) {
                // An earlier datagram's, as the writer reports it.
                inbox.send_failures().offer(connection, error);
            }
            true
        });
        let Some(sent) = first_unsent else {
            self.flusher.written(frames);
            return Ok(None);
        };
        Ok(Some(Unsent {
            connection: connection.clone(),
            flusher: self.flusher.clone(),
            peer: self.peer.clone(),
            failures: inbox.send_failures(),
            frames: std::mem::take(frames),
            sent,
        }))
    }
}
