//! A connection's message history (opt-in): the last messages in and out,
//! each as it arrived and as the handlers saw it (after `after_receive`),
//! or as given to `send` and as written (after `before_send`), bounded in
//! messages and in bytes so a chatty or hostile peer cannot grow it. Off,
//! it costs a connection nothing of its own (the recorder sits with what
//! few connections have: see `Extras`) and each message one branch.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;

use super::Connection;

use crate::client_type::ClientType;
use crate::config::HistoryLimits;
use crate::sync;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the peer (a server's "messages from the client").
    Inbound,
    /// To the peer.
    Outbound,
}

/// One message of a connection's [`History`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    direction: Direction,
    raw: Bytes,
    processed: Option<Bytes>,
    at: SystemTime,
    client_type: Option<ClientType>,
    truncated: bool,
}

impl HistoryEntry {
    /// Inbound or outbound.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Inbound: the frame as decoded; outbound: the message given to `send`.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Inbound: what the handler got after `after_receive`; outbound: the
    /// message after `before_send`, as queued for the socket (before the
    /// framing). `None` when that filter dropped it. A send that failed is
    /// not recorded.
    pub fn processed(&self) -> Option<&[u8]> {
        self.processed.as_deref()
    }

    /// When it was recorded.
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// The connection's client type then (`None` before classification).
    pub fn client_type(&self) -> Option<&ClientType> {
        self.client_type.as_ref()
    }

    /// Whether the bytes were cut to fit the history's byte bound.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    fn cost(&self) -> usize {
        self.raw.len() + self.processed.as_ref().map_or(0, Bytes::len)
    }
}

/// The last messages of a connection, oldest first; see
/// [`Connection::history`](crate::Connection::history). Its `Display`
/// prints one line per message, like the Python original's
/// `print_history()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    entries: Vec<HistoryEntry>,
}

impl History {
    /// Every message kept, oldest first.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    /// Whether nothing was kept (history off, or nothing happened yet).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The inbound messages (a server's messages from the client).
    pub fn inbound(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.entries
            .iter()
            .filter(|entry| entry.direction == Direction::Inbound)
    }

    /// The outbound messages (a server's messages to the client).
    pub fn outbound(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.entries
            .iter()
            .filter(|entry| entry.direction == Direction::Outbound)
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            let arrow = match entry.direction {
                Direction::Inbound => "<-",
                Direction::Outbound => "->",
            };
            let since = entry
                .at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            write!(
                f,
                "{}.{:03} {arrow} {}",
                since.as_secs(),
                since.subsec_millis(),
                Shown(&entry.raw)
            )?;
            match &entry.processed {
                Some(processed) if *processed != entry.raw => {
                    write!(f, " => {}", Shown(processed))?
                }
                Some(_) => {}
                None => f.write_str(" => (dropped)")?,
            }
            if let Some(client_type) = &entry.client_type {
                write!(f, " [{client_type}]")?;
            }
            if entry.truncated {
                f.write_str(" (truncated)")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Bytes as text where they are text, escaped where not.
struct Shown<'a>(&'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                write!(f, "{}", c.escape_debug())?;
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        f.write_str("\"")
    }
}

/// What a connection with history on keeps.
#[derive(Debug)]
pub(crate) struct Recorder {
    kept: Mutex<Kept>,
}

#[derive(Debug)]
struct Kept {
    limits: HistoryLimits,
    entries: VecDeque<HistoryEntry>,
    bytes: usize,
}

impl Recorder {
    pub(crate) fn new(limits: HistoryLimits) -> Self {
        Self {
            kept: Mutex::new(Kept {
                limits,
                entries: VecDeque::new(),
                bytes: 0,
            }),
        }
    }

    /// From classification on, the client type's limits (no history: none kept).
    pub(crate) fn set_limits(&self, limits: HistoryLimits) {
        let mut kept = sync::lock(&self.kept);
        kept.limits = limits;
        kept.evict();
    }

    pub(crate) fn record(
        &self,
        direction: Direction,
        raw: &[u8],
        processed: Option<&[u8]>,
        client_type: Option<&ClientType>,
    ) {
        let mut kept = sync::lock(&self.kept);
        let HistoryLimits { messages, bytes } = kept.limits;
        if messages == 0 || bytes == 0 {
            return;
        }
        // Copied: a message shares the read buffer, which it would pin.
        let room = bytes;
        let raw_kept = &raw[..raw.len().min(room)];
        let processed_kept =
            processed.map(|processed| &processed[..processed.len().min(room - raw_kept.len())]);
        let truncated = raw_kept.len() < raw.len()
            || processed_kept.map(<[u8]>::len) < processed.map(<[u8]>::len);
        let entry = HistoryEntry {
            direction,
            raw: Bytes::copy_from_slice(raw_kept),
            processed: processed_kept.map(Bytes::copy_from_slice),
            at: SystemTime::now(),
            client_type: client_type.cloned(),
            truncated,
        };
        kept.bytes += entry.cost();
        kept.entries.push_back(entry);
        kept.evict();
    }

