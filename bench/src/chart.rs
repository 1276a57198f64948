//! SVG charts with plotters: one grouped bar chart per metric — a group per
//! scenario, a bar per subject (lb first), each bar labelled with its value
//! and lb's bars with their ratio to the best peer. A metric whose values
//! span more than [`LOG_SPREAD`]× (12.9 minutes against 5 ms) is drawn on a
//! logarithmic axis, else the small bars would not show. plotters is built
//! without font support: the SVG backend writes `<text>` elements that the
//! viewer renders, so no font files are needed.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::markdown::{fmt_times, fmt_value, subjects};
use crate::report::{Better, Comparison, Report};

/// lb, then the peers.
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// At least this wide; wider with many groups.
const MIN_WIDTH: u32 = 900;
/// Room for one group's label and bars.
const GROUP_WIDTH: u32 = 230;
const HEIGHT: u32 = 500;
/// Above this ratio of the largest to the smallest value, the axis is
/// logarithmic.
const LOG_SPREAD: f64 = 100.0;

/// How values map to the y axis.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    Linear,
    /// Plotted as log10(value), the axis starting at decade `floor`.
    Log {
        floor: f64,
    },
}

impl Scale {
    fn for_values(values: impl Iterator<Item = f64> + Clone) -> Self {
        let max = values.clone().fold(0.0f64, f64::max);
        let min = values.filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
        if min.is_finite() && max / min > LOG_SPREAD {
            Scale::Log { floor: min.log10().floor() }
        } else {
            Scale::Linear
        }
    }

    /// Where `v` is drawn.
    fn y(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log { floor } => v.max(10f64.powf(floor)).log10(),
        }
    }

    /// The axis range for values up to `max`.
    fn range(self, max: f64) -> std::ops::Range<f64> {
        match self {
            Scale::Linear => 0.0..if max > 0.0 { max * 1.35 } else { 1.0 },
            Scale::Log { floor } => floor..max.log10().ceil() + 1.0,
        }
    }

    /// The label of axis position `y`: decades only on a log axis.
    fn label(self, y: f64) -> String {
        match self {
            Scale::Linear => fmt_value(y),
            Scale::Log { .. } if (y - y.round()).abs() < 1e-9 => fmt_value(10f64.powf(y.round())),
            Scale::Log { .. } => String::new(),
        }
    }
}

pub fn bar_chart(r: &Report, metric: &str, path: &Path) -> Result<()> {
    let comparisons: Vec<&Comparison> = r.of_metric(metric).collect();
    let first = comparisons.first().ok_or_else(|| anyhow!("no comparison of {metric}"))?;
    let subjects = subjects(&comparisons);
    let values = comparisons.iter().flat_map(|c| c.measurements.iter().flat_map(|m| [m.min, m.max, m.value]));
    let max = values.clone().fold(0.0f64, f64::max);
    let scale = Scale::for_values(values);
    let y_range = scale.range(max);
    let (bottom, y_span) = (y_range.start, y_range.end - y_range.start);
    let groups = comparisons.len();

    let width = MIN_WIDTH.max(GROUP_WIDTH * groups as u32 + 100);
    let root = SVGBackend::new(path, (width, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let direction = match first.better {
        Better::Higher => "higher is better",
        Better::Lower => "lower is better",
    };
    let axis = if scale == Scale::Linear { "" } else { ", log scale" };
    let title = format!("{} — {} ({direction}{axis})", first.title, first.unit);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..groups as f64, y_range)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc(first.unit.as_str())
        .y_label_formatter(&|v| scale.label(*v))
        .draw()
        .map_err(draw_err)?;

    let slot = 0.8 / subjects.len() as f64;
    for (g, c) in comparisons.iter().enumerate() {
        let label = if c.scenario.is_empty() { first.title.clone() } else { c.scenario_label() };
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (g as f64 + 0.5, bottom),
                ("sans-serif", 12).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
            )))
            .map_err(draw_err)?;
        for (s, subject) in subjects.iter().enumerate() {
            let Some(m) = c.get(subject) else { continue };
            let x0 = g as f64 + 0.1 + s as f64 * slot;
            let x1 = x0 + slot * 0.9;
            let colour = COLOURS[s % COLOURS.len()];
            chart
                .draw_series(std::iter::once(Rectangle::new([(x0, bottom), (x1, scale.y(m.value))], colour.filled())))
                .map_err(draw_err)?;
            // The spread of the rounds.
            let xm = (x0 + x1) / 2.0;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(xm, scale.y(m.min)), (xm, scale.y(m.max))],
                    BLACK.stroke_width(1),
                )))
                .map_err(draw_err)?;
            let top = scale.y(m.max.max(m.value)) + y_span * 0.01;
            let small = ("sans-serif", 10).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
            chart
                .draw_series(std::iter::once(Text::new(fmt_value(m.value), (xm, top), small.clone())))
                .map_err(draw_err)?;
            // lb's ratio to its closest peer, on a line of its own above the value.
            if *subject == c.ours
                && let Some(best) = best_peer_ratio(c)
            {
                let ratio = fmt_times(best).replace(" better", "").replace(" (worse)", "");
                chart
                    .draw_series(std::iter::once(Text::new(format!("({ratio})"), (xm, top + y_span * 0.04), small)))
                    .map_err(draw_err)?;
            }
        }
    }
    for (s, subject) in subjects.iter().enumerate() {
        let colour = COLOURS[s % COLOURS.len()];
        chart
            .draw_series(std::iter::once(Rectangle::new([(0.0, bottom), (0.0, bottom)], colour.filled())))
            .map_err(draw_err)?
            .label(subject.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)?;
    Ok(())
}

