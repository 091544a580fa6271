//! The feed scraper's logic, apart from its command line
//! (`examples/feed_scraper/`) so that the tests and the HTTP bench can run
//! it in-process.
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
mod fetch;

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{future, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use shardlet::http::server::Body;
use shardlet::{http as shttp, GlobalLimit, GreenPile};

/// Most feed URLs in one request, by default.
pub const DEFAULT_MAX_URLS: usize = 10_000;
/// How long one fetch may take, by default.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest feed document fetched, by default.
pub const DEFAULT_MAX_FEED_BYTES: usize = 4 << 20;
/// The longest line (one URL) of a request, by default.
pub const DEFAULT_MAX_LINE: usize = 8 << 10;
/// The longest title kept, in bytes (then cut, with `…`): a request's
/// answer holds one per URL until the last fetch ends, so a feed whose
/// title is most of its 4 MiB must not cost that much per URL.
pub const MAX_TITLE: usize = 1 << 10;

/// What limits one scraper's work besides the global limit.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most URLs in one request; more is answered `413`.
    pub max_urls: usize,
    /// How long one fetch (connect, request, response) may take.
    pub fetch_timeout: Duration,
    /// The largest feed document; a larger one is an error line.
    pub max_feed_bytes: usize,
    /// The longest line of the request body; a longer one is answered `413`.
    pub max_line: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_urls: DEFAULT_MAX_URLS,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_feed_bytes: DEFAULT_MAX_FEED_BYTES,
            max_line: DEFAULT_MAX_LINE,
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
    client: shttp::Client,
    settings: Rc<Settings>,
    /// Whether the server is stopping (see [`Scraper::with_stopping`]).
    stopping: Rc<dyn Fn() -> bool>,
}

/// How often a URL waiting for a fetch slot looks whether the server stops.
const STOP_POLL: Duration = Duration::from_millis(50);

/// The outcome of a URL not fetched because the server is stopping.
pub const STOPPING: &str = "not fetched: the server is stopping";

/// The answer: a whole body.
pub type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    answer(status, "text/plain; charset=utf-8", body)
}

impl Scraper {
    /// Call on the shard that will use it (its client is shard-local).
    pub fn new(limit: GlobalLimit, settings: Settings) -> Self {
        Scraper {
            limit,
            client: fetch::client(settings.max_feed_bytes, settings.fetch_timeout),
            settings: Rc::new(settings),
            stopping: Rc::new(|| false),
        }
    }

    /// Tells the scraper how to know that its server is stopping (say,
    /// `move || server.is_stopped()`): from then on, a request's URLs that
    /// have no fetch slot yet are answered [`STOPPING`] instead of waiting
    /// for one, so that a request in flight ends within the fetch timeout
    /// (its fetches running) and the server's drain can cover it. Without
    /// it, a request with more URLs than free slots needs a fetch timeout
    /// per round of slots, and a drain cuts it off.
    #[must_use]
    pub fn with_stopping(mut self, stopping: impl Fn() -> bool + 'static) -> Self {
        self.stopping = Rc::new(stopping);
        self
    }

    /// Resolves once the server is stopping.
    async fn stopped(&self) {
        while !(self.stopping)() {
            shardlet::sleep(STOP_POLL).await;
        }
    }

    /// The HTTP handler: `POST /` with one feed URL per line.
    ///
    /// The body is read as it comes, line by line (each line at most
    /// `max_line` bytes), and each URL's fetch starts as soon as its line
    /// is in: a long list is being fetched while it is still being sent.
    /// If the client goes away, the server drops this future, and with it
    /// every fetch still running or waiting for the global limit.
    pub async fn handle(&self, request: Request<Body>) -> Answer {
        if request.method() != http::Method::POST {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            return response;
        }
        if request.uri().path() != "/" {
            return text(StatusCode::NOT_FOUND, "404 Not Found\n");
        }
        let json = wants_json(&request);
        // Dropped with this future: tells every fetch of this request to stop.
        let (_alive, gone) = flume::bounded::<()>(0);
        let mut pile = GreenPile::new(&self.limit);
        let mut urls = Vec::new();
        // Per URL, whether it went into the pile (or was not fetched: the
        // server is stopping).
        let mut fetched = Vec::new();
        let mut lines = Lines::new(request.into_body(), self.settings.max_line);
        loop {
            let url = match lines.next().await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(Bad::NotText) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "the body must be UTF-8 text, one feed URL per line\n",
                    )
                }
                Err(Bad::LongLine) => {
                    let message = format!("a line is longer than {} bytes\n", self.settings.max_line);
                    return text(StatusCode::PAYLOAD_TOO_LARGE, message);
                }
                // The server answers 413/408/400 itself for these.
                Err(Bad::Body(e)) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            };
            if urls.len() == self.settings.max_urls {
                let message = format!(
                    "at most {} feed URLs per request; this one has more\n",
                    self.settings.max_urls
                );
                return text(StatusCode::PAYLOAD_TOO_LARGE, message);
            }
            let (client, timeout, gone) = (self.client.clone(), self.settings.fetch_timeout, gone.clone());
            let fetching = url.clone();
            // Waits for a permit when `limit.size()` fetches already run,
            // on this shard or any other; not once the server stops.
            let spawn = async {
                pile.spawn(async move {
                    let fetch = fetch_title(&client, &fetching, timeout);
                    let abandoned = async {
                        let _ = gone.recv_async().await;
                        Err("the client went away".to_string())
                    };
                    future::or(fetch, abandoned).await
                })
                .await;
                true
            };
            let stopping = async {
                self.stopped().await;
                false
            };
            fetched.push(!(self.stopping)() && future::or(spawn, stopping).await);
            urls.push(url);
        }
        let mut results = pile.map(|joined| joined.unwrap_or_else(|e| Err(format!("fetch failed: {e}"))));
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(urls.len());
        for went in fetched {
            outcomes.push(match went {
                true => results
                    .next()
                    .await
                    .unwrap_or_else(|| Err("fetch lost".to_string())),
                false => Err(STOPPING.to_string()),
            });
        }
        if json {
            answer(StatusCode::OK, "application/json", to_json(&urls, &outcomes))
        } else {
            text(StatusCode::OK, to_lines(&urls, &outcomes))
        }
    }

    /// Fetches every URL through a pile bound to the global limit; the
    /// outcomes in the order of `urls`.
    pub async fn titles(&self, urls: &[String]) -> Vec<Outcome> {
        let mut pile = GreenPile::new(&self.limit);
        for url in urls {
            let (url, client) = (url.clone(), self.client.clone());
            let timeout = self.settings.fetch_timeout;
            pile.spawn(async move { fetch_title(&client, &url, timeout).await })
                .await;
        }
        pile.map(|joined| joined.unwrap_or_else(|e| Err(format!("fetch failed: {e}"))))
            .collect()
            .await
    }
}

