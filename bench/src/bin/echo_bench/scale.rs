//! `--scale`: the tables, JSON and plot of `scripts/scale-bench.sh`.
//!
//! Contract with the script: every run's label is `<mode>-s<N>` (closed
//! loop, the server on N shards in accept mode `<mode>`), or
//! `<mode>-s<N>-even` / `<mode>-s<N>-skew` (open loop: every connection
//! paced, or some of them heavy, at the same rate of the paced ones). Each
//! run was made with `--server-metrics`, so it holds the per-shard figures.
//! Efficiency at N shards is msgs/s at N over N times msgs/s at 1, in the
//! same mode.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use plotters::prelude::*;
use serde::Serialize;

use crate::report::{client_bound, opt, saturated, server_us_per_msg, Results};
use crate::scrape::ShardFigures;

/// What a label says about its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub mode: String,
    pub shards: usize,
    /// `None` for the closed-loop steps, `even` or `skew` for the open-loop ones.
    pub variant: Option<String>,
}

impl Step {
    /// `reuseport-s2` -> (reuseport, 2, None); `handoff-s1-skew` -> (handoff, 1, skew).
    pub fn parse(label: &str) -> Option<Step> {
        let at = label
            .match_indices("-s")
            .map(|(i, _)| i)
            .find(|&i| label[i + 2..].starts_with(|c: char| c.is_ascii_digit()))?;
        let (mode, rest) = (&label[..at], &label[at + 2..]);
        let (shards, variant) = match rest.split_once('-') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (rest, None),
        };
        Some(Step {
            mode: mode.to_string(),
            shards: shards.parse().ok()?,
            variant,
        })
    }
}

/// One row of the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub label: String,
    pub mode: String,
    pub shards: usize,
    pub variant: Option<String>,
    pub msgs_per_sec: f64,
    pub server_us_per_msg: Option<f64>,
    pub p99_ms: f64,
    pub efficiency: Option<f64>,
    /// The server's shards and the client together need more CPUs than
    /// the machine has: they shared some.
    pub shared_cpus: bool,
    pub client_bound: bool,
    pub saturated: bool,
    pub heavy_connections: Option<usize>,
    pub per_shard: Vec<ShardFigures>,
}

/// The rows, efficiency filled in from each mode's 1-shard step.
pub fn rows(runs: &[Results]) -> Vec<Row> {
    let steps: Vec<(Step, &Results)> = runs
        .iter()
        .filter_map(|r| Some((Step::parse(&r.label)?, r)))
        .collect();
    steps
        .iter()
        .map(|(step, r)| {
            let one = steps
                .iter()
                .find(|(s, _)| {
                    s.mode == step.mode
                        && s.shards == 1
                        && s.variant == step.variant
                        && step.variant.is_none()
                })
                .map(|(_, r)| r.msgs_per_sec);
            let server_shards = r.server_shards.len().max(step.shards);
            Row {
                label: r.label.clone(),
                mode: step.mode.clone(),
                shards: step.shards,
                variant: step.variant.clone(),
                msgs_per_sec: r.msgs_per_sec,
                server_us_per_msg: server_us_per_msg(r),
                p99_ms: r.latency_us.p99 / 1000.0,
                efficiency: one
                    .filter(|&o| o > 0.0)
                    .map(|o| r.msgs_per_sec / (step.shards as f64 * o)),
                shared_cpus: server_shards + r.settings.client_cpus.len() > r.machine.cpus,
                client_bound: client_bound(r),
                saturated: saturated(r),
                heavy_connections: r.heavy.map(|h| h.connections),
                per_shard: r.server_shards.clone(),
            }
        })
        .collect()
}

