//! `/api/v1/requests…`: open, list, read, long-wait, act on (approve, deny, cancel,
//! consume), and the record and audit events of one request.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::core::api::{CreateRequest, RequestView, VoteBody, VoteMeta};
use crate::core::decide::Status;
use crate::core::duration::now_ms;
use crate::http::AppState;
use crate::http::error::{AppError, ErrorCode, Result};
use crate::http::extract::{Caller, Json, Path, Query, json_from_slice};
use crate::service::{decode_cursor, encode_cursor};

pub(super) async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    Json(body): Json<CreateRequest>,
) -> Result<Response> {
    let (mut view, new) = s.engine.create(&who, body, now_ms()).await?;
    view.holder_token = s.engine.issue_holder(&who, &view.id, now_ms()).await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        [(header::LOCATION, format!("/api/v1/requests/{}", view.id))],
        Json(view),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    /// The `cursor` of a previous answer's `Link: <…>; rel="next"`.
    cursor: Option<String>,
}

/// The bounds of `limit` on listings.
pub(super) const LIMIT_RANGE: std::ops::RangeInclusive<i64> = 1..=5000;

/// `limit`, or the default; outside [`LIMIT_RANGE`] is a 400 naming the range, never a
/// silently shorter list.
pub(super) fn limit_of(limit: Option<i64>) -> Result<i64> {
    limit_in(limit, 500, LIMIT_RANGE)
}

/// `limit`, or `default`; outside `range` is a 400 naming the range.
pub(super) fn limit_in(limit: Option<i64>, default: i64, range: std::ops::RangeInclusive<i64>) -> Result<i64> {
    match limit {
        None => Ok(default),
        Some(n) if range.contains(&n) => Ok(n),
        Some(n) => Err(AppError::BadRequest(format!(
            "limit: {n} is out of range; use {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

/// A page of the caller's requests, oldest first. The body stays a bare array (what every
/// client already reads); when more follow, a `Link: </api/v1/requests?…&cursor=…>;
/// rel="next"` header (RFC 8288) says where.
pub(super) async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let status = match q.status.as_deref() {
        None => Status::Pending,
        Some(s) => Status::parse(s).ok_or_else(|| {
            let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            AppError::BadRequest(format!("status: `{s}` is not one of {}", all.join(", ")))
        })?,
    };
    let limit = limit_of(q.limit)?;
    let after = q.cursor.as_deref().map(|c| decode_cursor("cursor", c)).transpose()?;
    let (views, next) = s.engine.inbox(&who, status, after, limit).await?;
    let mut resp = Json(views).into_response();
    if let Some(p) = next {
        let link = format!(
            "</api/v1/requests?status={}&limit={limit}&cursor={}>; rel=\"next\"",
            status.as_str(),
            encode_cursor(&p)
        );
        if let Ok(v) = header::HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

pub(super) async fn show(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>> {
    let (row, votes) = s.engine.load_for(&who, &id).await?;
    Ok(Json(s.engine.view(&row, &votes)?))
}

#[derive(Deserialize)]
pub(super) struct WaitQuery {
    timeout: Option<u64>,
    version: Option<i64>,
}

pub(super) async fn wait(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<RequestView>> {
    let _slot = s.throttle.waits.take(who.name())?;
    // Who may read a request does not change while it waits: checked once, up front.
    s.engine.load_for(&who, &id).await?;
    let timeout = Duration::from_secs(q.timeout.unwrap_or(30)).min(s.max_wait);
    let mut stop = s.shutdown.clone();
    Ok(Json(s.engine.wait(&id, q.version, timeout, &mut stop).await?))
}

/// Bodies are optional on votes; an empty body is no reason. Refused as [`Json`] refuses
/// one: 400 for JSON that does not parse, 422 `invalid_body` for an unknown or mistyped field.
async fn optional_body(req: Request, limit: usize) -> Result<VoteBody> {
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| AppError::TooLarge("request body is larger than the server accepts".into()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(VoteBody::default());
    }
    json_from_slice(&bytes)
}

/// `POST /requests/{id}/approve|deny|cancel|consume`.
pub(super) async fn act(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path((id, verb)): Path<(String, String)>,
    req: Request,
) -> Result<Json<RequestView>> {
    let body = optional_body(req, s.body_limit).await?;
    let (reason, run) = (body.reason, body.run_id);
    // `on_behalf_of`: vote for someone whose delegation to the caller is in force.
    let meta = VoteMeta {
        on_behalf_of: body.on_behalf_of,
        ..VoteMeta::token()
    };
    let e = &s.engine;
    let act = async {
        match verb.as_str() {
            "approve" => e.vote(&who, &id, true, reason, meta, now_ms).await,
            "deny" => e.vote(&who, &id, false, reason, meta, now_ms).await,
            "cancel" => e.cancel(&who, &id, reason, now_ms).await,
            "consume" => e.consume(&who, &id, run.as_deref(), now_ms).await,
            other => Err(AppError::NotFound(format!(
                "no action `{other}`: use approve, deny, cancel or consume"
            ))),
        }
    };
    Ok(Json(s.throttle.action(who.name(), act).await?))
}

pub(super) async fn record(State(s): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> Result<Response> {
    s.engine.load_for(&who, &id).await?;
    let env = s.engine.store.record(&id).await?.ok_or_else(|| {
        AppError::Conflict(
            ErrorCode::NoRecordYet,
            format!("request {id} is still pending: records are issued on the outcome"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], env).into_response())
}

pub(super) async fn request_audit(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::core::api::AuditEvent>>> {
    s.engine.load_for(&who, &id).await?;
    let rows = s.engine.store.audit_for(&id).await?;
    Ok(Json(rows.iter().map(|r| r.to_event()).collect()))
}
