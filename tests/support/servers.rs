//! The servers that the loopback tests and their in-memory ports
//! (`tests/harness.rs`) both run: classifiers, routers and constants, so
//! that a port serves what its original serves. Each test file keeps its
//! own `server()`: an address on loopback, or "in memory".

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flexi_socket::{
    Classifier, ClientType, Connection, DisconnectReason, Error, Framing, Message, Router,
    ShutdownReport,
};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::codec::{BytesCodec, LengthDelimitedCodec};

use super::{Events, within};

/// Every connection is the same type; only the deadline for the first
/// message matters (`tests/limits.rs`).
pub struct AnyClient;

impl Classifier for AnyClient {
    fn classify(_first_frame: &[u8]) -> Self {
        AnyClient
    }

    fn client_type(&self) -> ClientType {
        "any".into()
    }
}

/// A hand-written classifier: "!!" alarm panels, "##" sensors, anything
/// else default (`tests/router_server.rs`).
pub struct Panel(Option<&'static str>);

impl Classifier for Panel {
    fn classify(first_frame: &[u8]) -> Self {
        if first_frame.starts_with(b"!!") {
            Panel(Some("001"))
        } else if first_frame.starts_with(b"##") {
            Panel(Some("002"))
        } else {
            Panel(None)
        }
    }

    fn client_type(&self) -> ClientType {
        self.0
            .map_or(ClientType::from_static("other"), ClientType::from_static)
    }

    fn client_types() -> Option<Vec<ClientType>> {
        Some(vec!["001".into(), "002".into(), "other".into()])
    }
}

/// "burst" clients get the burst handler; everyone else echoes
/// (`tests/router_server.rs`).
pub struct Burst(bool);

impl Classifier for Burst {
    fn classify(first_frame: &[u8]) -> Self {
        Burst(first_frame == b"burst")
    }

    fn client_type(&self) -> ClientType {
        if self.0 {
            "burst".into()
        } else {
            "echo".into()
        }
    }
}

/// Echoes every message.
pub fn echo_router() -> Router {
    Router::new().on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await })
}

/// Echoes, and reports every error and disconnect reason to `events`
/// (`tests/limits.rs`).
pub fn observed_echo(events: &Events) -> Router {
    let errors = events.clone();
    let disconnects = events.clone();
    echo_router()
        .on_error(move |_conn: Connection, error: Error| {
            let events = errors.clone();
            async move { events.push(format!("error {error}")) }
        })
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let events = disconnects.clone();
            async move { events.push(format!("disconnect {reason}")) }
        })
}

/// [`observed_echo`] for an [`AnyClient`] server whose handler hangs on
/// "hang" (for the handler timeout).
pub fn hanging_echo(events: &Events) -> Router {
    observed_echo(events).on_message_for("any", |conn: Connection, msg: String| async move {
        if msg == "hang" {
            std::future::pending::<()>().await;
        }
        conn.send(msg).await
    })
}

/// Echoes and reports every error, as its text, to `events`.
pub fn echo_reporting_errors(events: Events) -> Router {
    echo_router().on_error(move |_conn: Connection, error: Error| {
        let events = events.clone();
        async move { events.push(error.to_string()) }
    })
}

/// Replies `<message>` to every message and reports errors, as their text,
/// to `events` (`tests/framing_server.rs`).
pub fn bracket_router(events: Events) -> Router {
    Router::new()
        .on_message(|conn: Connection, msg: Message| async move {
            let reply = [b"<", msg.as_bytes(), b">"].concat();
            conn.send(reply).await
        })
        .on_error(move |_conn: Connection, error: Error| {
            let events = events.clone();
            async move { events.push(error.to_string()) }
        })
}

/// Echoes every message without a trailing "  " (a fixed-length frame's
/// padding, which the encoder adds back).
pub fn unpadding_echo() -> Router {
    Router::new().on_message(|conn: Connection, msg: Message| async move {
        conn.send(msg.strip_suffix(b"  ").unwrap_or(msg)).await
    })
}

/// A tokio-util codec: frames behind a one-byte length.
pub fn one_byte_length_prefix() -> Framing {
    Framing::custom(|| {
        LengthDelimitedCodec::builder()
            .length_field_length(1)
            .new_codec()
    })
}

/// A custom framing whose factory panics at its 1st and 3rd calls. It is
/// called once for each connection's encoder, then once for its decoder:
/// the 1st call fails the first connection before it exists, the 3rd the
/// second connection's decoder.
pub fn factory_failing_calls_1_and_3() -> Framing {
    let calls = AtomicUsize::new(0);
    Framing::custom(move || {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(call != 1 && call != 3, "factory call {call} fails");
        BytesCodec::new()
    })
}

/// For a [`Panel`] server: "001" messages answer `alarm:<msg>`, all others
/// `default(<client type>):<msg>`.
pub fn panel_router() -> Router {
    Router::new()
        .on_message_for("001", |conn: Connection, msg: String| async move {
            conn.send(format!("alarm:{msg}")).await
        })
        .on_message(|conn: Connection, msg: String| async move {
            let kind = conn
                .client_type()
                .map(ClientType::to_string)
                .unwrap_or_default();
            conn.send(format!("default({kind}):{msg}")).await
        })
}

/// For a [`Panel`] server: only "001" has a handler (it answers "ok"); the
/// errors go to `events` as `error: <error>`.
pub fn alarms_only_router(events: Events) -> Router {
    Router::new()
        .on_message_for("001", |conn: Connection, _msg: Bytes| async move {
            conn.send("ok").await
        })
        .on_error(move |_conn: Connection, error: Error| {
            let events = events.clone();
            async move { events.push(format!("error: {error}")) }
        })
}

