//! URL checks shared by every section of the configuration that names an endpoint.

/// Why [`check_url`] refused a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}` must be https:// (http:// only on the loopback)")]
    HttpOffLoopback(String),
    #[error("`{0}` must be an https:// URL")]
    NotHttps(String),
}

/// An issuer or JWKS URL: https, or http on the loopback only (tests, local issuers).
/// Percent-encodes everything but RFC 3986's unreserved characters (so `/` too): one
/// path segment, or one form value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn check_url(u: &str) -> Result<(), UrlError> {
    if let Some(rest) = u.strip_prefix("https://") {
        if rest.is_empty() || rest.starts_with('/') {
            return Err(UrlError::NoHost(u.into()));
        }
        return Ok(());
    }
    if let Some(rest) = u.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once(':').map_or(
            host,
            |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host }
            },
        );
        if matches!(host, "localhost" | "[::1]") || host.starts_with("127.") {
            return Ok(());
        }
        return Err(UrlError::HttpOffLoopback(u.into()));
    }
    Err(UrlError::NotHttps(u.into()))
}
