//! The feed scraper (`shardlet_apps::feed_scraper`, run by examples/feed_scraper), in-process: feeds served by a
//! second `http::Server` on the same two shards, every kind of feed and of
//! failure, the order of the answer, JSON, the URL cap, 405, and the global
//! limit on fetches held across both shards.

#[path = "util/http.rs"]
mod http_util;
#[path = "util/net.rs"]
mod net_util;
mod util;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use http_util::{request, Conn, Reply};
use shardlet::http as shttp;
use shardlet::http::server::Body;
use shardlet::{GlobalLimit, Runtime, RuntimeHandle, ServerConfig};
use shardlet_apps::feed_scraper::{Scraper, Settings};

const RSS2: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
  <title>RSS Two</title><link>http://example.com/</link><description>d</description>
  <item><title>An item</title><link>http://example.com/1</link></item>
</channel></rss>"#;

const RSS1: &str = r#"<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">
  <channel rdf:about="http://example.com/"><title>RSS One</title>
    <link>http://example.com/</link><description>d</description></channel>
  <item rdf:about="http://example.com/1"><title>Item</title><link>http://example.com/1</link></item>
</rdf:RDF>"#;

const RSS091: &str = r#"<?xml version="1.0"?>
<rss version="0.91"><channel><title>RSS Zero Nine One</title>
  <link>http://example.com/</link><description>d</description><language>en-us</language>
</channel></rss>"#;

const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="text">Atom   Feed
  </title><id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2003-12-13T18:30:02Z</updated>
  <entry><title>Entry</title><id>urn:uuid:1</id><updated>2003-12-13T18:30:02Z</updated></entry>
</feed>"#;

const UNICODE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Ünïcödé — 日本語のフィード 🚀</title>
  <link>http://example.com/</link><description>d</description></channel></rss>"#;

const MALFORMED: &str = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>Broken"#;

/// Feed fetches the feed server is serving right now, and the most ever,
/// across both shards.
#[derive(Default)]
struct Meter {
    now: AtomicUsize,
    max: AtomicUsize,
    total: AtomicUsize,
    /// `/slow.xml` fetches begun.
    slow: AtomicUsize,
}

/// The feed server's handler.
async fn feed(request: Request<Body>, meter: Arc<Meter>) -> Response<Full<Bytes>> {
    let xml = |body: &str| {
        Response::builder()
            .header("Content-Type", "application/rss+xml")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    let status = |code: StatusCode, body: &'static str| {
        Response::builder()
            .status(code)
            .header("Content-Type", "text/plain")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    match request.uri().path() {
        "/rss2.xml" => xml(RSS2),
        "/rss1.xml" => xml(RSS1),
        "/rss091.xml" => xml(RSS091),
        "/atom.xml" => xml(ATOM),
        "/unicode.xml" => xml(UNICODE),
        "/malformed.xml" => xml(MALFORMED),
        "/page.html" => status(StatusCode::OK, "<html><body>not a feed</body></html>"),
        "/slow.xml" => {
            meter.slow.fetch_add(1, Ordering::SeqCst);
            shardlet::sleep(Duration::from_millis(1500)).await;
            xml(RSS2)
        }
        path if path.starts_with("/many/") => {
            let now = meter.now.fetch_add(1, Ordering::SeqCst) + 1;
            meter.max.fetch_max(now, Ordering::SeqCst);
            meter.total.fetch_add(1, Ordering::SeqCst);
            shardlet::sleep(Duration::from_millis(2)).await;
            meter.now.fetch_sub(1, Ordering::SeqCst);
            let n = path.trim_start_matches("/many/");
            let body = format!(
                "<rss version=\"2.0\"><channel><title>Feed {n}</title><link>http://e/</link>\
                 <description>d</description></channel></rss>"
            );
            xml(&body)
        }
        _ => status(StatusCode::NOT_FOUND, "404 Not Found\n"),
    }
}

/// A scraper and a feed server, both on every shard of one 2-shard runtime.
struct Fixture {
    scraper: SocketAddr,
    scraper_server: shttp::Server,
    feeds: SocketAddr,
    meter: Arc<Meter>,
    limit: GlobalLimit,
    handle: Option<RuntimeHandle<io::Result<()>>>,
}

fn fixture(max_fetches: usize, settings: Settings) -> Fixture {
    let runtime = Runtime::new(net_util::runtime(2)).expect("runtime");
    let config = ServerConfig::from(runtime.config());
    let feeds = shttp::Server::bind(([127, 0, 0, 1], 0), config.clone()).expect("bind feeds");
    let scraper = shttp::Server::bind(([127, 0, 0, 1], 0), config).expect("bind scraper");
    // The global limit: made before the runtime starts, cloned into every shard.
    let limit = GlobalLimit::new(max_fetches);
    let meter = Arc::new(Meter::default());
    let handle = runtime
        .start({
            let (feeds, scraper, limit, meter) =
                (feeds.clone(), scraper.clone(), limit.clone(), meter.clone());
            move || {
                let (feeds, server, meter) = (feeds.clone(), scraper.clone(), meter.clone());
                let app = Scraper::new(limit.clone(), settings.clone()).with_stopping({
                    let server = server.clone();
                    move || server.is_stopped()
                });
                async move {
                    let serving_feeds = feeds.serve(move |request| feed(request, meter.clone()));
                    let serving_scraper = server.serve(move |request| {
                        let app = app.clone();
                        async move { app.handle(request).await }
                    });
                    let (a, b) = future::zip(serving_feeds, serving_scraper).await;
                    a.and(b)
                }
            }
        })
        .expect("start");
    feeds.wait_ready(Duration::from_secs(20)).expect("feeds ready");
    scraper
        .wait_ready(Duration::from_secs(20))
        .expect("scraper ready");
    Fixture {
        scraper: scraper.local_addr(),
        scraper_server: scraper,
        feeds: feeds.local_addr(),
        meter,
        limit,
        handle: Some(handle),
    }
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.feeds)
    }

    /// POSTs `urls` (one per line) to the scraper.
    fn post(&self, urls: &[String], accept: &str) -> Reply {
        let body = urls.join("\n");
        let raw = format!(
            "POST / HTTP/1.1\r\nHost: s\r\nAccept: {accept}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        request(self.scraper, raw.as_bytes())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop(Duration::from_millis(500));
            let _ = handle.join();
        }
    }
}

