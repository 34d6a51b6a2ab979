//! The `alarm_receiver` example's checks of one DC-09 frame, in order: the
//! first that fails decides the reply.
//!
//! | check | on failure |
//! |---|---|
//! | 1. CRC and length fields well formed and right | NAK |
//! | 2. a quoted token | NAK |
//! | 3. an unencrypted token we speak: SIA-DCS, ADM-CID, NULL | DUH |
//! | 4. header: sequence, optional R, L, account, and the data block's `[` and `]` | NAK |
//! | 5. a known account | DUH |
//! | 6. data that fits the token | DUH |
//! | 7. after the data only extended-data blocks and a timestamp | NAK |
//! | 8. the timestamp within 40 s past to 20 s ahead of our clock | NAK |
//!
//! Otherwise ACK. Beyond the letter of DC-09, the sequence may be hex
//! (`000A`): common senders count that way, and a NAK would make them retry
//! the same number forever. It is echoed back as it came.

use std::collections::HashSet;

use crate::dc09::{self, Header};
use crate::event::{ContactId, Event, Qualifier};

/// How far a frame's timestamp may lag behind our clock, in seconds.
const MAX_AGE: i64 = 40;
/// How far it may run ahead.
const MAX_AHEAD: i64 = 20;

/// The accounts a receiver serves, upper case.
#[derive(Debug, Clone, Default)]
pub struct Accounts(HashSet<String>);

impl Accounts {
    /// From a comma-separated list such as `1234,ABC`.
    pub fn from_list(list: &str) -> Self {
        let accounts = list
            .split(',')
            .map(str::trim)
            .filter(|account| !account.is_empty())
            .map(str::to_ascii_uppercase)
            .collect();
        Self(accounts)
    }

    fn knows(&self, account: &str) -> bool {
        self.0.contains(&account.to_ascii_uppercase())
    }
}

/// The tokens of unencrypted messages this receiver understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    SiaDcs,
    AdmCid,
    Null,
}

impl Token {
    fn parse(token: &[u8]) -> Option<Self> {
        match token {
            b"SIA-DCS" => Some(Self::SiaDcs),
            b"ADM-CID" => Some(Self::AdmCid),
            b"NULL" => Some(Self::Null),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SiaDcs => "SIA-DCS",
            Self::AdmCid => "ADM-CID",
            Self::Null => "NULL",
        }
    }

    /// SIA-DCS `#acct|N...`, ADM-CID `#acct|QXYZ GG CCC`, NULL nothing.
    fn accepts(self, data: &[u8]) -> bool {
        match self {
            Self::Null => data.is_empty(),
            Self::SiaDcs => after_account(data)
                .and_then(|rest| rest.strip_prefix(b"N"))
                .is_some_and(|event| {
                    !event.is_empty() && event.iter().all(|&b| b == b' ' || b.is_ascii_graphic())
                }),
            Self::AdmCid => after_account(data).and_then(contact_id).is_some(),
        }
    }
}

/// What follows `#acct|` at the start of the data.
fn after_account(data: &[u8]) -> Option<&[u8]> {
    let rest = data.strip_prefix(b"#")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if !(3..=16).contains(&digits) {
        return None;
    }
    rest[digits..].strip_prefix(b"|")
}

/// `QXYZ GG CCC`.
fn contact_id(event: &[u8]) -> Option<ContactId<'_>> {
    if event.len() != 11 || event[4] != b' ' || event[7] != b' ' {
        return None;
    }
    let qualifier = Qualifier::from_digit(event[0])?;
    ContactId::parse(qualifier, &event[1..4], &event[5..7], &event[8..])
}

/// A frame that passed every check.
#[derive(Debug)]
pub struct Accepted<'a> {
    pub token: Token,
    pub header: Header<'a>,
    /// Between the data's brackets.
    pub data: &'a [u8],
    /// The extended-data blocks (`[Xlongitude]`, `[Ialarm text]`, ...),
    /// without their brackets.
    pub extended: Vec<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
}

impl Accepted<'_> {
    /// The fields printed for this frame.
    pub fn event(&self) -> Event {
        let header = &self.header;
        let mut event = Event::new()
            .with("protocol", "dc09")
            .with("token", self.token.as_str())
            .with("account", header.account)
            .with("sequence", header.sequence);
        if let Some(receiver) = header.receiver {
            event = event.with("receiver", receiver);
        }
        event = event.with("line", header.line).with("data", self.data);
        if self.token == Token::AdmCid {
            let parsed = after_account(self.data).and_then(contact_id);
            if let Some(contact_id) = parsed {
                event = event.with_contact_id(&contact_id);
            }
        }
        event = event.with_list("extended", &self.extended);
        if let Some(timestamp) = self.timestamp {
            event = event.with("timestamp", &timestamp[1..]);
        }
        event
    }
}

