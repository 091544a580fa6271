//! The feed scraper's end-to-end latency, for the HTTP bench.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures_lite::future;
use shardlet::http as shttp;
use shardlet::http::server::Body;
use shardlet::{Config, GlobalLimit, Runtime, ServerConfig};

use shardlet_apps::feed_scraper as scraper;

/// Latency of the feed scraper, end to end.
#[derive(Debug, serde::Serialize)]
pub struct ScraperLatency {
    pub feeds: usize,
    pub posts: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A scraper and a feed server on the same `threads` shards; `posts`
/// sequential POSTs of 100 feed URLs, each timed from the first byte sent
/// to the last byte of the answer.
pub fn scraper_latency(threads: usize, posts: usize) -> ScraperLatency {
    const FEEDS: usize = 100;
    let runtime = Runtime::new(Config::default().with_shards(threads).with_pin(false)).expect("runtime");
    let config = ServerConfig::from(runtime.config());
    let feeds = shttp::Server::bind(([127, 0, 0, 1], 0), config.clone()).expect("bind");
    let front = shttp::Server::bind(([127, 0, 0, 1], 0), config).expect("bind");
    let limit = GlobalLimit::new(1000);
    let handle = runtime
        .start({
            let (feeds, front) = (feeds.clone(), front.clone());
            move || {
                let (feeds, front) = (feeds.clone(), front.clone());
                let app = scraper::Scraper::new(limit.clone(), scraper::Settings::default());
                async move {
                    let serving_feeds = feeds.serve(|request: http::Request<Body>| async move {
                        let n = request.uri().path().trim_start_matches('/').to_string();
                        http::Response::new(format!(
                            "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Feed {n}</title>\
                             <link>http://example.com/</link><description>d</description>\
                             <item><title>i</title></item></channel></rss>"
                        ))
                    });
                    let serving_front = front.serve(move |request| {
                        let app = app.clone();
                        async move { app.handle(request).await }
                    });
                    let (a, b) = future::zip(serving_feeds, serving_front).await;
                    a.and(b)
                }
            }
        })
        .expect("start");
    feeds.wait_ready(Duration::from_secs(20)).expect("ready");
    front.wait_ready(Duration::from_secs(20)).expect("ready");

    let body: String = (0..FEEDS)
        .map(|i| format!("http://{}/{i}\n", feeds.local_addr()))
        .collect();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let stream = TcpStream::connect(front.local_addr()).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = BufReader::new(stream);
    let mut times = Vec::with_capacity(posts);
    for post in 0..posts + 1 {
        let sent = Instant::now();
        reader.get_mut().write_all(request.as_bytes()).expect("send");
        let answer = read_sized(&mut reader).expect("an answer");
        let took = sent.elapsed();
        let lines = answer.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
        assert_eq!(lines, FEEDS, "{}", String::from_utf8_lossy(&answer));
        assert!(
            answer.starts_with(b"Feed 0\n"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        if post > 0 {
            times.push(took.as_secs_f64() * 1e3); // the first one warms up
        }
    }
    front.stop(Duration::from_secs(1));
    feeds.stop(Duration::from_secs(1));
    let _ = handle.join();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    ScraperLatency {
        feeds: FEEDS,
        posts,
        min_ms: times[0],
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: times[times.len() - 1],
    }
}

/// Reads one response with a `Content-Length` body and returns the body.
fn read_sized(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut line = String::new();
    let mut length = 0;
    reader.read_line(&mut line)?;
    assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        if let Some((name, value)) = field.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}
