//! The crawler: Eventlet's client pattern, a tool that pushes many URLs
//! through `GreenPool::imap` and gets the results back in input order.
//! `examples/crawler.rs` is its command line; the tests and the crawl
//! benchmark call [`crawl`] in-process.
//!
//! ```text
//! cargo run --release --example crawler -- urls.txt             # one line per URL, in input order
//! cat urls.txt | cargo run --release --example crawler -- --pool 50
//! cargo run --release --example crawler -- --follow --depth 2 seeds.txt   # and the links they lead to
//! ```
//!
//! Input: one URL a line, from the file given or from stdin (`-` or none);
//! blank lines and lines starting with `#` are skipped. Output (stdout), one
//! line per URL:
//!
//! ```text
//! http://127.0.0.1:8000/a 200 5120 3.1ms
//! http://127.0.0.1:8000/b error: connect to 127.0.0.1:8000 failed: Connection refused (os error 111)
//! # ok 1, failed 1, 5120 bytes in 0.004 s, 500 URLs/s
//! ```
//!
//! (With --follow, a line ends in ` depth N`, or reads `URL error (depth N): ...`.)
//!
//! Memory stays flat however long the input: lines are read as the pool
//! frees slots (never collected), `imap` holds at most `--pool` calls and
//! results, and a body is dropped once its length is counted. The input is
//! read on the shard itself (`imap` pulls from a plain iterator): a file or
//! a pipe that is ahead of the crawl costs nothing, but a producer that
//! writes slowly into stdin stalls the fetches in flight while it waits.
//!
//! `--follow` is Eventlet's recursive crawler: each HTML page's links to the
//! same host (scheme, host and port) are fetched too, up to `--depth` links
//! away from an input URL, each URL once. A page's links are spawned into the
//! same pool from the page's own green thread; when the pool is full such a
//! spawn runs inline in the spawning task (see `GreenPool`), so the crawl
//! never exceeds `--pool` fetches at once, never deadlocks, and ends by
//! itself once no task is left. Lines come in the order fetches finish, each
//! with its depth.
//!
//! Progress (URLs done, failed, rate) goes to stderr when it is a terminal.
//! The exit status is 0 whatever the URLs gave; 2 for a bad invocation
//! (bad option, a file that cannot be opened, or a directory), 1 if the
//! runtime cannot start, the output cannot be written, or reading the
//! input failed partway (the URLs read before it are crawled).
//!
//! **Shards.** The runtime comes from `SHARDLET_*` (`Runtime::from_env`),
//! but the crawl runs on shard 0 only, and the other shards return at once.
//! The order guarantee, the pool bound and the "each URL once" set are all
//! shard-local and simple there; one shard drives thousands of fetches a
//! second, far more than most servers want from one client. Run with
//! `SHARDLET_SHARDS=1` to start no idle shards at all.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_lite::StreamExt;
use http::Response;
use shardlet::http::{Client, ResponseExt, Url};
use shardlet::GreenPool;

/// Fetch URLs concurrently through a bounded green pool, in input order.
#[derive(Parser, Debug, Clone)]
#[command(name = "crawler")]
pub struct Args {
    /// File of URLs, one a line (blank lines and `#` comments skipped); stdin when absent or `-`.
    pub input: Option<PathBuf>,
    /// Fetches running at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub pool: u64,
    /// Also fetch the same-host links found in HTML pages.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: how many links away from an input URL to go.
    #[arg(long, default_value_t = 2)]
    pub depth: usize,
    /// Time limit for each URL (redirects included), in seconds (0.001 to 86400).
    #[arg(long, default_value_t = 30.0, value_parser = crate::seconds)]
    pub timeout: f64,
    /// Longest wait for a server's next bytes (or, while sending, for it to
    /// take more), in seconds (0.001 to 86400): a server slower than this to
    /// answer fails as "read timed out" within --timeout.
    #[arg(long, default_value_t = 10.0, value_parser = crate::seconds)]
    pub read_timeout: f64,
    /// Largest body accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body: u64,
    /// Progress on stderr.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
}

/// When to show progress on stderr.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// When stderr is a terminal.
    Auto,
    Always,
    Never,
}

/// What a crawl did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Summary {
    pub ok: u64,
    pub failed: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn rate(&self) -> f64 {
        (self.ok + self.failed) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The longest input line taken as a URL: 64 KiB, about the most an
/// `http::Uri` holds. Past it, only this much of a line is kept in memory.
pub const MAX_LINE: usize = 64 << 10;

/// One line of the input: a URL to fetch, or a line reported as failed in
/// its place without a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Url(String),
    Unfetched {
        /// What the output shows for it.
        shown: String,
        /// Why it is not fetched.
        why: &'static str,
    },
}

