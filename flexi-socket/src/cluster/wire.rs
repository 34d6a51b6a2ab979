//! The payload of every cluster message: a small versioned binary format.
//!
//! ```text
//! payload := version:u8 (= 1)  kind:u8  fields of that kind
//! text    := length:u16 (big-endian)  UTF-8 bytes
//! u64     := 8 bytes, big-endian
//! body    := every byte left (always the last field)
//! ```
//!
//! | kind | message | fields |
//! |---|---|---|
//! | 1 | [`Wire::Send`] | body |
//! | 2 | [`Wire::Locate`] | |
//! | 3 | [`Wire::Claim`] | claimed_at:u64, node:text |
//! | 4 | [`Wire::Broadcast`] | target:u8 (0 all, 1 client type, 2 group), name:text, body |
//! | 5 | [`Wire::Hello`] | node:text, answer_back:u8 (0 or 1) |
//! | 6 | [`Wire::Goodbye`] | node:text |
//! | 16 | [`Wire::SendReply`] | outcome:u8 (0 delivered, 1 offline, 2 queue full, 3 closing), node:text, connection:u64 |
//! | 17 | [`Wire::Located`] | node:text, connection:u64, peer, client_type:u8 (0 none, 1 one), text |
//! | 18 | [`Wire::Reached`] | count:u64 |
//! | 19 | [`Wire::NotHere`] | |
//!
//! A hello is published with the NATS header `Flexi-Instance` (its
//! process's id and start time), outside the payload: a node tells its own
//! hellos, which NATS echoes back, from another process's with its name.
//!
//! `peer` is a kind byte then text: 0 and `ip:port`, 1 and a Unix socket's
//! path, 2 and nothing (an unnamed Unix socket).
//!
//! Decoding never panics and never allocates more than the payload: every
//! length is checked against what is left, and a payload longer than
//! [`MAX_PAYLOAD`] is refused before it is read.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::client_type::ClientType;
use crate::connection::Audience;
use crate::peer_addr::PeerAddr;

/// The format's version, the first byte of every payload.
const VERSION: u8 = 1;

/// The largest payload a node decodes: NATS's default `max_payload` (1 MiB).
pub(crate) const MAX_PAYLOAD: usize = 1024 * 1024;

/// Room left for the fields before a body (kind, target, a client type or
/// group name of at most [`MAX_TEXT`] bytes).
const HEADER_ROOM: usize = 2 + 1 + 2 + MAX_TEXT;

/// The largest message body a cluster send or broadcast carries.
pub(crate) const MAX_BODY: usize = MAX_PAYLOAD - HEADER_ROOM;

/// The longest text field (a node name, an address, a client type, a group).
pub(crate) const MAX_TEXT: usize = 1024;

/// What a send to a key came to on the node that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RemoteSend {
    /// The message is in the connection's outbound queue.
    Delivered,
    /// The key left that node before the message arrived.
    Offline,
    /// The connection's outbound queue was full (slow-consumer policy).
    QueueFull,
    /// The connection was closing.
    Closing,
}

/// One cluster message, as decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    /// To a key's subject: send `body` to the connection holding the key.
    Send { body: Bytes },
    /// To a key's subject: where is it?
    Locate,
    /// To a key's subject: `node` took the key at `claimed_at` (nanoseconds
    /// since the Unix epoch); a holder with an older claim closes.
    Claim { claimed_at: u64, node: String },
    /// To a node's subject: send `body` to the matching connections there.
    Broadcast { audience: Audience, body: Bytes },
    /// To the presence subject: `node` is in the cluster; with
    /// `answer_back`, every node that hears it says hello too.
    Hello { node: String, answer_back: bool },
    /// To the presence subject: `node` is leaving.
    Goodbye { node: String },
    /// The answer to [`Wire::Send`]: what became of it, on which node and
    /// connection.
    SendReply {
        outcome: RemoteSend,
        node: String,
        connection: u64,
    },
    /// The answer to [`Wire::Locate`].
    Located {
        node: String,
        connection: u64,
        peer: PeerAddr,
        client_type: Option<String>,
    },
    /// The answer to [`Wire::Broadcast`]: how many connections took it.
    Reached { count: u64 },
    /// The answer to a send or locate that reached a node which no longer
    /// holds the key (it is leaving that subject).
    NotHere,
}

