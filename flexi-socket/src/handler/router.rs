//! The routing table: which handler runs for which event and client type.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::Context;

use super::registry;
use crate::classify::ErasedClassifier;
use crate::client_type::ClientType;
use crate::connection::{Connection, Side};
use crate::error::Error;
use crate::handler::{
    EventContext, FromEvent, Handler, HandlerSlot, IntoFiltered, IntoHandlerResult, rejected,
};
use crate::handler_kind::HandlerKind;

/// The routing table, built by the attribute macros ([`Router::registered`]) or
/// by hand; both end in the same `Router`.
///
/// ```
/// use flexi_socket::{Connection, Router};
///
/// async fn alarm(conn: Connection, msg: String) -> flexi_socket::Result<()> {
///     conn.send(format!("ACK {msg}")).await
/// }
///
/// let router = Router::new()
///     .on_connect(|conn: Connection| async move { println!("{} connected", conn.peer_addr()) })
///     .on_message_for("001", alarm);
/// # let _ = router;
/// ```
#[derive(Clone, Default)]
pub struct Router {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    kind: HandlerKind,
    client_type: Option<ClientType>,
    handler: Handler,
}

macro_rules! message_like_methods {
    ($(#[$doc:meta])* $default:ident, $typed:ident, $kind:expr, $bound:ident, $convert:ident) => {
        $(#[$doc])*
        #[must_use]
        #[track_caller]
        pub fn $default<F, M, Fut>(self, handler: F) -> Self
        where
            F: Fn(Connection, M) -> Fut + Send + Sync + 'static,
            M: FromEvent + Send + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: $bound,
        {
            self.with_arg(None, $kind, handler, |out| out.$convert())
        }

        #[doc = concat!("Like [`Router::", stringify!($default), "`], for one client type only.")]
        #[must_use]
        #[track_caller]
        pub fn $typed<F, M, Fut>(self, client_type: impl Into<ClientType>, handler: F) -> Self
        where
            F: Fn(Connection, M) -> Fut + Send + Sync + 'static,
            M: FromEvent + Send + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: $bound,
        {
            self.with_arg(Some(client_type.into()), $kind, handler, |out| out.$convert())
        }
    };
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handlers registered with the attribute macros in this binary
    /// without a `scope`: what a server or client that names no
    /// [`handler_scope`](crate::ServerBuilder::handler_scope) runs.
    pub fn registered() -> Self {
        Self::registered_for(None)
    }

    /// The handlers registered with the attribute macros with
    /// `scope = "<scope>"`: what a server or client built with
    /// `.handler_scope(scope)` runs.
    pub fn registered_in(scope: &str) -> Self {
        Self::registered_for(Some(scope))
    }

    fn registered_for(scope: Option<&str>) -> Self {
        let entries = registry::registered()
            .into_iter()
            .filter(|r| r.scope == scope)
            .map(|r| {
                let mut handler = Handler::function(r.name, r.call);
                handler.blocking = r.blocking;
                Entry {
                    kind: r.kind,
                    client_type: r.client_type.map(|client_type| client_type()),
                    handler,
                }
            })
            .collect();
        Self { entries }
    }

    /// Adds every handler of `other`.
    #[must_use]
    pub fn merge(mut self, other: Router) -> Self {
        self.entries.extend(other.entries);
        self
    }

    /// Number of handlers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no handler is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs `handler` when a connection opens (before classification).
    #[must_use]
    #[track_caller]
    pub fn on_connect<F, Fut>(self, handler: F) -> Self
    where
        F: Fn(Connection) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoHandlerResult,
    {
        self.without_arg(None, HandlerKind::Connect, handler)
    }

    message_like_methods!(
        /// Runs `handler` once when a connection ends, whatever ended it; the
        /// second argument is usually the [`DisconnectReason`](crate::DisconnectReason).
        on_disconnect, on_disconnect_for, HandlerKind::Disconnect, IntoHandlerResult, into_handler_result
    );

    message_like_methods!(
        /// Runs `handler` for each inbound message of connections without a more
        /// specific handler. The second argument picks the message's view:
        /// `String`, `Bytes`, `Vec<u8>` or `Message`.
        on_message, on_message_for, HandlerKind::Message, IntoHandlerResult, into_handler_result
    );

    message_like_methods!(
        /// Runs `handler` on each inbound message before `on_message`: return the
        /// message to pass on (rewritten if you like) or `None` to drop it.
        after_receive, after_receive_for, HandlerKind::AfterReceive, IntoFiltered, into_filtered
    );

    message_like_methods!(
        /// Runs `handler` on each outbound message before framing: what it
        /// returns is what goes on the wire; `None` drops the message.
        before_send, before_send_for, HandlerKind::BeforeSend, IntoFiltered, into_filtered
    );

    message_like_methods!(
        /// Runs `handler` for each error on a connection (the second argument is
        /// the [`enum@Error`]).
        on_error, on_error_for, HandlerKind::Error, IntoHandlerResult, into_handler_result
    );

    #[track_caller]
    fn without_arg<F, Fut>(
        self,
        client_type: Option<ClientType>,
        kind: HandlerKind,
        handler: F,
    ) -> Self
    where
        F: Fn(Connection) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoHandlerResult,
    {
        let call =
            move |context: &mut EventContext, slot: &mut HandlerSlot, cx: &mut Context<'_>| {
                let connection = match Connection::take_from_event(context) {
                    Ok(connection) => connection,
                    Err(error) => return rejected(error),
                };
                let future = handler(connection);
                slot.run(async move { future.await.into_handler_result() }, cx)
            };
        self.push(kind, client_type, Handler::new(handler_name::<F>(), call))
    }

    #[track_caller]
    fn with_arg<F, M, Fut>(
        self,
        client_type: Option<ClientType>,
        kind: HandlerKind,
        handler: F,
        convert: fn(Fut::Output) -> crate::handler::HandlerOutput,
    ) -> Self
    where
        F: Fn(Connection, M) -> Fut + Send + Sync + 'static,
        M: FromEvent + Send + 'static,
        Fut: Future + Send + 'static,
    {
        let call =
            move |context: &mut EventContext, slot: &mut HandlerSlot, cx: &mut Context<'_>| {
                // The argument first, copied: it may need the connection (`State`).
                let argument = match M::from_event(context) {
                    Ok(argument) => argument,
                    Err(error) => return rejected(error),
                };
                let connection = match Connection::take_from_event(context) {
                    Ok(connection) => connection,
                    Err(error) => return rejected(error),
                };
                // Called here, not in the slot: the slot then holds its future only.
                let future = handler(connection, argument);
                slot.run(async move { convert(future.await) }, cx)
            };
        self.push(kind, client_type, Handler::new(handler_name::<F>(), call))
    }

    fn push(
        mut self,
        kind: HandlerKind,
        client_type: Option<ClientType>,
        handler: Handler,
    ) -> Self {
        self.entries.push(Entry {
            kind,
            client_type,
            handler,
        });
        self
    }

    /// Checks the table (DESIGN §4.4) and resolves it into one [`Routes`] per
    /// client type, so per-message routing is a field access. A server's
    /// must have handlers, and its handlers' durations are measured. Client
    /// types in `unhandled` may lack an on_message handler.
    pub(crate) fn resolve(
        &self,
        classifier: Option<&ErasedClassifier>,
        side: Side,
        unhandled: &[ClientType],
    ) -> Result<RouteTable, Error> {
        if side == Side::Server && self.entries.is_empty() {
            return Err(Error::NoHandlers);
        }
        let mut by_key: HashMap<(HandlerKind, Option<&ClientType>), &Entry> = HashMap::new();
        for entry in &self.entries {
            if let Some(first) = by_key.insert((entry.kind, entry.client_type.as_ref()), entry) {
                return Err(Error::DuplicateHandler {
                    kind: entry.kind,
                    client_type: entry.client_type.clone().unwrap_or(ClientType::DEFAULT),
                    first: first.handler.name,
                    second: entry.handler.name,
                });
            }
            if let Some(client_type) = &entry.client_type {
                check_client_type(entry, client_type, classifier)?;
            }
        }
        if let Some(classifier) = classifier {
            self.check_every_type_handled(classifier, unhandled)?;
        }

        let measured = side == Side::Server;
        let default = Arc::new(Routes::for_client_type(&self.entries, None, measured));
        let mut typed = HashMap::new();
        for client_type in self.entries.iter().filter_map(|e| e.client_type.as_ref()) {
            typed.entry(client_type.clone()).or_insert_with(|| {
                Arc::new(Routes::for_client_type(
                    &self.entries,
                    Some(client_type),
                    measured,
                ))
            });
        }
        let table = RouteTable { default, typed };
        self.log_table(unhandled);
        Ok(table)
    }

    /// Every client type the classifier can produce has an on_message
    /// handler, or a default one serves it, or it is declared unhandled:
    /// otherwise all its messages would go unrouted, found only in traffic.
    fn check_every_type_handled(
        &self,
        classifier: &ErasedClassifier,
        unhandled: &[ClientType],
    ) -> Result<(), Error> {
        let (Some(produced), false) = (&classifier.client_types, self.entries.is_empty()) else {
            // Unknown client types, or a client without handlers (request only).
            return Ok(());
        };
        let handles = |client_type: Option<&ClientType>| {
            self.entries
                .iter()
                .any(|e| e.kind == HandlerKind::Message && e.client_type.as_ref() == client_type)
        };
        if handles(None) {
            return Ok(());
        }
        let missing = produced
            .iter()
            .find(|&client_type| !handles(Some(client_type)) && !unhandled.contains(client_type));
        match missing {
            Some(client_type) => Err(Error::UnhandledClientType {
                client_type: client_type.clone(),
                known: produced
                    .iter()
                    .map(ClientType::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            None => Ok(()),
        }
    }

    fn log_table(&self, unhandled: &[ClientType]) {
        let mut rows: Vec<&Entry> = self.entries.iter().collect();
        rows.sort_by(|a, b| (a.kind, &a.client_type).cmp(&(b.kind, &b.client_type)));
        tracing::info!(handlers = rows.len(), "flexi-socket routing table");
        for entry in rows {
            let client_type = entry.client_type.as_ref().unwrap_or(&ClientType::DEFAULT);
            tracing::info!(
                event = %entry.kind,
                client_type = %client_type,
                handler = entry.handler.name,
                replaces = self.replaced_by(entry),
                "route"
            );
        }
        for client_type in unhandled {
            tracing::info!(
                event = %HandlerKind::Message,
                %client_type,
                handler = "(none: allow_unhandled)",
                "route"
            );
        }
    }

    /// The default handler a typed `entry` stands in for: for connections
    /// of its type it runs instead of that one, not after it.
    fn replaced_by(&self, entry: &Entry) -> Option<&'static str> {
        entry.client_type.as_ref()?;
        self.entries
            .iter()
            .find(|other| other.kind == entry.kind && other.client_type.is_none())
            .map(|default| default.handler.name)
    }
}

/// A function's path, or for a closure (all named `...::{{closure}}`) where
/// it was added, so logs and duplicate errors tell handlers apart.
#[track_caller]
fn handler_name<F>() -> &'static str {
    let name = std::any::type_name::<F>();
    if !name.contains("{{closure}}") {
        return name;
    }
    let at = std::panic::Location::caller();
    // Leaked once per closure handler when the router is built: the name lives
    // as long as the router's handlers, which is the program in practice.
    Box::leak(format!("closure at {}:{}", at.file(), at.line()).into_boxed_str())
}

fn check_client_type(
    entry: &Entry,
    client_type: &ClientType,
    classifier: Option<&ErasedClassifier>,
) -> Result<(), Error> {
    let Some(classifier) = classifier else {
        return Err(Error::NoClassifier {
            handler: entry.handler.name,
            client_type: client_type.clone(),
        });
    };
    match classifier.never_produces(client_type) {
        Some(known) => Err(Error::UnknownClientType {
            handler: entry.handler.name,
            client_type: client_type.clone(),
            known,
        }),
        None => Ok(()),
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for entry in &self.entries {
            list.entry(&format_args!(
                "{} {} -> {}",
                entry.kind,
                entry.client_type.as_ref().unwrap_or(&ClientType::DEFAULT),
                entry.handler.name
            ));
        }
        list.finish()
    }
}

/// The handlers that apply to one client type, falling back to the defaults.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    pub(crate) on_connect: Option<Handler>,
    pub(crate) on_message: Option<Handler>,
    pub(crate) after_receive: Option<Handler>,
    pub(crate) before_send: Option<Handler>,
    pub(crate) on_error: Option<Handler>,
    pub(crate) on_disconnect: Option<Handler>,
}