impl From<String> for Line {
    fn from(url: String) -> Self {
        Line::Url(url)
    }
}

/// Why a line of the input that is not UTF-8 is not fetched: its URL is
/// not the one given.
const NOT_UTF8: &str = "the input line is not valid UTF-8; not fetched";
/// Why a line longer than [`MAX_LINE`] is not fetched.
const TOO_LONG: &str = "the input line is longer than 64 KiB; not fetched";
/// How much of a line too long to fetch the output shows.
const SHOWN: usize = 200;

/// The lines of `input`, read lazily: trimmed, blank lines and `#` comments
/// skipped. A line that is not UTF-8 (shown with its bad bytes replaced by
/// U+FFFD) or longer than [`MAX_LINE`] (shown cut short, and never held
/// whole) is reported as failed in its place without a fetch, and the
/// lines after it go on; a read error ends the input (and is reported on
/// stderr).
pub fn urls(mut input: impl BufRead) -> impl Iterator<Item = Line> {
    let mut line = Vec::new();
    std::iter::from_fn(move || loop {
        let length = match read_line(&mut input, &mut line) {
            Ok(Some(length)) => length,
            Ok(None) => return None,
            Err(e) => {
                eprintln!("crawler: stopped reading the input: {e}");
                return None;
            }
        };
        let text = String::from_utf8_lossy(&line);
        let url = text.trim();
        // A comment or blank line is skipped however long (only its start is kept).
        if url.starts_with('#') || (url.is_empty() && line.len() == length) {
            continue;
        }
        if length > MAX_LINE {
            let cut = url.char_indices().nth(SHOWN).map_or(url.len(), |(i, _)| i);
            return Some(Line::Unfetched {
                shown: format!("{}... ({length} bytes)", &url[..cut]),
                why: TOO_LONG,
            });
        }
        return Some(match text {
            std::borrow::Cow::Borrowed(_) => Line::Url(url.to_string()),
            std::borrow::Cow::Owned(_) => Line::Unfetched {
                shown: url.to_string(),
                why: NOT_UTF8,
            },
        });
    })
}

/// Reads the next line of `input` into `line` (without its `\n`), keeping at
/// most `MAX_LINE + 1` bytes of it: its whole length, or `None` at the end.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Option<usize>> {
    line.clear();
    let mut length = 0;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((length > 0).then_some(length));
        }
        let (part, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = (MAX_LINE + 1).saturating_sub(line.len());
        line.extend_from_slice(&part[..part.len().min(room)]);
        length += part.len();
        let used = end.unwrap_or(buf.len());
        input.consume(used);
        if end.is_some() {
            return Ok(Some(length));
        }
    }
}

/// Crawls `urls` as `args` says, writing one line per URL to `out` and the
/// summary at the end; gives back the summary and `out`.
pub async fn crawl<W: Write + 'static, L: Into<Line>>(
    args: &Args,
    urls: impl Iterator<Item = L>,
    out: W,
) -> io::Result<(Summary, W)> {
    let urls = urls.map(Into::into);
    let client = Client::builder()
        .request_timeout(Duration::from_secs_f64(args.timeout.max(0.001)))
        .read_timeout(Duration::from_secs_f64(args.read_timeout.max(0.001)))
        .max_body(args.max_body)
        // Keep a connection per green thread: a crawl of one host reuses them all.
        .max_idle_per_host(args.pool as usize)
        .max_idle((args.pool as usize).max(256))
        .build()
        .expect("no extra roots, nothing to fail");
    let crawl = Rc::new(Crawl {
        client,
        pool: GreenPool::new(args.pool as usize),
        depth: args.depth,
        seen: RefCell::new(HashSet::new()),
        out: RefCell::new(out),
        error: RefCell::new(None),
        ok: Cell::new(0),
        failed: Cell::new(0),
        bytes: Cell::new(0),
    });
    let start = Instant::now();
    let show = match args.progress {
        Progress::Auto => io::stderr().is_terminal(),
        Progress::Always => true,
        Progress::Never => false,
    };
    let progress = show.then(|| shardlet::spawn(progress(crawl.clone(), start)));

    if args.follow {
        follow(&crawl, urls).await;
    } else {
        list(&crawl, urls).await;
    }

    if let Some(task) = progress {
        task.cancel();
        eprint!("\r\x1b[K");
    }
    let summary = Summary {
        ok: crawl.ok.get(),
        failed: crawl.failed.get(),
        bytes: crawl.bytes.get(),
        elapsed: start.elapsed(),
    };
    crawl.line(format_args!(
        "# ok {}, failed {}, {} bytes in {:.3} s, {:.0} URLs/s",
        summary.ok,
        summary.failed,
        summary.bytes,
        summary.elapsed.as_secs_f64(),
        summary.rate()
    ));
    let crawl = Rc::try_unwrap(crawl).unwrap_or_else(|_| panic!("every task of the crawl has ended"));
    if let Some(err) = crawl.error.into_inner() {
        return Err(err);
    }
    let mut out = crawl.out.into_inner();
    out.flush()?;
    Ok((summary, out))
}

