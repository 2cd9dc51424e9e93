//! `GET /audit`: the audit chain's check and the key records are signed with; for
//! auditors and admins (403 for others, as `/api/v1/audit/*`).

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::error::UiError;
use super::page::{Nav, render};
use super::session::signed_in;
use crate::http::AppState;

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage<'a> {
    nav: Nav,
    watch: &'a str,
    ok: bool,
    events: i64,
    head: String,
    broken_at: String,
    problem: String,
    key: crate::core::api::PublicKey,
}

pub(super) async fn audit(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let sess = match signed_in(&s, &headers, "/audit").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = s.engine.require_reads_everything(&sess.principal(), "the audit page") {
        return UiError::from(e).into_response();
    }
    let check = match s.engine.store.verify_chain(s.engine.event_keys()).await {
        Ok(c) => c,
        Err(e) => return UiError::from(e).into_response(),
    };
    render(&AuditPage {
        nav: Nav::of(&sess, &s.engine),
        watch: "",
        ok: check.broken.is_none(),
        events: check.count(),
        head: check.head().to_string(),
        broken_at: check.broken.as_ref().map(|b| b.0.to_string()).unwrap_or_default(),
        problem: check.broken.as_ref().map(|b| b.1.clone()).unwrap_or_default(),
        key: s.engine.keys.public(),
    })
}
