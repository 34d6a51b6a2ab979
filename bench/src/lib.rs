//! flexi-socket's benchmark: load generators, hand-written tokio baselines,
//! and the report that compares them. Not published; `bench/run.sh` builds
//! and runs everything (see `BENCHMARKS.md`).
//!
//! - `loadgen` (binary): drives a line echo server over TCP, or a datagram
//!   echo server over UDP, and prints one [`Record`] as a JSON line.
//! - `flexi_client_load` (binary): the same ping-pong as `loadgen --mode
//!   client`, driven by flexi-socket's TCP client instead of plain tokio.
//! - `baseline_minimal`, `baseline_batching`, `baseline_udp` (binaries): the
//!   hand-written echo servers flexi-socket's `echo` and `udp_echo` examples
//!   are compared with.
//! - `idle_bytes` (binary): live heap bytes per idle connection of the echo
//!   server, counted by its own global allocator, by block size.
//! - `report`, `chart` (binaries): read the records of a run, print the table
//!   of medians and ratios ([`Summary`]) and draw it.
//! - [`load`]: what the load generators share, their command line's
//!   [`LoadArgs`](load::LoadArgs) among it (every tool reads its command
//!   line with clap).

use std::path::Path;

use serde::{Deserialize, Serialize};

pub mod line_echo;
pub mod load;
pub mod server_args;
pub mod tls;

/// The implementations a run compares, in table order: the first is the one
/// under test (a server, or in client mode the client); `tokio` is the
/// hand-written counterpart in the UDP and client-mode scenarios.
pub const SERVERS: [&str; 4] = ["flexi-socket", "minimal", "batching", "tokio"];

/// The head-to-head ping-pong scenario: two servers share one core, and
/// their load generators the other, all at the same time. Whatever slows
/// the machine down slows both alike, so the ratio of their throughputs in
/// one run says which needs less CPU per message, to within about 1 %, where
/// separate runs on this kind of VM differ by 5-10 %. Its runs pair up in
/// order. Other scenarios run this way are named `<scenario>-duel`
/// ([`is_duel`]).
pub const DUEL: &str = "duel";

/// Whether `scenario` is a duel: [`DUEL`] or `<scenario>-duel`, whose
/// servers ran at the same time and whose runs pair up in order.
#[must_use]
pub fn is_duel(scenario: &str) -> bool {
    scenario == DUEL || scenario.ends_with("-duel")
}

/// The scale scenario's steps are named `scale-<connections>`: ping-pong at
/// each number of connections, drawn as curves.
pub const SCALE: &str = "scale-";

/// One load generator run: what `loadgen` prints, one JSON line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// The scenario's name given with `--scenario` (`pingpong`, `idle`, ...).
    pub scenario: String,
    /// The name given with `--server-name`: the server measured, or in
    /// client mode the client.
    pub server: String,
    /// `pingpong`, `pipelined`, `idle`, `udp` or `client`.
    pub mode: String,
    /// Connections held open (UDP: sockets).
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
    /// The load generator's own CPU time per message in the measured window,
    /// microseconds: the figure of client mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu_us_per_message: Option<f64>,
    /// UDP: datagrams that got no reply within the loss timeout, over the
    /// whole run (warm-up included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// TLS: the protocol version and cipher suite the connections negotiated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// Idle mode, and load modes with `--server-pid`: the server's `VmRSS`
    /// before connecting, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    /// The server's `VmRSS` with every connection open (load modes: at the
    /// end of the measured window), KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_after_kib: Option<u64>,
    /// RSS growth divided by the connections, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kib_per_connection: Option<f64>,
}

impl Record {
    /// Prints a load generator's outcome as its one JSON line and exits:
    /// 0 for a clean run, 1 if any reply was wrong or the run failed.
    pub fn print_and_exit(tool: &str, outcome: Result<Record, String>) -> ! {
        match outcome {
            Ok(record) => {
                println!(
                    "{}",
                    serde_json::to_string(&record).expect("a record serializes")
                );
                std::process::exit(i32::from(record.errors > 0));
            }
            Err(error) => {
                eprintln!("{tool}: {error}");
                std::process::exit(1);
            }
        }
    }
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
    /// Median load generator CPU microseconds per message, where measured.
    pub client_cpu_us_per_message: Option<f64>,
    /// Median KiB per idle connection (idle mode).
    pub kib_per_connection: Option<f64>,
    /// Errors summed over the runs.
    pub errors: u64,
    /// UDP: lost datagrams summed over the runs.
    pub lost: Option<u64>,
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
    /// In a duel ([`is_duel`]): the server under test's throughput over the
    /// other's, run by run.
    pub paired_ratios: Option<Vec<f64>>,
    /// In a duel: the same for the median round trip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_p50_ratios: Option<Vec<f64>>,
    /// In a duel: the same for the 99th percentile round trip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_p99_ratios: Option<Vec<f64>>,
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
    /// The scenarios grouped by the servers they compare (in order), each
    /// group in run order: the TCP servers in one, UDP and client mode
    /// against their tokio counterparts in another. One table each.
    #[must_use]
    pub fn groups(&self) -> Vec<(Vec<&str>, Vec<&Scenario>)> {
        let mut groups: Vec<(Vec<&str>, Vec<&Scenario>)> = Vec::new();
        for scenario in &self.scenarios {
            let servers: Vec<&str> = scenario.servers.iter().map(|m| m.server.as_str()).collect();
            match groups.iter_mut().find(|(names, _)| *names == servers) {
                Some((_, scenarios)) => scenarios.push(scenario),
                None => groups.push((servers, vec![scenario])),
            }
        }
        groups
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
                    paired_ratios: None,
                    paired_p50_ratios: None,
                    paired_p99_ratios: None,
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
                        client_cpu_us_per_message: some(|r| r.client_cpu_us_per_message),
                        kib_per_connection: some(|r| r.kib_per_connection),
                        errors: mine.iter().map(|r| r.errors).sum(),
                        lost: mine.iter().filter_map(|r| r.lost).reduce(|a, b| a + b),
                    }
                })
                .collect();
            if is_duel(&scenario.name) {
                scenario.paired_ratios = paired_ratios(&runs, |r| r.messages_per_s);
                scenario.paired_p50_ratios = paired_ratios(&runs, |r| r.p50_us);
                scenario.paired_p99_ratios = paired_ratios(&runs, |r| r.p99_us);
            }
        }
        Self { scenarios }
    }
}

