//! Draws a benchmark run as an SVG: per scenario, throughput and p99 (or KiB
//! per idle connection) of each server (in client mode, each client), medians
//! of the runs. The scale scenario's steps (`scale-<connections>`) are drawn
//! apart, as curves over the connections (throughput, p99, RSS per
//! connection), into `scale.svg` beside the chart.
//!
//! ```text
//! chart bench/results/runs.jsonl bench/results/chart.svg
//! ```

use std::path::{Path, PathBuf};

use clap::Parser;
use flexi_socket_bench::{Median, SCALE, Scenario, Summary, is_duel, read_records};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

mod scale;

/// One color per position in a panel: the server under test, then its
/// baselines in `SERVERS` order (tokio, alone, takes the second), then any
/// compared build.
pub(crate) const COLORS: [RGBColor; 4] = [
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x75, 0x70, 0xb3),
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0xe6, 0xab, 0x02),
];

fn main() {
    if let Err(error) = run(&Args::parse()) {
        eprintln!("chart: {error}");
        std::process::exit(1);
    }
}

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "chart", about = "Draws a benchmark run as an SVG")]
struct Args {
    /// The run's records, one JSON line each (`bench/results/runs.jsonl`).
    runs: PathBuf,
    /// The chart to write; the scale steps go to `scale.svg` beside it.
    svg: PathBuf,
}

fn run(args: &Args) -> Result<(), String> {
    let summary = Summary::of(&read_records(&args.runs)?);
    if summary.scenarios.is_empty() {
        return Err(format!("{}: no records", args.runs.display()));
    }
    let (steps, rest): (Vec<Scenario>, Vec<Scenario>) = summary
        .scenarios
        .into_iter()
        .partition(|s| s.name.starts_with(SCALE));
    let svg = args.svg.as_path();
    if !rest.is_empty() {
        draw(&Summary { scenarios: rest }, svg).map_err(|e| format!("{}: {e}", svg.display()))?;
    }
    if !steps.is_empty() {
        let curves = svg.with_file_name("scale.svg");
        scale::draw(&steps, &curves).map_err(|e| format!("{}: {e}", curves.display()))?;
    }
    Ok(())
}

/// A panel: a title, a unit and a value per server.
struct Panel<'a> {
    title: String,
    values: Vec<(&'a str, f64)>,
    label: fn(f64) -> String,
}

fn panels(scenario: &Scenario) -> [Option<Panel<'_>>; 2] {
    let of = |metric: fn(&Median) -> Option<f64>| -> Vec<(&str, f64)> {
        scenario
            .servers
            .iter()
            .filter_map(|m| Some((m.server.as_str(), metric(m)?)))
            .collect()
    };
    let title = match scenario.mode.as_str() {
        "pipelined" => format!(
            "{}, {}×{}",
            scenario.name, scenario.connections, scenario.depth
        ),
        "udp" => format!("{}, {} sockets", scenario.name, scenario.connections),
        _ => format!("{}, {} conns", scenario.name, scenario.connections),
    };
    if scenario.mode == "broadcast" {
        return [
            Some(Panel {
                title: format!("{title}: p50 µs until the last has it"),
                values: of(|m| Some(m.p50_us)),
                label: |v| format!("{v:.0}"),
            }),
            Some(Panel {
                title: format!("{title}: p99 µs until the last has it"),
                values: of(|m| Some(m.p99_us)),
                label: |v| format!("{v:.0}"),
            }),
        ];
    }
    if scenario.mode == "idle" {
        return [
            Some(Panel {
                title: format!("{title}: KiB per connection"),
                values: of(|m| m.kib_per_connection),
                label: |v| format!("{v:.2}"),
            }),
            None,
        ];
    }
    [
        Some(Panel {
            title: format!("{title}: messages/s"),
            values: of(|m| Some(m.messages_per_s)),
            label: |v| {
                if v >= 1e6 {
                    format!("{:.2}M", v / 1e6)
                } else {
                    format!("{:.0}k", v / 1e3)
                }
            },
        }),
        // A duel's latencies are those of two servers sharing one core
        // (the scheduler's time slices between them), not either server's
        // alone: not drawn; the report gives their per-run ratios.
        (!is_duel(&scenario.name)).then(|| Panel {
            title: format!("{title}: p99 µs"),
            values: of(|m| Some(m.p99_us)),
            label: |v| format!("{v:.0}"),
        }),
    ]
}

