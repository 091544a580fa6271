//! The crawler (`shardlet_apps::crawler`, run by `examples/crawler.rs`): its functions run in-process
//! against local servers (order, errors, lazy input, --follow on a generated
//! site), and its binary end to end (exit codes, output).

#[path = "util/origin.rs"]
mod origin;
mod util;

use std::cell::Cell;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use origin::{refused_url, respond, Next, TestServer};
use shardlet_apps::crawler::{crawl, hrefs, urls, Args, Line, Summary, MAX_LINE};

fn args(extra: &[&str]) -> Args {
    let mut argv = vec!["crawler", "--progress", "never", "--timeout", "10"];
    argv.extend_from_slice(extra);
    Args::try_parse_from(argv).unwrap()
}

/// Runs a crawl of `input` on one shard; returns the summary and the output lines.
fn run_crawl(extra: &[&str], input: String) -> (Summary, Vec<String>) {
    let args = args(extra);
    let (summary, out) = util::run1(move || {
        let (args, input) = (args.clone(), input.clone());
        async move {
            let lines = urls(io::Cursor::new(input));
            let (summary, out) = crawl(&args, lines, Vec::new()).await.unwrap();
            (summary, out)
        }
    });
    let text = String::from_utf8(out).unwrap();
    (summary, text.lines().map(str::to_string).collect())
}

#[test]
fn smoke_lines_in_input_order_with_errors_inline() {
    let server = TestServer::start(|req, out| {
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..20)));
        if req.path.ends_with("/404") {
            return respond(out, 404, &[], b"nope");
        }
        respond(out, 200, &[], req.path.as_bytes())
    });
    let refused = refused_url();
    let mut input = String::from("# a comment\n\n");
    let mut want = Vec::new();
    for i in 0..60 {
        let url = match i % 20 {
            7 => refused.clone(),
            13 => "not a url".to_string(),
            17 => server.url("/x/404"),
            _ => server.url(&format!("/page/{i}")),
        };
        input.push_str(&format!("  {url}  \n"));
        want.push(url);
    }
    let (summary, lines) = run_crawl(&["--pool", "8"], input);
    assert_eq!(lines.len(), 61, "{lines:#?}");
    for (line, url) in lines.iter().zip(&want) {
        assert!(
            line.starts_with(&format!("{url} ")),
            "{line} should start with {url}"
        );
        if url == &refused {
            assert!(line.contains(" error: connect to"), "{line}");
        } else if url == "not a url" {
            assert!(line.contains(" error: bad URL"), "{line}");
        } else if url.ends_with("/404") {
            assert!(line.contains(" 404 4 "), "{line}");
        } else {
            let path = &url[url.find("/page").unwrap()..];
            assert!(line.contains(&format!(" 200 {} ", path.len())), "{line}");
        }
    }
    assert_eq!((summary.ok, summary.failed), (54, 6));
    assert!(lines[60].starts_with("# ok 54, failed 6, "), "{}", lines[60]);
}

/// `--read-timeout` sets how long a server may take to answer within
/// `--timeout`: a server 1 s slow to answer is read with the default
/// (10 s), and fails as a read time-out with `--read-timeout 0.3`. Before:
/// the read limit was the client's 10 s whatever `--timeout` said.
/// A URL's password is not printed, on a success line or an error line.
/// Before: both lines showed it as it came.
#[test]
fn passwords_in_the_input_are_not_printed() {
    let server = TestServer::start(|req, out| respond(out, 200, &[], req.path.as_bytes()));
    let ok = server.url("/p").replacen("http://", "http://alice:s3cret@", 1);
    let failed = refused_url().replacen("http://", "http://bob:hunter2@", 1);
    let (summary, lines) = run_crawl(&[], format!("{ok}\n{failed}\n"));
    assert_eq!((summary.ok, summary.failed), (1, 1), "{lines:?}");
    assert!(lines[0].starts_with("http://alice:***@"), "{lines:?}");
    assert!(lines[1].starts_with("http://bob:***@"), "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("s3cret") && !l.contains("hunter2")),
        "{lines:?}"
    );
}

#[test]
fn read_timeout_sets_the_wait_for_a_slow_server() {
    let server = TestServer::start(|req, out| {
        std::thread::sleep(Duration::from_secs(1));
        respond(out, 200, &[], req.path.as_bytes())
    });
    let url = server.url("/slow");
    let (summary, lines) = run_crawl(&[], format!("{url}\n"));
    assert_eq!(summary.ok, 1, "{lines:?}");
    let (summary, lines) = run_crawl(&["--read-timeout", "0.3"], format!("{url}\n"));
    assert_eq!(summary.failed, 1, "{lines:?}");
    assert!(lines[0].contains("read timed out after 300ms"), "{lines:?}");
}

