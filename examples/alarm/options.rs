//! The `alarm_receiver` example's command line (clap).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::encryption::Key;
use crate::verdict::Accounts;

/// An alarm receiver for SIA DC-09 panels and Sur-Gard automation links.
/// Each event is committed to a SQLite file before its ACK leaves.
#[derive(Debug, Parser)]
#[command(name = "alarm_receiver")]
pub struct Options {
    /// The address to listen on (port 0 picks a free one).
    pub addr: String,
    /// Accounts served in clear, comma separated (repeatable).
    #[arg(long, value_name = "1234,ABC", value_delimiter = ',')]
    accounts: Vec<String>,
    /// Serves ACCOUNT with DC-09's AES encryption, and with it only; HEX is
    /// 32, 48 or 64 hex digits (repeatable).
    /// A key on the command line is visible to every user of the machine
    /// (`ps`): `--key-file` keeps it in a file only its owner reads.
    #[arg(long = "key", value_name = "ACCOUNT=HEX", value_parser = account_key)]
    keys: Vec<(String, Key)>,
    /// Reads keys as with --key, one ACCOUNT=HEX a line (blank lines and
    /// lines starting with `#` skipped), from PATH (repeatable).
    #[arg(long = "key-file", value_name = "PATH")]
    key_files: Vec<PathBuf>,
    /// Serves DC-09 over UDP instead of TCP.
    #[arg(long)]
    pub udp: bool,
    /// Prints each event and supervision record as a JSON object.
    #[arg(long)]
    pub json: bool,
    /// The SQLite file every event is committed to before its ACK; created
    /// when missing.
    #[arg(long, value_name = "PATH", default_value = "alarm-events.db")]
    pub db: PathBuf,
    /// A communication failure is recorded when ACCOUNT sends neither an
    /// event nor a link test within SECONDS (repeatable).
    #[arg(long = "supervise", value_name = "ACCOUNT=SECONDS", value_parser = supervision)]
    pub supervise: Vec<(String, Duration)>,
    /// At most this many records in one commit: events of many panels share
    /// one disk flush (1: one commit per event).
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_batch: u16,
}

impl Options {
    /// The command line, or the process exits with clap's usage error (2).
    pub fn from_command_line() -> (Self, Accounts) {
        let options = Self::parse();
        match options.accounts() {
            Ok(accounts) => (options, accounts),
            Err(problem) => Self::command()
                .error(ErrorKind::ValueValidation, problem)
                .exit(),
        }
    }

    /// The accounts served, checked against the supervised ones.
    fn accounts(&self) -> Result<Accounts, String> {
        let mut accounts = Accounts::default();
        for list in &self.accounts {
            accounts.add_list(list);
        }
        let mut keys = self.keys.clone();
        for path in &self.key_files {
            keys.extend(keys_in(path)?);
        }
        let mut keyed = HashSet::new();
        for (account, key) in keys {
            // Which of two keys the panel has is a guess: every frame of
            // the other would fail to decrypt.
            if !keyed.insert(account.to_ascii_uppercase()) {
                return Err(format!("account {account} is given two keys"));
            }
            accounts.add_key(&account, key);
        }
        if accounts.is_empty() {
            return Err("no account: give --accounts, --key or --key-file".into());
        }
        if let Some((stranger, _)) = self
            .supervise
            .iter()
            .find(|(account, _)| !accounts.knows(account))
        {
            return Err(format!(
                "--supervise {stranger}: not an account this receiver serves"
            ));
        }
        Ok(accounts)
    }
}

/// `ACCOUNT=HEX`.
fn account_key(pair: &str) -> Result<(String, Key), String> {
    let (account, hex) = pair.split_once('=').ok_or("expected ACCOUNT=HEX")?;
    let key = Key::from_hex(hex)?;
    Ok((account.to_owned(), key))
}

/// The `ACCOUNT=HEX` lines of a `--key-file`.
fn keys_in(path: &Path) -> Result<Vec<(String, Key)>, String> {
    let shown = path.display();
    let text = fs::read_to_string(path).map_err(|error| format!("--key-file {shown}: {error}"))?;
    if fs::metadata(path).is_ok_and(|file| file.permissions().mode() & 0o077 != 0) {
        eprintln!("warning: --key-file {shown} can be read by others than its owner (chmod 600)");
    }
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(number, line)| {
            account_key(line)
                .map_err(|problem| format!("--key-file {shown}, line {number}: {problem}"))
        })
        .collect()
}

/// `ACCOUNT=SECONDS`, the account in upper case.
fn supervision(pair: &str) -> Result<(String, Duration), String> {
    let (account, seconds) = pair.split_once('=').ok_or("expected ACCOUNT=SECONDS")?;
    let seconds: u64 = seconds
        .parse()
        .ok()
        .filter(|&seconds| seconds > 0)
        .ok_or("SECONDS is a whole number of seconds, at least 1")?;
    Ok((account.to_ascii_uppercase(), Duration::from_secs(seconds)))
}
