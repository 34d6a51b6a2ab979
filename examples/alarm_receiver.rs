//! An alarm receiver: SIA DC-09 panels (TCP, or UDP with `--udp`) and
//! Sur-Gard MLR2-style automation links on one port, told apart by their
//! first bytes. Every accepted event is one line on stdout (`--json` for JSON
//! lines); every frame is answered and the connection stays open.
//! `--key ACCOUNT=HEX` (repeatable; 32, 48 or 64 hex digits) serves an
//! account with DC-09's AES encryption, and with it only; `--key-file PATH`
//! reads such lines from a file, out of sight of `ps`.
//!
//! No ACK leaves before its event is committed to the SQLite file `--db`
//! (default `alarm-events.db`), durably; when the database refuses, the
//! panel gets a NAK and sends the event again. `--supervise ACCOUNT=SECONDS`
//! records a communication failure for an account that falls silent.
//!
//! ```text
//! cargo run --example alarm_receiver -- 127.0.0.1:9000 --accounts 1234,ABC
//! cargo run --example alarm_panel -- 127.0.0.1:9000 --account 1234
//! cargo run --example alarm_receiver -- 127.0.0.1:9000 --key 5678=000102030405060708090A0B0C0D0E0F
//! cargo run --example alarm_panel -- 127.0.0.1:9000 --account 5678 --key 000102030405060708090A0B0C0D0E0F
//! printf '1011           @    \024' | nc -q 1 127.0.0.1 9000 | xxd   # Sur-Gard heartbeat: 06
//! ```
//!
//! The first unit a client sends (up to CR or DC4, at most 64 bytes) decides:
//!
//! | first unit | client type | framing |
//! |---|---|---|
//! | starts with LF | `dc09` | LF ... CR, at most 4105 bytes |
//! | 8 hex digits and `"` (a DC-09 frame that lost its LF) | `dc09` | the same: it gets a NAK |
//! | a digit ... DC4 | `surgard` | ... DC4 in, one bare byte out |
//! | anything else (HTTP, a TLS hello, binary) | `unknown` | closed without a reply |
//!
//! A stranger is told by its first bytes: one that starts with neither LF, a
//! digit nor the hex digits of a frame that lost its LF is closed as soon as
//! they arrive, without waiting for its unit to end.
//!
//! The checks of a DC-09 frame and their replies are in `alarm/verdict.rs`,
//! the encryption in `alarm/encryption.rs`, the Sur-Gard lines in
//! `alarm/surgard.rs`, the schema in `alarm/database.rs`, the grouped
//! commits in `alarm/store.rs`, line supervision in `alarm/supervision.rs`.

#[path = "alarm/database.rs"]
mod database;
#[path = "alarm/dc09.rs"]
mod dc09;
#[path = "alarm/encryption.rs"]
mod encryption;
#[path = "alarm/event.rs"]
mod event;
#[path = "alarm/options.rs"]
mod options;
#[path = "alarm/store.rs"]
mod store;
#[path = "alarm/supervision.rs"]
mod supervision;
#[path = "alarm/surgard.rs"]
mod surgard;
#[path = "alarm/verdict.rs"]
mod verdict;

use std::process::ExitCode;
use std::sync::Arc;

use flexi_socket::{
    Classifier, ClientType, Connection, Error, FirstUnit, FlexiSocket, Framing, LogRate,
    LogVerdict, Message, ServerBuilder, State, after_receive, before_send, on_error, on_message,
};

use database::{Database, EventRecord, Outcome, Record, now_millis};
use event::Event;
use options::Options;
use store::{Store, StoreError};
use supervision::Supervisor;
use verdict::{Accounts, Token, Verdict};

/// What a client is, from the first bytes it sends.
enum Device {
    Dc09,
    SurGard,
    Unknown,
}

impl Classifier for Device {
    fn classify(first_unit: &[u8]) -> Self {
        let lost_lf = first_unit.len() > 8
            && first_unit[..8].iter().all(u8::is_ascii_hexdigit)
            && first_unit[8] == b'"';
        match first_unit {
            [dc09::LF, ..] => Self::Dc09,
            [b'0'..=b'9', .., 0x14] => Self::SurGard,
            _ if lost_lf => Self::Dc09,
            _ => Self::Unknown,
        }
    }

    /// A stranger (a TLS hello, an HTTP request, binary) is told by its first
    /// bytes: closed at once instead of when its unit would end.
    fn classify_early(first_bytes: &[u8]) -> Option<Self> {
        // Up to 8 hex digits, then `"`: may still be a DC-09 frame that lost its LF.
        let may_have_lost_lf = first_bytes.iter().take(8).all(u8::is_ascii_hexdigit)
            && first_bytes.get(8).is_none_or(|&byte| byte == b'"');
        match first_bytes {
            [dc09::LF, ..] => Some(Self::Dc09),
            // A Sur-Gard line's DC4 may still come.
            [b'0'..=b'9', ..] => None,
            _ if may_have_lost_lf => None,
            _ => Some(Self::Unknown),
        }
    }

