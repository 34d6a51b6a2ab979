//! flexi-socket's benchmark: a load generator, two hand-written tokio
//! baselines, and the report that compares them. Not published; `bench/run.sh`
//! builds and runs everything (see `BENCHMARKS.md`).
//!
//! - `loadgen` (binary): drives a line echo server and prints one [`Record`]
//!   as a JSON line.
//! - `baseline_minimal`, `baseline_batching` (binaries): the hand-written
//!   echo servers flexi-socket's `echo` example is compared with.
//! - `report`, `chart` (binaries): read the records of a run, print the table
//!   of medians and ratios ([`Summary`]) and draw it.
//! - [`Flags`]: the `--name value` command lines of those binaries.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The servers a run compares, in table order: the first is the one under test.
pub const SERVERS: [&str; 3] = ["flexi-socket", "minimal", "batching"];

/// Parsed `--name value` flags; anything else is an error naming the flag.
#[derive(Debug, Default)]
pub struct Flags {
    values: HashMap<String, String>,
    positional: Vec<String>,
}

impl Flags {
    /// Reads the process's arguments.
    ///
    /// # Errors
    ///
    /// A `--name` without a value.
    pub fn from_env() -> Result<Self, String> {
        Self::parse(std::env::args().skip(1))
    }

    /// Parses `args` (without the program name).
    ///
    /// # Errors
    ///
    /// A `--name` without a value.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut flags = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if let Some(name) = arg.strip_prefix("--") {
                let value = args
                    .next()
                    .ok_or_else(|| format!("--{name} needs a value"))?;
                flags.values.insert(name.to_owned(), value);
            } else {
                flags.positional.push(arg);
            }
        }
        Ok(flags)
    }

    /// The value of `--name`, parsed, or `default` when absent.
    ///
    /// # Errors
    ///
    /// The value does not parse as `T`.
    pub fn get_or<T>(&self, name: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(name).map(|value| value.unwrap_or(default))
    }

    /// The value of `--name`, parsed, if given.
    ///
    /// # Errors
    ///
    /// The value does not parse as `T`.
    pub fn get<T>(&self, name: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.values
            .get(name)
            .map(|value| {
                value
                    .parse()
                    .map_err(|error| format!("--{name} {value}: {error}"))
            })
            .transpose()
    }

    /// Arguments that are not flags, in order.
    #[must_use]
    pub fn positional(&self) -> &[String] {
        &self.positional
    }

    /// Fails on a flag not in `known`, so a typo is not silently ignored.
    ///
    /// # Errors
    ///
    /// The first unknown flag.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self
            .values
            .keys()
            .find(|name| !known.contains(&name.as_str()))
        {
            Some(name) => Err(format!(
                "unknown flag --{name} (known: --{})",
                known.join(", --")
            )),
            None => Ok(()),
        }
    }
}

/// One load generator run: what `loadgen` prints, one JSON line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// The scenario's name given with `--scenario` (`pingpong`, `idle`, ...).
    pub scenario: String,
    /// The server's name given with `--server-name`.
    pub server: String,
    /// `pingpong`, `pipelined` or `idle`.
    pub mode: String,
    /// Connections held open.
    pub connections: usize,
    /// Messages in flight per connection.
    pub depth: usize,
    /// Line length in bytes, newline included.
    pub size: usize,
    /// Replies received and verified in the measured window.
    pub messages: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// `messages / seconds`.
    pub messages_per_s: f64,
    /// Median round trip, microseconds.
    pub p50_us: f64,
    /// 99th percentile round trip, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile round trip, microseconds.
    pub p999_us: f64,
    /// Slowest round trip, microseconds.
    pub max_us: f64,
    /// Failed connects, I/O errors, timeouts, and replies that differ from what was sent.
    pub errors: u64,
    /// With `--server-pid`: the server's CPU time (user + system) per
    /// message in the measured window, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_message: Option<f64>,
    /// Idle mode: the server's `VmRSS` before connecting, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    /// Idle mode: the server's `VmRSS` with every connection open, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_after_kib: Option<u64>,
    /// Idle mode: RSS growth divided by the connections, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kib_per_connection: Option<f64>,
}

/// Reads the JSON lines a run wrote; blank lines are skipped.
///
/// # Errors
///
/// The file cannot be read, or a line is not a [`Record`].
pub fn read_records(path: &Path) -> Result<Vec<Record>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: {e}", path.display(), number + 1))
        })
        .collect()
}

/// The medians of one server in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Median {
    /// Server name.
    pub server: String,
    /// How many runs the medians are over.
    pub runs: usize,
    /// Median messages per second.
    pub messages_per_s: f64,
    /// Median of the runs' p50, microseconds.
    pub p50_us: f64,
    /// Median of the runs' p99, microseconds.
    pub p99_us: f64,
    /// Median of the runs' p99.9, microseconds.
    pub p999_us: f64,
    /// Median server CPU microseconds per message, where measured.
    pub server_cpu_us_per_message: Option<f64>,
    /// Median KiB per idle connection (idle mode).
    pub kib_per_connection: Option<f64>,
    /// Errors summed over the runs.
    pub errors: u64,
}