/// Every hook reports to the [`Events`] given as the server's state:
/// on_connect, after_receive (strips a leading "!!", drops "drop"),
/// on_message (echoes), before_send (`<reply>`), on_disconnect.
pub fn hooks_router() -> Router {
    Router::new()
        .on_connect(|conn: Connection| async move {
            shared_events(&conn).push("connect");
        })
        .after_receive(|conn: Connection, msg: Message| async move {
            shared_events(&conn).push(format!("after_receive {}", String::from_utf8_lossy(&msg)));
            // Strip a leading "!!" marker; drop lines that say "drop".
            if &msg[..] == b"drop" {
                return None;
            }
            Some(Message::new(strip_marker(msg.into_bytes())))
        })
        .on_message(|conn: Connection, msg: String| async move {
            shared_events(&conn).push(format!("message {msg} first={}", conn.is_first_message()));
            conn.send(msg).await
        })
        .before_send(|_conn: Connection, msg: Message| async move {
            Message::from(format!("<{}>", String::from_utf8_lossy(&msg)))
        })
        .on_disconnect(|conn: Connection, _reason: DisconnectReason| async move {
            shared_events(&conn).push("disconnect");
        })
}

fn shared_events(conn: &Connection) -> &Events {
    conn.app_state::<Events>()
        .expect("the test gives Events as state")
}

/// Strips a leading "!!" marker, as an alarm receiver's after_receive would.
fn strip_marker(bytes: Bytes) -> Bytes {
    if bytes.starts_with(b"!!") {
        bytes.slice(2..)
    } else {
        bytes
    }
}

/// For a [`Burst`] server: echoes, reports disconnects to `events` as
/// `disconnect: <reason>`; a "burst" client gets 2,000 replies at once
/// (`started` hears when they begin).
pub fn burst_router(events: Events, started: Events) -> Router {
    echo_router()
        .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
            let events = events.clone();
            async move { events.push(format!("disconnect: {reason}")) }
        })
        .on_message_for("burst", move |conn: Connection, _msg: Bytes| {
            let started = started.clone();
            async move {
                started.push("started");
                for i in 0..2_000 {
                    conn.send(format!("reply {i}")).await?;
                }
                Ok::<(), Error>(())
            }
        })
}

// Graceful shutdown under load (`tests/shutdown.rs`): peers stream
// sequenced messages within a window of unacknowledged ones, the server
// ACKs each and shuts down mid-stream.

/// How many peers stream.
pub const CLIENTS: usize = 50;
/// Messages in flight per client.
pub const WINDOW: usize = 8;
/// Each client stops sending after this many, so the test is bounded.
pub const MAX_PER_CLIENT: usize = 2_000;

/// What the [`acking_router`] saw.
pub struct Handled {
    connected: Semaphore,
    messages: Mutex<Vec<String>>,
    reached: Notify,
}

impl Handled {
    pub fn new() -> Self {
        Self {
            connected: Semaphore::new(0),
            messages: Mutex::new(Vec::new()),
            reached: Notify::new(),
        }
    }

    /// Once the server has accepted all [`CLIENTS`], starts them (`go`);
    /// at the `trigger_at`-th message shuts the server down (`shutdown`),
    /// then collects what the `clients` saw acknowledged and checks that it
    /// is what the server handled, nothing twice, and no connection was cut.
    pub async fn shut_down_mid_stream(
        &self,
        trigger_at: usize,
        go: watch::Sender<bool>,
        mut clients: JoinSet<BTreeSet<String>>,
        shutdown: impl Future<Output = ShutdownReport>,
    ) {
        // Everyone starts once the server has accepted everyone.
        within(
            "every connection",
            self.connected.acquire_many(CLIENTS as u32),
        )
        .await
        .unwrap()
        .forget();
        let reached = self.reached.notified();
        go.send(true).unwrap();
        within("the trigger point", reached).await;
        let report = shutdown.await;

        let mut acked = BTreeSet::new();
        while let Some(set) = within("the clients", clients.join_next()).await {
            acked.extend(set.unwrap());
        }
        let handled_list = self.messages.lock().unwrap().clone();
        let handled_set: BTreeSet<String> = handled_list.iter().cloned().collect();
        assert_eq!(
            handled_list.len(),
            handled_set.len(),
            "a message was handled twice"
        );
        assert!(handled_set.len() >= trigger_at);
        assert_eq!(handled_set, acked, "handled and acknowledged differ");
        assert_eq!(report.connections_aborted, 0, "{report:?}");
        assert_eq!(report.undelivered_messages, 0, "{report:?}");
        assert_eq!(report.connections_closed, CLIENTS as u64, "{report:?}");
    }
}

/// Counts connections and handled messages in `handled`, notifies
/// `handled.reached` at the `trigger_at`-th message, and ACKs each.
pub fn acking_router(handled: Arc<Handled>, trigger_at: usize) -> Router {
    let connects = Arc::clone(&handled);
    Router::new()
        .on_connect(move |_conn: Connection| {
            let connects = Arc::clone(&connects);
            async move { connects.connected.add_permits(1) }
        })
        .on_message(move |conn: Connection, msg: String| {
            let handled = Arc::clone(&handled);
            async move {
                let count = {
                    let mut messages = handled.messages.lock().unwrap();
                    messages.push(msg.clone());
                    messages.len()
                };
                if count == trigger_at {
                    handled.reached.notify_one();
                }
                conn.send(format!("ACK {msg}")).await
            }
        })
}
