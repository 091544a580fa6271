//! Latency-percentile plots (SVG), drawn the way HdrHistogram plots them: the
//! x axis is the percentile on a log scale of `1 / (1 - p)`, so 90%, 99%,
//! 99.9%, ... are evenly spaced and the tail gets as much room as the median;
//! the y axis is the round-trip latency in microseconds. Lower is better; a
//! curve that shoots up at the right has a heavy tail.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Results;

/// Colours for successive runs (and the sweep's series).
pub const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// `1 / (1 - q)`, with the last point (q = 1) placed at the right edge.
fn x_of(q: f64, right: f64) -> f64 {
    if q >= 1.0 {
        right
    } else {
        (1.0 / (1.0 - q)).min(right)
    }
}

/// Draws one curve per run into `path`.
pub fn draw(path: &Path, title: &str, runs: &[&Results]) -> Result<(), String> {
    let runs: Vec<&Results> = runs
        .iter()
        .copied()
        .filter(|r| !r.percentiles.is_empty())
        .collect();
    if runs.is_empty() {
        return Err("no latency figures to plot".into());
    }
    // The x range ends at the decade past the last finite point: 99.99%, 99.999%, ...
    let finite_max = runs
        .iter()
        .flat_map(|r| r.percentiles.iter())
        .filter(|p| p[0] < 1.0)
        .map(|p| 1.0 / (1.0 - p[0]))
        .fold(10.0f64, f64::max);
    let right = 10f64.powf(finite_max.log10().ceil().max(1.0));
    let top_us = runs.iter().map(|r| r.latency_us.max).fold(1.0f64, f64::max) * 1.05;
    // Microseconds, or milliseconds once the tail reaches 10 ms.
    let (unit, per_unit) = if top_us >= 10_000.0 {
        ("ms", 1000.0)
    } else {
        ("us", 1.0)
    };
    let top = top_us / per_unit;

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .margin_right(40)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d((1f64..right).log_scale(), 0f64..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(format!("round-trip latency ({unit})"))
        .x_label_formatter(&percentile_label)
        .y_label_formatter(&|v| format!("{v}"))
        .draw()
        .map_err(|e| e.to_string())?;

    for (i, run) in runs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points = run
            .percentiles
            .iter()
            .map(|p| (x_of(p[0], right), p[1] / per_unit));
        let legend = format!(
            "{}: {:.0} msgs/s, p50 {:.1} {unit}, p99 {:.1} {unit}",
            run.label,
            run.msgs_per_sec,
            run.latency_us.p50 / per_unit,
            run.latency_us.p99 / per_unit
        );
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(legend)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    legend_and_present(&mut chart, &root, SeriesLabelPosition::UpperLeft)
}

/// Ends every plot of the echo bench alike: the legend box at `position`,
/// then the file written.
pub fn legend_and_present<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    root: &DrawingArea<DB, plotters::coord::Shift>,
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// `10` -> `90%`, `1000` -> `99.9%`; only decades are labelled.
pub fn percentile_label(x: &f64) -> String {
    let decades = x.log10();
    if (decades - decades.round()).abs() > 1e-6 {
        return String::new();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    let digits = (decades.round() as usize).saturating_sub(2);
    format!("{p:.digits$}%")
}
