//! A SIA DC-09 alarm panel: sends a link test (NULL), a SIA-DCS burglary
//! alarm and an ADM-CID (Contact ID) burglary alarm, in turn, with increasing
//! sequence numbers, and waits for each reply. A NAK or no reply sends the
//! same sequence again (a NAK's timestamp also sets the panel's clock to the
//! receiver's); a DUH means the receiver will never take it. Exits with 0
//! when every event was acknowledged.
//!
//! Every header has a receiver field (`R0`), and a reply counts by its
//! token and sequence alone: real receivers echo the rest of the header
//! loosely (pysiaalarm writes `None` where the panel left `R` out).
//!
//! ```text
//! cargo run --example alarm_receiver -- 127.0.0.1:9000 --accounts 1234
//! cargo run --example alarm_panel -- 127.0.0.1:9000 --account 1234
//! ```
//!
//! Options: `--count n` events (default 3), `--udp`, `--timeout s` per
//! reply (default 5), `--attempts n` per event (default 3), `--key HEX`
//! (32, 48 or 64 hex digits) to send every frame encrypted with AES-128,
//! -192 or -256 as DC-09 specifies.

// Shared with the receiver, which also parses headers and opens encrypted
// content; the panel only writes them.
#[allow(dead_code)]
#[path = "alarm/dc09.rs"]
mod dc09;
#[allow(dead_code)]
#[path = "alarm/encryption.rs"]
mod encryption;

use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use flexi_socket::{
    Client, Error, FlexiSocket, Framing, Message, Reconnect, UdpClient, after_receive, before_send,
    on_message,
};

use dc09::Header;
use encryption::Key;

/// Seconds to add to our clock for the receiver's, learnt from its NAKs.
static CLOCK_OFFSET: AtomicI64 = AtomicI64::new(0);

/// A reply is the body after its last LF, with a right CRC and length;
/// anything else is ignored, as if it never came.
#[after_receive]
async fn open_reply(msg: Message) -> Option<Message> {
    let start = msg.iter().rposition(|&b| b == dc09::LF)? + 1;
    let Some(body) = dc09::open(&msg[start..]) else {
        tracing::warn!("ignored a reply with a bad CRC or length: {msg:?}");
        return None;
    };
    Some(Message::new(body.to_vec()))
}

/// What no request waits for: a late reply to an earlier attempt.
#[on_message]
async fn unexpected(reply: Message) {
    tracing::info!("reply to no pending request: {reply:?}");
}

#[before_send]
async fn envelope(body: Message) -> Message {
    Message::new(dc09::seal(&body))
}

/// The events a panel sends, in turn.
#[derive(Debug, Clone, Copy)]
enum Kind {
    LinkTest,
    SiaBurglary,
    ContactIdBurglary,
}

impl Kind {
    const ALL: [Self; 3] = [Self::LinkTest, Self::SiaBurglary, Self::ContactIdBurglary];

    /// The token and the data between the brackets.
    fn content(self, account: &str) -> (&'static str, String) {
        match self {
            Self::LinkTest => ("NULL", String::new()),
            // New burglary alarm in area 1, zone 01.
            Self::SiaBurglary => ("SIA-DCS", format!("#{account}|Nri1/BA01")),
            // New (1) burglary (130) in group 01, zone 003.
            Self::ContactIdBurglary => ("ADM-CID", format!("#{account}|1130 01 003")),
        }
    }
}

/// What came back for one attempt.
enum Answer {
    Ack,
    /// With the receiver's time, when it sent one.
    Nak(Option<i64>),
    Duh,
}

impl Answer {
    /// The answer in a reply body, if it is one to `sequence` (a NAK
    /// carries no sequence: it answers whatever was sent last).
    ///
    /// Only the sequence right after the token is read: real receivers get
    /// the rest of the echoed header wrong (pysiaalarm writes `None` for a
    /// missing receiver field), and it tells the panel nothing it needs.
    /// With a `key`, an ACK counts only encrypted with it: one anyone could
    /// write would let the panel forget an alarm the receiver never had.
    fn of(body: &[u8], sequence: &str, key: Option<&Key>) -> Option<Self> {
        let (token, rest) = dc09::split_token(body)?;
        let echoes = || rest.starts_with(sequence.as_bytes());
        let sealed = || key.is_some_and(|key| sealed_reply(key, rest));
        match token {
            b"NAK" => {
                // A NAK carries no sequence number, so a late one to an earlier,
                // timed-out attempt can cost one extra retry, which DC-09 allows.
                let time = rest.len().checked_sub(20).map(|at| &rest[at..]);
                Some(Self::Nak(time.and_then(dc09::parse_timestamp)))
            }
            // An encrypted frame's reply comes encrypted (`*ACK`); its
            // clear header says what it answers.
            b"ACK" if echoes() && key.is_none() => Some(Self::Ack),
            b"*ACK" if echoes() && sealed() => Some(Self::Ack),
            // A receiver without our key answers DUH in clear.
            b"DUH" if echoes() => Some(Self::Duh),
            b"*DUH" if echoes() && sealed() => Some(Self::Duh),
            _ => None,
        }
    }
}

/// Whether the hex after the header's `[` decrypts with `key` to a content
/// that ends in `]` and a timestamp, as every receiver's encrypted reply does
/// (whatever its padding).
fn sealed_reply(key: &Key, rest: &[u8]) -> bool {
    let Some(open) = rest.iter().position(|&b| b == b'[') else {
        return false;
    };
    let Some(plain) = key.decrypt_hex(&rest[open + 1..]) else {
        return false;
    };
    plain
        .len()
        .checked_sub(21)
        .is_some_and(|at| plain[at] == b']' && dc09::parse_timestamp(&plain[at + 1..]).is_some())
}