fn settings() -> Settings {
    Settings {
        max_urls: 5000,
        fetch_timeout: Duration::from_millis(400),
        ..Settings::default()
    }
}

/// A request with more URLs than fetch slots, in flight when its server
/// stops: the URLs still waiting for a slot are answered "not fetched",
/// so the request ends within the fetch timeout and the drain covers it.
/// Before: each round of slots took its own fetch time (here 3 x 1.5 s,
/// past a drain of fetch timeout plus 2 s at the scraper's defaults).
#[test]
fn a_request_in_flight_at_a_stop_ends_within_the_fetch_timeout() {
    let settings = Settings {
        fetch_timeout: Duration::from_secs(3),
        ..settings()
    };
    let f = fixture(1, settings);
    let urls: Vec<String> = (0..3).map(|_| f.url("/slow.xml")).collect();
    let started = std::time::Instant::now();
    let reply = std::thread::scope(|s| {
        let posting = s.spawn(|| f.post(&urls, "text/plain"));
        // The stop comes once the first fetch is under way (a fixed sleep
        // could end before a posting thread kept off the CPU has sent).
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while f.meter.slow.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < until, "the first fetch never began");
            std::thread::sleep(Duration::from_millis(2));
        }
        f.scraper_server.stop(Duration::from_secs(10));
        posting.join().unwrap()
    });
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{reply:?}");
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        lines[0], "RSS Two",
        "the fetch running at the stop finishes: {text}"
    );
    for line in &lines[1..] {
        assert!(line.ends_with("not fetched: the server is stopping"), "{text}");
    }
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[test]
fn smoke_titles_in_the_order_given() {
    let f = fixture(100, settings());
    let urls: Vec<String> = [
        "/rss2.xml",
        "/rss1.xml",
        "/atom.xml",
        "/rss091.xml",
        "/unicode.xml",
        "/rss2.xml",
    ]
    .iter()
    .map(|p| f.url(p))
    .collect();
    let reply = f.post(&urls, "text/plain");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        reply.text(),
        "RSS Two\nRSS One\nAtom Feed\nRSS Zero Nine One\nÜnïcödé — 日本語のフィード 🚀\nRSS Two\n"
    );
}