/// One scenario of a run: its parameters and each server's medians.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Scenario name.
    pub name: String,
    /// Load generator mode.
    pub mode: String,
    /// Connections.
    pub connections: usize,
    /// In flight per connection.
    pub depth: usize,
    /// Medians per server, in [`SERVERS`] order then any other server.
    pub servers: Vec<Median>,
}

impl Scenario {
    /// The medians of `server`, if it ran in this scenario.
    #[must_use]
    pub fn server(&self, server: &str) -> Option<&Median> {
        self.servers.iter().find(|median| median.server == server)
    }

    /// `metric` of the server under test divided by that of `baseline`.
    #[must_use]
    pub fn ratio(&self, baseline: &str, metric: impl Fn(&Median) -> Option<f64>) -> Option<f64> {
        let ours = metric(self.server(SERVERS[0])?)?;
        let theirs = metric(self.server(baseline)?)?;
        (theirs > 0.0).then(|| ours / theirs)
    }
}

/// All scenarios of a run, in the order they ran.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Scenarios in run order.
    pub scenarios: Vec<Scenario>,
}

impl Summary {
    /// Every server of the run: [`SERVERS`] first, then others (e.g. an older
    /// flexi-socket build) in the order they appear.
    #[must_use]
    pub fn servers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let all = self.scenarios.iter().flat_map(|s| &s.servers);
        for name in SERVERS.into_iter().chain(all.map(|m| m.server.as_str())) {
            if !names.contains(&name) && self.scenarios.iter().any(|s| s.server(name).is_some()) {
                names.push(name);
            }
        }
        names
    }

    /// Groups `records` by scenario and server and takes medians.
    #[must_use]
    pub fn of(records: &[Record]) -> Self {
        let mut scenarios: Vec<Scenario> = Vec::new();
        for record in records {
            if !scenarios.iter().any(|s| s.name == record.scenario) {
                scenarios.push(Scenario {
                    name: record.scenario.clone(),
                    mode: record.mode.clone(),
                    connections: record.connections,
                    depth: record.depth,
                    servers: Vec::new(),
                });
            }
        }
        for scenario in &mut scenarios {
            let runs: Vec<&Record> = records
                .iter()
                .filter(|r| r.scenario == scenario.name)
                .collect();
            let mut names: Vec<&str> = SERVERS
                .iter()
                .copied()
                .filter(|name| runs.iter().any(|r| r.server == *name))
                .collect();
            for run in &runs {
                if !names.contains(&run.server.as_str()) {
                    names.push(&run.server);
                }
            }
            scenario.servers = names
                .into_iter()
                .map(|name| {
                    let mine: Vec<&Record> =
                        runs.iter().copied().filter(|r| r.server == name).collect();
                    let of = |field: fn(&Record) -> f64| median(mine.iter().map(|r| field(r)));
                    let some = |field: fn(&Record) -> Option<f64>| {
                        let values: Vec<f64> = mine.iter().filter_map(|r| field(r)).collect();
                        (!values.is_empty()).then(|| median(values))
                    };
                    Median {
                        server: name.to_owned(),
                        runs: mine.len(),
                        messages_per_s: of(|r| r.messages_per_s),
                        p50_us: of(|r| r.p50_us),
                        p99_us: of(|r| r.p99_us),
                        p999_us: of(|r| r.p999_us),
                        server_cpu_us_per_message: some(|r| r.server_cpu_us_per_message),
                        kib_per_connection: some(|r| r.kib_per_connection),
                        errors: mine.iter().map(|r| r.errors).sum(),
                    }
                })
                .collect();
        }
        Self { scenarios }
    }
}

/// The median; the mean of the middle two for an even count; 0 for none.
#[must_use]
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert!((median([3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median([4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
        assert!(median([]).abs() < f64::EPSILON);
    }

    #[test]
    fn flags_parse_values_and_reject_unknown_names() {
        let flags = Flags::parse(["x".into(), "--depth".into(), "8".into()]).unwrap();
        assert_eq!(flags.get_or("depth", 64_usize).unwrap(), 8);
        assert_eq!(flags.get_or("size", 32_usize).unwrap(), 32);
        assert_eq!(flags.positional(), ["x"]);
        assert!(flags.only(&["depth"]).is_ok());
        assert!(flags.only(&["size"]).is_err());
        assert!(Flags::parse(["--depth".into()]).is_err());
        assert!(flags.get::<u8>("depth").is_ok());
    }

    #[test]
    fn summary_groups_by_scenario_and_orders_servers() {
        let record = |server: &str, rate: f64| Record {
            scenario: "pingpong".into(),
            server: server.into(),
            mode: "pingpong".into(),
            messages_per_s: rate,
            ..Record::default()
        };
        let records = [
            record("minimal", 100.0),
            record("flexi-socket", 50.0),
            record("flexi-socket", 70.0),
            record("flexi-socket", 90.0),
        ];
        let summary = Summary::of(&records);
        let scenario = &summary.scenarios[0];
        assert_eq!(scenario.servers[0].server, "flexi-socket");
        assert_eq!(scenario.servers[0].runs, 3);
        let ratio = scenario.ratio("minimal", |m| Some(m.messages_per_s));
        assert!((ratio.unwrap() - 0.7).abs() < 1e-9);
        assert!(
            scenario
                .ratio("batching", |m| Some(m.messages_per_s))
                .is_none()
        );
    }
}
