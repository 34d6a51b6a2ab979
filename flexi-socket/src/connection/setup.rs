//! What every builder (server, TCP client, UDP client) configures the same
//! way: the classifier, the router and the shared state, and how they become
//! the [`Endpoint`] the connections share.

use std::any::Any;
use std::sync::Arc;

use super::endpoint::{Endpoint, Handlers, ReplyHook, ServerWide, Side};
use crate::classify::{ClientFraming, ErasedClassifier};
use crate::client_type::ClientType;
use crate::config::Limits;
use crate::error::Error;
use crate::framing::Framing;
use crate::handler::{Router, attribute_router};

/// The handler side of a builder.
#[derive(Default, Clone)]
pub(crate) struct HandlerSetup {
    pub(crate) classifier: Option<ErasedClassifier>,
    pub(crate) router: Option<Router>,
    pub(crate) app_state: Option<Arc<dyn Any + Send + Sync>>,
    /// Client types declared to have no on_message handler on purpose.
    pub(crate) unhandled: Vec<ClientType>,
    /// Which attribute handlers to run (`handler_scope`); `None`: those
    /// without a scope.
    pub(crate) scope: Option<String>,
}

impl HandlerSetup {
    /// Checks the routing table (the attributes' handlers unless a router was
    /// given) and builds the endpoint of `side` (see [`Side`]).
    pub(crate) fn endpoint(
        self,
        framing: Framing,
        client_framing: ClientFraming,
        limits: Limits,
        side: Side,
        replies: Option<Arc<dyn ReplyHook>>,
    ) -> Result<Arc<Endpoint>, Error> {
        self.endpoint_in(framing, client_framing, limits, side, replies, None)
    }

    /// [`endpoint`](Self::endpoint) sharing `wide` (when given) with the
    /// server's other listeners.
    pub(crate) fn endpoint_in(
        self,
        framing: Framing,
        client_framing: ClientFraming,
        limits: Limits,
        side: Side,
        replies: Option<Arc<dyn ReplyHook>>,
        wide: Option<ServerWide>,
    ) -> Result<Arc<Endpoint>, Error> {
        let router = match self.router {
            Some(router) => router,
            None => attribute_router(self.scope.as_deref(), side)?,
        };
        let classifier = self.classifier.as_ref();
        let routes = router.resolve(classifier, side, &self.unhandled)?;
        client_framing.check(self.classifier.as_ref(), &limits)?;
        let handlers = Handlers {
            routes,
            app_state: self.app_state,
            classifier: self.classifier,
        };
        Ok(Endpoint::new(
            handlers,
            framing,
            client_framing,
            limits,
            side,
            replies,
            wide,
        ))
    }
}

impl std::fmt::Debug for HandlerSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerSetup")
            .field("classifier", &self.classifier)
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

/// The builder methods of [`HandlerSetup`], written once for every builder
/// that has a `setup: HandlerSetup` field.
macro_rules! handler_setup_methods {
    () => {
        /// Classifies each connection by the first message it receives (see
        /// [`Classifier`](crate::Classifier)). Default: none; the handlers
        /// without `client_type` serve everyone.
        #[must_use]
        pub fn classifier<C: crate::Classifier>(mut self) -> Self {
            self.setup.classifier = Some(crate::classify::ErasedClassifier::of::<C>());
            self
        }

        /// Declares that `client_type` has no `on_message` handler on purpose
        /// (and no default handler serves it), so that start-up does not
        /// fail with [`Error::UnhandledClientType`](crate::Error::UnhandledClientType):
        /// say a type whose `after_receive` drops everything, or whose
        /// `on_connect` closes it. Its messages still reach `on_error` as
        /// [`Unrouted`](crate::Error::Unrouted). Call it once per type.
        ///
        /// ```no_run
        /// use flexi_socket::{Classifier, FlexiSocket};
        /// # use flexi_socket::{Connection, on_message};
        /// # #[on_message(client_type = "alarm")]
        /// # async fn alarm(_: Connection) {}
        ///
        /// #[derive(Classifier)]
        /// enum Device {
        ///     #[client_type = "alarm"]
        ///     #[classify(prefix = "!!")]
        ///     Alarm,
        ///     #[client_type = "probe"]
        ///     #[classify(default)]
        ///     Probe, // port scanners: reported as unrouted, nothing to answer
        /// }
        ///
        /// # async fn run() -> flexi_socket::Result<()> {
        /// FlexiSocket::server("0.0.0.0:9000")
        ///     .classifier::<Device>()
        ///     .allow_unhandled("probe")
        ///     .serve()
        ///     .await
        /// # }
        /// ```
        #[must_use]
        pub fn allow_unhandled(mut self, client_type: impl Into<crate::ClientType>) -> Self {
            self.setup.unhandled.push(client_type.into());
            self
        }

        /// Runs the attribute handlers registered with `scope = "<scope>"`
        /// instead of those without a scope. A program that runs a server
        /// and a client gives each its own handlers this way; otherwise
        /// both run every handler without a scope (a warning says so).
        /// Start-up fails with
        /// [`Error::NoHandlersInScope`](crate::Error::NoHandlersInScope)
        /// when no handler has the scope.
        ///
        /// ```no_run
        /// use flexi_socket::{Connection, FlexiSocket, on_message};
        ///
        /// /// The server's: devices' lines.
        /// #[on_message]
        /// async fn from_device(conn: Connection, line: String) -> flexi_socket::Result<()> {
        ///     conn.send(format!("ACK {line}")).await
        /// }
        ///
        /// /// The uplink client's: what the central server sends.
        /// #[on_message(scope = "uplink")]
        /// async fn from_central(line: String) {
        ///     println!("central says {line}");
        /// }
        ///
        /// # async fn run() -> flexi_socket::Result<()> {
        /// let uplink = FlexiSocket::client("central.example:9000")
        ///     .handler_scope("uplink")
        ///     .spawn()?;
        /// FlexiSocket::server("0.0.0.0:9000").serve().await
        /// # }
        /// ```
        #[must_use]
        pub fn handler_scope(mut self, scope: impl Into<String>) -> Self {
            self.setup.scope = Some(scope.into());
            self
        }

        /// Routes with this router instead of the handlers registered by attributes.
        #[must_use]
        pub fn router(mut self, router: crate::Router) -> Self {
            self.setup.router = Some(router);
            self
        }

        /// Shared application state; handlers take it as [`State<T>`](crate::State).
        #[must_use]
        pub fn state<S: Send + Sync + 'static>(mut self, state: S) -> Self {
            self.setup.app_state = Some(std::sync::Arc::new(state));
            self
        }
    };
}
pub(crate) use handler_setup_methods;