/// The shared state of one crawl (shard-local: `Rc`, `Cell`, `RefCell`).
struct Crawl<W> {
    client: Client,
    pool: GreenPool,
    depth: usize,
    /// URLs fetched or queued, for --follow.
    seen: RefCell<HashSet<String>>,
    out: RefCell<W>,
    /// The first error writing `out`; later lines are dropped.
    error: RefCell<Option<io::Error>>,
    ok: Cell<u64>,
    failed: Cell<u64>,
    bytes: Cell<u64>,
}

impl<W: Write> Crawl<W> {
    /// Writes one line (unless `out` already failed).
    fn line(&self, line: std::fmt::Arguments<'_>) {
        if self.error.borrow().is_some() {
            return;
        }
        if let Err(err) = writeln!(self.out.borrow_mut(), "{line}") {
            *self.error.borrow_mut() = Some(err);
        }
    }

    /// Counts and prints one fetch.
    fn report(
        &self,
        url: &str,
        outcome: Result<(u16, usize), &dyn std::fmt::Display>,
        took: Duration,
        depth: Option<usize>,
    ) {
        // The input's password is not for the output (errors show `***` too).
        let url = shardlet::http::redact_password(url);
        match outcome {
            Ok((status, len)) => {
                self.ok.set(self.ok.get() + 1);
                self.bytes.set(self.bytes.get() + len as u64);
                let ms = took.as_secs_f64() * 1e3;
                let depth = depth.map(|d| format!(" depth {d}")).unwrap_or_default();
                self.line(format_args!("{url} {status} {len} {ms:.1}ms{depth}"));
            }
            Err(err) => {
                self.failed.set(self.failed.get() + 1);
                let depth = depth.map(|d| format!(" (depth {d})")).unwrap_or_default();
                self.line(format_args!("{url} error{depth}: {err}"));
            }
        }
    }
}

/// The list mode: `imap` over the input, lines in input order.
async fn list<W: Write + 'static>(crawl: &Rc<Crawl<W>>, urls: impl Iterator<Item = Line>) {
    let client = crawl.client.clone();
    let mut results = crawl.pool.imap(urls, move |line| {
        let client = client.clone();
        async move {
            let start = Instant::now();
            let url = match line {
                Line::Url(url) => url,
                Line::Unfetched { shown, why } => return (shown, Err(why.to_string()), start.elapsed()),
            };
            // Count the body as it comes, holding none of it: a pool of 200
            // fetches of 8 MB answers held some 1.8 GB when each was read whole.
            let outcome = async {
                let answer = client.get_streamed(&url).await?;
                let status = answer.status().as_u16();
                let mut body = answer.into_body();
                let mut len = 0;
                while let Some(piece) = body.chunk().await? {
                    len += piece.len();
                }
                Ok::<_, shardlet::http::Error>((status, len))
            }
            .await
            .map_err(|e| e.kind().to_string());
            (url, outcome, start.elapsed())
        }
    });
    // Until the output fails (its reader is gone: `crawler urls | head`):
    // then the fetches still running are dropped with the stream.
    while let Some(result) = results.next().await {
        if crawl.error.borrow().is_some() {
            break;
        }
        match result {
            Ok((url, outcome, took)) => crawl.report(
                &url,
                outcome
                    .as_ref()
                    .map(|o| *o)
                    .map_err(|e| e as &dyn std::fmt::Display),
                took,
                None,
            ),
            Err(panicked) => {
                crawl.failed.set(crawl.failed.get() + 1);
                crawl.line(format_args!("<unknown> error: fetch task failed: {panicked}"));
            }
        }
    }
}