    pub(crate) fn snapshot(&self) -> History {
        History {
            entries: sync::lock(&self.kept).entries.iter().cloned().collect(),
        }
    }
}

impl Kept {
    fn evict(&mut self) {
        while self.entries.len() > self.limits.messages || self.bytes > self.limits.bytes {
            let Some(oldest) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= oldest.cost();
        }
    }
}

impl Connection {
    /// The last messages in and out, with their raw and processed forms,
    /// when the builder keeps a history
    /// ([`history`](crate::ServerBuilder::history)); empty otherwise. In
    /// `on_disconnect` it holds the connection's last words.
    ///
    /// ```no_run
    /// # use flexi_socket::{Connection, DisconnectReason};
    /// async fn gone(conn: Connection, reason: DisconnectReason) {
    ///     eprintln!("{} left ({reason}); last messages:\n{}", conn.peer_addr(), conn.history());
    /// }
    /// ```
    pub fn history(&self) -> History {
        self.recorder()
            .map_or_else(History::default, Recorder::snapshot)
    }

    /// Records an inbound message as decoded (`raw`) and as handed to the
    /// handler (`None`: `after_receive` dropped it), if history is on.
    pub(crate) fn record_inbound(&self, raw: &[u8], processed: Option<&[u8]>) {
        if let Some(history) = self.recorder() {
            history.record(Direction::Inbound, raw, processed, self.client_type());
        }
    }

    /// Records an outbound message as given to `send` and as written
    /// (`None`: `before_send` dropped it), if history is on.
    pub(crate) fn record_outbound(&self, given: &[u8], written: Option<&[u8]>) {
        if let Some(history) = self.recorder() {
            history.record(Direction::Outbound, given, written, self.client_type());
        }
    }

    /// Whether the history is on (a sender keeps the given message aside).
    pub(crate) fn keeps_history(&self) -> bool {
        self.recorder().is_some()
    }

    /// The history's recorder, if history is on.
    #[inline]
    pub(super) fn recorder(&self) -> Option<&Recorder> {
        self.extras()?.history.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(messages: usize, bytes: usize) -> Recorder {
        Recorder::new(HistoryLimits { messages, bytes })
    }

    #[test]
    fn keeps_the_last_messages_in_order() {
        let history = recorder(3, 1024);
        for n in 0..5 {
            let text = format!("m{n}");
            history.record(Direction::Inbound, text.as_bytes(), Some(b"x"), None);
        }
        let kept: Vec<_> = history
            .snapshot()
            .entries()
            .iter()
            .map(|e| e.raw().to_vec())
            .collect();
        assert_eq!(kept, [b"m2".to_vec(), b"m3".to_vec(), b"m4".to_vec()]);
    }

    #[test]
    fn the_byte_bound_holds_and_one_large_message_is_cut_to_it() {
        let history = recorder(100, 1000);
        for _ in 0..10 {
            history.record(Direction::Inbound, &[b'a'; 300], Some(&[b'b'; 300]), None);
        }
        let snapshot = history.snapshot();
        let total: usize = snapshot.entries().iter().map(HistoryEntry::cost).sum();
        assert!(total <= 1000, "{total}");
        assert_eq!(
            snapshot.entries().len(),
            1,
            "two messages of 600 bytes do not fit"
        );
        history.record(Direction::Outbound, &[b'c'; 5000], None, None);
        let last = history.snapshot().entries().last().cloned().unwrap();
        assert!(last.is_truncated());
        assert_eq!(last.raw().len(), 1000);
    }

    #[test]
    fn display_prints_a_line_per_message() {
        let history = recorder(10, 1024);
        history.record(
            Direction::Inbound,
            b"!!hi\r",
            Some(b"hi"),
            Some(&"001".into()),
        );
        history.record(
            Direction::Outbound,
            b"ACK",
            Some(b"ACK"),
            Some(&"001".into()),
        );
        history.record(Direction::Inbound, b"junk\xff", None, Some(&"001".into()));
        let text = history.snapshot().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].ends_with("<- \"!!hi\\r\" => \"hi\" [001]"),
            "{text}"
        );
        assert!(lines[1].ends_with("-> \"ACK\" [001]"), "{text}");
        assert!(
            lines[2].ends_with("<- \"junk\\xff\" => (dropped) [001]"),
            "{text}"
        );
    }
}
