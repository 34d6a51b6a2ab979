//! The handler layer: the contract every handler follows (this file), the
//! future's home ([`slot`]), the routing table ([`router`]), the attribute
//! registry ([`registry`], the only user of `inventory`), and running one
//! handler with its panics, timeout and blocking ([`invoke`](mod@invoke)).
//!
//! The handler contract, written down once.
//!
//! Every handler, whether registered by an attribute or by [`Router`]
//! methods, becomes a [`Handler`]: a name and a function that takes an
//! [`EventContext`], starts a `Send + 'static` future in a [`HandlerSlot`]
//! (reused from one call to the next) and polls it once, so that a handler
//! that finishes at once costs one erased call. Arguments are pulled out of
//! the context by [`FromEvent`]; return values are turned into a
//! [`HandlerOutput`] by [`IntoHandlerResult`] (event handlers) or
//! [`IntoFiltered`] (`after_receive`, `before_send`).

use std::fmt::{self, Display};
use std::ops::Deref;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::connection::{Connection, Connections, DisconnectReason};
use crate::error::Error;
use crate::message::Message;
use crate::metric;

mod invoke;
pub(crate) mod registry;
mod router;
mod scope;
mod slot;

pub(crate) use invoke::{Invocation, Started, invoke, runs_in_slot, start_in_slot};
pub use registry::Registration;
pub use router::Router;
pub(crate) use router::{RouteTable, Routes};
pub(crate) use scope::attribute_router;
pub use slot::{HandlerSlot, MapOutput, rejected};

/// What a handler's future resolves to: `Some(message)` is the (possibly
/// rewritten) message for filters, `None` means "nothing" (or "drop it" for
/// filters).
pub type HandlerOutput = Result<Option<Message>, HandlerError>;

/// Why a handler did not complete normally.
#[derive(Debug)]
pub enum HandlerError {
    /// An argument could not be produced (e.g. invalid UTF-8 for a `String`).
    /// Boxed: rare, and every handler call returns this type through its
    /// caller's memory (`Error` is large).
    Argument(Box<Error>),
    /// The handler returned `Err`; this is its `Display` text.
    Failed(String),
}

impl From<Error> for HandlerError {
    fn from(error: Error) -> Self {
        HandlerError::Argument(Box::new(error))
    }
}

/// Everything one event carries; handler arguments are taken from it.
///
/// Small on purpose: it is moved into every handler call's future.
#[derive(Debug)]
pub struct EventContext {
    /// `None` once an argument took it (see [`FromEvent::take_from_event`]).
    connection: Option<Connection>,
    payload: Payload,
}

/// What an event carries besides its connection: at most one of these.
#[derive(Debug)]
enum Payload {
    Nothing,
    Message(Message),
    // Boxed: errors are rare and large, messages are frequent and small.
    Error(Box<Error>),
    Reason(DisconnectReason),
}

impl EventContext {
    pub(crate) fn new(connection: Connection) -> Self {
        Self {
            connection: Some(connection),
            payload: Payload::Nothing,
        }
    }

    fn connection(&self) -> Result<&Connection, Error> {
        // Not `ok_or`: an `Error` made and dropped for every argument taken
        // costs a call of its drop glue per message.
        match &self.connection {
            Some(connection) => Ok(connection),
            None => Err(Error::NotInThisEvent {
                argument: "Connection",
            }),
        }
    }

    /// The event of `message` on `connection` (arriving, or sent through
    /// before_send): built whole, not as [`new`](Self::new) with the
    /// payload replaced, which costs a drop per message.
    pub(crate) fn for_message(connection: Connection, message: Message) -> Self {
        Self {
            connection: Some(connection),
            payload: Payload::Message(message),
        }
    }

    pub(crate) fn with_error(mut self, error: Error) -> Self {
        self.payload = Payload::Error(Box::new(error));
        self
    }

    pub(crate) fn with_reason(mut self, reason: DisconnectReason) -> Self {
        self.payload = Payload::Reason(reason);
        self
    }