#[test]
fn input_is_read_lazily() {
    // Count lines pulled from the input against lines written: the crawler may
    // run ahead of its output by at most the pool size.
    let server = TestServer::start(|req, out| respond(out, 200, &[], req.path.as_bytes()));
    let base = server.url("/n/");
    let args = args(&["--pool", "4"]);
    let max_ahead = util::run1(move || {
        let (args, base) = (args.clone(), base.clone());
        async move {
            let pulled = Rc::new(Cell::new(0usize));
            let p = pulled.clone();
            let input = (0..200).map(move |i| {
                p.set(p.get() + 1);
                format!("{base}{i}")
            });
            let out = Probe {
                pulled,
                written: 0,
                max_ahead: 0,
            };
            let (summary, out) = crawl(&args, input, out).await.unwrap();
            assert_eq!(summary.ok, 200);
            out.max_ahead
        }
    });
    assert!(max_ahead <= 4 + 1, "read {max_ahead} lines ahead of the output");
}

/// A writer that records how far the input ran ahead of the output.
struct Probe {
    pulled: Rc<Cell<usize>>,
    written: usize,
    max_ahead: usize,
}

impl Write for Probe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        self.written += newlines;
        if newlines > 0 {
            self.max_ahead = self.max_ahead.max(self.pulled.get().saturating_sub(self.written));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer whose reader is gone: every write fails as a closed pipe does.
struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
}

/// Once the output fails (`crawler urls | head`), the crawl stops: it ends
/// with the output's error and fetches no more than what was running.
/// Before: it fetched the whole input (and every link, with --follow),
/// writing nothing.
#[test]
fn a_crawl_whose_output_fails_stops() {
    let server = site(200);
    let list = server.url("/page/0");
    let fetched = |extra: &'static [&'static str]| {
        let (input, before) = (format!("{}\n", list).repeat(100), server.requests().len());
        let args = args(extra);
        let err = util::run1(move || {
            let (args, input) = (args.clone(), input.clone());
            async move {
                let failed = crawl(&args, urls(io::Cursor::new(input)), ClosedPipe).await;
                failed.err().map(|e| e.kind())
            }
        });
        assert_eq!(err, Some(io::ErrorKind::BrokenPipe));
        server.requests().len() - before
    };
    let listed = fetched(&["--pool", "4"]);
    assert!(listed <= 4 + 1, "{listed} of 100 fetched after the output failed");
    let followed = fetched(&["--pool", "4", "--follow", "--depth", "10"]);
    assert!(
        followed <= 4 + 1,
        "{followed} pages of the site fetched after the output failed"
    );
}

/// A generated site: `pages` pages; page i links to a few others (relative,
/// absolute, with fragments and repeats), to itself, to another host, and to
/// a non-HTML file. Depth of page i from page 0 is known: page i links to 2i+1, 2i+2.
fn site(pages: usize) -> TestServer {
    TestServer::start(move |req, out| {
        let path = req.path.as_str();
        if path == "/file.txt" {
            return respond(
                out,
                200,
                &[("Content-Type", "text/plain")],
                b"<a href=\"/never\">no</a>",
            );
        }
        if path == "/moved" {
            return respond(out, 301, &[("Location", "/p/0")], b"");
        }
        let Some(i) = path.strip_prefix("/p/").and_then(|n| n.parse::<usize>().ok()) else {
            return respond(out, 404, &[], b"");
        };
        let mut html = format!("<html><body><h1>page {i}</h1>\n");
        for child in [2 * i + 1, 2 * i + 2] {
            if child < pages {
                html += &format!("<a href=\"/p/{child}\">c</a> <A HREF='{child}#frag'>again</A>\n");
            }
        }
        html += &format!(
            "<a href=\"http://{}/p/{i}\">self</a>\n",
            req.header("host").unwrap()
        );
        html += "<a href=\"http://other.invalid/p/1\">elsewhere</a> <a href=/file.txt>file</a> ";
        html += "<a data-href=\"/never\">x</a> <a href=\"mailto:x@y\">m</a>\n</body></html>";
        respond(
            out,
            200,
            &[("Content-Type", "text/html; charset=utf-8")],
            html.as_bytes(),
        )?;
        Ok(Next::KeepOpen)
    })
}