/// `figure` of the server under test over the other one's, for each pair of
/// runs that ran together (the n-th run of each); `None` unless exactly two
/// servers ran, as often each.
fn paired_ratios(runs: &[&Record], figure: fn(&Record) -> f64) -> Option<Vec<f64>> {
    let (ours, theirs): (Vec<&Record>, Vec<&Record>) =
        runs.iter().partition(|r| r.server == SERVERS[0]);
    let other = theirs.first()?.server.as_str();
    if ours.len() != theirs.len() || theirs.iter().any(|r| r.server != other) {
        return None;
    }
    Some(
        ours.iter()
            .zip(&theirs)
            .filter(|(_, theirs)| figure(theirs) > 0.0)
            .map(|(ours, theirs)| figure(ours) / figure(theirs))
            .collect(),
    )
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

    #[test]
    fn duel_runs_pair_up_in_order() {
        let record = |scenario: &str, server: &str, rate: f64, p50: f64, p99: f64| Record {
            scenario: scenario.into(),
            server: server.into(),
            messages_per_s: rate,
            p50_us: p50,
            p99_us: p99,
            ..Record::default()
        };
        let records = [
            record(DUEL, "flexi-socket", 60.0, 10.0, 100.0),
            record(DUEL, "minimal", 50.0, 20.0, 400.0),
            record(DUEL, "flexi-socket", 30.0, 30.0, 300.0),
            record(DUEL, "minimal", 40.0, 10.0, 200.0),
            record("pingpong", "flexi-socket", 1.0, 1.0, 1.0),
            record("pingpong", "minimal", 1.0, 1.0, 1.0),
            record("tls-duel", "flexi-socket", 90.0, 5.0, 10.0),
            record("tls-duel", "tokio", 100.0, 4.0, 20.0),
        ];
        let summary = Summary::of(&records);
        let close = |ratios: &Option<Vec<f64>>, expected: &[f64]| {
            let ratios = ratios.as_ref().unwrap();
            ratios.len() == expected.len()
                && ratios
                    .iter()
                    .zip(expected)
                    .all(|(r, e)| (r - e).abs() < 1e-9)
        };
        let duel = &summary.scenarios[0];
        assert!(close(&duel.paired_ratios, &[1.2, 0.75]));
        assert!(close(&duel.paired_p50_ratios, &[0.5, 3.0]));
        assert!(close(&duel.paired_p99_ratios, &[0.25, 1.5]));
        assert!(summary.scenarios[1].paired_ratios.is_none());
        assert!(summary.scenarios[1].paired_p99_ratios.is_none());
        // `<scenario>-duel` pairs up too, against any other server.
        let tls = &summary.scenarios[2];
        assert!(close(&tls.paired_ratios, &[0.9]));
        assert!(close(&tls.paired_p50_ratios, &[1.25]));
        assert!(close(&tls.paired_p99_ratios, &[0.5]));
        // Unequal counts do not pair.
        let unpaired = Summary::of(&records[..3]);
        assert!(unpaired.scenarios[0].paired_ratios.is_none());
        assert!(unpaired.scenarios[0].paired_p99_ratios.is_none());
    }

    #[test]
    fn duels_are_named_duel_or_ending_in_duel() {
        assert!(is_duel(DUEL) && is_duel("latency-duel") && is_duel("tls-pipelined-duel"));
        assert!(!is_duel("latency") && !is_duel("duels") && !is_duel("tls-pipelined"));
    }

    #[test]
    fn scenarios_comparing_the_same_servers_share_a_group() {
        let record = |scenario: &str, server: &str| Record {
            scenario: scenario.into(),
            server: server.into(),
            ..Record::default()
        };
        let records = [
            record("pingpong", "minimal"),
            record("pingpong", "flexi-socket"),
            record("udp", "tokio"),
            record("udp", "flexi-socket"),
            record("idle", "flexi-socket"),
            record("idle", "minimal"),
            record("client", "flexi-socket"),
            record("client", "tokio"),
        ];
        let summary = Summary::of(&records);
        let groups: Vec<(Vec<&str>, Vec<&str>)> = summary
            .groups()
            .into_iter()
            .map(|(servers, scenarios)| {
                (servers, scenarios.iter().map(|s| s.name.as_str()).collect())
            })
            .collect();
        assert_eq!(
            groups,
            [
                (vec!["flexi-socket", "minimal"], vec!["pingpong", "idle"]),
                (vec!["flexi-socket", "tokio"], vec!["udp", "client"]),
            ]
        );
    }
}