/// lb against the best peer (the smallest advantage), if any.
fn best_peer_ratio(c: &Comparison) -> Option<f64> {
    c.ratios.iter().map(|r| r.times_better).filter(|t| t.is_finite()).reduce(f64::min)
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotters: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Meta;
    use crate::profile::Profile;
    use crate::report::Measurement;

    #[test]
    fn draws_an_svg_with_every_subject_and_scenario() {
        let mut r = Report::new("l4", Profile::Smoke, Meta::for_tests(), serde_json::json!({}));
        for services in [1, 1000] {
            let mut c = Comparison::new("pps", "Packets", "packets/s", Better::Higher, "lb (XDP)")
                .scenario("services", services);
            c.push(Measurement::new("lb (XDP)", vec![900_000.0, 1_000_000.0]));
            c.push(Measurement::new("iptables", vec![400_000.0]));
            c.push(Measurement::new("nftables", vec![500_000.0]));
            r.push(c);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        bar_chart(&r, "pps", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for needle in ["lb (XDP)", "iptables", "nftables", "services=1000", "1,000,000", "(1.90×)"] {
            assert!(svg.contains(needle), "{needle} missing from the chart");
        }
        assert!(!svg.contains("log scale"), "a 2.5× spread is drawn on a linear axis");
    }

    #[test]
    fn a_spread_over_a_hundredfold_is_drawn_on_a_log_axis() {
        let mut r = Report::new("control", Profile::Smoke, Meta::for_tests(), serde_json::json!({}));
        let mut c = Comparison::new("change_ms", "One change", "ms", Better::Lower, "lb");
        c.push(Measurement::new("lb", vec![5.0]));
        c.push(Measurement::new("iptables", vec![772_000.0]));
        r.push(c);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        bar_chart(&r, "change_ms", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for needle in ["log scale", "772,000", "1,000,000", "10,000"] {
            assert!(svg.contains(needle), "{needle} missing from the chart");
        }
        assert_eq!(Scale::for_values([5.0, 772_000.0].into_iter()), Scale::Log { floor: 0.0 });
        assert_eq!(Scale::Log { floor: 0.0 }.range(772_000.0), 0.0..7.0);
        assert_eq!(Scale::Log { floor: 0.0 }.label(3.0), "1,000");
        assert_eq!(Scale::Log { floor: 0.0 }.label(2.5), "");
    }
}
