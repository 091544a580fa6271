//! The feed scraper's logic, apart from its command line so that the tests
//! can run it in-process (`#[path = "../examples/feed_scraper/scraper.rs"]`).
//!
//! The seed's app, line for line:
//!
//! ```text
//! pile = eventlet.GreenPile(pool)            let mut pile = GreenPile::new(&self.limit);
//! for url in environ['wsgi.input']...:       for url in urls {
//!     pile.spawn(fetch_title, url)               pile.spawn(fetch_title(url, ..)).await;
//! titles = '\n'.join(pile)                   pile.collect() -> one line per URL, in order
//! ```
//!
//! The pile is bound to a [`GlobalLimit`] made once, before the runtime
//! starts, and cloned into every shard: however many requests come in on
//! however many shards, at most `limit.size()` fetches run at once.
#![allow(dead_code)] // the tests use parts of it, the example others

#[path = "fetch.rs"]
mod fetch;

use std::rc::Rc;
use std::time::Duration;

use futures_lite::StreamExt;
use shardlet::http::server::{Request, Response};
use shardlet::{http, GlobalLimit, GreenPile};

/// Most feed URLs in one request, by default.
pub const DEFAULT_MAX_URLS: usize = 10_000;
/// How long one fetch may take, by default.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest feed document fetched, by default.
pub const DEFAULT_MAX_FEED_BYTES: usize = 4 << 20;

/// What limits one scraper's work besides the global limit.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most URLs in one request; more is answered `413`.
    pub max_urls: usize,
    /// How long one fetch (connect, request, response) may take.
    pub fetch_timeout: Duration,
    /// The largest feed document; a larger one is an error line.
    pub max_feed_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_urls: DEFAULT_MAX_URLS,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_feed_bytes: DEFAULT_MAX_FEED_BYTES,
        }
    }
}

/// What became of one URL.
pub type Outcome = Result<String, String>;

/// The scraper of one shard: the global limit (shared by all shards), this
/// shard's HTTP client, and the settings.
#[derive(Clone)]
pub struct Scraper {
    limit: GlobalLimit,
    client: http::Client,
    settings: Rc<Settings>,
}

impl Scraper {
    /// Call on the shard that will use it (its client is shard-local).
    pub fn new(limit: GlobalLimit, settings: Settings) -> Self {
        Scraper {
            limit,
            client: fetch::client(settings.max_feed_bytes, settings.fetch_timeout),
            settings: Rc::new(settings),
        }
    }

    /// The HTTP handler: `POST /` with one feed URL per line.
    pub async fn handle(&self, request: Request) -> Response {
        if request.method() != "POST" {
            return Response::error(405).with_header("Allow", "POST");
        }
        if request.path() != "/" {
            return Response::error(404);
        }
        let Ok(body) = std::str::from_utf8(request.body()) else {
            return Response::text("the body must be UTF-8 text, one feed URL per line\n").with_status(400);
        };
        let urls: Vec<String> = body
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(String::from)
            .collect();
        if urls.len() > self.settings.max_urls {
            let message = format!(
                "at most {} feed URLs per request; this one has {}\n",
                self.settings.max_urls,
                urls.len()
            );
            return Response::text(message).with_status(413);
        }
        let outcomes = self.titles(&urls).await;
        if wants_json(&request) {
            Response::new(200)
                .with_header("Content-Type", "application/json")
                .with_body(to_json(&urls, &outcomes))
        } else {
            Response::text(to_lines(&urls, &outcomes))
        }
    }

    /// Fetches every URL through a pile bound to the global limit; the
    /// outcomes in the order of `urls`.
    pub async fn titles(&self, urls: &[String]) -> Vec<Outcome> {
        let mut pile = GreenPile::new(&self.limit);
        for url in urls {
            let (url, client) = (url.clone(), self.client.clone());
            let timeout = self.settings.fetch_timeout;
            // Waits for a permit when `limit.size()` fetches already run,
            // on this shard or any other.
            pile.spawn(async move { fetch_title(&client, &url, timeout).await })
                .await;
        }
        pile.map(|joined| joined.unwrap_or_else(|e| Err(format!("fetch failed: {e}"))))
            .collect()
            .await
    }
}

/// Fetches `url` and returns its feed's title (`""` for a feed without one).
///
/// # Errors
///
/// Why there is no title, in a few words: a bad URL, a scheme other than
/// http/https, a network error or HTTP status, the timeout, a document that
/// is not RSS or Atom.
pub async fn fetch_title(client: &http::Client, url: &str, timeout: Duration) -> Outcome {
    let parsed = http::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported scheme {:?}: only http and https",
            parsed.scheme()
        ));
    }
    let document = shardlet::timeout(timeout, fetch::fetch(client, &parsed))
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))??;
    parse_title(&document)
}

/// The title of an RSS 0.9x/1.0/2.0, Atom or JSON Feed document, on one line.
///
/// # Errors
///
/// The parser's complaint, when `document` is not a feed.
pub fn parse_title(document: &[u8]) -> Outcome {
    let feed = feed_rs::parser::parse(document).map_err(|e| format!("not a feed ({e})"))?;
    Ok(feed.title.map(|t| one_line(&t.content)).unwrap_or_default())
}

/// `text` with every run of whitespace or control characters as one space:
/// a title (or a reason) must not break the one-line-per-URL answer.
pub fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the client prefers JSON (`Accept: application/json`).
pub fn wants_json(request: &Request) -> bool {
    request.headers().get_all("accept").any(|value| {
        String::from_utf8_lossy(value).split(',').any(|range| {
            let media = range.split(';').next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case("application/json")
        })
    })
}

/// One line per URL: its title, or `error: <url>: <reason>`.
pub fn to_lines(urls: &[String], outcomes: &[Outcome]) -> String {
    let mut text = String::new();
    for (url, outcome) in urls.iter().zip(outcomes) {
        match outcome {
            Ok(title) => text.push_str(title),
            Err(reason) => text.push_str(&format!("error: {}: {}", one_line(url), one_line(reason))),
        }
        text.push('\n');
    }
    text
}

/// A JSON array of `{"url", "title"}` or `{"url", "error"}`, in order.
pub fn to_json(urls: &[String], outcomes: &[Outcome]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Item<'a> {
        url: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    }
    let items: Vec<Item<'_>> = urls
        .iter()
        .zip(outcomes)
        .map(|(url, outcome)| Item {
            url,
            title: outcome.as_deref().ok(),
            error: outcome.as_ref().err().map(String::as_str),
        })
        .collect();
    let mut json = serde_json::to_vec(&items).expect("JSON values serialize");
    json.push(b'\n');
    json
}