/// The connection to the receiver, over TCP or UDP.
enum Link {
    Tcp(Client),
    Udp(UdpClient),
}

impl Link {
    async fn open(options: &Options) -> flexi_socket::Result<Self> {
        let framing = Framing::separator("\r").max_length(dc09::MAX_FRAME - 1);
        if options.udp {
            let client = FlexiSocket::udp_client(&options.addr)
                .framing(framing)
                .connect()
                .await?;
            return Ok(Self::Udp(client));
        }
        let reconnect = Reconnect::default()
            .initial_delay(Duration::from_millis(200))
            .max_delay(Duration::from_secs(2))
            .max_attempts(5);
        let client = FlexiSocket::client(&options.addr)
            .framing(framing)
            .reconnect(reconnect)
            .connect_timeout(options.timeout)
            .connect()
            .await?;
        Ok(Self::Tcp(client))
    }

    /// Sends `body` and waits for the answer to `sequence` (encrypted with
    /// `key`, when there is one).
    async fn ask(
        &self,
        body: String,
        sequence: &str,
        key: Option<&Key>,
        timeout: Duration,
    ) -> flexi_socket::Result<Answer> {
        let (owned, owned_key) = (sequence.to_owned(), key.cloned());
        let is_answer =
            move |reply: &Message| Answer::of(reply, &owned, owned_key.as_ref()).is_some();
        let reply = match self {
            Self::Tcp(client) => client.request_matching(body, timeout, is_answer).await?,
            Self::Udp(client) => client.request_matching(body, timeout, is_answer).await?,
        };
        Ok(Answer::of(&reply, sequence, key).expect("matched as an answer"))
    }

    async fn close(&self) {
        match self {
            Self::Tcp(client) => drop(client.close().await),
            Self::Udp(client) => client.close().await,
        }
    }
}

/// Sends event number `index` until it is acknowledged, refused or out of
/// attempts; returns whether it was acknowledged.
async fn deliver(link: &Link, options: &Options, index: usize) -> bool {
    let kind = Kind::ALL[index % Kind::ALL.len()];
    let sequence = format!("{:04}", index % 9999 + 1);
    let (token, data) = kind.content(&options.account);
    // Always with a receiver field: some receivers echo a missing one
    // as `None`, in a header no strict parser reads.
    let header = Header {
        sequence: &sequence,
        receiver: Some("0"),
        line: "0",
        account: &options.account,
    };
    for attempt in 1..=options.attempts {
        let now = dc09::unix_now() + CLOCK_OFFSET.load(Ordering::Relaxed);
        let content = format!("{data}]{}", dc09::timestamp(now));
        let body = match &options.key {
            None => format!("\"{token}\"{header}[{content}"),
            Some(key) => format!("\"*{token}\"{header}[{}", key.seal(content.as_bytes())),
        };
        let what = format!("{token} sequence {sequence} attempt {attempt}");
        let key = options.key.as_ref();
        match link.ask(body, &sequence, key, options.timeout).await {
            Ok(Answer::Ack) => {
                println!("acknowledged: {what}");
                return true;
            }
            Ok(Answer::Duh) => {
                println!("refused (DUH): {what}; not sending it again");
                return false;
            }
            Ok(Answer::Nak(receiver_time)) => {
                if let Some(time) = receiver_time {
                    CLOCK_OFFSET.store(time - dc09::unix_now(), Ordering::Relaxed);
                }
                println!("NAK: {what}");
            }
            Err(Error::RequestTimeout { .. }) => println!("no reply: {what}"),
            Err(error) => println!("not sent: {what}: {error}"),
        }
    }
    println!("gave up: {token} sequence {sequence}");
    false
}

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "alarm_panel",
    about = "A SIA DC-09 alarm panel: sends events to a receiver and waits for each ACK"
)]
struct Options {
    /// The receiver's address, `host:port`.
    addr: String,
    /// The panel's account, 3 to 16 hex digits.
    #[arg(long, default_value = "1234", value_parser = account)]
    account: String,
    /// Events to send (a link test, a SIA-DCS and an ADM-CID alarm, in turn).
    #[arg(long, default_value_t = Kind::ALL.len())]
    count: usize,
    /// Over UDP instead of TCP.
    #[arg(long)]
    udp: bool,
    /// Seconds to wait for each reply.
    #[arg(long, default_value = "5", value_parser = seconds)]
    timeout: Duration,
    /// Sends of each event before giving up.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Encrypts every frame (`*` tokens): 32, 48 or 64 hex digits for
    /// AES-128, -192 or -256.
    #[arg(long, value_parser = Key::from_hex)]
    key: Option<Key>,
}

/// An account: 3 to 16 hex digits, kept in upper case.
fn account(text: &str) -> Result<String, String> {
    if (3..=16).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_uppercase())
    } else {
        Err("3 to 16 hex digits".into())
    }
}

/// Seconds, as a decimal number.
fn seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|_| "seconds, as a number")?;
    Duration::try_from_secs_f64(seconds).map_err(|error| error.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    // Warnings only (RUST_LOG overrides): stdout is the report, stderr stays quiet.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // A wrong command line exits with 2 and the usage, as clap does.
    let options = <Options as clap::Parser>::parse();
    let link = match Link::open(&options).await {
        Ok(link) => link,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let mut acknowledged = 0;
    for index in 0..options.count {
        if deliver(&link, &options, index).await {
            acknowledged += 1;
        }
    }
    link.close().await;
    println!("{acknowledged} of {} events acknowledged", options.count);
    if acknowledged == options.count {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
