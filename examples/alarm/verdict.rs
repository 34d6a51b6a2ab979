//! The `alarm_receiver` example's checks of one DC-09 frame, in order: the
//! first that fails decides the reply.
//!
//! | check | on failure |
//! |---|---|
//! | 1. CRC and length fields well formed and right | NAK |
//! | 2. a quoted token | NAK |
//! | 3. a token we speak: SIA-DCS, ADM-CID, NULL, each also encrypted (`*`) | DUH |
//! | 4. header: sequence, optional R, L, account, and the data block's `[` and `]` | NAK |
//! | 5. a known account, with a key when (and only when) the frame is encrypted | DUH |
//! | 6. an encrypted frame decrypts with the account's key (then the checks go on inside) | NAK |
//! | 7. data that fits the token | DUH |
//! | 8. after the data only extended-data blocks and a timestamp (required when encrypted) | NAK |
//! | 9. the timestamp within 40 s past to 20 s ahead of our clock | NAK |
//!
//! Otherwise ACK. An encrypted frame that reached check 7 gets its ACK or
//! DUH encrypted with the same key; NAKs, and DUHs before that, go in clear
//! (the receiver cannot be sure whom it is talking to). Beyond the letter of DC-09, the sequence may be hex
//! (`000A`): common senders count that way, and a NAK would make them retry
//! the same number forever. It is echoed back as it came.

use std::collections::{HashMap, HashSet};

use crate::database::EventRecord;
use crate::dc09::{self, Header};
use crate::encryption::Key;
use crate::event::{ContactId, Event, Qualifier, json_list};

/// How far a frame's timestamp may lag behind our clock, in seconds.
const MAX_AGE: i64 = 40;
/// How far it may run ahead.
const MAX_AHEAD: i64 = 20;

/// The accounts a receiver serves and their keys, upper case.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    served: HashSet<String>,
    keys: HashMap<String, Key>,
}

impl Accounts {
    /// Adds a comma-separated list such as `1234,ABC`.
    pub fn add_list(&mut self, list: &str) {
        let accounts = list
            .split(',')
            .map(str::trim)
            .filter(|account| !account.is_empty())
            .map(str::to_ascii_uppercase);
        self.served.extend(accounts);
    }

    /// Serves `account`, encrypted with `key` only.
    pub fn add_key(&mut self, account: &str, key: Key) {
        let account = account.to_ascii_uppercase();
        self.served.insert(account.clone());
        self.keys.insert(account, key);
    }

    pub fn is_empty(&self) -> bool {
        self.served.is_empty()
    }

    pub fn knows(&self, account: &str) -> bool {
        self.served.contains(&account.to_ascii_uppercase())
    }

    fn key(&self, account: &str) -> Option<&Key> {
        self.keys.get(&account.to_ascii_uppercase())
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
    /// Between the data's brackets (decrypted, when the frame was not).
    pub data: Vec<u8>,
    /// The extended-data blocks (`[Xlongitude]`, `[Ialarm text]`, ...),
    /// without their brackets.
    pub extended: Vec<Vec<u8>>,
    /// Without its `_`.
    pub timestamp: Option<Vec<u8>>,
    /// The timestamp's Unix seconds, as the time window checked them.
    pub panel_time: Option<i64>,
    /// The key the frame came encrypted with, which encrypts the reply.
    pub key: Option<&'a Key>,
}

impl Accepted<'_> {
    /// The fields printed for this frame.
    pub fn event(&self) -> Event {
        let header = &self.header;
        let mut event = Event::new()
            .with("protocol", "dc09")
            .with("token", self.wire_token())
            .with("account", header.account)
            .with("sequence", header.sequence);
        if let Some(receiver) = header.receiver {
            event = event.with("receiver", receiver);
        }
        event = event.with("line", header.line).with("data", &self.data);
        if self.token == Token::AdmCid {
            let parsed = after_account(&self.data).and_then(contact_id);
            if let Some(contact_id) = parsed {
                event = event.with_contact_id(&contact_id);
            }
        }
        event = event.with_list("extended", &self.extended);
        if let Some(timestamp) = &self.timestamp {
            event = event.with("timestamp", timestamp);
        }
        event
    }

    /// The token as on the wire: `*SIA-DCS` when it came encrypted.
    fn wire_token(&self) -> String {
        match self.key {
            Some(_) => format!("*{}", self.token.as_str()),
            None => self.token.as_str().to_owned(),
        }
    }

    /// The row stored for this frame, which arrived from `peer` at
    /// `received_at` (Unix milliseconds).
    pub fn record(&self, peer: String, received_at: i64) -> EventRecord {
        let header = &self.header;
        EventRecord {
            received_at,
            protocol: "dc09",
            token: self.wire_token(),
            account: Some(header.account.to_owned()),
            receiver: header.receiver.map(str::to_owned),
            line: header.line.to_owned(),
            sequence: Some(header.sequence.to_owned()),
            data: String::from_utf8_lossy(&self.data).into_owned(),
            extended: (!self.extended.is_empty()).then(|| json_list(&self.extended)),
            panel_time: self.panel_time,
            peer,
        }
    }
}

