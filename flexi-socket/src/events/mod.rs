//! The events of one connection, whatever carries it (TCP, TLS, UDP):
//! on_connect, each frame (classify once → after_receive → on_message), and
//! on_disconnect, with failures reported and the panic policy applied.

use std::future::poll_fn;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use crate::client_type::ClientType;
use crate::config::PanicPolicy;
use crate::connection::report;
use crate::connection::{CloseStage, Connection, DisconnectReason};
use crate::error::Error;
use crate::error::panic_message;
use crate::framing::Framing;
use crate::future::BoxFuture;
use crate::handler::invoke;
use crate::handler::{EventContext, HandlerSlot};

mod delivery;

pub(crate) use delivery::{Delivered, Suspended, deliver_here, on_frame, resume, suspendable};

pub(crate) async fn on_connect(connection: &Connection) -> ControlFlow<DisconnectReason> {
    let Some(handler) = connection.routes().on_connect.clone() else {
        return ControlFlow::Continue(());
    };
    let context = EventContext::new(connection.clone());
    match invoke(connection, &handler, context, &mut HandlerSlot::default()).await {
        Ok(_) => ControlFlow::Continue(()),
        Err(error) => fail(connection, error).await,
    }
}

pub(crate) async fn on_disconnect(connection: &Connection, reason: DisconnectReason) {
    let Some(handler) = connection.routes().on_disconnect.clone() else {
        return;
    };
    let context = EventContext::new(connection.clone()).with_reason(reason);
    if let Err(error) = invoke(connection, &handler, context, &mut HandlerSlot::default()).await {
        report(connection, error).await;
    }
}

/// Runs the classifier on the first frame or raw first unit, once per
/// connection (a no-op afterwards, and without a classifier), and gives the
/// connection its client type's encoder if that has its own framing.
///
/// `Err` when it could not classify: the flow says whether the connection
/// goes on, unclassified for good. The classifier is user code: its panic
/// is treated like a handler's.
pub(crate) async fn classify(
    connection: &Connection,
    first: &[u8],
) -> Result<(), ControlFlow<DisconnectReason>> {
    let Some(classifier) = &connection.endpoint().classifier else {
        return Ok(());
    };
    if !connection.take_classification() {
        return Ok(());
    }
    let classified = match catch_unwind(AssertUnwindSafe(|| classifier.classify(first))) {
        Ok(client_type) => settle(connection, client_type, "classified").await,
        Err(payload) => {
            let failing = classifier_panicked(connection, classifier.name, &*payload);
            Err(failing.await)
        }
    };
    connection.end_classification();
    classified
}

/// How many of a first frame's (or unit's) leading bytes
/// [`Classifier::classify_early`](crate::Classifier::classify_early) is
/// shown at most: each read offers the bytes so far again, so a peer
/// trickling a long first frame a byte at a time costs at most this many
/// per read, not the whole frame's length.
pub(crate) const EARLY_LOOK_BYTES: usize = 512;

/// Before the connection is classified, lets the classifier decide on
/// `first_bytes` (at most [`EARLY_LOOK_BYTES`] of them), the start of a first frame or raw unit not complete yet
/// (see [`Classifier::classify_early`](crate::Classifier::classify_early)).
/// `None` while it does not decide, or when there is nothing to decide;
/// otherwise the connection is classified (as [`classify`] does) and the
/// flow says whether it goes on.
pub(crate) async fn classify_early(
    connection: &Connection,
    first_bytes: &[u8],
) -> Option<ControlFlow<DisconnectReason>> {
    let classifier = connection.endpoint().classifier.as_ref()?;
    if first_bytes.is_empty() || !connection.classification_to_run() {
        return None;
    }
    let first_bytes = &first_bytes[..first_bytes.len().min(EARLY_LOOK_BYTES)];
    let settled = match catch_unwind(AssertUnwindSafe(|| classifier.classify_early(first_bytes))) {
        Ok(decided) => {
            let client_type = decided?;
            // Only this connection's task classifies it: still ours to take.
            let taken = connection.take_classification();
            debug_assert!(taken, "classification was to run");
            settle(connection, client_type, "classified on its first bytes").await
        }
        Err(payload) => {
            let taken = connection.take_classification();
            debug_assert!(taken, "classification was to run");
            let failing = classifier_panicked(connection, classifier.name, &*payload);
            Err(failing.await)
        }
    };
    connection.end_classification();
    Some(settled.err().unwrap_or(ControlFlow::Continue(())))
}

/// Gives the connection `client_type`, and that type's encoder if it has
/// its own framing.
async fn settle(
    connection: &Connection,
    client_type: ClientType,
    how: &'static str,
) -> Result<(), ControlFlow<DisconnectReason>> {
    tracing::Span::current().record("client_type", client_type.as_str());
    tracing::debug!(%client_type, "{how}");
    let own_framing = connection.endpoint().client_framing.for_type(&client_type);
    let encoder = match own_framing.map(Framing::try_encoder).transpose() {
        Ok(encoder) => encoder,
        Err(error) => {
            report(connection, error).await;
            return Err(ControlFlow::Break(DisconnectReason::FramingFailed));
        }
    };
    connection.classify_as(client_type, encoder);
    Ok(())
}