/// The outcome of the checks, and why.
#[derive(Debug)]
pub enum Verdict<'a> {
    Ack(Accepted<'a>),
    /// The frame is damaged or out of time: the panel sends it again.
    Nak(&'static str),
    /// Intact but not for us: resending it will not help. The header, when
    /// it could be read, is echoed in the reply.
    Duh(Option<Header<'a>>, &'static str),
}

impl Verdict<'_> {
    /// The reply's body; `before_send` puts the envelope around it.
    pub fn reply(&self, now: i64) -> String {
        match self {
            Self::Ack(accepted) => format!("\"ACK\"{}[]", accepted.header),
            Self::Duh(Some(header), _) => format!("\"DUH\"{header}[]"),
            Self::Duh(None, _) => "\"DUH\"0000R0L0A0[]".to_owned(),
            Self::Nak(_) => format!("\"NAK\"0000R0L0A0[]{}", dc09::timestamp(now)),
        }
    }
}

/// Runs the checks on a frame's bytes after its LF (without the CR), at
/// `now` in Unix seconds.
pub fn judge<'a>(frame: &'a [u8], accounts: &Accounts, now: i64) -> Verdict<'a> {
    let Some(body) = dc09::open(frame) else {
        return Verdict::Nak("bad CRC or length");
    };
    let Some((token, rest)) = dc09::split_token(body) else {
        return Verdict::Nak("no quoted token");
    };
    let Some(token) = Token::parse(token) else {
        let header = Header::parse(rest).map(|(header, _)| header);
        return Verdict::Duh(header, "token not supported (encrypted or unknown)");
    };
    let Some((header, rest)) = Header::parse(rest) else {
        return Verdict::Nak("malformed header");
    };
    // A data block that never closes is a damaged frame, whoever it is for.
    let Some(end) = rest.iter().position(|&b| b == b']') else {
        return Verdict::Nak("data block without `]`");
    };
    let (data, rest) = (&rest[..end], &rest[end + 1..]);
    if !accounts.knows(header.account) {
        return Verdict::Duh(Some(header), "unknown account");
    }
    if !token.accepts(data) {
        return Verdict::Duh(Some(header), "data does not fit the token");
    }
    let (extended, rest) = match extended_blocks(rest) {
        Ok(split) => split,
        Err(why) => return Verdict::Nak(why),
    };
    let timestamp = if rest.is_empty() {
        None
    } else {
        let Some(time) = dc09::parse_timestamp(rest) else {
            return Verdict::Nak("neither extended-data blocks nor a timestamp after the data");
        };
        let age = now - time;
        if age > MAX_AGE || -age > MAX_AHEAD {
            return Verdict::Nak("timestamp out of the time window");
        }
        Some(rest)
    };
    Verdict::Ack(Accepted {
        token,
        header,
        data,
        extended,
        timestamp,
    })
}

/// The letters that open DC-09's extended-data blocks: authentication hash
/// (A), supervision category (C), time of occurrence (H), alarm text (I),
/// network path (J), encryption key (K), location (L), MAC address (M),
/// network address (N), building name (O), programming (P), room (R), site
/// name (S), alarm trigger (T), verification (V), longitude (X), latitude
/// (Y), altitude (Z).
const EXTENDED_DATA_IDS: &[u8] = b"ACHIJKLMNOPRSTVXYZ";

/// The extended-data blocks at the start of `rest`, without their brackets,
/// and what follows them; or why they are malformed.
fn extended_blocks(mut rest: &[u8]) -> Result<(Vec<&[u8]>, &[u8]), &'static str> {
    let mut blocks = Vec::new();
    while let Some(block) = rest.strip_prefix(b"[") {
        let Some(end) = block.iter().position(|&b| b == b']') else {
            return Err("extended-data block without `]`");
        };
        let content = &block[..end];
        if content.contains(&b'[') {
            return Err("extended-data block without `]`");
        }
        if !content
            .first()
            .is_some_and(|id| EXTENDED_DATA_IDS.contains(id))
        {
            return Err("extended-data block without an identifier DC-09 defines");
        }
        blocks.push(content);
        rest = &block[end + 1..];
    }
    Ok((blocks, rest))
}
