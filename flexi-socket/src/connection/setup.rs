//! What every builder (server, TCP client, UDP client) configures the same
//! way: the classifier, the router and the shared state, and how they become
//! the [`Endpoint`] the connections share.

use std::any::Any;
use std::sync::Arc;

use super::endpoint::{Endpoint, Handlers, ReplyHook, ServerWide};
use crate::classify::{ClientFraming, ErasedClassifier};
use crate::config::Limits;
use crate::error::Error;
use crate::framing::Framing;
use crate::handler::Router;

/// The handler side of a builder.
#[derive(Default, Clone)]
pub(crate) struct HandlerSetup {
    pub(crate) classifier: Option<ErasedClassifier>,
    pub(crate) router: Option<Router>,
    pub(crate) app_state: Option<Arc<dyn Any + Send + Sync>>,
}

impl HandlerSetup {
    /// Checks the routing table (the attributes' handlers unless a router was
    /// given) and builds the endpoint. A client may have no handlers at
    /// all (it can be used through `request` only); a server may not.
    pub(crate) fn endpoint(
        self,
        framing: Framing,
        client_framing: ClientFraming,
        limits: Limits,
        require_handlers: bool,
        replies: Option<Arc<dyn ReplyHook>>,
    ) -> Result<Arc<Endpoint>, Error> {
        let wide = ServerWide::default();
        self.endpoint_in(
            framing,
            client_framing,
            limits,
            require_handlers,
            replies,
            wide,
        )
    }

    /// [`endpoint`](Self::endpoint) sharing `wide` with the server's other listeners.
    pub(crate) fn endpoint_in(
        self,
        framing: Framing,
        client_framing: ClientFraming,
        limits: Limits,
        require_handlers: bool,
        replies: Option<Arc<dyn ReplyHook>>,
        wide: ServerWide,
    ) -> Result<Arc<Endpoint>, Error> {
        let router = self.router.unwrap_or_else(Router::registered);
        let routes = router.resolve(self.classifier.as_ref(), require_handlers)?;
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
