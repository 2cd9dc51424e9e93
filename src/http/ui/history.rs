//! `GET /history`: decided and open requests, filtered by repository, environment, status
//! and dates.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::UiError;
use super::page::{Nav, render};
use super::session::signed_in;
use crate::core::decide::Status;
use crate::core::duration::rfc3339;
use crate::http::AppState;
use crate::service::{decode_cursor, encode_cursor};
use crate::store::{HistoryFilter, Position};

/// This page's filters with the cursor of the next page.
fn next_link(q: &HistoryQuery, cursor: &str) -> String {
    let mut w = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("repository", &q.repository),
        ("environment", &q.environment),
        ("status", &q.status),
        ("from", &q.from),
        ("to", &q.to),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.trim().is_empty()) {
            w.append_pair(k, v);
        }
    }
    w.append_pair("after", cursor);
    format!("/history?{}", w.finish())
}

#[derive(Deserialize, Default)]
pub(super) struct HistoryQuery {
    repository: Option<String>,
    environment: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// The cursor of the "next page" link.
    after: Option<String>,
}

/// Requests per history page; the rest is a "next page" link away.
const PAGE: i64 = 200;

struct HistoryLine {
    id: String,
    created_at: String,
    status: String,
    environment: String,
    repository: String,
    requester: String,
    decided_by: String,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage<'a> {
    nav: Nav,
    watch: &'a str,
    q: HistoryQuery,
    statuses: Vec<(&'static str, bool)>,
    lines: Vec<HistoryLine>,
    problem: String,
    /// The link to the next page, if there is one.
    next: String,
}

fn day_ms(d: &str) -> Option<i64> {
    // Exactly `[+-]YYYY-MM-DD`.
    let d = d.trim();
    let ymd = d.strip_prefix(['+', '-']).unwrap_or(d);
    let shape = ymd.len() == 10
        && ymd
            .bytes()
            .enumerate()
            .all(|p| matches!(p, (4 | 7, b'-') | (0..4 | 5..7 | 8.., b'0'..=b'9')));
    let day = jiff::civil::Date::strptime("%Y-%m-%d", d).ok().filter(|_| shape)?;
    Some(day.duration_since(jiff::civil::date(1970, 1, 1)).as_millis() as i64)
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|x| x.trim().to_string()).filter(|x| !x.is_empty())
}

pub(super) async fn history(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<HistoryQuery>) -> Response {
    let sess = match signed_in(&s, &headers, "/history").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    for (name, v) in [("repository", &q.repository), ("environment", &q.environment)] {
        if let Some(m) = v.as_deref().and_then(|v| crate::core::text::control_message(v, false)) {
            return UiError::new(axum::http::StatusCode::BAD_REQUEST, format!("{name}: {m}")).into_response();
        }
    }
    let mut problem = String::new();
    let mut date = |v: &Option<String>, what: &str, plus: i64| match nonempty(v) {
        None => None,
        Some(d) => match day_ms(&d) {
            Some(ms) => Some(ms + plus),
            None => {
                problem = format!("{what}: `{d}` is not a date (YYYY-MM-DD)");
                None
            }
        },
    };
    let from = date(&q.from, "from", 0);
    let to = date(&q.to, "to", 86_400_000);
    let status = nonempty(&q.status).and_then(|x| Status::parse(&x));
    let f = HistoryFilter {
        repository: nonempty(&q.repository),
        environment: nonempty(&q.environment),
        status,
        from,
        to,
        after: None,
        // One more than shown, to know whether a next page has anything on it.
        limit: PAGE + 1,
    };
    let f = match q.after.as_deref().map(|c| decode_cursor("after", c)).transpose() {
        Ok(after) => HistoryFilter { after, ..f },
        Err(e) => return UiError::from(e).into_response(),
    };
    let mut rows = match s.engine.history_for(&sess.principal(), &f).await {
        Ok(r) => r,
        Err(e) => return UiError::from(e).into_response(),
    };
    let next = if rows.len() as i64 > PAGE {
        rows.truncate(PAGE as usize);
        let last = &rows[rows.len() - 1];
        let p = Position {
            created_at: last.created_at,
            id: last.id.clone(),
        };
        next_link(&q, &encode_cursor(&p))
    } else {
        String::new()
    };
    let mut lines = Vec::new();
    for row in rows {
        let doc = match crate::service::doc_of(&row) {
            Ok(d) => d,
            Err(e) => return UiError::from(e).into_response(),
        };
        lines.push(HistoryLine {
            id: row.id.clone(),
            created_at: rfc3339(row.created_at),
            status: row.status.to_string(),
            environment: row.environment.clone(),
            repository: row.repository.clone(),
            requester: if doc.context.actor.is_empty() {
                row.opened_by.clone()
            } else {
                doc.context.actor.clone()
            },
            decided_by: doc.decided_by.unwrap_or_default(),
        });
    }
    let statuses = Status::ALL
        .into_iter()
        .map(|x| (x.as_str(), status == Some(x)))
        .collect();
    render(&HistoryPage {
        nav: Nav::of(&sess, &s.engine),
        watch: "",
        q,
        statuses,
        lines,
        problem,
        next,
    })
}