    fn message(&self) -> Message {
        // Handlers for events without a message cannot take a message argument
        // (the macros reject it), so an empty message only reaches Router-built closures.
        match &self.payload {
            Payload::Message(message) => message.clone(),
            _ => Message::default(),
        }
    }

    /// Lets go of what a handler's arguments left of the event: usually
    /// nothing, as they took the connection and the message. Then the
    /// event's drop glue, an out-of-line call per message, is skipped.
    #[inline(always)]
    pub(crate) fn release(self) {
        // Every field named (no `..`): a field added later fails to compile
        // here until it is weighed for what forgetting would leak.
        if let Self {
            connection: None,
            payload: Payload::Nothing,
        } = &self
        {
            std::mem::forget(self);
        }
    }

    /// The message, taken rather than cloned (see [`FromEvent::take_from_event`]).
    fn take_message(&mut self) -> Message {
        match std::mem::replace(&mut self.payload, Payload::Nothing) {
            Payload::Message(message) => message,
            other => {
                self.payload = other;
                Message::default()
            }
        }
    }
}

/// A value a handler can take as an argument.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler argument",
    label = "not a handler argument",
    note = "handlers take `Connection`, a message (`String`, `&str`, `Bytes`, `Vec<u8>`, `&[u8]` or `Message`), `Connections`, `State<T>`, `DisconnectReason` (on_disconnect) or `Error` (on_error)"
)]
pub trait FromEvent: Sized {
    /// Takes the argument out of the event.
    ///
    /// # Errors
    ///
    /// When the event cannot be viewed as `Self` (e.g. [`Error::InvalidUtf8`]);
    /// the error goes to `on_error` and the handler does not run.
    fn from_event(context: &mut EventContext) -> Result<Self, Error>;

    /// Like [`from_event`](Self::from_event), for an argument after which no
    /// other one needs what this one reads: it may take it out of the event
    /// instead of copying it (the connection or the message, without a
    /// reference count each). The attribute macros decide when; the default
    /// copies.
    ///
    /// # Errors
    ///
    /// As [`from_event`](Self::from_event).
    #[doc(hidden)]
    fn take_from_event(context: &mut EventContext) -> Result<Self, Error> {
        Self::from_event(context)
    }
}

impl FromEvent for Connection {
    fn from_event(context: &mut EventContext) -> Result<Self, Error> {
        context.connection().cloned()
    }

    fn take_from_event(context: &mut EventContext) -> Result<Self, Error> {
        // Not `ok_or`: see `EventContext::connection`.
        match context.connection.take() {
            Some(connection) => Ok(connection),
            None => Err(Error::NotInThisEvent {
                argument: "Connection",
            }),
        }
    }
}

impl FromEvent for Message {
    fn from_event(context: &mut EventContext) -> Result<Self, Error> {
        Ok(context.message())
    }

    fn take_from_event(context: &mut EventContext) -> Result<Self, Error> {
        Ok(context.take_message())
    }
}

impl FromEvent for Bytes {
    fn from_event(context: &mut EventContext) -> Result<Self, Error> {
        Ok(context.message().into_bytes())
    }

    fn take_from_event(context: &mut EventContext) -> Result<Self, Error> {
        Ok(context.take_message().into_bytes())
    }
}

impl FromEvent for Vec<u8> {
    fn from_event(context: &mut EventContext) -> Result<Self, Error> {
        Ok(context.message().to_vec())
    }

    fn take_from_event(context: &mut EventContext) -> Result<Self, Error> {
        Ok(context.take_message().to_vec())
    }
}

impl FromEvent for String {
    fn from_event(context: &mut EventContext) -> Result<Self, Error> {
        Ok(Text::from_event(context)?.as_str().to_owned())
    }

    fn take_from_event(context: &mut EventContext) -> Result<Self, Error> {
        Ok(Text::take_from_event(context)?.as_str().to_owned())
    }
}

#[diagnostic::do_not_recommend]
impl FromEvent for Text {
    fn from_event(context: &mut EventContext) -> Result<Self, Error> {
        Text::checked(context.message())
    }