/// Why a payload could not be decoded. Reported and dropped, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("an empty payload")]
    Empty,
    #[error("a payload of {0} bytes, over the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("format version {0}, this node speaks version {VERSION}")]
    Version(u8),
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("the payload ends in the middle of a field")]
    Truncated,
    #[error("a text field of {0} bytes, over the {MAX_TEXT}-byte limit")]
    TextTooLong(usize),
    #[error("a text field is not UTF-8")]
    NotUtf8,
    #[error("a field holds the unknown value {0}")]
    BadValue(u8),
    #[error("a peer address that is not `ip:port`")]
    BadAddress,
    #[error("{0} bytes after the last field")]
    Trailing(usize),
}

impl Wire {
    /// The payload for this message.
    ///
    /// Text fields are cut to [`MAX_TEXT`] bytes (on a character boundary):
    /// the callers validate names up front, and an address or client type
    /// that long is cut rather than refused.
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(VERSION);
        match self {
            Wire::Send { body } => {
                out.put_u8(1);
                out.put_slice(body);
            }
            Wire::Locate => out.put_u8(2),
            Wire::Claim { claimed_at, node } => {
                out.put_u8(3);
                out.put_u64(*claimed_at);
                put_text(&mut out, node);
            }
            Wire::Broadcast { audience, body } => {
                out.put_u8(4);
                let (code, name) = match audience {
                    Audience::All => (0, ""),
                    Audience::ClientType(client_type) => (1, client_type.as_str()),
                    Audience::Group(group) => (2, group.as_str()),
                };
                out.put_u8(code);
                put_text(&mut out, name);
                out.put_slice(body);
            }
            Wire::Hello { node, answer_back } => {
                out.put_u8(5);
                put_text(&mut out, node);
                out.put_u8(u8::from(*answer_back));
            }
            Wire::Goodbye { node } => {
                out.put_u8(6);
                put_text(&mut out, node);
            }
            Wire::SendReply {
                outcome,
                node,
                connection,
            } => {
                out.put_u8(16);
                out.put_u8(match outcome {
                    RemoteSend::Delivered => 0,
                    RemoteSend::Offline => 1,
                    RemoteSend::QueueFull => 2,
                    RemoteSend::Closing => 3,
                });
                put_text(&mut out, node);
                out.put_u64(*connection);
            }
            Wire::Located {
                node,
                connection,
                peer,
                client_type,
            } => {
                out.put_u8(17);
                put_text(&mut out, node);
                out.put_u64(*connection);
                put_peer(&mut out, peer);
                match client_type {
                    None => out.put_u8(0),
                    Some(client_type) => {
                        out.put_u8(1);
                        put_text(&mut out, client_type);
                    }
                }
            }
            Wire::Reached { count } => {
                out.put_u8(18);
                out.put_u64(*count);
            }
            Wire::NotHere => out.put_u8(19),
        }
        out.freeze()
    }

    /// Reads one payload. `payload` is shared, not copied, by a body.
    pub(crate) fn decode(payload: &Bytes) -> Result<Self, WireError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(WireError::TooLarge(payload.len()));
        }
        let mut reader = Reader { payload, at: 0 };
        let version = reader.u8().map_err(|_| WireError::Empty)?;
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        let message = match reader.u8()? {
            1 => Wire::Send {
                body: reader.rest(),
            },
            2 => Wire::Locate,
            3 => Wire::Claim {
                claimed_at: reader.u64()?,
                node: reader.text()?,
            },
            4 => {
                let code = reader.u8()?;
                let name = reader.text()?;
                let audience = match code {
                    0 => Audience::All,
                    1 => Audience::ClientType(ClientType::from(name)),
                    2 => Audience::Group(name),
                    other => return Err(WireError::BadValue(other)),
                };
                Wire::Broadcast {
                    audience,
                    body: reader.rest(),
                }
            }
            5 => Wire::Hello {
                node: reader.text()?,
                answer_back: match reader.u8()? {
                    0 => false,
                    1 => true,
                    other => return Err(WireError::BadValue(other)),
                },
            },
            6 => Wire::Goodbye {
                node: reader.text()?,
            },
            16 => {
                let outcome = match reader.u8()? {
                    0 => RemoteSend::Delivered,
                    1 => RemoteSend::Offline,
                    2 => RemoteSend::QueueFull,
                    3 => RemoteSend::Closing,
                    other => return Err(WireError::BadValue(other)),
                };
                Wire::SendReply {
                    outcome,
                    node: reader.text()?,
                    connection: reader.u64()?,
                }
            }
            17 => Wire::Located {
                node: reader.text()?,
                connection: reader.u64()?,
                peer: reader.peer()?,
                client_type: match reader.u8()? {
                    0 => None,
                    1 => Some(reader.text()?),
                    other => return Err(WireError::BadValue(other)),
                },
            },
            18 => Wire::Reached {
                count: reader.u64()?,
            },
            19 => Wire::NotHere,
            other => return Err(WireError::Kind(other)),
        };
        match payload.len() - reader.at {
            0 => Ok(message),
            left => Err(WireError::Trailing(left)),
        }
    }
}

