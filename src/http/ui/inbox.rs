//! `GET /`: the inbox, pending requests the signed-in person may act on, then the rest.

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::error::UiError;
use super::format::{human_age, parse_time};
use super::page::{Nav, render};
use super::session::signed_in;
use crate::core::api::RequestView;
use crate::core::decide::Status;
use crate::core::duration::now_ms;
use crate::http::AppState;

struct InboxItem {
    id: String,
    environment: String,
    repository: String,
    requester: String,
    age: String,
    needs: String,
    summary: String,
    created_at: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage<'a> {
    nav: Nav,
    watch: &'a str,
    items: Vec<InboxItem>,
    others: Vec<InboxItem>,
}

fn item(v: &RequestView, now: i64) -> InboxItem {
    InboxItem {
        id: v.id.clone(),
        environment: v.context.environment.clone(),
        repository: v.context.repository.clone(),
        requester: if v.context.actor.is_empty() {
            v.opened_by.clone()
        } else {
            v.context.actor.clone()
        },
        age: parse_time(&v.created_at)
            .map(|t| human_age(now - t))
            .unwrap_or_default(),
        needs: v.needs(),
        summary: v.summary.clone(),
        created_at: v.created_at.clone(),
    }
}

pub(super) async fn inbox(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let sess = match signed_in(&s, &headers, "/").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = now_ms();
    let (mine, others): (Vec<_>, Vec<_>) = match s.engine.listing(&sess.principal(), Status::Pending, 500).await {
        Ok(v) => v.into_iter().partition(|(_, mine)| *mine),
        Err(e) => return UiError::from(e).into_response(),
    };
    // Everything else pending is shown too, for context (read-only here).
    let others: Vec<_> = others.iter().map(|(v, _)| item(v, now)).collect();
    render(&InboxPage {
        watch: "all",
        items: mine.iter().map(|(v, _)| item(v, now)).collect(),
        others,
        nav: Nav::of(&sess),
    })
}
