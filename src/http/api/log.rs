//! The transparency log, for anyone (auditors, witnesses, a SIEM): the latest signed
//! checkpoint with its witness cosignatures, the log's verifier key, proofs, and the
//! cosignature drop-off. Only a leaf's bytes (the event itself) need a token, an
//! auditor's or an admin's (the events name every request).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::core::log::tree;
use crate::http::AppState;
use crate::http::error::{AppError, Result};
use crate::http::extract::{Caller, Json, Path, Query, RawBody};

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `GET /api/v1/log/checkpoint`: the signed note, as C2SP specifies it.
pub(super) async fn checkpoint(State(s): State<AppState>) -> Result<Response> {
    if let Some((_, note)) = s.engine.latest_checkpoint().await? {
        return Ok(text(note));
    }
    // A new log has signed nothing yet: sign its first checkpoint now.
    let (_, note) = s.engine.checkpoint_now(crate::core::duration::now_ms()).await?;
    Ok(text(note))
}

/// `GET /api/v1/log/key`: the verifier key, `origin+hexid+base64key`.
pub(super) async fn key(State(s): State<AppState>) -> Response {
    text(format!("{}\n", s.engine.log.vkey()))
}

/// `GET /api/v1/log/leaves/{index}`: the bytes the leaf hash is over.
pub(super) async fn leaf(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(index): Path<String>,
) -> Result<Response> {
    let index: u64 = index
        .parse()
        .map_err(|_| AppError::BadRequest(format!("leaf index `{index}` is not a number")))?;
    s.engine
        .require_reads_everything(&who, "a leaf of the log (an audit event)")?;
    let bytes = s
        .engine
        .store
        .log_leaf(index)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("the log has no leaf {index}")))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[derive(Deserialize)]
pub(super) struct InclusionQuery {
    index: Option<u64>,
    size: Option<u64>,
}

#[derive(Serialize)]
pub(super) struct Inclusion {
    leaf_index: u64,
    tree_size: u64,
    hashes: Vec<String>,
}

/// `GET /api/v1/log/proof/inclusion?index=I&size=N`.
pub(super) async fn inclusion(State(s): State<AppState>, Query(q): Query<InclusionQuery>) -> Result<Json<Inclusion>> {
    let (Some(index), Some(size)) = (q.index, q.size) else {
        return Err(AppError::BadRequest("give `index` and `size`".into()));
    };
    let have = s.engine.store.log_size().await?;
    if size > have || index >= size {
        return Err(AppError::BadRequest(format!(
            "need index < size <= {have} (the log's size), got index {index} and size {size}"
        )));
    }
    let hashes = s.engine.store.log_inclusion(size, index).await?;
    Ok(Json(Inclusion {
        leaf_index: index,
        tree_size: size,
        hashes: hashes.iter().map(tree::b64).collect(),
    }))
}

#[derive(Deserialize)]
pub(super) struct ConsistencyQuery {
    from: Option<u64>,
    to: Option<u64>,
}

#[derive(Serialize)]
pub(super) struct Consistency {
    hashes: Vec<String>,
}

/// `GET /api/v1/log/proof/consistency?from=M&to=N`.
pub(super) async fn consistency(
    State(s): State<AppState>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<Consistency>> {
    let (Some(from), Some(to)) = (q.from, q.to) else {
        return Err(AppError::BadRequest("give `from` and `to`".into()));
    };
    let have = s.engine.store.log_size().await?;
    if from == 0 || from > to || to > have {
        return Err(AppError::BadRequest(format!(
            "need 1 <= from <= to <= {have} (the log's size), got from {from} and to {to}"
        )));
    }
    let hashes = s.engine.store.log_consistency(from, to).await?;
    Ok(Json(Consistency {
        hashes: hashes.iter().map(tree::b64).collect(),
    }))
}

#[derive(Serialize)]
pub(super) struct Cosigned {
    witnesses: Vec<String>,
}

/// `POST /api/v1/log/cosign`: a checkpoint of ours with a witness's cosignature line.
pub(super) async fn cosign(State(s): State<AppState>, RawBody(body): RawBody) -> Result<Json<Cosigned>> {
    let body = std::str::from_utf8(&body).map_err(|_| AppError::BadRequest("the body is not UTF-8 text".into()))?;
    let witnesses = s.engine.cosign(body, crate::core::duration::now_ms()).await?;
    Ok(Json(Cosigned { witnesses }))
}