impl Routes {
    /// The routes of `client_type` (`None`: the defaults), their handlers'
    /// durations `measured` or not.
    fn for_client_type(
        entries: &[Entry],
        client_type: Option<&ClientType>,
        measured: bool,
    ) -> Self {
        let pick = |kind: HandlerKind| {
            let find = |wanted: Option<&ClientType>| {
                entries
                    .iter()
                    .find(|e| e.kind == kind && e.client_type.as_ref() == wanted)
                    .map(|e| e.handler.measured(measured))
            };
            client_type
                .and_then(|t| find(Some(t)))
                .or_else(|| find(None))
        };
        Self {
            on_connect: pick(HandlerKind::Connect),
            on_message: pick(HandlerKind::Message),
            after_receive: pick(HandlerKind::AfterReceive),
            before_send: pick(HandlerKind::BeforeSend),
            on_error: pick(HandlerKind::Error),
            on_disconnect: pick(HandlerKind::Disconnect),
        }
    }
}

/// Resolved routes: the defaults plus one set per client type that has handlers.
#[derive(Debug)]
pub(crate) struct RouteTable {
    default: Arc<Routes>,
    typed: HashMap<ClientType, Arc<Routes>>,
}

impl RouteTable {
    pub(crate) fn default_routes(&self) -> &Arc<Routes> {
        &self.default
    }

    pub(crate) fn routes_for(&self, client_type: &ClientType) -> &Arc<Routes> {
        self.typed.get(client_type).unwrap_or(&self.default)
    }
}
