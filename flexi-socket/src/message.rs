//! The message type handlers receive and send.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

use crate::error::Error;

/// One framed message: immutable bytes, cheap to clone.
///
/// The framing delimiter is never part of a message. Handlers that want a
/// different view take `String`, `&str`, `Bytes`, `Vec<u8>` or `&[u8]` instead.
///
/// A received message is a slice of the buffer its connection read into,
/// not a copy (a UDP datagram's is a slice of a buffer of up to 4 KiB
/// shared with the datagrams received around it). Kept after the handler
/// returns (sent to a channel, stored in a map), it keeps that whole buffer
/// alive, kilobytes for a message of a few bytes;
/// [`detached`](Self::detached) copies a short one out first.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Message {
    bytes: Bytes,
}

impl Message {
    /// Wraps bytes into a message.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self {
            bytes: bytes.into(),
        }
    }

    /// A message of static text, without copying it.
    pub const fn from_static(text: &'static str) -> Self {
        Self {
            bytes: Bytes::from_static(text.as_bytes()),
        }
    }

    /// The message, copied if it is short enough to copy cheaply (up to
    /// 512 bytes), so that it does not hold on to the buffer it was cut
    /// from. For messages that leave the handler to be kept elsewhere: a
    /// kept slice pins the connection's whole read buffer, kilobytes, and
    /// its next read has to allocate a new one. Longer messages are
    /// returned as they are (they fill much of their buffer anyway).
    ///
    /// ```
    /// use flexi_socket::Message;
    /// use tokio::sync::mpsc;
    ///
    /// async fn keep(msg: Message, log: mpsc::Sender<Message>) {
    ///     // The log's consumer may be slow: keep a copy, not the read buffer.
    ///     let _ = log.send(msg.detached()).await;
    /// }
    /// # let _ = keep;
    /// ```
    #[must_use]
    pub fn detached(self) -> Self {
        const COPIED_UP_TO: usize = 512;
        if self.bytes.len() <= COPIED_UP_TO {
            Self {
                bytes: Bytes::copy_from_slice(&self.bytes),
            }
        } else {
            self
        }
    }

    /// The message's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The message's bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The message as text.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUtf8`] if the bytes are not UTF-8.
    pub fn to_str(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.bytes).map_err(|e| Error::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })
    }

    /// The message without `prefix`, if it starts with it (no copy).
    ///
    /// ```
    /// # use flexi_socket::Message;
    /// let msg = Message::from("!!ALARM");
    /// assert_eq!(msg.strip_prefix("!!"), Some(Message::from("ALARM")));
    /// assert_eq!(msg.strip_prefix("##"), None);
    /// ```
    pub fn strip_prefix(&self, prefix: impl AsRef<[u8]>) -> Option<Message> {
        let prefix = prefix.as_ref();
        self.bytes
            .starts_with(prefix)
            .then(|| Message::new(self.bytes.slice(prefix.len()..)))
    }

    /// The message without `suffix`, if it ends with it (no copy).
    pub fn strip_suffix(&self, suffix: impl AsRef<[u8]>) -> Option<Message> {
        let suffix = suffix.as_ref();
        self.bytes
            .ends_with(suffix)
            .then(|| Message::new(self.bytes.slice(..self.bytes.len() - suffix.len())))
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the message has no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Deref for Message {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The message as text for people: UTF-8 as it is, with control
/// characters and bytes that are not UTF-8 escaped (`\r`, `\x02`, `\xff`),
/// so binary protocols print on one line and nothing is lost in silence.
/// (`Debug` quotes it, as `b"..."`.)
///
/// ```
/// use flexi_socket::Message;
///
/// assert_eq!(Message::from("héllo").to_string(), "héllo");
/// assert_eq!(Message::from(&b"\x02ACK\xff\r"[..]).to_string(), "\\x02ACK\\xff\\r");
/// ```
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for chunk in self.bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_ascii_control() {
                    // `\r`, `\t`, `\x02`: as protocol documents write them.
                    write!(f, "{}", (c as u8).escape_ascii())?;
                } else if c.is_control() {
                    write!(f, "{}", c.escape_unicode())?;
                } else {
                    f.write_char(c)?;
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bytes' Debug shows text as text and escapes the rest: readable for protocols.
        fmt::Debug::fmt(&self.bytes, f)
    }
}

impl From<Bytes> for Message {
    fn from(bytes: Bytes) -> Self {
        Self { bytes }
    }
}

impl From<Message> for Bytes {
    fn from(message: Message) -> Self {
        message.bytes
    }
}

/// Copies the text; see [`Message::from_static`] for static text without a copy.
impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::new(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<&String> for Message {
    fn from(text: &String) -> Self {
        Self::new(Bytes::copy_from_slice(text.as_bytes()))
    }
}

/// Copies the bytes.
impl From<&[u8]> for Message {
    fn from(bytes: &[u8]) -> Self {
        Self::new(Bytes::copy_from_slice(bytes))
    }
}

/// Copies the bytes.
impl<const N: usize> From<&[u8; N]> for Message {
    fn from(bytes: &[u8; N]) -> Self {
        Self::from(&bytes[..])
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_text_and_escapes_what_would_not_print() {
        let shown = |bytes: &[u8]| Message::from(bytes).to_string();
        assert_eq!(shown("ACK 0001 héllo ✓".as_bytes()), "ACK 0001 héllo ✓");
        assert_eq!(shown(b"\x02data\x03\r\n"), "\\x02data\\x03\\r\\n");
        // Not UTF-8: each bad byte escaped, the text around it kept.
        assert_eq!(shown(b"ok\xff\xfeok"), "ok\\xff\\xfeok");
        assert_eq!(shown("a\u{85}b".as_bytes()), "a\\u{85}b");
        assert_eq!(shown(b""), "");
    }

    #[test]
    fn detached_copies_short_messages_out_of_their_buffer() {
        let buffer = Bytes::from(vec![b'a'; 8 * 1024]);
        let short = Message::new(buffer.slice(..16)).detached();
        assert_eq!(short.as_bytes(), &buffer[..16]);
        assert_ne!(short.as_bytes().as_ptr(), buffer.as_ptr(), "copied");
        let long = Message::new(buffer.slice(..4096)).detached();
        assert_eq!(long.as_bytes().as_ptr(), buffer.as_ptr(), "shared");
    }
}