/// `#0 5000/5000 61%`: accepted/live and busy per shard.
fn per_shard(shards: &[ShardFigures]) -> String {
    if shards.is_empty() {
        return "-".into();
    }
    shards
        .iter()
        .map(|s| {
            format!(
                "#{} {}/{} {}%",
                s.shard,
                s.accepted,
                s.live,
                opt(s.busy_percent, 0)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The two tables: scaling (closed loop), then skew (open loop).
pub fn table(rows: &[Row], runs: &[Results]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== scaling: closed loop, server shards stepped ==");
    let _ = writeln!(
        out,
        "{:<10} {:>6} {:>9} {:>7} {:>8} {:>6}  {:<44} note",
        "mode", "shards", "msgs/s", "srv us", "p99 ms", "eff", "per shard: accepted/live busy"
    );
    let note = |row: &Row| {
        let mut n = Vec::new();
        if row.shared_cpus {
            n.push("server and client share CPUs");
        }
        if row.client_bound {
            n.push("client-bound");
        }
        if row.saturated {
            n.push("saturated");
        }
        n.join(", ")
    };
    for row in rows.iter().filter(|r| r.variant.is_none()) {
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>9.0} {:>7} {:>8.1} {:>6}  {:<44} {}",
            row.mode,
            row.shards,
            row.msgs_per_sec,
            opt(row.server_us_per_msg, 2),
            row.p99_ms,
            opt(row.efficiency, 2),
            per_shard(&row.per_shard),
            note(row),
        );
    }
    let skewed: Vec<&Row> = rows.iter().filter(|r| r.variant.is_some()).collect();
    if !skewed.is_empty() {
        let _ = writeln!(
            out,
            "\n== skew: paced (light) connections beside heavy ones, open loop =="
        );
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:<5} {:>6} {:>9} {:>10} {:>10} {:>9}  {:<44} note",
            "mode",
            "shards",
            "load",
            "heavy",
            "msgs/s",
            "light p99",
            "light p50",
            "vs even",
            "per shard: accepted/live busy"
        );
        for row in &skewed {
            let r = runs.iter().find(|r| r.label == row.label).expect("the row's run");
            let even = runs.iter().find(|e| {
                Step::parse(&e.label).is_some_and(|s| {
                    s.mode == row.mode && s.shards == row.shards && s.variant.as_deref() == Some("even")
                })
            });
            let vs_even = match even {
                Some(e) if row.variant.as_deref() == Some("skew") && e.latency_us.p99 > 0.0 => {
                    format!("x{:.2}", r.latency_us.p99 / e.latency_us.p99)
                }
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:<10} {:>6} {:<5} {:>6} {:>9.0} {:>10.3} {:>10.3} {:>9}  {:<44} {}",
                row.mode,
                row.shards,
                row.variant.as_deref().unwrap_or(""),
                row.heavy_connections.unwrap_or(0),
                row.msgs_per_sec,
                r.latency_us.p99 / 1000.0,
                r.latency_us.p50 / 1000.0,
                vs_even,
                per_shard(&row.per_shard),
                note(row),
            );
        }
        let _ = writeln!(
            out,
            "light p99/p50 in ms, from intended send times; vs even: light p99 over the unskewed run's \
             (same mode and shards, same paced rate)"
        );
    }
    let _ = writeln!(
        out,
        "eff: msgs/s at N shards / (N x msgs/s at 1 shard), same mode; srv us: server CPU per round trip; \
         busy: the shard's busy time (its runtime's account) in % of one CPU"
    );
    out
}

/// Efficiency against shard count, one line per accept mode.
pub fn draw(path: &Path, rows: &[Row]) -> Result<(), String> {
    let closed: Vec<&Row> = rows
        .iter()
        .filter(|r| r.variant.is_none() && r.efficiency.is_some())
        .collect();
    if closed.is_empty() {
        return Err("no scaling steps to plot".into());
    }
    let most = closed.iter().map(|r| r.shards).max().unwrap_or(1).max(2) as f64;
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("echo scaling efficiency", ("sans-serif", 22))
        .margin(16)
        .margin_right(40)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(1f64..most, 0f64..1.2f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("server shards")
        .y_desc("msgs/s at N / (N x msgs/s at 1)")
        .draw()
        .map_err(|e| e.to_string())?;
    let mut modes: Vec<&str> = closed.iter().map(|r| r.mode.as_str()).collect();
    modes.dedup();
    for (i, mode) in modes.iter().enumerate() {
        let colour = [
            RGBColor(31, 119, 180),
            RGBColor(214, 39, 40),
            RGBColor(44, 160, 44),
        ][i % 3];
        let mut line: Vec<(f64, f64)> = closed
            .iter()
            .filter(|r| r.mode == *mode)
            .map(|r| (r.shards as f64, r.efficiency.unwrap_or(0.0)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(mode.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart
            .draw_series(line.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| e.to_string())?;
    }
    crate::plot::legend_and_present(&mut chart, &root, SeriesLabelPosition::LowerLeft)
}

/// `--scale`: the tables, `scale.json` and `scale.svg`.
pub fn main(dir: &Path, labels: &[String]) -> ExitCode {
    let mut runs = Vec::new();
    let mut failed = false;
    for label in labels {
        match Results::read_json(dir, label) {
            Ok(r) => {
                failed |= r.failed();
                runs.push(r);
            }
            Err(err) => {
                eprintln!("echo_bench: no results for {label}: {err}");
                failed = true;
            }
        }
    }
    let rows = rows(&runs);
    print!("{}", table(&rows, &runs));
    if let Some(r) = runs.first() {
        println!("{}", crate::report::describe(r));
    }
    let json = dir.join("scale.json");
    match serde_json::to_string_pretty(&rows).map(|t| std::fs::write(&json, t + "\n")) {
        Ok(Ok(())) => println!("wrote {}", json.display()),
        Ok(Err(e)) => eprintln!("echo_bench: {}: {e}", json.display()),
        Err(e) => eprintln!("echo_bench: {}: {e}", json.display()),
    }
    let svg = dir.join("scale.svg");
    match draw(&svg, &rows) {
        Ok(()) => println!("wrote {}", svg.display()),
        Err(err) => eprintln!("echo_bench: no plot: {err}"),
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
