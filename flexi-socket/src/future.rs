//! [`BoxFuture`]: the boxed futures of the runtime's own (reports, the
//! rarer steps of a connection), named once for every layer. A leaf.

use std::future::Future;
use std::pin::Pin;

/// A boxed future of the runtime's own (not a handler's).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
