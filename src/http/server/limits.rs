//! [`Limits`]: how much a client may send, and how slowly, before the
//! server answers with an error status and closes.

use std::time::Duration;

/// Size limits and timeouts of an [`http::Server`](crate::http::Server).
///
/// Each limit has the answer RFC 9110 gives it; every one of them but the
/// idle timeout closes the connection after answering (on HTTP/2, a 4xx
/// ends only its request's stream: the connection goes on):
///
/// | limit | exceeded | answer |
/// |---|---|---|
/// | [`max_request_line`](Limits::with_max_request_line) | request line (method, URI, version) too long | `414 URI Too Long` |
/// | [`max_head`](Limits::with_max_head), [`max_headers`](Limits::with_max_headers) | header section too large, too many fields | `431 Request Header Fields Too Large` |
/// | [`max_body`](Limits::with_max_body) | `Content-Length` too large (at once), or a streamed body past it (while the handler reads) | `413 Content Too Large` |
/// | [`header_timeout`](Limits::with_header_timeout) | request head not complete in time, from its first byte (from the accept, for a connection's first request; slowloris) | `408 Request Timeout` |
/// | [`body_timeout`](Limits::with_body_timeout) | the handler waited this long in all for request body bytes (its own work between reads does not count) | `408 Request Timeout` |
/// | [`idle_timeout`](Limits::with_idle_timeout) | no new request on a keep-alive connection | closed, no answer |
/// | [`send_timeout`](Limits::with_send_timeout) | the client reads none of an answer for this long (a write stays blocked), or on HTTP/2 takes less than 16 KiB of its held answers in that time (answers waiting on the answer budget count as held) | closed, the answer cut short |
/// | [`answer_budget`](Limits::with_answer_budget) | a shard's HTTP/2 connections hold this many answer bytes their clients have not taken | answers wait (back-pressure) while their connection holds 64 KiB or more |
///
/// Besides these, a request that breaks HTTP/1.1 is answered 400 (by hyper,
/// or here: no `Host` or one that is not `host[:port]`, a
/// `Transfer-Encoding` without `chunked` last, `chunked` applied twice, or a
/// body that is not valid chunked coding), a coding before a final
/// `chunked` (`gzip, chunked`) 501, an `Expect` other than `100-continue`
/// 417.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shardlet::http::Limits;
///
/// let limits = Limits::default()
///     .with_max_body(64 << 10)
///     .with_header_timeout(Duration::from_secs(5));
/// assert_eq!(limits.max_body(), 65_536);
/// assert_eq!(limits.max_request_line(), 8 << 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    max_request_line: usize,
    max_head: usize,
    max_headers: usize,
    max_body: u64,
    header_timeout: Duration,
    body_timeout: Duration,
    idle_timeout: Duration,
    send_timeout: Duration,
    max_requests: Option<u64>,
    answer_budget: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 << 10,
            max_head: 16 << 10,
            max_headers: 64,
            max_body: 1 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_requests: None,
            answer_budget: 32 << 20,
        }
    }
}

impl Limits {
    /// Sets the longest request line (`GET /path HTTP/1.1`) in bytes.
    /// Default: 8 KiB. (A request line that alone passes
    /// [`max_head`](Limits::with_max_head) is answered 431.)
    pub fn with_max_request_line(mut self, bytes: usize) -> Self {
        self.max_request_line = bytes.max(16);
        self
    }

    /// Sets the largest request head (request line and header fields) in
    /// bytes. Default: 16 KiB.
    pub fn with_max_head(mut self, bytes: usize) -> Self {
        self.max_head = bytes.max(64);
        self
    }

    /// Sets the most header fields in one request. Default: 64.
    pub fn with_max_headers(mut self, count: usize) -> Self {
        self.max_headers = count.max(1);
        self
    }

    /// Sets the largest request body in bytes, sized or streamed (the
    /// chunked framing itself not counted). Default: 1 MiB.
    pub fn with_max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets how long a client has to send a whole request head, from its
    /// first byte (from the accept, for a connection's first request).
    /// Default: 10 s.
    pub fn with_header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets how long, in all, the handler may wait for the client's request
    /// body bytes: the clock runs while a read of the body finds nothing
    /// yet, and stands still while the handler works between reads (a slot
    /// wait, a fetch). A body trickled in small pieces still runs out of
    /// it: the waits add up. Default: 30 s.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Sets how long a keep-alive connection may wait for its next request
    /// before the server closes it. Default: 60 s.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets how long a write of an answer may stay blocked (the client
    /// reads nothing) before the server closes the connection. It restarts
    /// with every write that goes through, so a slow reader gets its whole
    /// answer however long that takes (nginx's `send_timeout`); while an
    /// answer is being sent the connection is not idle. Default: 60 s.
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// Sets how many requests one connection may make before the server
    /// closes it (answering the last with `Connection: close`; on HTTP/2,
    /// sending a GOAWAY and refusing later streams with `REFUSED_STREAM`).
    /// Default: no limit.
    pub fn with_max_requests(mut self, requests: u64) -> Self {
        self.max_requests = Some(requests.max(1));
        self
    }

    /// Sets how many bytes of answers each shard's HTTP/2 connections may
    /// hold, all together, ready for clients that do not take them yet
    /// (hyper buffers up to 64 KiB of each stream's answer ahead of the
    /// socket, for as much flow-control window as the client grants). Once
    /// they hold this much, an answer's next frame waits (no error, nothing
    /// dropped) while its connection holds 64 KiB or more, until the
    /// shard's sum is down to three quarters of this; a connection under
    /// 64 KiB always goes on, so clients that read keep getting their
    /// answers. Against clients that hold back, a shard then keeps at most
    /// this, plus 64 KiB and a frame per connection. An answer that waits
    /// on the budget counts toward `send_timeout`'s progress rule: a
    /// connection whose answers make no progress for that long is closed.
    /// HTTP/1 needs no such budget (hyper takes an HTTP/1 answer's next
    /// piece only once the last went to the socket). Default: 32 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let limits = shardlet::http::Limits::default().with_answer_budget(8 << 20);
    /// assert_eq!(limits.answer_budget(), 8 << 20);
    /// ```
    pub fn with_answer_budget(mut self, bytes: u64) -> Self {
        self.answer_budget = bytes;
        self
    }

    /// A shard's budget of answer bytes held for HTTP/2 clients.
    pub fn answer_budget(&self) -> u64 {
        self.answer_budget
    }

    /// The most requests per connection, if limited.
    pub fn max_requests(&self) -> Option<u64> {
        self.max_requests
    }

    /// The longest request line.
    pub fn max_request_line(&self) -> usize {
        self.max_request_line
    }

    /// The largest request head.
    pub fn max_head(&self) -> usize {
        self.max_head
    }

    /// The most header fields.
    pub fn max_headers(&self) -> usize {
        self.max_headers
    }

    /// The largest request body.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    /// The time to send a request head.
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout
    }

    /// The time to send a request body.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// The time a keep-alive connection may wait for its next request.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The time a write of an answer may stay blocked.
    pub fn send_timeout(&self) -> Duration {
        self.send_timeout
    }
}
