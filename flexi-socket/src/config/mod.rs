//! Configuration leaves: the protective limits and policies of a server or
//! client, and the reconnect backoff. Plain values, read by every layer.

mod key_policy;
mod limits;
mod reconnect;
mod reply_order;

pub use key_policy::KeyPolicy;
pub(crate) use limits::{HistoryLimits, Limits, history_method, read_buffer_method};
pub use limits::{PanicPolicy, SlowConsumerPolicy};
pub use reconnect::Reconnect;
pub use reply_order::ReplyOrder;