    fn take_from_event(context: &mut EventContext) -> Result<Self, Error> {
        Text::checked(context.take_message())
    }
}

impl FromEvent for Error {
    fn from_event(context: &mut EventContext) -> Result<Self, Error> {
        // The attribute macros only allow this argument on on_error; a
        // Router-built closure elsewhere gets an error instead of a made-up value.
        match std::mem::replace(&mut context.payload, Payload::Nothing) {
            Payload::Error(error) => Ok(*error),
            other => {
                context.payload = other;
                Err(Error::NotInThisEvent { argument: "Error" })
            }
        }
    }
}

impl FromEvent for DisconnectReason {
    fn from_event(context: &mut EventContext) -> Result<Self, Error> {
        match &context.payload {
            Payload::Reason(reason) => Ok(reason.clone()),
            _ => Err(Error::NotInThisEvent {
                argument: "DisconnectReason",
            }),
        }
    }
}

/// The server's open connections (all its listeners'): a handler reaches
/// other connections by id, key, group or client type.
impl FromEvent for Connections {
    fn from_event(context: &mut EventContext) -> Result<Self, Error> {
        Ok(context.connection()?.endpoint().connections.clone())
    }
}

/// Shared application state, given once with `.state(value)` on the builder.
///
/// Take `State<T>` as a handler argument; `T` is cloned per event, so share big
/// state through an `Arc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct State<T>(pub T);

impl<T> Deref for State<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone + Send + Sync + 'static> FromEvent for State<T> {
    fn from_event(context: &mut EventContext) -> Result<Self, Error> {
        context
            .connection()?
            .app_state::<T>()
            .map(|state| State(state.clone()))
            .ok_or(Error::MissingState {
                type_name: std::any::type_name::<T>(),
            })
    }
}

/// A message checked to be UTF-8: what a `&str` argument borrows from.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Text(Bytes);

impl Text {
    fn checked(message: Message) -> Result<Self, Error> {
        message.to_str()?;
        Ok(Text(message.into_bytes()))
    }

    #[allow(unsafe_code)]
    fn as_str(&self) -> &str {
        // SAFETY: a `Text` is only built by `checked` right after
        // `Message::to_str` checked these very bytes, and `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// The owned value a borrowed argument (`&str`, `&[u8]`) borrows from.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`&{Self}` cannot be a handler argument",
    label = "only `&str` and `&[u8]` can be borrowed",
    note = "take `{Self}` by value instead"
)]
pub trait BorrowedArg {
    /// Taken from the event, then borrowed for the handler call.
    type Owned: FromEvent + Deref<Target = Self>;
}

impl BorrowedArg for str {
    type Owned = Text;
}

impl BorrowedArg for [u8] {
    type Owned = Bytes;
}

/// Return types of event handlers: `()` or `Result<(), E>` with `E: Display`.
#[diagnostic::on_unimplemented(
    message = "handlers must return `()` or `Result<(), E>` where `E: Display`, not `{Self}`",
    label = "unsupported return type"
)]
pub trait IntoHandlerResult {
    /// Converts the return value.
    fn into_handler_result(self) -> HandlerOutput;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> HandlerOutput {
        Ok(None)
    }
}

impl<E: Display> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> HandlerOutput {
        self.map(|()| None)
            .map_err(|e| HandlerError::Failed(e.to_string()))
    }
}

/// Return types of `after_receive` and `before_send`: the message to pass on, or
/// `None` to drop it; optionally inside `Result<_, E>` with `E: Display`.
#[diagnostic::on_unimplemented(
    message = "after_receive and before_send must return `Message`, `Option<Message>` or a `Result` of either, not `{Self}`",
    label = "unsupported return type"
)]
pub trait IntoFiltered {
    /// Converts the return value.
    fn into_filtered(self) -> HandlerOutput;
}

impl IntoFiltered for Message {
    fn into_filtered(self) -> HandlerOutput {
        Ok(Some(self))
    }
}

impl IntoFiltered for Option<Message> {
    fn into_filtered(self) -> HandlerOutput {
        Ok(self)
    }
}