/// Decodes `bytes`; when they decode, checks that the message encodes
/// back to the same message (the fuzz target's check). Whether they decoded.
pub(crate) fn check_round_trip(bytes: &[u8]) -> bool {
    let Ok(message) = Wire::decode(&Bytes::copy_from_slice(bytes)) else {
        return false;
    };
    assert_eq!(Wire::decode(&message.encode()), Ok(message));
    true
}

fn put_text(out: &mut BytesMut, text: &str) {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text.as_bytes()[..end];
    // MAX_TEXT fits in a u16.
    out.put_u16(u16::try_from(text.len()).unwrap_or(u16::MAX));
    out.put_slice(text);
}

fn put_peer(out: &mut BytesMut, peer: &PeerAddr) {
    match (peer.socket_addr(), peer.unix_path()) {
        (Some(addr), _) => {
            out.put_u8(0);
            put_text(out, &addr.to_string());
        }
        (None, Some(path)) => {
            out.put_u8(1);
            put_text(out, &path.to_string_lossy());
        }
        (None, None) => out.put_u8(2),
    }
}

/// A cursor over a payload; every read checks what is left.
struct Reader<'a> {
    payload: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.at.checked_add(n).ok_or(WireError::Truncated)?;
        let bytes = self.payload.get(self.at..end).ok_or(WireError::Truncated)?;
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let bytes = self.take(8)?;
        let mut array = [0; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_be_bytes(array))
    }

    fn text(&mut self) -> Result<String, WireError> {
        let length = self.take(2)?;
        let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
        if length > MAX_TEXT {
            return Err(WireError::TextTooLong(length));
        }
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::NotUtf8)
    }

    fn peer(&mut self) -> Result<PeerAddr, WireError> {
        match self.u8()? {
            0 => self
                .text()?
                .parse::<SocketAddr>()
                .map(PeerAddr::from)
                .map_err(|_| WireError::BadAddress),
            1 => Ok(PeerAddr::unix(self.text()?)),
            2 => Ok(PeerAddr::Unix(None)),
            other => Err(WireError::BadValue(other)),
        }
    }

    fn rest(&mut self) -> Bytes {
        let body = self.payload.slice(self.at..);
        self.at = self.payload.len();
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Wire> {
        vec![
            Wire::Send {
                body: Bytes::from_static(b"open the door"),
            },
            Wire::Send { body: Bytes::new() },
            Wire::Locate,
            Wire::Claim {
                claimed_at: 1_700_000_000_123_456_789,
                node: "a".into(),
            },
            Wire::Broadcast {
                audience: Audience::All,
                body: Bytes::from_static(b"all"),
            },
            Wire::Broadcast {
                audience: Audience::ClientType("001".into()),
                body: Bytes::from_static(b"panels"),
            },
            Wire::Broadcast {
                audience: Audience::Group("floor 3 ✓".into()),
                body: Bytes::new(),
            },
            Wire::Hello {
                node: "node-b".into(),
                answer_back: true,
            },
            Wire::Goodbye {
                node: "node-b".into(),
            },
            Wire::SendReply {
                outcome: RemoteSend::QueueFull,
                node: "b".into(),
                connection: 7,
            },
            Wire::Located {
                node: "b".into(),
                connection: 3,
                peer: PeerAddr::from("192.0.2.7:40001".parse::<SocketAddr>().unwrap()),
                client_type: None,
            },
            Wire::Located {
                node: "b".into(),
                connection: 4,
                peer: PeerAddr::from("[2001:db8::1]:9".parse::<SocketAddr>().unwrap()),
                client_type: Some("device".into()),
            },
            Wire::Located {
                node: "b".into(),
                connection: 5,
                peer: PeerAddr::unix("/run/gateway.sock"),
                client_type: Some(String::new()),
            },
            Wire::Located {
                node: "b".into(),
                connection: 6,
                peer: PeerAddr::Unix(None),
                client_type: None,
            },
            Wire::Reached { count: u64::MAX },
            Wire::NotHere,
        ]
    }

    #[test]
    fn every_kind_comes_back_as_it_went() {
        for message in every_kind() {
            assert_eq!(Wire::decode(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn every_cut_of_every_kind_is_an_error_or_a_shorter_body() {
        for message in every_kind() {
            let payload = message.encode();
            for cut in 0..payload.len() {
                match Wire::decode(&payload.slice(..cut)) {
                    Err(_) => {}
                    // A body is "every byte left": a cut one is still a body.
                    Ok(Wire::Send { .. } | Wire::Broadcast { .. }) => {}
                    Ok(other) => panic!("{message:?} cut at {cut} decoded as {other:?}"),
                }
            }
        }
    }

    #[test]
    fn malformed_payloads_say_what_is_wrong() {
        let decode = |bytes: &[u8]| Wire::decode(&Bytes::copy_from_slice(bytes));
        assert_eq!(decode(b""), Err(WireError::Empty));
        assert_eq!(decode(&[2, 1]), Err(WireError::Version(2)));
        assert_eq!(decode(&[1]), Err(WireError::Truncated));
        assert_eq!(decode(&[1, 99]), Err(WireError::Kind(99)));
        assert_eq!(decode(&[1, 2, 0]), Err(WireError::Trailing(1)));
        // A text length past the end.
        assert_eq!(decode(&[1, 6, 0x03, 0xff, b'a']), Err(WireError::Truncated));
        assert_eq!(
            decode(&[1, 6, 0xff, 0xff, b'a']),
            Err(WireError::TextTooLong(65_535))
        );
        assert_eq!(decode(&[1, 6, 0, 1, 0xff]), Err(WireError::NotUtf8));
        assert_eq!(decode(&[1, 4, 7, 0, 0]), Err(WireError::BadValue(7)));
        assert_eq!(decode(&[1, 5, 0, 1, b'a', 2]), Err(WireError::BadValue(2)));
        assert_eq!(decode(&[1, 16, 9, 0, 0]), Err(WireError::BadValue(9)));
        let located = |peer: &[u8]| [&[1, 17, 0, 0][..], &[0; 8], peer, &[0]].concat();
        assert_eq!(
            decode(&located(&[0, 0, 1, b'x'])),
            Err(WireError::BadAddress)
        );
        assert_eq!(decode(&located(&[3])), Err(WireError::BadValue(3)));
        let huge = vec![1; MAX_PAYLOAD + 1];
        assert_eq!(decode(&huge), Err(WireError::TooLarge(MAX_PAYLOAD + 1)));
    }

    proptest::proptest! {
        /// Any bytes: an error or a message, never a panic; and a message
        /// encodes back to a payload that decodes to itself.
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            check_round_trip(&bytes);
        }
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let node = "é".repeat(MAX_TEXT);
        let payload = Wire::Goodbye { node }.encode();
        let Ok(Wire::Goodbye { node }) = Wire::decode(&payload) else {
            panic!("decodes");
        };
        assert_eq!(node.len(), MAX_TEXT);
        assert!(node.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_body_is_shared_not_copied() {
        let payload = Wire::Send {
            body: Bytes::from(vec![7; 4096]),
        }
        .encode();
        let Ok(Wire::Send { body }) = Wire::decode(&payload) else {
            panic!("decodes");
        };
        assert_eq!(body.as_ptr(), payload[2..].as_ptr());
    }
}
