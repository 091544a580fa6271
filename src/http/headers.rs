//! [`Headers`]: the header fields of a request or response, in the order
//! received, looked up by case-insensitive name.

use std::fmt;

/// Header fields in the order they were received; names compare
/// case-insensitively, values are kept as raw bytes.
///
/// A small list rather than a map: a message has a handful of fields, and a
/// scan is faster than hashing for that many (and keeps repeated fields in
/// order).
///
/// # Examples
///
/// ```
/// use shardlet::http::Headers;
///
/// let mut headers = Headers::new();
/// headers.push("Content-Type", "text/html");
/// headers.push("Connection", "keep-alive, Upgrade");
/// assert_eq!(headers.get("content-type"), Some("text/html"));
/// assert!(headers.has_token("connection", "upgrade"));
/// assert_eq!(headers.len(), 2);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// No fields.
    pub fn new() -> Self {
        Headers::default()
    }

    /// The fields httparse parsed, copied out of the read buffer.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut fields = [httparse::EMPTY_HEADER; 4];
    /// let mut response = httparse::Response::new(&mut fields);
    /// response.parse(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
    /// let headers = shardlet::http::Headers::from_httparse(response.headers);
    /// assert_eq!(headers.get("content-length"), Some("0"));
    /// ```
    pub fn from_httparse(fields: &[httparse::Header<'_>]) -> Self {
        Headers {
            fields: fields
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_vec()))
                .collect(),
        }
    }

    /// Appends a field (an existing field of the same name stays).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.fields.push((name.into(), value.into()));
    }

    /// The first value of `name` as text; `None` when absent or not UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut headers = shardlet::http::Headers::new();
    /// headers.push("Set-Cookie", "a=1");
    /// headers.push("set-cookie", "b=2");
    /// let all: Vec<&[u8]> = headers.get_all("SET-COOKIE").collect();
    /// assert_eq!(all, [&b"a=1"[..], &b"b=2"[..]]);
    /// ```
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether a field called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// Whether `token` is one of the comma-separated elements of any `name`
    /// field, ignoring case and whitespace (`Connection: close`,
    /// `Transfer-Encoding: gzip, chunked`).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The comma-separated elements of every `name` field, trimmed, empty
    /// ones skipped.
    pub fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
    }

    /// Every field as `(name, value)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.fields.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_trim_and_ignore_case() {
        let mut h = Headers::new();
        h.push("Transfer-Encoding", "gzip , Chunked");
        h.push("transfer-encoding", " ,identity");
        let t: Vec<&[u8]> = h.tokens("TRANSFER-ENCODING").collect();
        assert_eq!(t, [&b"gzip"[..], b"Chunked", b"identity"]);
        assert!(h.has_token("transfer-encoding", "chunked"));
        assert!(!h.has_token("transfer-encoding", "deflate"));
    }

    #[test]
    fn non_utf8_values_are_bytes_only() {
        let mut h = Headers::new();
        h.push("X", vec![0xff, 0xfe]);
        assert_eq!(h.get("x"), None);
        assert_eq!(h.get_bytes("x"), Some(&[0xff, 0xfe][..]));
    }
}