impl<T: IntoFiltered, E: Display> IntoFiltered for Result<T, E> {
    fn into_filtered(self) -> HandlerOutput {
        self.map_err(|e| HandlerError::Failed(e.to_string()))?
            .into_filtered()
    }
}

/// Takes the handler's arguments out of the event, starts its future in the
/// slot and polls it once.
type ErasedCall = dyn Fn(&mut EventContext, &mut HandlerSlot, &mut Context<'_>) -> Poll<HandlerOutput>
    + Send
    + Sync;

/// An attribute's generated [`ErasedCall`]: a plain function.
type CallFn = fn(&mut EventContext, &mut HandlerSlot, &mut Context<'_>) -> Poll<HandlerOutput>;

/// How a handler is called.
#[derive(Clone)]
enum Callee {
    /// An attribute's generated function, called directly: through an
    /// `Arc<dyn Fn>` it would take the `Arc`'s offset, the closure's shim
    /// and then the function, per message.
    Function(CallFn),
    /// A [`Router`] closure.
    Closure(Arc<ErasedCall>),
}

/// A registered handler: its name and its erased call.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) name: &'static str,
    /// Run on the blocking pool (`#[on_message(blocking)]`).
    pub(crate) blocking: bool,
    call: Callee,
    /// Where its calls' durations go (a server's, with the `metrics` feature).
    pub(crate) duration: metric::Histogram,
}

impl Handler {
    /// A [`Router`] closure's handler.
    pub(crate) fn new(
        name: &'static str,
        call: impl Fn(&mut EventContext, &mut HandlerSlot, &mut Context<'_>) -> Poll<HandlerOutput>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self::with_call(name, Callee::Closure(Arc::new(call)))
    }

    /// An attribute's handler, `call` its generated function.
    pub(crate) fn function(name: &'static str, call: CallFn) -> Self {
        Self::with_call(name, Callee::Function(call))
    }

    fn with_call(name: &'static str, call: Callee) -> Self {
        Self {
            name,
            blocking: false,
            call,
            duration: metric::Histogram::default(),
        }
    }

    /// This handler, its calls' durations recorded if `measured`: resolved
    /// when the routes are, at start-up, so after the application installed
    /// its metrics recorder.
    pub(crate) fn measured(&self, measured: bool) -> Self {
        let label = [("handler", self.name)];
        Self {
            duration: metric::Histogram::new(measured, metric::name::HANDLER_DURATION, &label),
            ..self.clone()
        }
    }

    /// Starts the handler with its arguments taken out of `context`, its
    /// future in `slot`, and polls it once with `cx`: `Pending` while it
    /// waits, and then `slot` holds what to poll next.
    pub(crate) fn call(
        &self,
        context: &mut EventContext,
        slot: &mut HandlerSlot,
        cx: &mut Context<'_>,
    ) -> Poll<HandlerOutput> {
        match &self.call {
            Callee::Function(call) => call(context, slot, cx),
            Callee::Closure(call) => call(context, slot, cx),
        }
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Bytes whose memory says when it is freed.
    struct Tracked(Arc<AtomicBool>);

    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            b"left"
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn event_with_tracked_message(freed: &Arc<AtomicBool>) -> EventContext {
        let bytes = Bytes::from_owner(Tracked(Arc::clone(freed)));
        EventContext {
            connection: None,
            payload: Payload::Message(Message::from(bytes)),
        }
    }

    #[test]
    fn release_drops_a_message_the_arguments_left() {
        let freed = Arc::new(AtomicBool::new(false));
        event_with_tracked_message(&freed).release();
        assert!(freed.load(Ordering::SeqCst), "the message was leaked");
    }

    #[test]
    fn release_leaves_a_taken_message_to_its_taker() {
        let freed = Arc::new(AtomicBool::new(false));
        let mut event = event_with_tracked_message(&freed);
        let taken = event.take_message();
        event.release();
        assert!(!freed.load(Ordering::SeqCst));
        drop(taken);
        assert!(freed.load(Ordering::SeqCst));
    }
}