#[test]
fn failures_are_error_lines_in_place() {
    let f = fixture(100, settings());
    let closed = util::refused_addr();
    let urls = vec![
        f.url("/rss2.xml"),
        f.url("/malformed.xml"),
        f.url("/missing.xml"),
        f.url("/slow.xml"),
        f.url("/page.html"),
        "ftp://127.0.0.1/feed.xml".to_string(),
        "not a url".to_string(),
        format!("http://{closed}/feed.xml"),
        f.url("/atom.xml"),
    ];
    let reply = f.post(&urls, "text/plain");
    assert_eq!(reply.status, 200);
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), urls.len(), "{text}");
    assert_eq!(lines[0], "RSS Two");
    for (i, line) in lines.iter().enumerate().take(8).skip(1) {
        let prefix = format!("error: {}: ", urls[i]);
        assert!(line.starts_with(&prefix), "line {i}: {line:?}");
    }
    assert!(lines[1].contains("not a feed"), "{}", lines[1]);
    assert!(lines[2].ends_with("HTTP 404 Not Found"), "{}", lines[2]);
    assert!(lines[3].contains("timed out"), "{}", lines[3]);
    assert!(lines[4].contains("not a feed"), "{}", lines[4]);
    assert!(lines[5].contains("only http and https"), "{}", lines[5]);
    assert!(lines[6].contains("not a URL"), "{}", lines[6]);
    assert!(lines[7].contains("connect"), "{}", lines[7]);
    assert_eq!(lines[8], "Atom Feed");
}

#[test]
fn json_answers_an_array_of_titles_and_errors() {
    let f = fixture(100, settings());
    let urls = vec![f.url("/atom.xml"), f.url("/missing.xml"), f.url("/unicode.xml")];
    let reply = f.post(&urls, "text/html;q=0.5, application/json");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let items: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        items,
        serde_json::json!([
            { "url": urls[0], "title": "Atom Feed" },
            { "url": urls[1], "error": "HTTP 404 Not Found" },
            { "url": urls[2], "title": "Ünïcödé — 日本語のフィード 🚀" },
        ])
    );
}

#[test]
fn wrong_method_too_many_urls_and_empty_lists() {
    let f = fixture(
        100,
        Settings {
            max_urls: 3,
            ..settings()
        },
    );
    let reply = http_util::get(f.scraper, "/");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));

    let four: Vec<String> = (0..4).map(|_| f.url("/rss2.xml")).collect();
    let reply = f.post(&four, "text/plain");
    assert_eq!(reply.status, 413);
    assert!(reply.text().contains("at most 3"), "{}", reply.text());

    // Blank lines are skipped; nothing to fetch is an empty answer.
    let mut conn = Conn::open(f.scraper);
    let reply = conn
        .roundtrip(b"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\n\r\n\n \n")
        .unwrap();
    assert_eq!((reply.status, reply.body.len()), (200, 0));
    // The same connection goes on.
    let body = format!("{}\n", f.url("/rss1.xml"));
    let reply = conn
        .roundtrip(
            format!(
                "POST / HTTP/1.1\r\nHost: s\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(reply.text(), "RSS One\n");
}

/// 5,000 URLs in one request, plus other requests at the same time: the feed
/// server (both shards) never sees more fetches at once than the global limit.
#[test]
fn five_thousand_urls_never_exceed_the_global_limit() {
    let _heavy = net_util::heavy();
    const LIMIT: usize = 40;
    let f = Arc::new(fixture(LIMIT, settings()));
    let urls: Vec<String> = (0..5000).map(|i| f.url(&format!("/many/{i}"))).collect();
    let others: Vec<_> = (0..3)
        .map(|k| {
            let f = f.clone();
            std::thread::spawn(move || {
                let urls: Vec<String> = (0..300).map(|i| f.url(&format!("/many/{k}-{i}"))).collect();
                let reply = f.post(&urls, "text/plain");
                let expected: String = (0..300).map(|i| format!("Feed {k}-{i}\n")).collect();
                assert_eq!(reply.text(), expected);
            })
        })
        .collect();
    let reply = f.post(&urls, "text/plain");
    assert_eq!(reply.status, 200);
    let text = reply.text();
    let mut lines = text.lines();
    for i in 0..5000 {
        assert_eq!(lines.next(), Some(format!("Feed {i}").as_str()), "line {i}");
    }
    assert_eq!(lines.next(), None);
    for other in others {
        other.join().unwrap();
    }
    let (max, total) = (
        f.meter.max.load(Ordering::SeqCst),
        f.meter.total.load(Ordering::SeqCst),
    );
    eprintln!("most fetches at once: {max} of {LIMIT}; {total} fetches");
    assert_eq!(total, 5900);
    assert!(max <= LIMIT, "{max} fetches at once, limit {LIMIT}");
    assert!(max > 1, "fetches did not overlap at all");
    assert_eq!(f.limit.in_use(), 0);
}
