//! The client's own tests (`cargo test -p shardlet-bench --bin echo_bench`): the message
//! pattern, the file formats, and small end-to-end runs against in-process
//! echo servers (a good one, one that corrupts, none at all).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use clap::Parser;
use shardlet::Config;

use crate::load::{fill, new_histogram};
use crate::report::{self, Machine, Results};
use crate::{plot, run, Args};

/// A fresh, empty folder for one test's results, removed when the test
/// passes (kept when it fails, to look at): every run of these tests left
/// its folders in the temporary directory before.
fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("echo-bench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A thread-per-connection echo server on a free port; `corrupt_at` flips
/// one byte of the n-th read of every connection.
fn echo_server(corrupt_at: Option<usize>) -> SocketAddr {
    slow_echo_server(corrupt_at, |_| std::time::Duration::ZERO)
}

/// The same, and before answering its n-th read each connection sleeps `delay(n)`.
fn slow_echo_server(corrupt_at: Option<usize>, delay: fn(usize) -> std::time::Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                for n in 1.. {
                    let got = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(got) => got,
                    };
                    if corrupt_at == Some(n) {
                        buf[0] ^= 1;
                    }
                    let pause = delay(n);
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                    if stream.write_all(&buf[..got]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Client flags for a short run.
fn args(addr: SocketAddr, dir: &std::path::Path, label: &str, extra: &[&str]) -> Args {
    let addr = addr.to_string();
    let dir = dir.to_str().unwrap();
    let mut argv = vec!["echo_bench", "--addr", &addr, "--results", dir, "--label", label];
    // The defaults of a short run, unless `extra` sets them (no spinning
    // on every CPU before the load: tests run side by side).
    for (flag, value) in [
        ("--connections", "40"),
        ("--duration", "0.5"),
        ("--warmup", "0.2"),
        ("--hiccups", "false"),
    ] {
        if !extra.contains(&flag) {
            argv.extend([flag, value]);
        }
    }
    argv.extend_from_slice(extra);
    Args::parse_from(argv)
}

fn one_shard() -> Config {
    Config::default().with_shards(1).with_pin(false)
}

#[test]
fn smoke_run_against_an_echo_server_writes_every_file() {
    let (addr, dir) = (echo_server(None), scratch("smoke"));
    let results = run(&args(addr, &dir, "smoke", &[]), one_shard()).unwrap();
    assert!(!results.failed(), "{results:?}");
    assert_eq!(results.connected, 40);
    assert!(results.messages > 0 && results.messages <= results.messages_total);
    assert!(results.latency_us.p50 > 0.0 && results.latency_us.p50 <= results.latency_us.max);

    let back = Results::read_json(&dir, "smoke").unwrap();
    assert_eq!(back.messages, results.messages);
    assert!(!back.histogram_v2z_base64.is_empty());
    let hgrm = std::fs::read_to_string(dir.join("smoke.hgrm")).unwrap();
    assert!(
        hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"),
        "{hgrm}"
    );
    assert!(
        hgrm.contains(&format!("Total count    = {:12}", results.messages)),
        "{hgrm}"
    );
    let svg = std::fs::read_to_string(dir.join("smoke.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("smoke"));
}

#[test]
fn the_glommio_engine_runs_the_same_load() {
    let (addr, dir) = (echo_server(None), scratch("glommio"));
    let results = run(
        &args(addr, &dir, "glommio", &["--engine", "glommio"]),
        one_shard(),
    )
    .unwrap();
    assert!(!results.failed(), "{results:?}");
    assert_eq!(results.connected, 40);
    assert_eq!(results.settings.engine, Some(crate::Engine::Glommio));
    assert!(results.messages > 0);
}

#[test]
fn a_server_that_sends_too_much_is_caught() {
    // Echoes every read twice.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    let twice = [&buf[..n], &buf[..n]].concat();
                    if stream.write_all(&twice).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let dir = scratch("twice");
    let results = run(&args(addr, &dir, "twice", &[]), one_shard()).unwrap();
    assert!(results.failed());
    assert_eq!(results.errors.mismatches, 40, "{:?}", results.errors);
}

#[test]
fn medians_and_ranges_of_repeated_runs() {
    use crate::summary::{Figures, Spread};
    let spread = Spread::of([Some(3.0), None, Some(1.0), Some(10.0)]).unwrap();
    assert_eq!(
        (spread.median, spread.min, spread.max, spread.count),
        (3.0, 1.0, 10.0, 3)
    );
    assert_eq!(Spread::of([Some(4.0), Some(2.0)]).unwrap().median, 3.0);
    assert_eq!(Spread::of([None, Some(f64::NAN)]), None);

    let (addr, dir) = (echo_server(None), scratch("summary"));
    let a = run(&args(addr, &dir, "a-r1", &[]), one_shard()).unwrap();
    let mut runs_a = vec![a.clone(), a.clone(), a.clone()];
    for (i, r) in runs_a.iter_mut().enumerate() {
        r.msgs_per_sec = 100.0 * (i + 1) as f64; // 100, 200, 300
        r.client.cpu_percent = Some(if i == 0 { 95.0 } else { 50.0 });
    }
    let mut runs_b = runs_a.clone();
    for r in &mut runs_b {
        r.msgs_per_sec /= 2.0;
        r.client.cpu_percent = Some(50.0);
    }
    let (fa, fb) = (Figures::of("a", &runs_a), Figures::of("b", &runs_b));
    assert_eq!(fa.msgs_per_sec.unwrap().median, 200.0);
    assert_eq!((fa.client_bound, fb.client_bound), (1, 0));
    let table = crate::summary::table(&[fa, fb]);
    assert!(table.contains("200 [100-300]"), "{table}");
    assert!(table.contains("1 of 3 runs"), "{table}");
    assert!(table.contains("a / b (medians): msgs/s x2.000"), "{table}");
    let per_run = report::table(&runs_a);
    assert_eq!(
        per_run.matches("client-bound").count(),
        2,
        "one flagged run, and the legend: {per_run}"
    );
}

#[test]
fn a_corrupted_echo_is_an_error() {
    let (addr, dir) = (echo_server(Some(3)), scratch("corrupt"));
    let results = run(&args(addr, &dir, "corrupt", &[]), one_shard()).unwrap();
    assert!(results.failed());
    assert_eq!(results.errors.mismatches, 40, "{:?}", results.errors);
    assert!(results.first_error.unwrap().contains("differs"));
}

#[test]
fn without_a_server_every_connect_fails_after_its_retries() {
    // A port that was free a moment ago.
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = scratch("refused");
    let results = run(
        &args(addr, &dir, "refused", &["--connect-attempts", "2"]),
        one_shard(),
    )
    .unwrap();
    assert!(results.failed());
    assert_eq!((results.connected, results.connect_failed), (0, 40));
    assert!(results.first_error.unwrap().contains("failed 2 time(s)"));
}

#[test]
fn the_pattern_differs_per_message_and_per_connection() {
    let msg = |id, seq| {
        let mut buf = vec![0u8; 13];
        fill(&mut buf, id, seq);
        buf
    };
    assert_eq!(msg(7, 3), msg(7, 3));
    assert_ne!(msg(7, 3), msg(7, 4));
    assert_ne!(msg(7, 3), msg(8, 3));
    assert_ne!(msg(0, 1), msg(1, 0));
}

#[test]
fn comparison_ratios_are_of_the_first_run() {
    let (addr, dir) = (echo_server(None), scratch("compare"));
    let a = run(&args(addr, &dir, "a", &[]), one_shard()).unwrap();
    let mut b = a.clone();
    b.label = "b".into();
    b.msgs_per_sec = a.msgs_per_sec / 2.0;
    let text = report::ratios(&[a.clone(), b.clone()]);
    assert!(text.starts_with("a / b: msgs/s x2.000 (+100.0%)"), "{text}");
    let table = report::table(&[a, b.clone()]);
    // A header, one row per run, the legend.
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.lines().nth(2).unwrap().starts_with("b "), "{table}");
    plot::draw(&dir.join("compare.svg"), "t", &[&b]).unwrap();
}

#[test]
fn percentile_axis_labels_only_decades() {
    let label = |x: f64| crate::plot::percentile_label(&x);
    assert_eq!(label(1.0), "0%");
    assert_eq!(label(10.0), "90%");
    assert_eq!(label(100.0), "99%");
    assert_eq!(label(1000.0), "99.9%");
    assert_eq!(label(20.0), "");
}

#[test]
fn hgrm_of_an_empty_histogram_still_has_its_footer() {
    let dir = scratch("empty");
    report::write_hgrm(&dir.join("e.hgrm"), &new_histogram()).unwrap();
    let text = std::fs::read_to_string(dir.join("e.hgrm")).unwrap();
    assert!(text.contains("#[Max     ="), "{text}");
}

#[test]
fn ephemeral_ports_come_from_the_range() {
    let machine = Machine {
        ip_local_port_range: Some("32768 60999".into()),
        ..Machine::default()
    };
    assert_eq!(machine.ephemeral_ports(), Some(28232));
}

#[test]
fn curve_prints_one_table_per_server_over_the_connection_counts() {
    let (addr, dir) = (echo_server(None), scratch("curve"));
    for n in [10, 30] {
        let mut a = args(addr, &dir, &format!("srv-c{n}"), &[]);
        a.connections = n;
        // This process stands in for the server: its memory is read.
        a.server_pid = Some(std::process::id());
        let results = run(&a, one_shard()).unwrap();
        assert!(!results.failed(), "{results:?}");
        assert!(results.server_rss_before_kib.is_some());
        // Sampled with every connection open: unused, then idle after the load.
        let server = results.server.unwrap();
        assert!(
            server.rss_connected_kib.is_some() && server.rss_idle_kib.is_some(),
            "{server:?}"
        );
        assert!(report::server_idle_kib_per_conn(&results).is_some());
    }
    let runs: Vec<Results> = ["srv-c10", "srv-c30"]
        .iter()
        .map(|l| Results::read_json(&dir, l).unwrap())
        .collect();
    let table = report::curve("srv", &runs);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "== srv: cost by connection count ==");
    assert!(
        lines[1].contains("srv us/msg") && lines[1].contains("RSS/conn"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[2].trim_start().starts_with("10 ") && lines[3].trim_start().starts_with("30 "),
        "{table}"
    );
    assert!(lines[3].contains("KiB") && lines[3].contains("MiB"), "{table}");
    let ratios = report::curve_ratios(&["srv".into(), "same".into()], &[runs.clone(), runs]);
    assert!(
        ratios.contains("srv / same at 30 conns: msgs/s x1.000"),
        "{ratios}"
    );
}

#[test]
fn pacing_spreads_the_rate_evenly_over_the_connections() {
    use crate::pacing::Pacing;
    use std::time::{Duration, Instant};
    let start = Instant::now();
    // 1,000 msgs/s over 10 connections: each every 10 ms, all of them
    // together one every millisecond.
    let pacing = Pacing::new(1000.0, 10, 10);
    assert_eq!(pacing.interval(), Duration::from_millis(10));
    let mut all: Vec<Instant> = (0..10)
        .flat_map(|id| (0..100).map(move |k| (id, k)))
        .map(|(id, k)| pacing.due(start, id, k))
        .collect();
    all.sort();
    assert_eq!(all.len(), 1000);
    for pair in all.windows(2) {
        let gap = pair[1] - pair[0];
        assert_eq!(gap, Duration::from_millis(1), "uneven gap {gap:?}");
    }
    assert_eq!(all[999] - all[0], Duration::from_millis(999));
    // Connection 3's messages are one interval apart, from its offset.
    assert_eq!(pacing.due(start, 3, 0) - start, Duration::from_millis(3));
    assert_eq!(pacing.due(start, 3, 5) - start, Duration::from_millis(53));
    // With 2 of 10 connections unpaced (heavy), the 8 paced ones share the
    // rate: each sends every 8 ms.
    assert_eq!(Pacing::new(1000.0, 8, 10).interval(), Duration::from_millis(8));
    // Latency runs from the intended time, and never below zero.
    let late = start + Duration::from_millis(30);
    assert_eq!(crate::pacing::latency(start, late), Duration::from_millis(30));
    assert_eq!(crate::pacing::latency(late, start), Duration::ZERO);
}

#[test]
fn a_stalled_answer_is_charged_to_every_message_due_meanwhile() {
    use std::time::Duration;
    // Each connection's 40th answer (inside the measured window) comes
    // 300 ms late; every other one at once. At 100 msgs/s per connection,
    // about 30 more messages of each connection fall due during the stall:
    // counted from their intended send times, they wait 0-300 ms. Counted
    // from when they were actually sent (coordinated omission), only the
    // stalled one would.
    let addr = slow_echo_server(None, |n| {
        if n == 40 {
            Duration::from_millis(300)
        } else {
            Duration::ZERO
        }
    });
    let dir = scratch("stall");
    let extra = [
        "--connections",
        "4",
        "--rate",
        "400",
        "--warmup",
        "0.1",
        "--duration",
        "1.2",
    ];
    let results = run(&args(addr, &dir, "stall", &extra), one_shard()).unwrap();
    assert!(!results.failed(), "{results:?}");
    assert_eq!(results.settings.rate, Some(400.0));
    let h = histogram_of(&results);
    let slow = h.count_between(100_000_000, 10_000_000_000);
    // 4 connections x ~20 messages due more than 100 ms before their answer;
    // without the correction it would be 4.
    assert!(
        slow >= 40,
        "{slow} latencies of 100 ms or more: {:?}",
        results.latency_us
    );
    assert!(
        h.max() >= 250_000_000,
        "the stalled message: {:?}",
        results.latency_us
    );
    // It caught up: no message left unsent, so the achieved rate is the target.
    assert!(!report::saturated(&results), "{:?}", results.paced_msgs_per_sec);
}

/// The run's latency histogram, decoded from its JSON field.
fn histogram_of(r: &Results) -> hdrhistogram::Histogram<u64> {
    use base64::Engine as _;
    use hdrhistogram::serialization::Deserializer;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&r.histogram_v2z_base64)
        .unwrap();
    Deserializer::new().deserialize(&mut raw.as_slice()).unwrap()
}

#[test]
fn open_loop_keeps_its_rate_and_a_slow_server_is_flagged_saturated() {
    use std::time::Duration;
    let dir = scratch("open");
    // A prompt server: 2,000 msgs/s over 20 connections is met.
    let extra = ["--connections", "20", "--rate", "2000", "--duration", "1.0"];
    let results = run(&args(echo_server(None), &dir, "open", &extra), one_shard()).unwrap();
    assert!(!results.failed(), "{results:?}");
    let achieved = results.paced_msgs_per_sec.unwrap();
    assert!((1600.0..=2400.0).contains(&achieved), "achieved {achieved}");
    assert!(!report::saturated(&results));
    assert!(report::open_loop(&results).contains("target 2000 msgs/s"));
    // A server that takes 20 ms per answer manages at most 50 per second per
    // connection: 2 connections cannot reach 1,000 msgs/s.
    let slow = slow_echo_server(None, |_| Duration::from_millis(20));
    let extra = ["--connections", "2", "--rate", "1000", "--duration", "1.0"];
    let results = run(&args(slow, &dir, "slow", &extra), one_shard()).unwrap();
    assert!(
        results.paced_msgs_per_sec.unwrap() < 200.0,
        "{:?}",
        results.paced_msgs_per_sec
    );
    assert!(report::saturated(&results));
    assert!(report::open_loop(&results).contains("SATURATED"));
    assert!(report::table(std::slice::from_ref(&results)).contains("saturated"));
    // Queueing without end: the latencies grow far past one answer's 20 ms.
    assert!(results.latency_us.p99 > 200_000.0, "{:?}", results.latency_us);
}

#[test]
fn a_skewed_load_keeps_the_heavy_connections_apart() {
    let dir = scratch("skew");
    let extra = [
        "--connections",
        "40",
        "--rate",
        "400",
        "--heavy-fraction",
        "0.25",
        "--heavy-size",
        "1000",
    ];
    let results = run(&args(echo_server(None), &dir, "skew", &extra), one_shard()).unwrap();
    assert!(!results.failed(), "{results:?}");
    let heavy = results.heavy.unwrap();
    // About a quarter, chosen by hash: between 4 and 18 of 40.
    assert!((4..=18).contains(&heavy.connections), "{heavy:?}");
    // Back to back, the heavy ones far outrun the paced ones' 400 msgs/s.
    let light = results.paced_msgs_per_sec.unwrap();
    assert!(heavy.msgs_per_sec > light, "{heavy:?} against {light}");
    assert!((280.0..=520.0).contains(&light), "light {light}");
    // The main figures are the light connections': their count is the
    // histogram's.
    assert_eq!(histogram_of(&results).len() as f64, light * 0.5);
    assert!(report::open_loop(&results).contains("heavy connections (1000 B"));
    assert!(crate::check_load_options(&args(
        echo_server(None),
        &dir,
        "x",
        &["--rate", "10", "--heavy-fraction", "1.5"]
    ))
    .is_err());
    assert!(crate::check_load_options(&args(
        echo_server(None),
        &dir,
        "x",
        &["--rate", "10", "--engine", "glommio"]
    ))
    .is_err());
}

#[test]
fn per_shard_figures_come_from_the_metrics_text() {
    use crate::scrape::{figures, parse};
    let before = parse(
        "# HELP x\nshardlet_connections_accepted_total{shard=\"0\"} 3\nshardlet_busy_seconds_total{shard=\"0\"} 1.0\n\
         shardlet_busy_seconds_total{shard=\"1\"} 2.0\nshardlet_tasks_live 4\n",
    );
    let after = parse(
        "shardlet_connections_accepted_total{shard=\"0\"} 10\nshardlet_connections_accepted_total{server=\"echo\",shard=\"1\"} 12\n\
         shardlet_connections_live{shard=\"0\"} 9\nshardlet_connections_live{shard=\"1\"} 12\n\
         shardlet_busy_seconds_total{shard=\"0\"} 1.5\nshardlet_busy_seconds_total{shard=\"1\"} 3.0\n",
    );
    assert!(
        !before.contains_key("shardlet_tasks_live"),
        "no shard label: left out"
    );
    let shards = figures(&before, &after, 2.0);
    assert_eq!(shards.len(), 2);
    assert_eq!((shards[0].accepted, shards[0].live), (10, 9));
    assert_eq!((shards[1].accepted, shards[1].live), (12, 12));
    assert_eq!(shards[0].busy_percent, Some(25.0));
    assert_eq!(shards[1].busy_percent, Some(50.0));
}

#[test]
fn the_sweep_table_compares_at_the_base_servers_rates() {
    use crate::sweep::{read, table};
    let (addr, dir) = (echo_server(None), scratch("sweep"));
    let base = run(&args(addr, &dir, "b-max", &[]), one_shard()).unwrap();
    let write = |label: &str, rate: f64, p999_us: f64| {
        let mut r = base.clone();
        r.label = label.into();
        r.settings.rate = Some(rate);
        r.paced_msgs_per_sec = Some(rate);
        r.latency_us.p999 = p999_us;
        r.write_json(&dir).unwrap();
    };
    let mut a_max = base.clone();
    a_max.label = "a-max".into();
    a_max.write_json(&dir).unwrap();
    for load in [50, 75] {
        write(&format!("a-own{load}"), 1000.0 * f64::from(load), 100.0);
        write(&format!("a-b{load}"), 900.0 * f64::from(load), 100.0);
        write(&format!("b-own{load}"), 900.0 * f64::from(load), 400.0);
    }
    let (maxima, points, missing) = read(&dir, &["a".into(), "b".into()], &[50, 75], Some("b"));
    assert!(!missing);
    assert_eq!((maxima.len(), points.len()), (2, 6));
    let text = table(&maxima, &points, Some("b"));
    assert!(
        text.contains("at 75% of b's maximum (67500 msgs/s): a / b: p99.9 x0.250"),
        "{text}"
    );
    assert_eq!(text.matches("a / b: p99.9").count(), 2, "{text}");
    crate::sweep::draw(&dir.join("sweep.svg"), &points).unwrap();
    let (_, _, missing) = read(&dir, &["a".into(), "b".into()], &[90], Some("b"));
    assert!(missing);
}

#[test]
fn scale_rows_give_the_efficiency_per_accept_mode() {
    use crate::scale::{rows, table, Step};
    assert_eq!(
        Step::parse("handoff-s4-skew"),
        Some(Step {
            mode: "handoff".into(),
            shards: 4,
            variant: Some("skew".into())
        })
    );
    assert_eq!(Step::parse("reuseport-s2").map(|s| s.shards), Some(2));
    assert_eq!(Step::parse("nothing"), None);
    let (addr, dir) = (echo_server(None), scratch("scale"));
    let one = run(&args(addr, &dir, "reuseport-s1", &[]), one_shard()).unwrap();
    let mut runs = vec![one.clone()];
    for (label, factor) in [("reuseport-s2", 1.8), ("handoff-s1", 1.0), ("handoff-s2", 1.0)] {
        let mut r = one.clone();
        r.label = label.into();
        r.msgs_per_sec = one.msgs_per_sec * factor;
        runs.push(r);
    }
    let rows = rows(&runs);
    let eff = |label: &str| {
        rows.iter()
            .find(|r| r.label == label)
            .unwrap()
            .efficiency
            .unwrap()
    };
    assert!((eff("reuseport-s2") - 0.9).abs() < 1e-9);
    assert!((eff("handoff-s2") - 0.5).abs() < 1e-9);
    assert!((eff("handoff-s1") - 1.0).abs() < 1e-9);
    let text = table(&rows, &runs);
    assert!(text.contains("== scaling"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("reuseport ")).count(),
        2,
        "{text}"
    );
    crate::scale::draw(&dir.join("scale.svg"), &rows).unwrap();
}

#[test]
fn machine_stalls_are_counted_by_length_and_reported() {
    use crate::hiccups::{self, CpuHiccups};
    use std::time::Duration;
    let ms = Duration::from_millis;
    let gaps = [ms(1), ms(2), ms(6), ms(12), ms(12)];
    let h = CpuHiccups::of(3, Duration::from_secs(2), &gaps);
    assert_eq!((h.cpu, h.over_1ms, h.over_5ms, h.over_10ms), (3, 5, 3, 2));
    assert!((h.worst_ms - 12.0).abs() < 1e-9, "{h:?}");
    let text = hiccups::describe(&[h]);
    assert!(
        text.contains("cpu3") && text.contains("worst  12.00 ms"),
        "{text}"
    );
    assert_eq!(
        hiccups::worst_ms(&[h, CpuHiccups { worst_ms: 20.0, ..h }]),
        Some(20.0)
    );
    assert_eq!(hiccups::worst_ms(&[]), None);
    assert_eq!(hiccups::parse_cpu_list("0-3,8"), Some(vec![0, 1, 2, 3, 8]));
    assert_eq!(hiccups::parse_cpu_list("0"), Some(vec![0]));
    assert_eq!(hiccups::parse_cpu_list("3-1"), None);
    assert_eq!(hiccups::parse_cpu_list("x"), None);
}

#[test]
fn a_run_asked_for_stalls_measures_them_on_every_cpu_during_the_load() {
    let dir = scratch("hiccups");
    let extra = ["--connections", "4", "--hiccups", "true", "--duration", "0.3"];
    let results = run(&args(echo_server(None), &dir, "hiccups", &extra), one_shard()).unwrap();
    assert!(!results.failed(), "{results:?}");
    assert!(!results.hiccups.is_empty(), "no CPU measured");
    for h in &results.hiccups {
        // The load ran for its warm-up and window at least.
        assert!(h.seconds >= 0.4 && h.seconds < 60.0, "{h:?}");
        assert!(h.over_10ms <= h.over_5ms && h.over_5ms <= h.over_1ms, "{h:?}");
    }
    // Kept in the JSON, and read back.
    // (serde_json's float parsing may differ in the last bit.)
    let back = Results::read_json(&dir, "hiccups").unwrap();
    assert_eq!(back.hiccups.len(), results.hiccups.len());
    for (b, h) in back.hiccups.iter().zip(&results.hiccups) {
        assert_eq!(
            (b.cpu, b.over_1ms, b.over_5ms, b.over_10ms),
            (h.cpu, h.over_1ms, h.over_5ms, h.over_10ms)
        );
        assert!(
            (b.seconds - h.seconds).abs() < 1e-9 && (b.worst_ms - h.worst_ms).abs() < 1e-9,
            "{b:?} {h:?}"
        );
    }
    // Off, nothing is measured.
    let extra = ["--connections", "4", "--hiccups", "false", "--duration", "0.3"];
    let quiet = run(&args(echo_server(None), &dir, "quiet", &extra), one_shard()).unwrap();
    assert!(quiet.hiccups.is_empty());
}

#[test]
fn the_stalls_mode_spins_on_each_cpu_for_the_time_asked() {
    let stalls = crate::hiccups::spin(std::time::Duration::from_millis(100));
    assert!(!stalls.is_empty(), "no CPU measured");
    for s in &stalls {
        assert!(s.seconds >= 0.1 && s.seconds < 10.0, "{s:?}");
        assert!(s.over_10ms <= s.over_5ms && s.over_5ms <= s.over_1ms, "{s:?}");
    }
    let text = crate::hiccups::describe_as(&stalls, "title");
    assert!(
        text.starts_with("title:\n") && text.contains(&format!("cpu{}", stalls[0].cpu)),
        "{text}"
    );
}

#[test]
fn open_loop_in_ticks_keeps_its_rate_and_pays_the_ticks_in_latency() {
    let dir = scratch("ticks");
    // 1 ms ticks: a message waits for the tick after it falls due, and its
    // answer for the tick after it arrives.
    let extra = [
        "--connections",
        "20",
        "--rate",
        "2000",
        "--duration",
        "1.0",
        "--tick-us",
        "1000",
    ];
    let results = run(&args(echo_server(None), &dir, "ticks", &extra), one_shard()).unwrap();
    assert!(!results.failed(), "{results:?}");
    let achieved = results.paced_msgs_per_sec.unwrap();
    assert!((1600.0..=2400.0).contains(&achieved), "achieved {achieved}");
    assert!(results.latency_us.p50 >= 300.0, "{:?}", results.latency_us);
    assert!(results.latency_us.p50 <= 20_000.0, "{:?}", results.latency_us);
    assert!(report::open_loop(&results).contains("in 1000 µs ticks"));
    assert_eq!(
        Results::read_json(&dir, "ticks").unwrap().settings.tick_us,
        Some(1000)
    );
    // Closed loop ignores it (a sweep's maximum runs share the flags).
    let extra = ["--connections", "4", "--duration", "0.3", "--tick-us", "1000"];
    let closed = run(&args(echo_server(None), &dir, "closed", &extra), one_shard()).unwrap();
    assert!(!closed.failed(), "{closed:?}");
    assert_eq!(closed.settings.tick_us, None);
}
