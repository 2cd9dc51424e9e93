//! `GET /delegations`: the delegations the signed-in person gave or received (all, for
//! an admin or auditor), a form to create one and a button to revoke each;
//! `POST /delegations` and `POST /delegations/{id}/revoke`.

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error::{UiError, UiResult};
use super::page::{Nav, render};
use super::session::{Session, current, signed_in};
use crate::auth::config::Role;
use crate::core::api::{CreateDelegation, DelegationView};
use crate::core::duration::now_ms;
use crate::http::AppState;

#[derive(Template)]
#[template(path = "delegations.html")]
struct DelegationsPage<'a> {
    nav: Nav,
    watch: &'a str,
    lines: Vec<Line>,
    problem: String,
}

struct Line {
    d: DelegationView,
    /// Whether the signed-in person may revoke it now.
    revocable: bool,
}

#[derive(Deserialize)]
pub(super) struct CreateForm {
    csrf: Option<String>,
    to: Option<String>,
    until: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RevokeForm {
    csrf: Option<String>,
}

pub(super) async fn page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let sess = match signed_in(&s, &headers, "/delegations").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match list_page(&s, &sess, String::new()).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn list_page(s: &AppState, sess: &Session, problem: String) -> UiResult<Response> {
    let who = sess.principal();
    let admin = s.engine.has_role(&who, Role::Admin);
    let lines = s
        .engine
        .delegations(&who, now_ms())
        .await?
        .into_iter()
        .map(|d| Line {
            revocable: d.revoked_at.is_none() && (admin || d.delegator == sess.user()),
            d,
        })
        .collect();
    let status = if problem.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = DelegationsPage {
        nav: Nav::of(sess, &s.engine),
        watch: "",
        lines,
        problem,
    };
    Ok((status, render(&page)).into_response())
}

async fn session_for_post(s: &AppState, headers: &HeaderMap, csrf: Option<&str>) -> UiResult<Session> {
    let Some(sess) = current(s, headers).await? else {
        return Err(UiError::forbidden("sign in first: this form has no valid session"));
    };
    if !sess.csrf_ok(csrf) {
        return Err(UiError::forbidden(
            "this form has no valid anti-forgery token: reload the page and try again",
        ));
    }
    if !sess.row.can_vote {
        return Err(UiError::forbidden("a read-only sign-in cannot delegate"));
    }
    Ok(sess)
}

/// A `datetime-local` value (`2026-12-24T18:00`, read as UTC) or RFC 3339 as typed.
fn until_of(v: &str) -> String {
    let v = v.trim();
    if v.len() == 16 && v.as_bytes().get(10) == Some(&b'T') {
        format!("{v}:00Z")
    } else {
        v.to_string()
    }
}

pub(super) async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CreateForm>, FormRejection>,
) -> UiResult<Response> {
    let form = form
        .map_err(|e| UiError::new(StatusCode::BAD_REQUEST, e.body_text()))?
        .0;
    let sess = session_for_post(&s, &headers, form.csrf.as_deref()).await?;
    let who = sess.principal();
    let body = CreateDelegation {
        to: form.to.unwrap_or_default(),
        from: None,
        until: until_of(&form.until.unwrap_or_default()),
        reason: form.reason.unwrap_or_default(),
    };
    let act = s.engine.delegate(&who, body, now_ms());
    match s.throttle.action(who.name(), act).await {
        Ok(_) => Ok(Redirect::to("/delegations").into_response()),
        Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY => list_page(&s, &sess, e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> UiResult<Response> {
    let csrf = form.ok().and_then(|f| f.0.csrf);
    let sess = session_for_post(&s, &headers, csrf.as_deref()).await?;
    let who = sess.principal();
    let act = s.engine.revoke_delegation(&who, &id, now_ms());
    s.throttle.action(who.name(), act).await?;
    Ok(Redirect::to("/delegations").into_response())
}