    fn client_type(&self) -> ClientType {
        match self {
            Self::Dc09 => "dc09".into(),
            Self::SurGard => "surgard".into(),
            Self::Unknown => "unknown".into(),
        }
    }

    fn client_types() -> Option<Vec<ClientType>> {
        Some(vec!["dc09".into(), "surgard".into(), "unknown".into()])
    }
}

/// Shared with every handler: whom we serve, where events are stored, who
/// watches the lines, and how we print.
#[derive(Clone)]
struct Receiver {
    accounts: Arc<Accounts>,
    store: Store,
    supervisor: Arc<Supervisor>,
    json: bool,
}

impl Receiver {
    /// Commits `record` (none for a link test or a heartbeat, which are
    /// supervision, not events), then prints `event` and tells the
    /// supervisor that `account` was heard from. Returns once the ACK may
    /// go, or why it may not.
    async fn keep(
        &self,
        conn: &Connection,
        record: Option<EventRecord>,
        event: Event,
        account: Option<&str>,
    ) -> Result<(), StoreError> {
        let outcome = match record {
            Some(record) => self.store.commit(Record::Event(record)).await?,
            None => Outcome::Stored,
        };
        match outcome {
            Outcome::Stored => {
                let event = event.with("peer", conn.peer_addr().to_string());
                println!("{}", event.line(self.json));
            }
            Outcome::Repeat => log_repeat(conn, &event),
        }
        if let Some(account) = account {
            self.supervisor.heard(account).await;
        }
        Ok(())
    }
}

/// A frame is what follows its last LF: bytes before it are line noise or
/// a frame the panel abandoned and restarted. Without an LF nothing is
/// left, which the checks answer with a NAK.
#[after_receive(client_type = "dc09")]
async fn frame_start(msg: Message) -> Message {
    let start = msg
        .iter()
        .rposition(|&b| b == dc09::LF)
        .map_or(msg.len(), |lf| lf + 1);
    Message::new(msg.into_bytes().slice(start..))
}

/// LF, CRC and length around every reply body; the framing adds the CR.
#[before_send(client_type = "dc09")]
async fn envelope(body: Message) -> Message {
    Message::new(dc09::seal(&body))
}

#[on_message(client_type = "dc09")]
async fn dc09_frame(
    conn: Connection,
    frame: &[u8],
    receiver: State<Receiver>,
) -> flexi_socket::Result<()> {
    let now = dc09::unix_now();
    let verdict = verdict::judge(frame, &receiver.accounts, now);
    let kept = match &verdict {
        Verdict::Ack(accepted) => {
            let record = (accepted.token != Token::Null)
                .then(|| accepted.record(conn.peer_addr().to_string(), now_millis()));
            let account = Some(accepted.header.account);
            receiver
                .keep(&conn, record, accepted.event(), account)
                .await
        }
        Verdict::Nak(why) => {
            log_refusal(&conn, "NAK", why);
            Ok(())
        }
        Verdict::Duh { why, .. } => {
            log_refusal(&conn, "DUH", why);
            Ok(())
        }
    };
    let reply = match kept {
        Ok(()) => verdict.reply(now),
        Err(error) => {
            log_unstored(&conn, &error);
            Verdict::Nak("not stored").reply(now)
        }
    };
    conn.send(reply).await
}

#[on_message(client_type = "surgard")]
async fn surgard_line(
    conn: Connection,
    line: &[u8],
    receiver: State<Receiver>,
) -> flexi_socket::Result<()> {
    let reply = match surgard::Line::parse(line) {
        Some(parsed) => {
            let record = parsed.record(line, conn.peer_addr().to_string(), now_millis());
            let account = match &parsed {
                surgard::Line::ContactId { account, .. } => Some(*account),
                _ => None,
            };
            match receiver.keep(&conn, record, parsed.event(), account).await {
                Ok(()) => surgard::ACK,
                Err(error) => {
                    log_unstored(&conn, &error);
                    surgard::NAK
                }
            }
        }
        None => {
            log_refusal(&conn, "NAK", "unknown Sur-Gard line");
            surgard::NAK
        }
    };
    conn.send(vec![reply]).await
}

/// Neither protocol: not worth a reply.
#[on_message(client_type = "unknown")]
async fn stranger(conn: Connection, first: &[u8]) {
    if let LogVerdict::Log { suppressed } = STRANGER_LOG.admit() {
        if suppressed > 0 {
            tracing::info!("{suppressed} more strangers were closed without a line");
        }
        tracing::info!(peer = %conn.peer_addr(), bytes = first.len(), "not an alarm device: closing");
    }
    conn.close();
}

