//! `GET /`: the inbox, pending requests the signed-in person may act on, then the rest.

use askama::Template;
use axum::extract::{Query, State};
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
use crate::service::{decode_cursor, encode_cursor};

/// Requests of one's own per inbox page; the rest is a "next page" link away.
const PAGE: i64 = 100;
/// Other people's pending requests shown for context, oldest first.
const OTHERS: i64 = 200;

#[derive(serde::Deserialize, Default)]
pub(super) struct InboxQuery {
    /// The cursor of the "next page" link.
    after: Option<String>,
}

struct InboxItem {
    id: String,
    environment: String,
    repository: String,
    requester: String,
    age: String,
    needs: String,
    summary: String,
    created_at: String,
    /// The break-glass change this review is for ("" for a change).
    review_of: String,
    /// A review past its `within`: listed first, marked.
    overdue: bool,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage<'a> {
    nav: Nav,
    watch: &'a str,
    items: Vec<InboxItem>,
    others: Vec<InboxItem>,
    /// More pending requests than the `others` shown.
    others_more: bool,
    /// The link to the next page of one's own, if there is one.
    next: String,
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
        review_of: v.links.review_of.clone().unwrap_or_default(),
        overdue: v.links.overdue,
    }
}

pub(super) async fn inbox(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<InboxQuery>) -> Response {
    let sess = match signed_in(&s, &headers, "/").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = now_ms();
    let who = sess.principal();
    let after = match q.after.as_deref().map(|c| decode_cursor("after", c)).transpose() {
        Ok(a) => a,
        Err(e) => return UiError::from(e).into_response(),
    };
    let first_page = after.is_none();
    let (mine, next) = match s.engine.inbox(&who, Status::Pending, after, PAGE).await {
        Ok(x) => x,
        Err(e) => return UiError::from(e).into_response(),
    };
    // Everything else pending is shown too, for context (read-only here), on the first page.
    let mut others = Vec::new();
    let mut others_more = false;
    if first_page {
        match s.engine.listing(&who, Status::Pending, OTHERS).await {
            Ok(v) => {
                others_more = v.len() as i64 >= OTHERS;
                others = v.iter().filter(|(_, m)| !*m).map(|(v, _)| item(v, now)).collect();
            }
            Err(e) => return UiError::from(e).into_response(),
        }
    }
    let mut items: Vec<InboxItem> = mine.iter().map(|v| item(v, now)).collect();
    // Overdue break-glass reviews first: an unreviewed change outranks a waiting one.
    items.sort_by_key(|i| !i.overdue);
    render(&InboxPage {
        watch: "all",
        items,
        others,
        others_more,
        next: next
            .map(|p| format!("/?after={}", encode_cursor(&p)))
            .unwrap_or_default(),
        nav: Nav::of(&sess, &s.engine),
    })
}
