//! Credentials in a URL (`http://alice:secret@host/`): sent as
//! `Authorization: Basic` (as curl and reqwest do), and never shown.
//!
//! The client takes them from the request's URL only, and only when the
//! request has no `Authorization` of its own; the field then goes where any
//! `Authorization` goes (not to another origin after a redirect). The URL a
//! response names ([`ResponseExt::url`](super::ResponseExt::url)) is without
//! them; the URL an [`Error`](super::Error) names, and any URL the client
//! logs, has the password replaced by `***` (the user name is kept: it says
//! which account failed).

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use http::HeaderValue;
use percent_encoding::percent_decode_str;
use url::Url;

/// What a password is shown as.
const HIDDEN: &str = "***";

/// `Authorization: Basic` for the user name and password of `url`
/// (percent-decoded, as curl does), when it has either; marked sensitive,
/// so that HTTP/2's header compression never indexes it.
pub(crate) fn basic(url: &Url) -> Option<HeaderValue> {
    let (user, password) = (url.username(), url.password().unwrap_or(""));
    if user.is_empty() && password.is_empty() {
        return None;
    }
    let mut pair: Vec<u8> = percent_decode_str(user).collect();
    pair.push(b':');
    pair.extend(percent_decode_str(password));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `url` without its user name and password.
pub(crate) fn strip(url: &mut Url) {
    if !url.username().is_empty() || url.password().is_some() {
        // Only a URL that cannot have credentials refuses these (no host).
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
}

/// `url` (any text, parsed or not) with the password of its user info
/// replaced by `***`: what an error or a log line may show (as
/// [`Error`](super::Error)'s text does).
///
/// ```
/// use shardlet::http::redact_password;
///
/// assert_eq!(redact_password("http://alice:s3cret@host/a"), "http://alice:***@host/a");
/// assert_eq!(redact_password("http://host/a"), "http://host/a");
/// ```
pub fn redact_password(url: &str) -> Cow<'_, str> {
    redact(url)
}

pub(crate) fn redact(url: &str) -> Cow<'_, str> {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return Cow::Borrowed(url);
    };
    let rest = &url[start..];
    let mut authority = &rest[..rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len())];
    if !authority.contains('@') && Url::parse(url).is_err() {
        // Not a URL, and its password may hold a '/', '?' or '#'
        // (`http://user:pa/ss@host/`, which the parser refuses): up to the
        // last '@' (hiding too much rather than too little).
        authority = &rest[..rest.rfind('@').map_or(0, |at| at + 1)];
    }
    let Some(at) = authority.rfind('@') else {
        return Cow::Borrowed(url);
    };
    match authority[..at].find(':') {
        Some(colon) if authority[colon + 1..at] != *HIDDEN => {
            let password = start + colon + 1..start + at;
            let mut shown = String::with_capacity(url.len());
            shown.push_str(&url[..password.start]);
            shown.push_str(HIDDEN);
            shown.push_str(&url[password.end..]);
            Cow::Owned(shown)
        }
        _ => Cow::Borrowed(url),
    }
}

/// A URL for a log line: its password as `***`.
pub(crate) struct Redacted<'a>(pub(crate) &'a Url);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(self.0.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_and_users_kept() {
        for (url, shown) in [
            ("http://alice:s3cret@host/a", "http://alice:***@host/a"),
            ("http://alice:s3cret@host", "http://alice:***@host"),
            ("http://:pw@host:81/?q=a@b", "http://:***@host:81/?q=a@b"),
            ("http://alice@host/", "http://alice@host/"),
            ("http://a:b:c@d@host/x@y", "http://a:***@host/x@y"),
            ("http://host/path?u=a:b@c", "http://host/path?u=a:b@c"),
            ("http://alice:@host/", "http://alice:***@host/"),
            ("not a url", "not a url"),
            // Refused by the parser (a '/' in the password): still hidden.
            ("http://alice:pa/ss@host/x", "http://alice:***@host/x"),
            (
                "http://carol:top#secret@127.0.0.1:9/x",
                "http://carol:***@127.0.0.1:9/x",
            ),
            ("http://carol:top?secret@h:99999/x", "http://carol:***@h:99999/x"),
            // A valid URL with '@' in its path keeps it.
            ("http://host:8080/a@b", "http://host:8080/a@b"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn basic_is_percent_decoded_base64() {
        let url = Url::parse("http://alice%40corp:p%3Ass@host/").unwrap();
        let value = basic(&url).unwrap();
        // base64("alice@corp:p:ss")
        assert_eq!(value, "Basic YWxpY2VAY29ycDpwOnNz");
        assert!(value.is_sensitive());
        assert!(basic(&Url::parse("http://host/").unwrap()).is_none());
        let mut url = url;
        strip(&mut url);
        assert_eq!(url.as_str(), "http://host/");
    }
}
