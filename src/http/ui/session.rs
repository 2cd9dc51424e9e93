//! Browser sessions: a random id in an HttpOnly, SameSite=Strict cookie (Secure when the
//! public URL is https); the server keeps only its SHA-256, with the user, how they signed
//! in, the expiry and the per-session anti-forgery (CSRF) token every form carries.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::UiResult;
use super::sso;
use crate::auth::Principal;
use crate::core::api::VoteMeta;
use crate::core::duration::now_ms;
use crate::http::AppState;
use crate::store::SessionRow;

pub const SESSION_COOKIE: &str = "gate_session";
/// Double-submit token of the sign-in form (there is no session yet to hold one).
pub const PRELOGIN_COOKIE: &str = "gate_prelogin";
/// Binds a single sign-on login to the browser that started it. SameSite=Lax: the
/// provider's redirect back is a cross-site navigation, which Strict cookies miss.
pub const SSO_COOKIE: &str = "gate_sso";

/// A fresh random value: 32 bytes, URL-safe base64.
pub fn random_token() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn digest(v: &str) -> String {
    hex::encode(Sha256::digest(v.as_bytes()))
}

/// Compares two secrets in constant time (for equal lengths).
pub fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value. `max_age` of 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, path: &str, same_site: &str, secure: bool, max_age: i64) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// A signed-in person, as the UI handlers see them.
#[derive(Debug, Clone)]
pub struct Session {
    pub row: SessionRow,
}

impl Session {
    pub fn user(&self) -> &str {
        &self.row.user_name
    }

    pub fn principal(&self) -> Principal {
        Principal::Approver(self.row.user_name.clone())
    }

    pub fn csrf(&self) -> &str {
        &self.row.csrf
    }

    /// True when `token` is this session's anti-forgery token.
    pub fn csrf_ok(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| same_secret(t, &self.row.csrf))
    }

    /// How a vote cast in this session reached the server.
    pub fn vote_meta(&self) -> VoteMeta {
        VoteMeta {
            via: self.row.via.clone(),
            auth_time: Some(self.row.auth_time),
            amr: self.row.amr.clone(),
            source: None,
            on_behalf_of: None,
            idp_groups: self.row.idp_groups.clone(),
            groups_seen_at: self.row.idp_groups.as_ref().map(|_| self.row.created_at),
        }
    }
}

// ----- the session of a request ------------------------------------------------------

pub(super) async fn current(s: &AppState, headers: &HeaderMap) -> UiResult<Option<Session>> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let row = s.engine.store.session(&digest(&id), now_ms()).await?;
    let row = s.engine.active_session(row).await?;
    if let Some(r) = &row {
        crate::http::extract::note_caller(&r.user_name);
    }
    Ok(row.map(|row| Session { row }))
}

/// The session, or a redirect to the sign-in page that comes back to `here`.
pub(super) async fn signed_in(s: &AppState, headers: &HeaderMap, here: &str) -> Result<Session, Response> {
    match current(s, headers).await {
        Ok(Some(sess)) => Ok(sess),
        Ok(None) => Err(Redirect::to(&format!("/login?next={}", sso::url_encode(here))).into_response()),
        Err(e) => Err(e.into_response()),
    }
}

/// Starts a session for `user` and answers with its cookie.
pub(super) async fn start_session(
    s: &AppState,
    user: String,
    can_vote: bool,
    via: &str,
    auth_time: i64,
    amr: Vec<String>,
    idp_groups: Option<Vec<String>>,
) -> UiResult<HeaderValue> {
    let now = now_ms();
    let ttl = s.engine.config().session_ttl_ms();
    let id = random_token();
    let row = SessionRow {
        id_sha256: digest(&id),
        user_name: user,
        can_vote,
        via: via.into(),
        auth_time,
        amr,
        csrf: random_token(),
        created_at: now,
        expires_at: now + ttl,
        idp_groups,
    };
    if let Err(e) = s.engine.store.purge_sessions(now).await {
        tracing::warn!(error = %e, "cannot purge expired sessions");
    }
    s.engine.store.insert_session(&row).await?;
    tracing::info!(user = %row.user_name, via, "signed in to the web UI");
    Ok(set_cookie(SESSION_COOKIE, &id, "/", "Strict", s.ui.secure, ttl / 1000))
}

/// A local path to return to after signing in; anything else becomes `/`.
pub(super) fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) && is_local_path(&percent_decoded(n)) && !n.starts_with("/login") => n.to_string(),
        _ => "/".into(),
    }
}

/// `/` and a path a browser cannot read as another site: no `//` and no backslash
/// (`/\evil` is `//evil` to a browser), and no control or whitespace character (a browser
/// drops tabs and newlines, so `/\t/evil` is `//evil`; a newline is no header value).
fn is_local_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains("//")
        && !p.contains('\\')
        && !p.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// `s` with its `%XX` escapes decoded (bytes that are no UTF-8 shown as U+FFFD), so a
/// check sees what an escaped path could turn into.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_local() {
        assert_eq!(local_next(Some("/requests/x")), "/requests/x");
        assert_eq!(local_next(Some("//evil.example")), "/");
        assert_eq!(local_next(Some("https://evil.example")), "/");
        assert_eq!(local_next(Some("/\\evil")), "/");
        assert_eq!(local_next(None), "/");
        for hostile in [
            "/\t/evil.example",
            "/%09/evil.example",
            "/\n/evil",
            "/x\r\nSet-Cookie: a=b",
            "/ /evil",
            "/a//evil",
            "/%2F/evil",
            "/%5Cevil",
            "/%0d%0aX: y",
            "/\u{0}",
            "/\u{2028}",
        ] {
            assert_eq!(local_next(Some(hostile)), "/", "{hostile:?}");
        }
        assert_eq!(local_next(Some("/requests/req_1?x=%41")), "/requests/req_1?x=%41");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; gate_session_x=2"));
        h.append(header::COOKIE, HeaderValue::from_static("gate_session=abc"));
        assert_eq!(cookie(&h, "gate_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "a").as_deref(), Some("1"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", ""));
    }

    #[test]
    fn set_cookie_attributes() {
        let v = set_cookie("gate_session", "x", "/", "Strict", true, 60);
        let v = v.to_str().unwrap();
        assert!(
            v.contains("HttpOnly") && v.contains("SameSite=Strict") && v.ends_with("Secure"),
            "{v}"
        );
    }
}
