//! `--sweep`: the table and plot of `scripts/echo-bench.sh --rate-sweep`,
//! latency against load.
//!
//! Contract with the script: in `--results`, `<server>-max` is the server's
//! closed-loop run (its maximum msgs/s), `<server>-own<P>` an open-loop run
//! at P% of that maximum and, with a rate base B, `<server>-<B><P>` one at
//! P% of B's maximum (B itself has only its own runs: they are the same).
//! Missing runs are reported and make the exit code non-zero.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use plotters::prelude::*;

use crate::report::{saturated, Results};

/// One open-loop point of the sweep.
#[derive(Debug, Clone)]
pub struct Point {
    pub server: String,
    /// Whose maximum the rate is a share of.
    pub basis: String,
    pub load: u32,
    pub run: Results,
}

/// The runs of a sweep, read from `dir`: each server's closed-loop
/// maximum, and its open-loop points.
pub fn read(
    dir: &Path,
    servers: &[String],
    loads: &[u32],
    base: Option<&str>,
) -> (Vec<Results>, Vec<Point>, bool) {
    let mut missing = false;
    let mut read = |label: &str| match Results::read_json(dir, label) {
        Ok(r) => Some(r),
        Err(err) => {
            eprintln!("echo_bench: no results for {label}: {err}");
            missing = true;
            None
        }
    };
    let maxima: Vec<Results> = servers.iter().filter_map(|s| read(&format!("{s}-max"))).collect();
    let mut points = Vec::new();
    for server in servers {
        let mut bases = vec![("own", server.as_str())];
        if let Some(b) = base.filter(|b| *b != server) {
            bases.push((b, b));
        }
        for (tag, basis) in bases {
            for &load in loads {
                if let Some(run) = read(&format!("{server}-{tag}{load}")) {
                    points.push(Point {
                        server: server.clone(),
                        basis: basis.to_string(),
                        load,
                        run,
                    });
                }
            }
        }
    }
    (maxima, points, missing)
}

/// The sweep's table: each server's maximum, then one row per open-loop
/// run, then (with a base) the ratios of each server's p99.9 to the base's
/// at the same absolute rates.
pub fn table(maxima: &[Results], points: &[Point], base: Option<&str>) -> String {
    let mut out = String::new();
    for m in maxima {
        let _ = writeln!(
            out,
            "closed-loop maximum: {:<10} {:>9.0} msgs/s (p99 {:.1} ms, server CPU {}, client CPU {}{})",
            m.label.trim_end_matches("-max"),
            m.msgs_per_sec,
            m.latency_us.p99 / 1000.0,
            crate::report::opt(m.server.and_then(|s| s.cpu_percent), 0) + "%",
            crate::report::opt(m.client.cpu_percent, 0) + "%",
            if crate::report::client_bound(m) {
                ", client-bound"
            } else {
                ""
            },
        );
    }
    let _ = writeln!(
        out,
        "{:<10} {:<10} {:>5} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5} {:>8}  note",
        "server",
        "% of max",
        "load",
        "target/s",
        "achieved",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "p99.99 ms",
        "max ms",
        "srv",
        "cli",
        "stall ms"
    );
    for p in points {
        let r = &p.run;
        let l = &r.latency_us;
        let _ = writeln!(
            out,
            "{:<10} {:<10} {:>4}% {:>9.0} {:>9.0} {:>8.3} {:>9.3} {:>9.3} {:>9.3} {:>9.1} {:>5} {:>5} {:>8}  {}",
            p.server,
            p.basis,
            p.load,
            r.settings.rate.unwrap_or(0.0),
            r.paced_msgs_per_sec.unwrap_or(r.msgs_per_sec),
            l.p50 / 1000.0,
            l.p99 / 1000.0,
            l.p999 / 1000.0,
            l.p9999 / 1000.0,
            l.max / 1000.0,
            crate::report::opt(r.server.and_then(|s| s.cpu_percent), 0),
            crate::report::opt(r.client.cpu_percent, 0),
            crate::report::opt(crate::hiccups::worst_ms(&r.hiccups), 1),
            if saturated(r) { "saturated" } else { "" },
        );
    }
    let _ = writeln!(
        out,
        "open loop: the rate spread evenly over the connections, latency from each message's intended \
         send time; saturated: achieved more than 5% below the target; srv/cli: CPU in % of one; \
         stall: the machine's longest stall on any CPU during the run (a 1 ms sleeper's worst \
         overrun: latencies near it are not the server's)"
    );
    if let Some(base) = base {
        for p in points.iter().filter(|p| p.basis == base && p.server != base) {
            let Some(b) = points
                .iter()
                .find(|q| q.server == base && q.basis == base && q.load == p.load)
            else {
                continue;
            };
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            let _ = writeln!(
                out,
                "at {}% of {base}'s maximum ({:.0} msgs/s): {} / {base}: p99.9 x{:.3}, p99 x{:.3}, p50 x{:.3}{}",
                p.load,
                p.run.settings.rate.unwrap_or(0.0),
                p.server,
                ratio(p.run.latency_us.p999, b.run.latency_us.p999),
                ratio(p.run.latency_us.p99, b.run.latency_us.p99),
                ratio(p.run.latency_us.p50, b.run.latency_us.p50),
                if saturated(&p.run) || saturated(&b.run) {
                    " (a saturated run)"
                } else {
                    ""
                },
            );
        }
    }
    out
}