/// The outcome of the checks, and why.
#[derive(Debug)]
pub enum Verdict<'a> {
    Ack(Accepted<'a>),
    /// The frame is damaged or out of time: the panel sends it again.
    Nak(&'static str),
    /// Intact but not for us: resending it will not help. The header, when
    /// it could be read, is echoed in the reply, encrypted with `key` when
    /// there is one.
    Duh {
        header: Option<Header<'a>>,
        key: Option<&'a Key>,
        why: &'static str,
    },
}

impl<'a> Verdict<'a> {
    fn duh(header: Option<Header<'a>>, why: &'static str) -> Self {
        Self::Duh {
            header,
            key: None,
            why,
        }
    }

    /// The reply's body; `before_send` puts the envelope around it.
    pub fn reply(&self, now: i64) -> String {
        match self {
            Self::Ack(accepted) => answer("ACK", &accepted.header, accepted.key, now),
            Self::Duh {
                header: Some(header),
                key,
                ..
            } => answer("DUH", header, *key, now),
            Self::Duh { header: None, .. } => "\"DUH\"0000R0L0A0[]".to_owned(),
            Self::Nak(_) => format!("\"NAK\"0000R0L0A0[]{}", dc09::timestamp(now)),
        }
    }
}

/// `"ACK"0001R1L0#1234[]`, or encrypted `"*ACK"0001R1L0#1234[` and the hex
/// of padding, `|`, `]` and our time.
fn answer(token: &str, header: &Header<'_>, key: Option<&Key>, now: i64) -> String {
    match key {
        None => format!("\"{token}\"{header}[]"),
        Some(key) => {
            let content = format!("]{}", dc09::timestamp(now));
            format!("\"*{token}\"{header}[{}", key.seal(content.as_bytes()))
        }
    }
}

/// Runs the checks on a frame's bytes after its LF (without the CR), at
/// `now` in Unix seconds.
pub fn judge<'a>(frame: &'a [u8], accounts: &'a Accounts, now: i64) -> Verdict<'a> {
    let Some(body) = dc09::open(frame) else {
        return Verdict::Nak("bad CRC or length");
    };
    let Some((token, rest)) = dc09::split_token(body) else {
        return Verdict::Nak("no quoted token");
    };
    let (encrypted, token) = match token.strip_prefix(b"*") {
        Some(token) => (true, token),
        None => (false, token),
    };
    let Some(token) = Token::parse(token) else {
        let header = Header::parse(rest).map(|(header, _)| header);
        return Verdict::duh(header, "token not supported");
    };
    let Some((header, rest)) = Header::parse(rest) else {
        return Verdict::Nak("malformed header");
    };
    // A data block that never closes is a damaged frame, whoever it is for
    // (an encrypted one closes inside).
    if !encrypted && !rest.contains(&b']') {
        return Verdict::Nak("data block without `]`");
    }
    if !accounts.knows(header.account) {
        return Verdict::duh(Some(header), "unknown account");
    }
    match (encrypted, accounts.key(header.account)) {
        (false, None) => check_content(token, header, rest, None, now),
        (false, Some(_)) => Verdict::duh(Some(header), "the account sends encrypted only"),
        (true, None) => Verdict::duh(Some(header), "encrypted, and the account has no key"),
        (true, Some(key)) => match key.open(rest) {
            Some(content) => check_content(token, header, &content, Some(key), now),
            None => Verdict::Nak("does not decrypt with the account's key"),
        },
    }
}

/// Checks 7 to 9 on what follows the data's `[`, in clear.
fn check_content<'a>(
    token: Token,
    header: Header<'a>,
    content: &[u8],
    key: Option<&'a Key>,
    now: i64,
) -> Verdict<'a> {
    let Some(end) = content.iter().position(|&b| b == b']') else {
        return Verdict::Nak("data block without `]`");
    };
    let (data, rest) = (&content[..end], &content[end + 1..]);
    if !token.accepts(data) {
        return Verdict::Duh {
            header: Some(header),
            key,
            why: "data does not fit the token",
        };
    }
    let (extended, rest) = match extended_blocks(rest) {
        Ok(split) => split,
        Err(why) => return Verdict::Nak(why),
    };
    let (timestamp, panel_time) = if rest.is_empty() {
        if key.is_some() {
            return Verdict::Nak("an encrypted frame without a timestamp");
        }
        (None, None)
    } else {
        let Some(time) = dc09::parse_timestamp(rest) else {
            return Verdict::Nak("neither extended-data blocks nor a timestamp after the data");
        };
        let age = now - time;
        if age > MAX_AGE || -age > MAX_AHEAD {
            return Verdict::Nak("timestamp out of the time window");
        }
        (Some(rest[1..].to_vec()), Some(time))
    };
    Verdict::Ack(Accepted {
        token,
        header,
        data: data.to_vec(),
        extended: extended.into_iter().map(<[u8]>::to_vec).collect(),
        timestamp,
        panel_time,
        key,
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
