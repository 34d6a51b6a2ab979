//! One inbound frame's way to its handler: classification once, then
//! after_receive, then a waiting `request` or the client type's on_message.
//!
//! Every message comes here. The usual one (classified, no after_receive),
//! handled in the poll that read it, starts its handler at once
//! ([`deliver_here`]); awaited, it is a small hand-written future that just
//! polls its handler ([`on_frame`]); anything else runs in a boxed `async fn`.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;

use super::{classify, fail};
use crate::connection::report;
use crate::connection::{Connection, DisconnectReason};
use crate::error::Error;
use crate::future::BoxFuture;
use crate::handler::Routes;
use crate::handler::{EventContext, HandlerSlot};
use crate::handler::{Invocation, Started, invoke, runs_in_slot, start_in_slot};
use crate::message::Message;
use crate::metric::Stopwatch;

/// Handles one inbound frame. `slot` keeps the on_message handler's future
/// from one frame to the next (see [`HandlerSlot`]).
///
/// Always inlined, like [`route`] and [`invoke`]: the delivery is then built
/// where its caller keeps it, instead of returned through memory three times.
#[inline(always)]
pub(crate) fn on_frame<'a>(
    connection: &'a Connection,
    frame: Bytes,
    slot: &'a mut HandlerSlot,
) -> Delivery<'a> {
    connection.count_inbound(frame.len());
    let step = match routed_directly(connection) {
        Some(routes) => {
            connection.meter_received(frame.len());
            route(connection, routes, Message::from(frame), slot)
        }
        None => DeliveryStep::Other(Box::pin(classify_and_filter(connection, frame, slot))),
    };
    Delivery { connection, step }
}

/// Handles one inbound frame on a [`suspendable`] connection right away, in
/// the poll that decoded it: its handler starts, and usually finishes,
/// within this call.
///
/// Its caller has seen the connection [`suspendable`] on this thread: the
/// routes and client type read here come after that look at
/// classification's stage, and are what classification decided.
///
/// [`on_frame`] and a poll of its [`Delivery`] do the same; this way
/// builds no delivery that holds the event until its first poll (see
/// [`start_in_slot`]). A read's frames handled in place go through here,
/// the ways that await a delivery through [`on_frame`].
#[inline(always)]
pub(crate) fn deliver_here(
    connection: &Connection,
    frame: Bytes,
    slot: &mut HandlerSlot,
    cx: &mut Context<'_>,
) -> Delivered {
    debug_assert!(
        suspendable(connection),
        "a frame is delivered in place on a suspendable connection"
    );
    connection.count_inbound(frame.len());
    connection.meter_received(frame.len());
    let routes = connection.routes();
    let mut report = match unclaimed(connection, Message::from(frame)) {
        None => {
            connection.first_message_done();
            return Delivered::Over(ControlFlow::Continue(()));
        }
        Some(message) => match &routes.on_message {
            Some(on_message) => {
                match start_in_slot(on_message, connection, message, slot, cx) {
                    // Its output is not a message to anyone: dropped.
                    Started::Done | Started::Gave(Ok(_)) => {
                        connection.first_message_done();
                        return Delivered::Over(ControlFlow::Continue(()));
                    }
                    Started::Gave(Err(error)) => fail(connection, error),
                    Started::Running(stopwatch) => {
                        return Delivered::Waits(Suspended::Handler(stopwatch));
                    }
                }
            }
            None => unrouted(connection),
        },
    };
    match report.as_mut().poll(cx) {
        Poll::Ready(flow) => {
            connection.first_message_done();
            Delivered::Over(flow)
        }
        Poll::Pending => Delivered::Waits(Suspended::Reporting(report)),
    }
}

/// What [`deliver_here`] did with a frame.
#[must_use = "a delivery that waits must be resumed"]
pub(crate) enum Delivered {
    /// Its delivery is over; the connection goes on as the flow says.
    Over(ControlFlow<DisconnectReason>),
    /// Its delivery waits, polled (with the caller's waker, which may be a
    /// no-op one: UDP's session polls it again), and set aside to
    /// [`resume`].
    Waits(Suspended),
}

/// The future of [`on_frame`].
pub(crate) struct Delivery<'a> {
    connection: &'a Connection,
    step: DeliveryStep<'a>,
}

