//! Prints the tables of a benchmark run (medians per server and the ratios of
//! flexi-socket to each baseline; one table per set of servers compared) and
//! writes them beside the records as `table.md`, `summary.json` and
//! `summary.csv`.
//!
//! ```text
//! report bench/results/runs.jsonl
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser;
use flexi_socket_bench::{DUEL, Median, SCALE, SERVERS, Scenario, Summary, median, read_records};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "report",
    about = "Prints and writes the tables of a benchmark run"
)]
struct Args {
    /// The run's records, one JSON line each (`bench/results/runs.jsonl`).
    runs: PathBuf,
}

fn main() {
    if let Err(error) = run(&Args::parse()) {
        eprintln!("report: {error}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let runs = args.runs.as_path();
    let summary = Summary::of(&read_records(runs)?);
    let table = table(&summary);
    print!("{table}");
    let dir = runs.parent().unwrap_or(Path::new("."));
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("table.md", table)?;
    write(
        "summary.json",
        serde_json::to_string_pretty(&summary).expect("a summary serializes") + "\n",
    )?;
    write("summary.csv", csv(&summary))?;
    Ok(())
}

/// What a row shows: a name, how to read it off the medians, how to print it.
struct Metric {
    name: &'static str,
    value: fn(&Median) -> Option<f64>,
    format: fn(f64) -> String,
}

const THROUGHPUT: Metric = Metric {
    name: "messages/s",
    value: |m| Some(m.messages_per_s),
    format: rate,
};
const P50: Metric = Metric {
    name: "p50 µs",
    value: |m| Some(m.p50_us),
    format: micros,
};
const P99: Metric = Metric {
    name: "p99 µs",
    value: |m| Some(m.p99_us),
    format: micros,
};
const CPU: Metric = Metric {
    name: "server CPU µs/msg",
    value: |m| m.server_cpu_us_per_message,
    format: |us| format!("{us:.2}"),
};
const CLIENT_CPU: Metric = Metric {
    name: "client CPU µs/msg",
    value: |m| m.client_cpu_us_per_message,
    format: |us| format!("{us:.2}"),
};
const IDLE: Metric = Metric {
    name: "KiB per connection",
    value: |m| m.kib_per_connection,
    format: |kib| format!("{kib:.2}"),
};
/// The scale scenario's memory: the server's RSS growth per connection,
/// under load (buffers in flight included).
const LOADED: Metric = Metric {
    name: "RSS KiB per connection",
    value: |m| m.kib_per_connection,
    format: |kib| format!("{kib:.2}"),
};
/// Broadcast: a round trip is the time until the last client has the line.
const LAST_P50: Metric = Metric {
    name: "p50 µs until the last has it",
    value: |m| Some(m.p50_us),
    format: micros,
};
const LAST_P99: Metric = Metric {
    name: "p99 µs until the last has it",
    value: |m| Some(m.p99_us),
    format: micros,
};
const DELIVERED: Metric = Metric {
    name: "lines delivered/s",
    value: |m| Some(m.messages_per_s),
    format: rate,
};

/// The Markdown tables: one per set of servers compared (the TCP servers;
/// UDP and client mode against their tokio counterparts), one row per
/// scenario and metric.
fn table(summary: &Summary) -> String {
    let mut out = String::new();
    for (servers, scenarios) in summary.groups() {
        if !out.is_empty() {
            out.push('\n');
        }
        group_table(&mut out, &servers, &scenarios);
    }
    for scenario in &summary.scenarios {
        if scenario.paired_ratios.is_some() {
            out.push('\n');
        }
        for (metric, what) in [
            (
                THROUGHPUT,
                "throughput ratio, the servers side by side on one core",
            ),
            (P50, "p50 ratio"),
            (P99, "p99 ratio"),
        ] {
            let Some(ratios) = paired(scenario, &metric) else {
                continue;
            };
            let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
            let _ = writeln!(
                out,
                "{}: each run's {what}: {} (median {:.3}×).",
                scenario.name,
                listed.join(", "),
                median(ratios.iter().copied()),
            );
        }
    }
    // Only UDP runs count losses.
    let udp = summary
        .scenarios
        .iter()
        .flat_map(|s| &s.servers)
        .any(|m| m.lost.is_some());
    let runs = summary
        .scenarios
        .iter()
        .flat_map(|s| &s.servers)
        .map(|m| m.runs)
        .max()
        .unwrap_or(0);
    let errors = nonzero(summary, |m| m.errors);
    let _ = write!(out, "\nMedians of {runs} runs. Errors: {errors}.");
    if udp {
        let lost = nonzero(summary, |m| m.lost.unwrap_or(0));
        let _ = write!(out, " UDP datagrams lost: {lost}.");
    }
    out.push('\n');
    out
}

/// One table: `servers` side by side, then flexi-socket's ratio to each of
/// the others, then the issue's target where there is one.
fn group_table(out: &mut String, servers: &[&str], scenarios: &[&Scenario]) {
    let others = &servers[1.min(servers.len())..];
    let ratios: Vec<String> = others
        .iter()
        .map(|other| format!("flexi/{other}"))
        .collect();
    let rows: Vec<(&Scenario, &Metric)> = scenarios
        .iter()
        .flat_map(|scenario| {
            let metrics: &[Metric] = match scenario.mode.as_str() {
                "idle" => &[IDLE],
                "client" => &[THROUGHPUT, P50, P99, CLIENT_CPU, CPU],
                "broadcast" => &[LAST_P50, LAST_P99, DELIVERED, CPU],
                _ if scenario.name.starts_with(SCALE) => &[THROUGHPUT, P99, CPU, LOADED],
                _ => &[THROUGHPUT, P50, P99, CPU],
            };
            metrics.iter().map(move |metric| (*scenario, metric))
        })
        .collect();
    let targets = rows
        .iter()
        .any(|(scenario, metric)| target(scenario, metric.name).is_some());
    let head = ["scenario", "metric"]
        .into_iter()
        .chain(servers.iter().copied())
        .chain(ratios.iter().map(String::as_str))
        .chain(targets.then_some("target"))
        .collect::<Vec<_>>();
    let numbers = servers.len() + ratios.len();
    let _ = writeln!(
        out,
        "| {} |\n|---|---|{}{}",
        head.join(" | "),
        "---:|".repeat(numbers),
        if targets { "---|" } else { "" }
    );
    let mut previous = None;
    for (scenario, metric) in rows {
        let first = previous != Some(&scenario.name);
        previous = Some(&scenario.name);
        let mut cells = vec![
            if first {
                title(scenario)
            } else {
                String::new()
            },
            metric.name.to_owned(),
        ];
        for server in servers {
            cells.push(
                scenario
                    .server(server)
                    .and_then(metric.value)
                    .map_or_else(|| "–".into(), metric.format),
            );
        }
        for baseline in others {
            cells.push(
                ratio(scenario, baseline, metric)
                    .map_or_else(|| "–".into(), |r| format!("{r:.2}×")),
            );
        }
        if targets {
            cells.push(target(scenario, metric.name).unwrap_or_default());
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// The server under test's `metric` over `baseline`'s: of the medians, or
/// in a duel the median of each run's ratio where it has them (its runs
/// pair up; the medians of the two columns may come from different runs).
fn ratio(scenario: &Scenario, baseline: &str, metric: &Metric) -> Option<f64> {
    match paired(scenario, metric) {
        Some(ratios) => Some(median(ratios.iter().copied())),
        None => scenario.ratio(baseline, metric.value),
    }
}

/// A duel's per-run ratios of `metric`: throughput, p50 and p99 have them.
fn paired<'a>(scenario: &'a Scenario, metric: &Metric) -> Option<&'a [f64]> {
    let ratios = match metric.name {
        name if name == THROUGHPUT.name => &scenario.paired_ratios,
        name if name == P50.name => &scenario.paired_p50_ratios,
        name if name == P99.name => &scenario.paired_p99_ratios,
        _ => return None,
    };
    ratios.as_deref()
}

fn title(scenario: &Scenario) -> String {
    match scenario.mode.as_str() {
        "pipelined" => format!(
            "{} ({} conns × {} in flight)",
            scenario.name, scenario.connections, scenario.depth
        ),
        "udp" => format!("{} ({} sockets)", scenario.name, scenario.connections),
        "broadcast" => format!(
            "{} (1 line to {} conns)",
            scenario.name, scenario.connections
        ),
        _ => format!("{} ({} conns)", scenario.name, scenario.connections),
    }
}

/// The issue's target for this row, and whether this run meets it.
fn target(scenario: &Scenario, metric: &str) -> Option<String> {
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    let (goal, ok) = match (scenario.name.as_str(), metric) {
        ("pingpong", "messages/s") => (
            "≥ 1.0× minimal",
            scenario.ratio("minimal", THROUGHPUT.value)? >= 1.0,
        ),
        // The same target, measured side by side: the median of the runs' ratios.
        (DUEL, "messages/s") => (
            "≥ 1.0× minimal (median of per-run ratios)",
            ratio(scenario, "minimal", &THROUGHPUT)? >= 1.0,
        ),
        // Issue 19's targets (eighth session).
        ("pipelined", "messages/s") => (
            "≥ 0.8× batching",
            scenario.ratio("batching", THROUGHPUT.value)? >= 0.8,
        ),
        ("pipelined-duel", "messages/s") => (
            "≥ 0.8× batching (median of per-run ratios)",
            ratio(scenario, "batching", &THROUGHPUT)? >= 0.8,
        ),
        ("pipelined-1k", "messages/s") => (
            "≥ 0.85× batching",
            scenario.ratio("batching", THROUGHPUT.value)? >= 0.85,
        ),
        ("latency", "p99 µs") => (
            "≤ 1.0× minimal",
            scenario.ratio("minimal", P99.value)? <= 1.0,
        ),
        ("latency-duel", "p99 µs") => (
            "≤ 1.0× minimal (median of per-run ratios)",
            ratio(scenario, "minimal", &P99)? <= 1.0,
        ),
        ("idle", _) => (
            "≤ 1 KiB",
            scenario.server(SERVERS[0])?.kib_per_connection? <= 1.0,
        ),
        ("udp", "messages/s") => (
            "≥ 1.0× tokio",
            scenario.ratio("tokio", THROUGHPUT.value)? >= 1.0,
        ),
        ("udp-duel", "messages/s") => (
            "≥ 1.0× tokio (median of per-run ratios)",
            ratio(scenario, "tokio", &THROUGHPUT)? >= 1.0,
        ),
        ("tls" | "tls-pipelined", "messages/s") => (
            "≥ 0.95× tokio",
            scenario.ratio("tokio", THROUGHPUT.value)? >= 0.95,
        ),
        ("tls-duel" | "tls-pipelined-duel", "messages/s") => (
            "≥ 0.95× tokio (median of per-run ratios)",
            ratio(scenario, "tokio", &THROUGHPUT)? >= 0.95,
        ),
        ("broadcast", "p50 µs until the last has it") => (
            "≤ 1.1× tokio",
            scenario.ratio("tokio", LAST_P50.value)? <= 1.1,
        ),
        _ => return None,
    };
    Some(format!("{goal}: {}", verdict(ok)))
}

fn csv(summary: &Summary) -> String {
    let mut out = String::from(
        "scenario,mode,connections,depth,server,runs,messages_per_s,p50_us,p99_us,p999_us,server_cpu_us_per_message,kib_per_connection,errors,client_cpu_us_per_message,lost\n",
    );
    for s in &summary.scenarios {
        for m in &s.servers {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{:.0},{:.1},{:.1},{:.1},{},{},{},{},{}",
                s.name,
                s.mode,
                s.connections,
                s.depth,
                m.server,
                m.runs,
                m.messages_per_s,
                m.p50_us,
                m.p99_us,
                m.p999_us,
                m.server_cpu_us_per_message
                    .map_or_else(String::new, |us| format!("{us:.3}")),
                m.kib_per_connection
                    .map_or_else(String::new, |k| format!("{k:.2}")),
                m.errors,
                m.client_cpu_us_per_message
                    .map_or_else(String::new, |us| format!("{us:.3}")),
                m.lost.map_or_else(String::new, |lost| lost.to_string()),
            );
        }
    }
    out
}

fn rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2}M", per_s / 1e6)
    } else {
        format!("{:.1}k", per_s / 1e3)
    }
}

fn micros(us: f64) -> String {
    if us >= 100.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

/// "server in scenario: n" for every measurement whose `count` is above 0,
/// comma separated, or "none".
fn nonzero(summary: &Summary, count: impl Fn(&Median) -> u64) -> String {
    let listed: Vec<String> = summary
        .scenarios
        .iter()
        .flat_map(|s| s.servers.iter().map(move |m| (s, m)))
        .filter(|(_, m)| count(m) > 0)
        .map(|(s, m)| format!("{} in {}: {}", m.server, s.name, count(m)))
        .collect();
    if listed.is_empty() {
        "none".into()
    } else {
        listed.join(", ")
    }
}