/// The classifier panicked: the connection stays unclassified for good, and
/// the panic is handled like a handler's.
fn classifier_panicked(
    connection: &Connection,
    classifier: &'static str,
    payload: &(dyn std::any::Any + Send),
) -> BoxFuture<'static, ControlFlow<DisconnectReason>> {
    connection.classification_failed();
    let error = Error::HandlerPanicked {
        handler: classifier,
        message: panic_message(payload),
    };
    fail(connection, error)
}

/// With `classify_raw`, classifies the connection by the raw first unit at
/// the start of `bytes` once that unit is complete (`at_end`: no more bytes
/// will come). `None` while the unit is incomplete (the decoder then offers
/// its bytes so far to [`classify_early`]) or when there is nothing to do;
/// otherwise whether the connection goes on.
pub(crate) async fn classify_first_unit(
    connection: &Connection,
    bytes: &[u8],
    at_end: bool,
) -> Option<ControlFlow<DisconnectReason>> {
    let first_unit = connection.endpoint().client_framing.first_unit.as_ref()?;
    if connection.classification_over() {
        // Classified already (by a first frame, say): no cut, no classifier.
        return Some(ControlFlow::Continue(()));
    }
    let unit = first_unit.cut(bytes, at_end)?;
    Some(match classify(connection, unit).await {
        Ok(()) => ControlFlow::Continue(()),
        Err(flow) => flow,
    })
}

/// Reports a handler's failure; a panic closes the connection unless the
/// panic policy says to go on. Boxed, like [`report`], and owning what it
/// needs, so that a delivery waiting for it can be set aside (see
/// [`Suspended::Reporting`]).
pub(crate) fn fail(
    connection: &Connection,
    error: Error,
) -> BoxFuture<'static, ControlFlow<DisconnectReason>> {
    let connection = connection.clone();
    Box::pin(async move {
        let close = matches!(error, Error::HandlerPanicked { .. })
            && connection.endpoint().limits.on_panic == PanicPolicy::Close;
        report(&connection, error).await;
        if close {
            ControlFlow::Break(DisconnectReason::HandlerPanicked)
        } else {
            ControlFlow::Continue(())
        }
    })
}

/// How long on_disconnect may take when the shutdown deadline already passed.
const LATE_DISCONNECT: Duration = Duration::from_secs(1);

/// Fires on_disconnect if the cut connection did not, and counts what it
/// left undelivered.
pub(crate) async fn after_abort(connection: &Connection, disconnected: bool) {
    if !disconnected {
        let reason = connection.endpoint().shutdown.reason();
        let late = on_disconnect(connection, reason);
        let _ = tokio::time::timeout(LATE_DISCONNECT, late).await;
    }
    let undelivered = connection.queued();
    connection.endpoint().shutdown.note_aborted(undelivered);
    tracing::warn!(undelivered, "connection aborted at the shutdown deadline");
}

/// Runs `serve`, a connection's whole life (which sets `disconnected` when
/// on_disconnect starts), unless the endpoint's shutdown deadline cuts it short:
/// then what it left queued counts as undelivered and on_disconnect still
/// fires, once. Either way the connection ends closed and unlisted.
pub(crate) async fn until_aborted(
    connection: &Connection,
    disconnected: &AtomicBool,
    // Boxed by the caller: an async fn's by-value argument is stored twice in
    // its state (the argument and the local it moves into), and this one is
    // the whole connection; boxed, the task holds a pointer instead.
    mut serve: Pin<Box<impl Future<Output = ()>>>,
) {
    // Not a select!: this runs on every wake-up of the connection's task.
    let aborted = poll_fn(|cx| match serve.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(false),
        Poll::Pending => connection
            .close_signal()
            .poll_reached(CloseStage::Aborted, cx)
            .map(|()| true),
    })
    .await;
    // Dropped before anything else: on abort the queue is closed, so the
    // late on_disconnect's sends fail instead of being lost uncounted; and
    // what `serve` holds is gone before the connection leaves the list.
    drop(serve);
    if aborted {
        // Boxed: it takes memory only in this rare case, not in every task.
        Box::pin(after_abort(
            connection,
            disconnected.load(Ordering::Relaxed),
        ))
        .await;
    }
    finished(connection, aborted);
}

/// The end of every connection: it reports itself closed (sends fail from
/// now on), its traffic joins the endpoint's totals, and it leaves the list.
pub(crate) fn finished(connection: &Connection, aborted: bool) {
    let endpoint = connection.endpoint();
    if !aborted {
        // Cut connections counted theirs already (`after_abort`). Here,
        // frames are left when the peer reset, stopped reading until the
        // flush timed out, or was given up on as a slow consumer.
        let unsent = connection.queued();
        if unsent > 0 {
            tracing::debug!(
                unsent,
                "connection closed before its queued messages were written"
            );
        }
        endpoint.shutdown.note_closed(unsent);
    }
    connection.close_because(DisconnectReason::Closed);
    // Server-wide traffic counters are per connection while it is open (no
    // shared cache line per message) and folded into the totals when it
    // closes. (The exported metrics, feature `metrics`, are shared: see metric.rs.)
    endpoint.counters.absorb(&connection.stats());
    endpoint.unregister(connection);
    connection.close_signal().end();
}