/// The --follow mode: the input URLs at depth 0 through `imap`, their links
/// spawned into the same pool, until no task is left.
async fn follow<W: Write + 'static>(crawl: &Rc<Crawl<W>>, urls: impl Iterator<Item = Line>) {
    let seeds = urls.filter_map(|line| match line {
        Line::Url(url) => crawl.seen.borrow_mut().insert(normalize(&url)).then_some(url),
        Line::Unfetched { shown, why } => {
            crawl.report(&shown, Err(&why), Duration::ZERO, Some(0));
            None
        }
    });
    let c = crawl.clone();
    let mut visits = crawl.pool.imap(seeds, move |url| visit(c.clone(), url, 0));
    while visits.next().await.is_some() && crawl.error.borrow().is_none() {}
    drop(visits);
    // Seeds are done; links they spawned may still run. Each was spawned by a
    // running task of the pool, so the pool is idle only when all are done.
    crawl.pool.waitall().await;
}

/// Fetches `url`, reports it, and spawns its unseen same-host links.
fn visit<W: Write + 'static>(
    crawl: Rc<Crawl<W>>,
    url: String,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    // Boxed: a page's links may run inline inside it (recursion).
    Box::pin(async move {
        let start = Instant::now();
        let result = crawl.client.get(&url).await;
        let outcome = result
            .as_ref()
            .map(|r| (r.status().as_u16(), r.body().len()))
            .map_err(|e| e.kind() as &dyn std::fmt::Display);
        crawl.report(&url, outcome, start.elapsed(), Some(depth));
        let Ok(response) = result else { return };
        // The output failed: no more links.
        if crawl.error.borrow().is_some() {
            return;
        }
        if depth >= crawl.depth || !is_html(&response) {
            return;
        }
        // A redirect's target counts as fetched too.
        crawl.seen.borrow_mut().insert(normalize(response.url().as_str()));
        let links = same_host_links(&response);
        drop(response);
        for link in links {
            if crawl.seen.borrow_mut().insert(link.clone()) {
                // A free slot: a new green thread. A full pool: runs inline, here.
                crawl.pool.spawn_n(visit(crawl.clone(), link, depth + 1)).await;
            }
        }
    })
}

fn is_html(response: &Response<Bytes>) -> bool {
    response.status().is_success()
        && response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|t| t.to_str().ok())
            .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// The page's links to its own scheme, host and port, absolute, without
/// fragments, each once.
fn same_host_links(page: &Response<Bytes>) -> Vec<String> {
    let mut seen = HashSet::new();
    let base = page.url();
    hrefs(&page.text())
        .into_iter()
        .filter_map(|href| base.join(&href).ok())
        .filter(|link| link.origin() == base.origin())
        .map(|link| normalize(link.as_str()))
        .filter(|link| seen.insert(link.clone()))
        .collect()
}

/// `url` without its fragment (the part a server never sees).
fn normalize(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut url) => {
            url.set_fragment(None);
            url.into()
        }
        Err(_) => url.to_string(),
    }
}

/// The values of the `href` attributes in `html`: quoted or not, `&amp;`
/// decoded. A scanner, not a parser: enough for links in real pages.
pub fn hrefs(html: &str) -> Vec<String> {
    let bytes = html.as_bytes();
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("href") {
        let mut i = from + found + 4;
        from = i;
        // The attribute name must stand alone: `<a href=`, not `data-href=`.
        let before = (from - 4).checked_sub(1).map(|p| bytes[p]);
        if before.is_some_and(|b| !b.is_ascii_whitespace()) {
            continue;
        }
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = match bytes.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                let end = html[i + 1..].find(q as char).map_or(bytes.len(), |e| i + 1 + e);
                &html[i + 1..end]
            }
            Some(_) => {
                let end = html[i..]
                    .find(|c: char| c.is_ascii_whitespace() || c == '>')
                    .map_or(bytes.len(), |e| i + e);
                &html[i..end]
            }
            None => break,
        };
        let value = value.trim();
        if !value.is_empty() {
            out.push(value.replace("&amp;", "&"));
        }
        from = i;
    }
    out
}

/// Writes `done, failed, rate, in flight` to stderr every 200 ms.
async fn progress<W: Write + 'static>(crawl: Rc<Crawl<W>>, start: Instant) {
    loop {
        shardlet::sleep(Duration::from_millis(200)).await;
        let done = crawl.ok.get() + crawl.failed.get();
        let rate = done as f64 / start.elapsed().as_secs_f64();
        eprint!(
            "\r\x1b[K{done} done, {} failed, {rate:.0} URLs/s, {} in flight",
            crawl.failed.get(),
            crawl.pool.running()
        );
    }
}