/// What a peer controls is logged within a rate: one sending garbage as fast
/// as it can gets ten lines a second, not one per frame (the framework logs
/// its own connection errors the same way).
static REFUSAL_LOG: LogRate = LogRate::per_second(10);
static STRANGER_LOG: LogRate = LogRate::per_second(10);
static ERROR_LOG: LogRate = LogRate::per_second(10);
static REPEAT_LOG: LogRate = LogRate::per_second(10);
static STORE_LOG: LogRate = LogRate::per_second(10);

/// An event refused because the database could not commit it.
fn log_unstored(conn: &Connection, error: &StoreError) {
    if let LogVerdict::Log { suppressed } = STORE_LOG.admit() {
        if suppressed > 0 {
            tracing::error!("{suppressed} more events were not stored in the last second");
        }
        tracing::error!(peer = %conn.peer_addr(), "NAK: event not stored: {error}");
    }
}

/// A retransmission of an event already stored: ACKed again, not printed.
fn log_repeat(conn: &Connection, event: &Event) {
    if let LogVerdict::Log { suppressed } = REPEAT_LOG.admit() {
        if suppressed > 0 {
            tracing::info!("{suppressed} more retransmissions were not logged in the last second");
        }
        tracing::info!(
            peer = %conn.peer_addr(),
            "ACK again, already stored: {}",
            event.text_line()
        );
    }
}

/// A NAK or DUH, and why.
fn log_refusal(conn: &Connection, reply: &str, why: impl std::fmt::Display) {
    if let LogVerdict::Log { suppressed } = REFUSAL_LOG.admit() {
        if suppressed > 0 {
            tracing::info!("{suppressed} more NAK/DUH lines were not logged in the last second");
        }
        tracing::info!(peer = %conn.peer_addr(), "{reply}: {why}");
    }
}

#[on_error]
async fn trouble(conn: Connection, error: Error) {
    if let LogVerdict::Log { suppressed } = ERROR_LOG.admit() {
        if suppressed > 0 {
            tracing::warn!(
                "{suppressed} more connection errors were not logged in the last second"
            );
        }
        tracing::warn!(peer = %conn.peer_addr(), "{error}");
    }
    // No end byte within the longest legitimate frame: garbage, not a device.
    if matches!(error, Error::FrameTooLarge { .. }) {
        conn.close();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let (options, accounts) = Options::from_command_line();
    match serve(options, accounts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("{problem}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options, accounts: Accounts) -> Result<(), String> {
    let (store, failed) = open_store(&options).await?;
    for account in &failed {
        tracing::warn!(account, "communication failure, stored before the restart");
    }
    let state = Receiver {
        accounts: Arc::new(accounts),
        supervisor: Supervisor::new(&options.supervise, &failed, store.clone(), options.json),
        store,
        json: options.json,
    };
    let supervisor = Arc::clone(&state.supervisor);
    // The same receiver over either transport: each builder keeps its own
    // transport's settings, so the choice is made here, not at run time.
    let server = if options.udp {
        receiver(FlexiSocket::udp(&options.addr), state)
            .bind()
            .await
    } else {
        receiver(FlexiSocket::server(&options.addr), state)
            .bind()
            .await
    }
    .map_err(|error| error.to_string())?;
    println!("listening on {}", server.local_addr());
    // Intervals count from now: a panel could not report while we were down.
    tokio::spawn(supervisor.watch());
    server.serve().await.map_err(|error| error.to_string())?;
    Ok(())
}

/// Opens the database off the tokio workers and starts its writer thread;
/// also returns the supervised accounts that were failed when it was last
/// written.
async fn open_store(
    options: &Options,
) -> Result<(Store, std::collections::HashSet<String>), String> {
    let path = options.db.clone();
    let supervised: Vec<String> = options
        .supervise
        .iter()
        .map(|(account, _)| account.clone())
        .collect();
    let opened = tokio::task::spawn_blocking(move || {
        let database = Database::open(&path)?;
        let failed = database.failed_lines(supervised.iter().map(String::as_str))?;
        Ok::<_, rusqlite::Error>((database, failed))
    })
    .await
    .expect("opening the database does not panic");
    let (database, failed) = opened
        .map_err(|error| format!("cannot use the database {}: {error}", options.db.display()))?;
    let store = Store::start(database, usize::from(options.max_batch))
        .map_err(|error| format!("cannot start the database writer: {error}"))?;
    Ok((store, failed))
}

/// The receiver's classification, per-type framing and state, on either transport.
fn receiver<T>(builder: ServerBuilder<T>, state: Receiver) -> ServerBuilder<T> {
    builder
        .classifier::<Device>()
        .classify_raw(FirstUnit::until_any(b"\r\x14").max_length(64))
        .framing_for(
            "dc09",
            Framing::separator("\r").max_length(dc09::MAX_FRAME - 1),
        )
        .framing_for(
            "surgard",
            Framing::separator("\x14")
                .max_length(256)
                .outbound(Framing::raw()),
        )
        .framing_for("unknown", Framing::raw())
        .state(state)
}
