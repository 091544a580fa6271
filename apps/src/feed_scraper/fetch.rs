//! The scraper's one outgoing call: `fetch(url) -> Result<body, reason>`,
//! through the shard's green [`http::Client`] (keep-alive per host, DNS off
//! the shard, https, redirects, size and time limits).

use std::time::Duration;

use shardlet::http;

/// A client for the current shard: bodies up to `max_bytes`, each request
/// done within `timeout`.
pub fn client(max_bytes: usize, timeout: Duration) -> http::Client {
    http::Client::builder()
        .max_body(max_bytes as u64)
        .request_timeout(timeout)
        .user_agent("shardlet-feed-scraper")
        .build()
        .expect("valid client settings")
}

/// The body of a 2xx answer to `GET url`.
///
/// # Errors
///
/// A short reason: the client's error (DNS, connect, TLS, timeout, too
/// large, malformed answer) without the URL, or the status.
pub async fn fetch(client: &http::Client, url: &http::Url) -> Result<bytes::Bytes, String> {
    let response = client.get(url.as_str()).await.map_err(|e| e.kind().to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        ));
    }
    Ok(response.into_body())
}