#[test]
fn follow_visits_each_page_once_and_ends_by_itself() {
    // 63 pages: a binary tree of depth 5 below page 0.
    let server = site(63);
    for pool in ["2", "50"] {
        let before = server.requests().len();
        let input = format!(
            "{}\n{}\n{}\n",
            server.url("/p/0"),
            server.url("/p/0#top"),
            server.url("/moved")
        );
        let (summary, lines) = run_crawl(&["--follow", "--depth", "10", "--pool", pool], input);
        let requests = &server.requests()[before..];
        let mut hits = std::collections::HashMap::new();
        for r in requests {
            *hits.entry(r.path.clone()).or_insert(0) += 1;
        }
        // Every page once (page 0 twice: itself, and the redirect's target), the
        // text file once, nothing it links to, nothing off the host.
        for i in 1..63 {
            assert_eq!(
                hits.get(&format!("/p/{i}")),
                Some(&1),
                "pool {pool}: page {i}: {hits:?}"
            );
        }
        assert_eq!(hits["/p/0"], 2, "pool {pool}");
        assert_eq!(hits["/file.txt"], 1);
        assert!(!hits.contains_key("/never"));
        assert_eq!(
            summary.ok as usize,
            requests.len() - 1,
            "/moved and its target are one fetch"
        );
        assert_eq!(summary.failed, 0);
        assert!(lines.last().unwrap().starts_with("# ok "));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("/p/62 200 ") && l.ends_with(" depth 5")),
            "{lines:#?}"
        );
    }
}

#[test]
fn follow_stops_at_the_depth() {
    let server = site(63);
    let (summary, _) = run_crawl(&["--follow", "--depth", "2", "--pool", "3"], server.url("/p/0"));
    let hits = server.hits();
    // Depth 0: page 0; 1: pages 1, 2 and the text file; 2: pages 3..=6.
    for i in 0..7 {
        assert_eq!(hits.get(&format!("/p/{i}")), Some(&1), "page {i}");
    }
    assert!(!hits.contains_key("/p/7"), "{hits:?}");
    assert_eq!(summary.ok, 8);
}

#[test]
fn href_scanner() {
    let html = r#"<a href="/a">x</a><A HREF='b?x=1&amp;y=2'>y</A><a href=c.html>z</a>
        <a data-href="/no"><link rel=x href = " /d "><a href="">e</a><a
        href=/e>f</a><a href="unterminated"#;
    assert_eq!(
        hrefs(html),
        ["/a", "b?x=1&y=2", "c.html", "/d", "/e", "unterminated"]
    );
    assert!(hrefs("no links, a hrefless text").is_empty());
}

/// The example's binary, up to date.
fn crawler_binary() -> PathBuf {
    util::example_binary("crawler")
}