/// Why a request body is not a list of URLs.
enum Bad {
    NotText,
    LongLine,
    Body(shttp::server::BodyError),
}

/// The non-blank lines of a streamed body, trimmed, as they arrive.
struct Lines {
    body: Body,
    buf: BytesMut,
    /// Where the next line starts in `buf`.
    start: usize,
    max: usize,
    ended: bool,
}

impl Lines {
    fn new(body: Body, max: usize) -> Self {
        Lines {
            body,
            buf: BytesMut::new(),
            start: 0,
            max,
            ended: false,
        }
    }

    async fn next(&mut self) -> Result<Option<String>, Bad> {
        loop {
            // Every byte is looked at once: lines end where a newline is.
            while let Some(at) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
                let line = self.start..self.start + at;
                self.start = line.end + 1;
                if let Some(url) = line_text(&self.buf[line], self.max)? {
                    return Ok(Some(url));
                }
            }
            self.buf.advance(self.start);
            self.start = 0;
            if self.buf.len() > self.max {
                return Err(Bad::LongLine);
            }
            if self.ended {
                let rest = self.buf.split();
                return line_text(&rest, self.max);
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Err(e)) => return Err(Bad::Body(e)),
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buf.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }
}

/// One line as a URL: `None` when blank.
fn line_text(line: &[u8], max: usize) -> Result<Option<String>, Bad> {
    if line.len() > max {
        return Err(Bad::LongLine);
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let text = std::str::from_utf8(line).map_err(|_| Bad::NotText)?.trim();
    Ok((!text.is_empty()).then(|| text.to_string()))
}

/// Fetches `url` and returns its feed's title (`""` for a feed without one).
///
/// # Errors
///
/// Why there is no title, in a few words: a bad URL, a scheme other than
/// http/https, a network error or HTTP status, the timeout, a document that
/// is not RSS or Atom.
pub async fn fetch_title(client: &shttp::Client, url: &str, timeout: Duration) -> Outcome {
    let parsed = shttp::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
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

/// The title of an RSS 0.9x/1.0/2.0, Atom or JSON Feed document, on one
/// line, cut to [`MAX_TITLE`] bytes.
///
/// # Errors
///
/// The parser's complaint, when `document` is not a feed.
///
/// # Examples
///
/// ```
/// use shardlet_apps::feed_scraper::{parse_title, MAX_TITLE};
///
/// let rss = |title: &str| format!("<rss version=\"2.0\"><channel><title>{title}</title></channel></rss>");
/// assert_eq!(parse_title(rss("Two\n  lines").as_bytes()), Ok("Two lines".to_string()));
/// let long = parse_title(rss(&"é".repeat(1 << 20)).as_bytes()).unwrap();
/// assert!(long.len() <= MAX_TITLE + '…'.len_utf8() && long.ends_with('…'));
/// ```
pub fn parse_title(document: &[u8]) -> Outcome {
    let feed = feed_rs::parser::parse(document).map_err(|e| format!("not a feed ({e})"))?;
    let mut title = feed.title.map(|t| one_line(&t.content)).unwrap_or_default();
    if title.len() > MAX_TITLE {
        let mut end = MAX_TITLE;
        while !title.is_char_boundary(end) {
            end -= 1;
        }
        title.truncate(end);
        title.push('…');
    }
    Ok(title)
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
pub fn wants_json<B>(request: &Request<B>) -> bool {
    request.headers().get_all(header::ACCEPT).iter().any(|value| {
        String::from_utf8_lossy(value.as_bytes()).split(',').any(|range| {
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
