//! The soak's chart: the agents' open fds, RSS and conntrack entries over
//! the run, one panel each, a line per node (node1's broken at each of its
//! agent's replacements, which are marked), the end of the warm-up marked.
//! plotters without fonts, as the other charts ([`crate::chart`]).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::agents::NODES;
use super::record::SoakReport;

const WIDTH: u32 = 1000;
const PANEL_HEIGHT: u32 = 280;
/// node1, node2.
const COLOURS: [RGBColor; 2] = [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0xd6, 0x27, 0x28)];

/// One panel: a title, a unit and each node's points, split into runs
/// (node1's agent generations).
struct Panel {
    title: &'static str,
    unit: &'static str,
    /// Per node: runs of (seconds, value).
    lines: Vec<Vec<Vec<(f64, f64)>>>,
}

pub fn draw(r: &SoakReport, path: &Path) -> Result<()> {
    let panels = [
        Panel {
            title: "Open file descriptors of each node's agent",
            unit: "fds",
            lines: process_lines(r, |s| s.fds as f64),
        },
        Panel {
            title: "Resident memory (VmRSS) of each node's agent",
            unit: "MiB",
            lines: process_lines(r, |s| s.rss_kib as f64 / 1024.0),
        },
        Panel { title: "Conntrack entries (lb_conntrack_entries)", unit: "entries", lines: conntrack_lines(r) },
    ];
    let root = SVGBackend::new(path, (WIDTH, PANEL_HEIGHT * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let areas = root.split_evenly((panels.len(), 1));
    let end = r.load_s.max(1.0);
    let warm_up = r.params.get("warm_up_s").and_then(|v| v.as_f64());
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(panel, area, end, warm_up, r)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

fn draw_panel(
    panel: &Panel,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    end: f64,
    warm_up: Option<f64>,
    r: &SoakReport,
) -> Result<()> {
    let max = panel.lines.iter().flatten().flatten().map(|(_, v)| *v).fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end, 0f64..top)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds of load")
        .y_desc(panel.unit)
        .y_label_formatter(&|v| crate::markdown::fmt_value(*v))
        .draw()
        .map_err(draw_err)?;
    let grey = RGBColor(0x99, 0x99, 0x99);
    for restart in &r.restarts {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(restart.t_s, 0.0), (restart.t_s, top)],
                grey.stroke_width(1),
            )))
            .map_err(draw_err)?;
    }
    if let Some(w) = warm_up {
        chart
            .draw_series(DashedLineSeries::new(vec![(w, 0.0), (w, top)], 6, 4, BLACK.stroke_width(1)))
            .map_err(draw_err)?;
    }
    for (node, (runs, colour)) in NODES.iter().zip(panel.lines.iter().zip(COLOURS)) {
        for (i, run) in runs.iter().enumerate() {
            let series =
                chart.draw_series(LineSeries::new(run.iter().copied(), colour.stroke_width(2))).map_err(draw_err)?;
            if i == 0 {
                let label = if *node == NODES[0] {
                    format!("{node} (agent replaced at the grey lines)")
                } else {
                    format!("{node} (never restarted)")
                };
                series
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// Each node's process samples as runs, a new run at each new PID.
fn process_lines(r: &SoakReport, value: impl Fn(&super::agents::Sample) -> f64) -> Vec<Vec<Vec<(f64, f64)>>> {
    NODES
        .iter()
        .map(|node| {
            let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
            let mut pid = None;
            for s in r.samples.iter().filter(|s| s.node == *node) {
                if pid != Some(s.pid) {
                    runs.push(Vec::new());
                    pid = Some(s.pid);
                }
                if let Some(run) = runs.last_mut() {
                    run.push((s.t_s, value(s)));
                }
            }
            runs
        })
        .collect()
}

fn conntrack_lines(r: &SoakReport) -> Vec<Vec<Vec<(f64, f64)>>> {
    NODES
        .iter()
        .map(|node| vec![r.conntrack.iter().filter(|c| c.node == *node).map(|c| (c.t_s, c.entries as f64)).collect()])
        .collect()
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotters: {e:?}")
}