#[test]
fn binary_end_to_end() {
    let server = TestServer::start(|req, out| respond(out, 200, &[], req.path.as_bytes()));
    let dir = std::env::temp_dir().join(format!("shardlet-crawler-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("urls.txt");
    let refused = refused_url();
    let urls = [server.url("/one"), refused.clone(), server.url("/three")];
    std::fs::write(&file, format!("# urls\n{}\n\n", urls.join("\n"))).unwrap();

    let out = Command::new(crawler_binary())
        .arg(&file)
        .args(["--pool", "2"])
        .env("SHARDLET_SHARDS", "1")
        .env("SHARDLET_PIN", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "some URLs failing is not a failure: {stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with(&format!("{} 200 4 ", urls[0])), "{stdout}");
    assert!(
        lines[1].starts_with(&format!("{refused} error: connect")),
        "{stdout}"
    );
    assert!(lines[2].starts_with(&format!("{} 200 6 ", urls[2])), "{stdout}");
    assert!(lines[3].starts_with("# ok 2, failed 1, 10 bytes"), "{stdout}");
    assert!(out.stderr.is_empty(), "no progress when stderr is not a terminal");

    // Two shards: still crawled once, on shard 0; stdin as the input.
    let mut child = Command::new(crawler_binary())
        .env("SHARDLET_SHARDS", "2")
        .env("SHARDLET_PIN", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", urls[0]).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout.lines().count(), 2, "{stdout}");

    // Bad invocations (a directory opens, but cannot be read).
    for bad in [
        &["--pool", "0"][..],
        &["--no-such-flag"],
        &[dir.join("missing.txt").to_str().unwrap()],
        &[dir.to_str().unwrap()],
    ] {
        let out = Command::new(crawler_binary()).args(bad).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // An input that fails to read (standard input a directory): what was
    // read is crawled, the error is shown, and the exit status is 1.
    let out = Command::new(crawler_binary())
        .env("SHARDLET_SHARDS", "1")
        .env("SHARDLET_PIN", "0")
        .stdin(std::fs::File::open(&dir).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped reading the input"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_line_that_is_not_utf8_fails_in_its_place_unfetched_and_the_input_goes_on() {
    let input: &[u8] = b"http://h/ok\n# comment\nhttp://h/ok\xff\n\n  http://h/ok2  \r\n";
    let got: Vec<Line> = urls(input).collect();
    assert!(
        matches!(&got[..], [Line::Url(a), Line::Unfetched { shown, why }, Line::Url(b)]
            if a == "http://h/ok" && shown == "http://h/ok\u{fffd}" && why.contains("not valid UTF-8") && b == "http://h/ok2"),
        "{got:?}"
    );

    let server = TestServer::start(|req, out| respond(out, 200, &[], req.path.as_bytes()));
    let (a, b) = (server.url("/a"), server.url("/b"));
    let input = [
        a.as_bytes(),
        b"\n",
        server.url("/caf").as_bytes(),
        b"\xe9\n",
        b.as_bytes(),
        b"\n",
    ]
    .concat();
    for extra in [&[][..], &["--follow", "--depth", "0"][..]] {
        let args = args(extra);
        let input = input.clone();
        let (summary, out) = util::run1(move || {
            let (args, input) = (args.clone(), input.clone());
            async move {
                crawl(&args, urls(io::Cursor::new(input)), Vec::new())
                    .await
                    .unwrap()
            }
        });
        let text = String::from_utf8(out).unwrap();
        assert_eq!((summary.ok, summary.failed), (2, 1), "{extra:?}: {text}");
        assert!(
            text.contains("/caf\u{fffd} error") && text.contains("the input line is not valid UTF-8"),
            "{text}"
        );
    }
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.iter().all(|p| p == "/a" || p == "/b"), "fetched {paths:?}");
}

/// A line longer than `MAX_LINE` (here 8 MiB of it, never whole in memory
/// at once) fails in its place, shown cut short, unfetched; the lines
/// around it are fetched.
#[test]
fn a_line_too_long_fails_in_its_place_unfetched_and_the_input_goes_on() {
    use std::io::Read;
    let server = TestServer::start(|req, out| respond(out, 200, &[], req.path.as_bytes()));
    let long = || {
        io::Cursor::new(server.url("/").into_bytes())
            .chain(io::repeat(b'a').take(8 << 20))
            .chain(&b"\n"[..])
    };
    let input = || {
        io::Cursor::new(format!("{}\n", server.url("/a")).into_bytes())
            .chain(long())
            .chain(io::Cursor::new(format!("{}\n", server.url("/b")).into_bytes()))
    };
    let got: Vec<Line> = urls(io::BufReader::new(input())).collect();
    assert_eq!(
        got.len(),
        3,
        "{:?}",
        got.iter().map(|l| format!("{l:?}").len()).collect::<Vec<_>>()
    );
    match &got[1] {
        Line::Unfetched { shown, why } => {
            assert!(
                shown.len() < 300
                    && shown.ends_with(&format!("({} bytes)", server.url("/").len() + (8 << 20))),
                "{shown}"
            );
            assert!(why.contains("longer than 64 KiB"), "{why}");
        }
        other => panic!("{:.200?}", format!("{other:?}")),
    }
    // At the edge: a URL of exactly MAX_LINE bytes is still one.
    let edge = format!("http://h/{}", "a".repeat(MAX_LINE - 9));
    assert!(
        matches!(&urls(io::Cursor::new(edge.clone())).collect::<Vec<_>>()[..], [Line::Url(u)] if *u == edge)
    );
    // A comment is skipped however long.
    let comment = format!("#{}\nhttp://h/after", "c".repeat(MAX_LINE * 2));
    assert!(
        matches!(&urls(io::Cursor::new(comment)).collect::<Vec<_>>()[..], [Line::Url(u)] if u == "http://h/after")
    );
    let over = format!("{edge}a\nhttp://h/next");
    assert!(
        matches!(&urls(io::Cursor::new(over)).collect::<Vec<_>>()[..], [Line::Unfetched { .. }, Line::Url(u)] if u == "http://h/next")
    );

    let args = args(&[]);
    let (summary, out) = util::run1(move || {
        let args = args.clone();
        let lines: Vec<Line> = got.clone();
        async move { crawl(&args, lines.into_iter(), Vec::new()).await.unwrap() }
    });
    let text = String::from_utf8(out).unwrap();
    assert_eq!((summary.ok, summary.failed), (2, 1), "{text}");
    assert!(
        text.contains("bytes) error: the input line is longer than 64 KiB"),
        "{text}"
    );
    let mut paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/a", "/b"]);
}
