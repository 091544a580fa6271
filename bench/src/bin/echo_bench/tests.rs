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

/// A fresh, empty folder for one test's results.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("echo-bench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A thread-per-connection echo server on a free port; `corrupt_at` flips
/// one byte of the n-th read of every connection.
fn echo_server(corrupt_at: Option<usize>) -> SocketAddr {
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
    let mut argv = vec![
        "echo_bench",
        "--addr",
        &addr,
        "--results",
        dir,
        "--label",
        label,
        "--connections",
        "40",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
    ];
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
