//! One inbound frame's way to its handler: classification once, then
//! after_receive, then a waiting `request` or the client type's on_message.
//!
//! Every message comes here, so the usual one (classified, no
//! after_receive) goes through a small hand-written future that just polls
//! its handler; anything else runs in a boxed `async fn`.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;

use super::{classify, fail};
use crate::connection::{Connection, DisconnectReason};
use crate::dispatch::{BoxFuture, Invocation, invoke, report};
use crate::error::Error;
use crate::handler::{EventContext, HandlerSlot};
use crate::message::Message;
use crate::router::Routes;

/// Handles one inbound frame. `slot` keeps the on_message handler's future
/// from one frame to the next (see [`HandlerSlot`]).
pub(crate) fn on_frame<'a>(
    connection: &'a Connection,
    frame: Bytes,
    slot: &'a mut HandlerSlot,
) -> Delivery<'a> {
    connection.count_inbound(frame.len());
    let routes = connection.routes();
    let step = if connection.classification_over() && routes.after_receive.is_none() {
        route(connection, routes, Message::from(frame), slot)
    } else {
        Step::Other(Box::pin(classify_and_filter(connection, frame, slot)))
    };
    Delivery { connection, step }
}

/// The future of [`on_frame`].
pub(crate) struct Delivery<'a> {
    connection: &'a Connection,
    step: Step<'a>,
}

enum Step<'a> {
    /// The on_message handler runs.
    Handler(Invocation<'a>),
    /// The handler failed: its failure is reported.
    Failing(BoxFuture<'static, ControlFlow<DisconnectReason>>),
    /// Anything else: classification, after_receive, reporting.
    Other(BoxFuture<'a, ControlFlow<DisconnectReason>>),
    /// Nothing to wait for.
    Done(ControlFlow<DisconnectReason>),
}

/// Whether every frame's [`Delivery`] on `connection`, until it is next
/// classified, can be [`suspend`](Delivery::suspend)ed when it waits: it is
/// routed straight to an on_message handler whose future lives in the slot
/// (no after_receive, no timeout, not blocking).
pub(crate) fn suspendable(connection: &Connection) -> bool {
    let routes = connection.routes();
    connection.classification_over()
        && routes.after_receive.is_none()
        && routes.on_message.as_ref().is_some_and(|h| !h.blocking)
        && connection.server().limits.handler_timeout.is_none()
}

/// What a waiting, [`suspendable`] delivery still has to do, owning nothing
/// borrowed: its caller can keep it and let go of the connection and the
/// slot until it [`resume`]s.
pub(crate) enum Suspended {
    /// The on_message handler, whose future is in the slot, runs.
    Handler,
    /// The handler's failure is reported.
    Failing(BoxFuture<'static, ControlFlow<DisconnectReason>>),
}

/// Goes on with a [`Suspended`] delivery on `connection`, whose on_message
/// future (if it runs) is in `slot`.
pub(crate) fn resume<'a>(
    connection: &'a Connection,
    suspended: Suspended,
    slot: &'a mut HandlerSlot,
) -> Delivery<'a> {
    let step = match suspended {
        Suspended::Handler => {
            let on_message = connection.routes().on_message.as_ref();
            let handler = on_message.expect("a suspended handler is the on_message handler");
            Step::Handler(Invocation::resume(handler, slot))
        }
        Suspended::Failing(report) => Step::Failing(report),
    };
    Delivery { connection, step }
}

impl Delivery<'_> {
    /// Sets this delivery, which waits, aside; see [`suspendable`].
    ///
    /// # Panics
    /// If the delivery is not one of a connection that is `suspendable`.
    pub(crate) fn suspend(self) -> Suspended {
        match self.step {
            Step::Handler(invocation) if invocation.lives_in_slot() => Suspended::Handler,
            Step::Failing(report) => Suspended::Failing(report),
            _ => panic!("only a suspendable delivery is suspended"),
        }
    }
}

impl Future for Delivery<'_> {
    type Output = ControlFlow<DisconnectReason>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let flow = match &mut this.step {
            Step::Handler(invocation) => match ready!(Pin::new(invocation).poll(cx)) {
                Ok(_) => ControlFlow::Continue(()),
                Err(error) => {
                    this.step = Step::Failing(fail(this.connection, error));
                    return Pin::new(this).poll(cx);
                }
            },
            Step::Failing(future) => ready!(future.as_mut().poll(cx)),
            Step::Other(future) => ready!(future.as_mut().poll(cx)),
            Step::Done(flow) => std::mem::replace(flow, ControlFlow::Continue(())),
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
    if let Err(flow) = classify(connection, &frame).await {
        return flow;
    }
    let routes = connection.routes();
    let mut message = Message::from(frame);
    if let Some(after_receive) = &routes.after_receive {
        let context = EventContext::new(connection.clone()).with_message(message);
        let mut own_slot = HandlerSlot::default();
        match invoke(connection, after_receive, context, &mut own_slot).await {
            Ok(Some(kept)) => message = kept,
            Ok(None) => return ControlFlow::Continue(()),
            Err(error) => return fail(connection, error).await,
        }
    }
    let step = route(connection, routes, message, slot);
    Delivery { connection, step }.await
}

/// Hands `message` to a waiting `request` (client mode), or to the client
/// type's on_message handler; a message with neither is reported, never
/// dropped in silence.
fn route<'a>(
    connection: &'a Connection,
    routes: &'a Routes,
    mut message: Message,
    slot: &'a mut HandlerSlot,
) -> Step<'a> {
    if let Some(replies) = &connection.server().replies {
        match replies.offer(message) {
            Some(unclaimed) => message = unclaimed,
            None => return Step::Done(ControlFlow::Continue(())),
        }
    }
    let Some(on_message) = &routes.on_message else {
        let client_type = connection
            .client_type()
            .cloned()
            .unwrap_or(crate::ClientType::DEFAULT);
        let reporting = report(connection, Error::Unrouted { client_type });
        return Step::Other(Box::pin(async move {
            reporting.await;
            ControlFlow::Continue(())
        }));
    };
    let context = EventContext::new(connection.clone()).with_message(message);
    Step::Handler(invoke(connection, on_message, context, slot))
}
