//! TEMPORARY: a minimal `GET` over [`shardlet::net::connect`], standing in
//! for `shardlet::http::Client` (issue 5) until it is merged; the scraper
//! only needs `fetch(url) -> Result<body, reason>`, so swapping the body of
//! [`fetch`] for the client's `get` is the whole change. It speaks plain
//! HTTP/1.1 with `Connection: close` (no TLS: https URLs are an error line
//! for now, no redirects, no connection reuse).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use shardlet::net;

/// How long the TCP connect may take (the whole fetch has its own timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Room for the response head on top of the body limit.
const MAX_HEAD: usize = 64 << 10;

/// The body of a `200` answer to `GET url`.
///
/// # Errors
///
/// A short reason: the name does not resolve, the connection fails, a
/// status other than 2xx, a malformed or oversized answer.
pub async fn fetch(url: &url::Url, max_bytes: usize) -> Result<Vec<u8>, String> {
    if url.scheme() != "http" {
        return Err("https is not supported yet (waiting for shardlet::http::Client)".into());
    }
    let host = url.host_str().ok_or("no host in the URL")?.to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = resolve(&host, port).await?;
    let mut stream = net::connect(addr, CONNECT_TIMEOUT)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: shardlet-feed-scraper\r\n\
         Accept: application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.8\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    (&mut stream)
        .take((MAX_HEAD + max_bytes + 1) as u64)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    parse_answer(&answer, max_bytes)
}

/// A literal IP address as is; a name through the blocking pool (the
/// system resolver blocks, and a shard must not).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse() {
        return Ok(SocketAddr::new(ip, port));
    }
    let name = host.to_string();
    shardlet::blocking(move || (name.as_str(), port).to_socket_addrs().map(|mut a| a.next()))
        .await
        .map_err(|e| format!("resolve {host}: {e}"))?
        .map_err(|e| format!("resolve {host}: {e}"))?
        .ok_or_else(|| format!("resolve {host}: no address"))
}

/// The body of a whole `Connection: close` answer.
fn parse_answer(answer: &[u8], max_bytes: usize) -> Result<Vec<u8>, String> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut fields);
    let head = match response.parse(answer) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("connection closed inside the response head".into()),
        Err(e) => return Err(format!("malformed response ({e})")),
    };
    let status = response.code.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status} {}", response.reason.unwrap_or_default()));
    }
    let field = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let rest = &answer[head..];
    let body = if field("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = field("content-length") {
        let length: usize = length.trim().parse().map_err(|_| "bad Content-Length")?;
        if length > max_bytes {
            return Err(format!("feed larger than {max_bytes} bytes"));
        }
        rest.get(..length)
            .ok_or("connection closed inside the body")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    if body.len() > max_bytes {
        return Err(format!("feed larger than {max_bytes} bytes"));
    }
    Ok(body)
}

/// Decodes a whole chunked body held in memory.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("cut chunked body")?;
        let line = std::str::from_utf8(&rest[..end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("cut chunked body")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("cut chunked body")?;
    }
}
