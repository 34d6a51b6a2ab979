//! Sur-Gard MLR2-style automation lines, as the `alarm_receiver` example
//! answers them: every line ends with DC4 and gets one byte back, ACK for a
//! heartbeat or a line it recognises, NAK for anything else.
//!
//! | line (before DC4) | meaning |
//! |---|---|
//! | `1011`, spaces, `@`, spaces | heartbeat |
//! | `5RRL 18AAAAQXYZGGCCC` | Contact ID from receiver RR, line L, account AAAA; Q is `E`, `R` or `P` (or Contact ID's `1`, `3`, `6`) |
//! | `3RRL ` and SIA data | SIA from receiver RR, line L |

use crate::database::EventRecord;
use crate::event::{ContactId, Event, Qualifier};

/// The reply to a line that was understood.
pub const ACK: u8 = 0x06;
/// The reply to anything else: the sender repeats or reports it.
pub const NAK: u8 = 0x15;

/// A line that gets an ACK.
#[derive(Debug)]
pub enum Line<'a> {
    Heartbeat,
    ContactId {
        receiver: &'a str,
        line: &'a str,
        account: &'a str,
        event: ContactId<'a>,
    },
    Sia {
        receiver: &'a str,
        line: &'a str,
        data: &'a [u8],
    },
}

impl<'a> Line<'a> {
    /// The line without its DC4, if it is one we recognise.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if is_heartbeat(bytes) {
            return Some(Self::Heartbeat);
        }
        let [kind, r1, r2, l, b' ', rest @ ..] = bytes else {
            return None;
        };
        if ![r1, r2, l].into_iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        // Checked ASCII above.
        let receiver = std::str::from_utf8(&bytes[1..3]).ok()?;
        let line = std::str::from_utf8(&bytes[3..4]).ok()?;
        match kind {
            b'5' => {
                // `18`, the account, then `QXYZGGCCC`.
                let digits = rest
                    .strip_prefix(b"18")
                    .filter(|digits| digits.len() == 13)?;
                let (account, cid) = digits.split_at(4);
                if !account.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                // MLR2 writes the qualifier as a letter; Contact ID's own
                // digit is taken too.
                let qualifier =
                    Qualifier::from_letter(cid[0]).or_else(|| Qualifier::from_digit(cid[0]))?;
                Some(Self::ContactId {
                    receiver,
                    line,
                    account: std::str::from_utf8(account).ok()?,
                    event: ContactId::parse(qualifier, &cid[1..4], &cid[4..6], &cid[6..])?,
                })
            }
            b'3' if !rest.is_empty() && rest.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) => {
                Some(Self::Sia {
                    receiver,
                    line,
                    data: rest,
                })
            }
            _ => None,
        }
    }

    /// The fields printed for this line.
    pub fn event(&self) -> Event {
        let event = Event::new().with("protocol", "surgard");
        match self {
            Self::Heartbeat => event.with("kind", "heartbeat"),
            Self::ContactId {
                receiver,
                line,
                account,
                event: contact_id,
            } => event
                .with("kind", "contact-id")
                .with("receiver", receiver)
                .with("line", line)
                .with("account", account)
                .with_contact_id(contact_id),
            Self::Sia {
                receiver,
                line,
                data,
            } => event
                .with("kind", "sia")
                .with("receiver", receiver)
                .with("line", line)
                .with("data", data),
        }
    }

    /// The row stored for `raw`, the line (without its DC4) this was parsed
    /// from, which arrived from `peer` at `received_at` (Unix milliseconds);
    /// none for a heartbeat, which supervises the link and is no event.
    pub fn record(&self, raw: &[u8], peer: String, received_at: i64) -> Option<EventRecord> {
        let (token, account, receiver, line) = match self {
            Self::Heartbeat => return None,
            Self::ContactId {
                receiver,
                line,
                account,
                ..
            } => ("contact-id", Some(*account), *receiver, *line),
            Self::Sia { receiver, line, .. } => ("sia", None, *receiver, *line),
        };
        Some(EventRecord {
            received_at,
            protocol: "surgard",
            token: token.to_owned(),
            account: account.map(str::to_owned),
            receiver: Some(receiver.to_owned()),
            line: line.to_owned(),
            sequence: None,
            // The whole line: Sur-Gard has no data block to cut out.
            data: String::from_utf8_lossy(raw).into_owned(),
            extended: None,
            panel_time: None,
            peer,
        })
    }
}

/// `1011`, one or more spaces, `@`, any number of spaces.
fn is_heartbeat(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(b"1011") else {
        return false;
    };
    let spaces = rest.iter().take_while(|&&b| b == b' ').count();
    spaces > 0
        && rest[spaces..]
            .strip_prefix(b"@")
            .is_some_and(|tail| tail.iter().all(|&b| b == b' '))
}