/// Latency against load: p50 (thin) and p99.9 (thick) per server and basis,
/// the load on a linear axis, the latency on a log one.
pub fn draw(path: &Path, points: &[Point]) -> Result<(), String> {
    if points.is_empty() {
        return Err("no sweep points to plot".into());
    }
    let ms = |us: f64| (us / 1000.0).max(0.001);
    let top = points
        .iter()
        .map(|p| ms(p.run.latency_us.p999))
        .fold(0.01, f64::max)
        * 2.0;
    let bottom = points
        .iter()
        .map(|p| ms(p.run.latency_us.p50))
        .fold(top, f64::min)
        / 2.0;
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("echo latency against load (open loop)", ("sans-serif", 22))
        .margin(16)
        .margin_right(40)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..100f64, (bottom..top).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("load (% of the maximum msgs/s)")
        .y_desc("latency from intended send time (ms)")
        .draw()
        .map_err(|e| e.to_string())?;
    let mut series: Vec<(&str, &str)> = Vec::new();
    for p in points {
        if !series.contains(&(p.server.as_str(), p.basis.as_str())) {
            series.push((p.server.as_str(), p.basis.as_str()));
        }
    }
    for (i, (server, basis)) in series.iter().enumerate() {
        let colour = crate::plot::COLOURS[i % crate::plot::COLOURS.len()];
        let mine: Vec<&Point> = points
            .iter()
            .filter(|p| p.server == *server && p.basis == *basis)
            .collect();
        for (quantile, width, pick) in [
            (
                "p99.9",
                3,
                (|r: &Results| r.latency_us.p999) as fn(&Results) -> f64,
            ),
            ("p50", 1, |r: &Results| r.latency_us.p50),
        ] {
            let line = mine.iter().map(|p| (f64::from(p.load), ms(pick(&p.run))));
            chart
                .draw_series(LineSeries::new(line, colour.stroke_width(width)))
                .map_err(|e| e.to_string())?
                .label(format!("{server} at % of {basis}'s max: {quantile}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(width))
                });
        }
    }
    crate::plot::legend_and_present(&mut chart, &root, SeriesLabelPosition::UpperLeft)
}

/// `--sweep`: prints the table, draws `sweep.svg`.
pub fn main(dir: &Path, servers: &[String], loads: &[u32], base: Option<&str>) -> ExitCode {
    let (maxima, points, missing) = read(dir, servers, loads, base);
    print!("{}", table(&maxima, &points, base));
    if let Some(r) = maxima.first() {
        println!("{}", crate::report::describe(r));
    }
    let path = dir.join("sweep.svg");
    match draw(&path, &points) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(err) => eprintln!("echo_bench: no plot: {err}"),
    }
    if missing
        || maxima
            .iter()
            .chain(points.iter().map(|p| &p.run))
            .any(Results::failed)
    {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
