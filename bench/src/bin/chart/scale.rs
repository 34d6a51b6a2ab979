//! The scale scenario as curves: for each server, throughput, p99 and the
//! server's RSS per connection against the number of connections (log
//! scale), one panel each.

use std::path::Path;

use flexi_socket_bench::{Median, Scenario};
use plotters::prelude::*;

use super::COLORS;

/// One curve per server: (connections, value) for each step it ran.
type Curves<'a> = Vec<(&'a str, Vec<(f64, f64)>)>;

/// A panel's title and how to read its value off a server's medians.
type Metric = (&'static str, fn(&Median) -> Option<f64>);

pub(crate) fn draw(steps: &[Scenario], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1200, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (caption, body) = root.split_vertically(36);
    caption.draw(&Text::new(
        "scale: ping-pong at 1 to ~10,000 connections (medians; x: connections, log scale)",
        (10, 10),
        ("sans-serif", 16).into_font(),
    ))?;
    let panels = body.split_evenly((1, 3));
    let metrics: [Metric; 3] = [
        ("messages/s", |m| Some(m.messages_per_s)),
        ("p99 µs", |m| Some(m.p99_us)),
        ("server RSS KiB per connection", |m| m.kib_per_connection),
    ];
    for (area, (title, metric)) in panels.iter().zip(metrics) {
        panel(area, title, &curves(steps, metric))?;
    }
    root.present()?;
    Ok(())
}

fn curves(steps: &[Scenario], metric: fn(&Median) -> Option<f64>) -> Curves<'_> {
    let mut curves: Curves<'_> = Vec::new();
    for step in steps {
        for median in &step.servers {
            let Some(value) = metric(median) else {
                continue;
            };
            let point = (step.connections as f64, value);
            match curves.iter_mut().find(|(name, _)| *name == median.server) {
                Some((_, points)) => points.push(point),
                None => curves.push((&median.server, vec![point])),
            }
        }
    }
    for (_, points) in &mut curves {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    curves
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    curves: &Curves<'_>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let points = curves.iter().flat_map(|(_, points)| points);
    let most = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let top = points.map(|p| p.1).fold(0.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 13))
        .margin(10)
        .x_label_area_size(24)
        .y_label_area_size(56)
        .build_cartesian_2d((1.0..most * 1.5).log_scale(), 0.0..top.max(1e-9))?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_labels(6)
        .label_style(("sans-serif", 11))
        .draw()?;
    for (i, (name, points)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()?;
    Ok(())
}