fn draw(summary: &Summary, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let columns = summary.scenarios.len();
    let width = u32::try_from(columns).unwrap_or(4) * 300;
    let root = SVGBackend::new(path, (width, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (caption, body) = root.split_vertically(40);
    caption.draw(&Text::new(
        "flexi-socket vs hand-written tokio: TCP and UDP echo servers, TCP client (medians; higher messages/s and lower p99 are better)",
        (10, 12),
        ("sans-serif", 16).into_font(),
    ))?;
    let grid = body.split_evenly((2, columns));
    let mut free = Vec::new();
    for (column, scenario) in summary.scenarios.iter().enumerate() {
        for (row, panel) in panels(scenario).into_iter().enumerate() {
            let area = &grid[row * columns + column];
            match panel {
                Some(panel) => bars(area, &panel)?,
                None => free.push(area),
            }
        }
    }
    if let Some(area) = free.first() {
        let runs = summary
            .scenarios
            .iter()
            .flat_map(|s| &s.servers)
            .map(|m| m.runs)
            .max()
            .unwrap_or(0);
        let notes = [
            format!("Medians of {runs} runs per server and scenario."),
            "Server on CPU 0, load generator on CPU 1, loopback.".to_owned(),
            "minimal: tokio Framed + LinesCodec, one send per line.".to_owned(),
            "batching: one write per read, no idle buffers.".to_owned(),
            "flexi-socket: the echo and udp_echo examples.".to_owned(),
            "udp: tokio = one UdpSocket, recv_from + send_to.".to_owned(),
            "tls: tls_echo vs a tokio-rustls batching echo.".to_owned(),
            "broadcast: Connections::broadcast vs try_write".to_owned(),
            "to every socket in one loop.".to_owned(),
            "client: Client::request vs a plain tokio client,".to_owned(),
            "both against the minimal echo.".to_owned(),
            "duel, *-duel: both servers at the same time,".to_owned(),
            "sharing CPU 0 (see BENCHMARKS.md).".to_owned(),
        ];
        for (i, note) in notes.iter().enumerate() {
            let y = 40 + 18 * i32::try_from(i).unwrap_or(0);
            area.draw(&Text::new(
                note.as_str(),
                (16, y),
                ("sans-serif", 12).into_font(),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel<'_>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let top = panel.values.iter().map(|(_, v)| *v).fold(0.0, f64::max) * 1.2;
    let n = panel.values.len();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 13))
        .margin(8)
        .x_label_area_size(22)
        .y_label_area_size(48)
        // A segmented 0..k has k + 1 segments: one per server.
        .build_cartesian_2d(
            (0..n.saturating_sub(1)).into_segmented(),
            0.0..top.max(1e-9),
        )?;
    let names: Vec<&str> = panel.values.iter().map(|(name, _)| *name).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(i) => names.get(*i).copied().unwrap_or_default().to_owned(),
            _ => String::new(),
        })
        .y_labels(5)
        .y_label_formatter(&|v| (panel.label)(*v))
        .label_style(("sans-serif", 11))
        .draw()?;
    for (i, (_, value)) in panel.values.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(color.filled())
                .margin(12)
                .data([(i, *value)]),
        )?;
        chart.draw_series(std::iter::once(Text::new(
            (panel.label)(*value),
            (SegmentValue::CenterOf(i), *value + top * 0.02),
            ("sans-serif", 11)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Bottom)),
        )))?;
    }
    Ok(())
}
