//! `GET /api/v1/notifications`: the notification outbox, for operators and tests.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::Principal;
use crate::core::api::{NotificationList, NotificationView};
use crate::core::duration::rfc3339;
use crate::http::AppState;
use crate::http::error::{AppError, ErrorCode, Result};
use crate::http::extract::{Caller, Json, Query};
use crate::service::{decode_cursor, encode_cursor};
use crate::store::{NotificationRow, Position};

#[derive(Deserialize)]
pub(super) struct ListQuery {
    /// Only this request's notifications (oldest first); without it, the newest first.
    request: Option<String>,
    limit: Option<i64>,
    /// The `cursor` of a previous answer's `Link: <…>; rel="next"`.
    cursor: Option<String>,
    /// Long-poll: with `version`, answer when the outbox changed from it, or after this
    /// many seconds (bounded by the server's `max_wait_secs`).
    wait: Option<u64>,
    version: Option<u64>,
}

/// People only: rows name recipients' addresses. One request's rows (`request=`) for
/// those who may read it (404 otherwise, as for an unknown id); the whole outbox for
/// auditors and admins.
pub(super) async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    if !matches!(who, Principal::Approver(_)) {
        return Err(AppError::Forbidden(
            ErrorCode::ApproversOnly,
            "the notification outbox is visible to approvers only".into(),
        ));
    }
    let limit = super::requests::limit_of(q.limit)?;
    // No request id holds a control character (PostgreSQL's text cannot even hold NUL).
    if let Some(m) = q
        .request
        .as_deref()
        .and_then(|r| crate::core::text::control_message(r, false))
    {
        return Err(AppError::Invalid(ErrorCode::InvalidField, format!("request: {m}")));
    }
    // One request's rows for whoever may read it (`request=` empty: the rows of no
    // request, such as checkpoints); the whole outbox names every request.
    match q.request.as_deref() {
        Some("") => {}
        Some(id) => drop(s.engine.load_for(&who, id).await?),
        None => s
            .engine
            .require_reads_everything(&who, "the whole notification outbox (without `request=`)")?,
    }
    let hub = &s.engine.notify;
    let mut rx = hub.subscribe();
    if let (Some(wait), Some(v)) = (q.wait, q.version)
        && *rx.borrow_and_update() == v
    {
        let mut stop = s.shutdown.clone();
        let limit = Duration::from_secs(wait).min(s.max_wait);
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep(limit) => {}
            _ = stop.changed() => {}
        }
    }
    // Read the version before the rows, so a change between the two is never missed.
    let version = hub.version();
    let after = q.cursor.as_deref().map(|c| decode_cursor("cursor", c)).transpose()?;
    // One more than asked, to know whether a next page has anything on it.
    let mut rows = s
        .engine
        .store
        .notifications(q.request.as_deref(), after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut resp = Json(NotificationList {
        version,
        notifications: rows.iter().map(view).collect(),
    })
    .into_response();
    if let (true, Some(last)) = (more, rows.last()) {
        let mut next = format!("/api/v1/notifications?limit={limit}&cursor=");
        next.push_str(&encode_cursor(&Position {
            created_at: last.created_at,
            id: last.key.clone(),
        }));
        if let Some(r) = &q.request {
            next.push_str("&request=");
            next.extend(url::form_urlencoded::byte_serialize(r.as_bytes()));
        }
        if let Ok(v) = header::HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

fn view(r: &NotificationRow) -> NotificationView {
    let state = if r.delivered_at.is_some() {
        "delivered"
    } else if r.gave_up_at.is_some() {
        "failed"
    } else {
        "pending"
    };
    NotificationView {
        id: r.id.clone(),
        delivery: r.key.clone(),
        request_id: r.request_id.clone(),
        event: r.event.clone(),
        channel: r.channel.clone(),
        recipient: r.recipient.clone(),
        state: state.into(),
        attempts: r.attempts,
        created_at: rfc3339(r.created_at),
        next_attempt_at: (state == "pending").then(|| rfc3339(r.next_attempt_at)),
        delivered_at: r.delivered_at.map(rfc3339),
        gave_up_at: r.gave_up_at.map(rfc3339),
        last_error: r.last_error.clone(),
        payload: serde_json::from_str(&r.payload).unwrap_or(serde_json::Value::Null),
    }
}
