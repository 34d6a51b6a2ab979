//! A connection's typed state (`set_state` and its kin, one value per type)
//! and the server's application state (`app_state`).

use std::any::{Any, TypeId};

use super::Connection;
use crate::sync;

impl Connection {
    /// Stores typed per-connection state, replacing any earlier value of the type.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_message};
    ///
    /// #[derive(Clone)]
    /// struct Account(String);
    ///
    /// #[on_message]
    /// async fn login(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     match conn.state::<Account>() {
    ///         None => {
    ///             conn.set_state(Account(msg)); // the first line is the account
    ///             conn.send("logged in").await
    ///         }
    ///         Some(Account(account)) => conn.send(format!("{account}: {msg}")).await,
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn set_state<T: Send + 'static>(&self, value: T) {
        let mut state = sync::lock(self.shared.state.get_or_init(Box::default));
        let slot = (TypeId::of::<T>(), Box::new(value) as Box<dyn Any + Send>);
        match state.iter_mut().find(|(id, _)| *id == TypeId::of::<T>()) {
            Some(existing) => *existing = slot,
            None => state.push(slot),
        }
    }

    /// A clone of the per-connection state of type `T`, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_message};
    ///
    /// #[derive(Clone, Copy)]
    /// struct Zone(u8);
    ///
    /// #[on_message]
    /// async fn report(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     let zone = conn.state::<Zone>().map_or(0, |Zone(zone)| zone); // a copy
    ///     conn.send(format!("zone {zone}: {msg}")).await
    /// }
    /// # fn main() {}
    /// ```
    pub fn state<T: Clone + Send + 'static>(&self) -> Option<T> {
        self.with_state(|value: &mut T| value.clone())
    }

    /// Runs `f` on the per-connection state of type `T`, if set.
    ///
    /// # Examples
    ///
    /// Change the state in place (no `Clone` needed):
    ///
    /// ```
    /// use flexi_socket::{Connection, on_connect, on_message};
    ///
    /// struct Seen(Vec<String>);
    ///
    /// #[on_connect]
    /// async fn start(conn: Connection) {
    ///     conn.set_state(Seen(Vec::new()));
    /// }
    ///
    /// #[on_message]
    /// async fn remember(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    ///     let count = conn.with_state(|seen: &mut Seen| {
    ///         seen.0.push(msg);
    ///         seen.0.len()
    ///     });
    ///     conn.send(format!("{} messages so far", count.unwrap_or(0))).await
    /// }
    /// # fn main() {}
    /// ```
    pub fn with_state<T: Send + 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut state = self.lock_state()?;
        state
            .iter_mut()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, value)| value.downcast_mut::<T>())
            .map(f)
    }

    /// Removes and returns the per-connection state of type `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, on_disconnect};
    ///
    /// struct Session(Vec<String>);
    ///
    /// #[on_disconnect]
    /// async fn flush(conn: Connection) {
    ///     if let Some(Session(lines)) = conn.take_state::<Session>() {
    ///         println!("{} sent {} lines", conn.peer_addr(), lines.len());
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn take_state<T: Send + 'static>(&self) -> Option<T> {
        let mut state = self.lock_state()?;
        let index = state.iter().position(|(id, _)| *id == TypeId::of::<T>())?;
        state.swap_remove(index).1.downcast::<T>().ok().map(|b| *b)
    }

    /// The typed state, locked, once a value was ever set.
    fn lock_state(&self) -> Option<std::sync::MutexGuard<'_, StateValues>> {
        // A panic while holding the lock cannot leave the Vec half-updated.
        self.shared.state.get().map(sync::lock)
    }

    /// The server's shared application state of type `T` (see
    /// [`ServerBuilder::state`](crate::ServerBuilder::state)), if that is its type.
    ///
    /// # Examples
    ///
    /// ```
    /// use flexi_socket::{Connection, FlexiSocket, on_message};
    ///
    /// struct Config {
    ///     greeting: String,
    /// }
    ///
    /// #[on_message]
    /// async fn greet(conn: Connection, name: String) -> flexi_socket::Result<()> {
    ///     let greeting = conn.app_state::<Config>().map_or("hello", |c| c.greeting.as_str());
    ///     conn.send(format!("{greeting}, {name}")).await
    /// }
    ///
    /// # async fn run() -> flexi_socket::Result<()> {
    /// FlexiSocket::server("127.0.0.1:8081")
    ///     .state(Config { greeting: "welcome".into() })
    ///     .serve()
    ///     .await
    /// # }
    /// # fn main() {}
    /// ```
    ///
    /// (A handler may also take [`State<Config>`](crate::State) as an argument:
    /// the same value, cloned for the handler.)
    pub fn app_state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.shared
            .endpoint
            .app_state
            .as_deref()?
            .downcast_ref::<T>()
    }
}

/// A connection's typed state: one value per type.
pub(super) type StateValues = Vec<(TypeId, Box<dyn Any + Send>)>;
