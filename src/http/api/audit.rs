//! What lets anyone check the gate's word: the public keys records are signed with
//! (`/api/v1/keys`, no token), the audit chain's check (`/api/v1/audit/verify`) and the
//! audit log as JSON lines (`/api/v1/audit/export`). The last two are for auditors and
//! admins: the log names every request.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::core::api::{AuditVerify, Keys};
use crate::http::AppState;
use crate::http::error::Result;
use crate::http::extract::{Caller, Json, Query};

pub(super) async fn keys(State(s): State<AppState>) -> Json<Keys> {
    Json(Keys {
        keys: s.engine.published_keys.iter().map(|k| k.view()).collect(),
    })
}

pub(super) async fn audit_verify(State(s): State<AppState>, Caller(who): Caller) -> Result<Json<AuditVerify>> {
    s.engine.require_reads_everything(&who, "the audit log's check")?;
    let check = s.engine.store.verify_chain(s.engine.event_keys()).await?;
    let (requests, tampered) = s.engine.scan_requests().await?;
    Ok(Json(AuditVerify {
        ok: check.broken.is_none() && tampered.is_empty(),
        events: check.count(),
        head: Some(check.head().to_string()),
        first_broken: check.broken.as_ref().map(|b| b.0),
        problem: check.broken.map(|b| b.1),
        requests,
        tampered: tampered
            .into_iter()
            .map(|(id, problem)| crate::core::api::TamperedRequest { id, problem })
            .collect(),
    }))
}

#[derive(Deserialize)]
pub(super) struct ExportQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// The bounds of `limit` on the export (default 10 000).
const EXPORT_LIMIT_RANGE: std::ops::RangeInclusive<i64> = 1..=100_000;

/// JSON lines, one event each, from `after` (exclusive); `limit` outside
/// [`EXPORT_LIMIT_RANGE`] is a 400 naming the range.
pub(super) async fn audit_export(
    State(s): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<ExportQuery>,
) -> Result<Response> {
    let limit = super::requests::limit_in(q.limit, 10_000, EXPORT_LIMIT_RANGE)?;
    s.engine.require_reads_everything(&who, "the audit log's export")?;
    let rows = s.engine.store.audit_page(q.after.unwrap_or(0), limit).await?;
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(&r.to_event()).unwrap_or_default());
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}