enum DeliveryStep<'a> {
    /// The on_message handler runs.
    Handler(Invocation<'a>),
    /// The handler failed, or there is none: that is reported.
    Reporting(BoxFuture<'static, ControlFlow<DisconnectReason>>),
    /// Classification, after_receive.
    Other(BoxFuture<'a, ControlFlow<DisconnectReason>>),
    /// Nothing to wait for.
    Done(ControlFlow<DisconnectReason>),
}

/// Whether a frame on `connection` can be delivered in place
/// ([`deliver_here`]), its delivery set aside if it waits: the connection
/// is classified for good and a frame goes straight to its route (no
/// after_receive, no history), which is a waiting `request`, an on_message
/// handler whose future lives in the slot (no timeout, not blocking), or a
/// report that there is none. Once classification is over, what it looks
/// at is fixed (the routes, the history, the limits), so a caller asks once
/// for all the frames of a read, and a caller on another thread (UDP's
/// receive loop) may rely on the answer too: classification is over only
/// once what it decided is set, and this looks at that only after it has
/// seen classification over (see [`routed_directly`]).
pub(crate) fn suspendable(connection: &Connection) -> bool {
    let Some(routes) = routed_directly(connection) else {
        return false;
    };
    match &routes.on_message {
        Some(handler) => runs_in_slot(connection, handler),
        None => true,
    }
}

/// The connection's routes, if a frame goes straight to its [`route`]: the
/// connection is classified for good, has no after_receive and keeps no
/// history (which the other way records, keeping this one free of it).
/// Classification's stage is looked at first, the routes only once it is
/// over: read before, they could be the defaults that classification was
/// replacing on another thread (UDP's sessions classify on their own task).
fn routed_directly(connection: &Connection) -> Option<&Routes> {
    if !connection.classification_over() {
        return None;
    }
    let routes = connection.routes();
    (routes.after_receive.is_none() && !connection.keeps_history()).then_some(&**routes)
}

/// What a waiting, [`suspendable`] delivery still has to do, owning nothing
/// borrowed: its caller can keep it and let go of the connection and the
/// slot until it [`resume`]s.
pub(crate) enum Suspended {
    /// The on_message handler, whose future is in the slot, runs (since the
    /// stopwatch started).
    Handler(Stopwatch),
    /// The handler's failure, or that there is no handler, is reported.
    Reporting(BoxFuture<'static, ControlFlow<DisconnectReason>>),
}

/// Goes on with a [`Suspended`] delivery on `connection`, whose on_message
/// future (if it runs) is in `slot`.
pub(crate) fn resume<'a>(
    connection: &'a Connection,
    suspended: Suspended,
    slot: &'a mut HandlerSlot,
) -> Delivery<'a> {
    let step = match suspended {
        Suspended::Handler(stopwatch) => {
            let on_message = connection.routes().on_message.as_ref();
            let handler = on_message.expect("a suspended handler is the on_message handler");
            DeliveryStep::Handler(Invocation::resume(handler, slot, stopwatch))
        }
        Suspended::Reporting(report) => DeliveryStep::Reporting(report),
    };
    Delivery { connection, step }
}

impl Future for Delivery<'_> {
    type Output = ControlFlow<DisconnectReason>;

    // Always inlined: into the future that awaits it (a loop, not a call
    // of itself for the report, so that it can be).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let flow = loop {
            match &mut this.step {
                DeliveryStep::Handler(invocation) => match ready!(Pin::new(invocation).poll(cx)) {
                    Ok(_) => break ControlFlow::Continue(()),
                    Err(error) => {
                        this.step = DeliveryStep::Reporting(fail(this.connection, error));
                    }
                },
                DeliveryStep::Reporting(future) => break ready!(future.as_mut().poll(cx)),
                DeliveryStep::Other(future) => break ready!(future.as_mut().poll(cx)),
                DeliveryStep::Done(flow) => {
                    break std::mem::replace(flow, ControlFlow::Continue(()));
                }
            }
        };
        this.connection.first_message_done();
        Poll::Ready(flow)
    }
}

/// The first frame classifies (unless a raw first unit did), then
/// after_receive may rewrite or drop the message before it is routed.
async fn classify_and_filter(
    connection: &Connection,
    frame: Bytes,
    slot: &mut HandlerSlot,
) -> ControlFlow<DisconnectReason> {
    let classified = classify(connection, &frame).await;
    // Recorded under the client type the frame gave the connection.
    connection.meter_received(frame.len());
    if let Err(flow) = classified {
        return flow;
    }
    let routes = connection.routes();
    // Kept for the history only: otherwise the frame just becomes the message.
    let raw = connection.keeps_history().then(|| frame.clone());
    let mut message = Message::from(frame);
    if let Some(after_receive) = &routes.after_receive {
        let context = EventContext::for_message(connection.clone(), message);
        let mut own_slot = HandlerSlot::default();
        match invoke(connection, after_receive, context, &mut own_slot).await {
            Ok(Some(kept)) => message = kept,
            Ok(None) => {
                if let Some(raw) = &raw {
                    connection.record_inbound(raw, None);
                }
                return ControlFlow::Continue(());
            }
            Err(error) => return fail(connection, error).await,
        }
    }
    if let Some(raw) = &raw {
        connection.record_inbound(raw, Some(message.as_bytes()));
    }
    let step = route(connection, routes, message, slot);
    Delivery { connection, step }.await
}

/// Hands `message` to a waiting `request` (a client's, or one made of this
/// connection on either side), or to the client type's on_message handler;
/// a message with neither is reported, never dropped in silence.
#[inline(always)]
fn route<'a>(
    connection: &'a Connection,
    routes: &'a Routes,
    message: Message,
    slot: &'a mut HandlerSlot,
) -> DeliveryStep<'a> {
    let Some(message) = unclaimed(connection, message) else {
        return DeliveryStep::Done(ControlFlow::Continue(()));
    };
    let Some(on_message) = &routes.on_message else {
        return DeliveryStep::Reporting(unrouted(connection));
    };
    let context = EventContext::for_message(connection.clone(), message);
    DeliveryStep::Handler(invoke(connection, on_message, context, slot))
}

/// `message`, unless a waiting `request` took it: a client's, then one made
/// of this connection itself (`Connection::request_matching`, on either
/// side). Two plain looks, not a loop over both: every message passes
/// here, and usually neither is.
#[inline(always)]
fn unclaimed(connection: &Connection, message: Message) -> Option<Message> {
    let message = match connection.endpoint().replies.as_deref() {
        Some(client) => client.offer(connection.id(), message)?,
        None => message,
    };
    match connection.requests() {
        Some(own) => own.offer(connection.id(), message),
        None => Some(message),
    }
}

/// The report of a message that no handler takes. Out of line: rare.
#[inline(never)]
fn unrouted(connection: &Connection) -> BoxFuture<'static, ControlFlow<DisconnectReason>> {
    let client_type = connection
        .client_type()
        .cloned()
        .unwrap_or(crate::ClientType::DEFAULT);
    let connection = connection.clone();
    Box::pin(async move {
        report(&connection, Error::Unrouted { client_type }).await;
        ControlFlow::Continue(())
    })
}
