//! `/scim/v2/Groups`: groups and their members, as the identity provider writes them. A
//! group's `displayName` is unique caseless and is what `{ scim_group: NAME }` names in
//! the policy; `members` are users of `/Users` (by `value`, their id), kept as rows.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{Refusal, ScimClient, ScimResult, base, body, check_if_match, etag, list_query, resource};
use crate::core::duration::{now_ms, rfc3339};
use crate::core::scim::filter::get_ci;
use crate::core::scim::patch::{self, PatchRequest};
use crate::core::scim::{GROUP_SCHEMA, ScimError};
use crate::http::AppState;
use crate::service::directory::group_key;
use crate::store::{ScimGroupRow, StoreError};

/// What the server sets. `members` stay in the stored document as the client wrote them
/// (`display`, `type`, `$ref` echoed back), with the membership rows deciding who is in.
const READ_ONLY: [&str; 3] = ["id", "meta", "schemas"];

/// Checks a group as written: its row, and its members' user ids.
async fn row_of(
    s: &AppState,
    v: &Value,
    id: &str,
    version: i64,
    created_at: i64,
) -> ScimResult<(ScimGroupRow, Vec<String>)> {
    let display_name = match get_ci(v, "displayName") {
        Some(Value::String(n)) if !n.trim().is_empty() && !n.chars().any(char::is_control) => n.clone(),
        Some(_) => return Err(ScimError::bad("invalidValue", "`displayName` must be a non-empty string").into()),
        None => return Err(ScimError::bad("invalidValue", "`displayName` is required").into()),
    };
    let external_id = match get_ci(v, "externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(x)) => Some(x.clone()),
        Some(_) => return Err(ScimError::bad("invalidValue", "`externalId` must be a string").into()),
    };
    let listed = match get_ci(v, "members") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ScimError::bad("invalidValue", "`members` must be a list").into()),
    };
    let mut members: Vec<String> = Vec::new();
    let mut written: Vec<Value> = Vec::new();
    for m in &listed {
        let Some(Value::String(uid)) = get_ci(m, "value") else {
            return Err(ScimError::bad("invalidValue", "each member needs a `value`: a user's id").into());
        };
        if get_ci(m, "type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("group"))
        {
            return Err(ScimError::bad("invalidValue", "groups in groups are not supported: list the users").into());
        }
        if s.engine.store.scim_user(uid).await?.is_none() {
            return Err(ScimError::bad(
                "invalidValue",
                format!("member `{}` is no user here", uid.escape_debug()),
            )
            .into());
        }
        if !members.contains(uid) {
            members.push(uid.clone());
            written.push(m.clone());
        }
    }
    let mut doc = v.as_object().cloned().unwrap_or_default();
    doc.retain(|k, _| !READ_ONLY.iter().any(|r| r.eq_ignore_ascii_case(k)) && !k.eq_ignore_ascii_case("members"));
    doc.insert("members".into(), Value::Array(written));
    let row = ScimGroupRow {
        id: id.to_string(),
        name_key: group_key(&display_name),
        display_name,
        external_id,
        doc: Value::Object(doc).to_string(),
        version,
        created_at,
        updated_at: now_ms(),
    };
    Ok((row, members))
}

async fn render(s: &AppState, g: &ScimGroupRow) -> ScimResult<Value> {
    let mut v: Map<String, Value> = serde_json::from_str(&g.doc).unwrap_or_default();
    let base = base(s);
    let live: Vec<String> = s
        .engine
        .store
        .scim_members(&g.id)
        .await?
        .into_iter()
        .map(|u| u.id)
        .collect();
    v.insert("schemas".into(), json!([GROUP_SCHEMA]));
    v.insert("id".into(), json!(g.id));
    // As written, less the users deleted since.
    let members: Vec<Value> = match v.remove("members") {
        Some(Value::Array(ms)) => ms
            .into_iter()
            .filter(|m| m["value"].as_str().is_some_and(|id| live.iter().any(|l| l == id)))
            .collect(),
        _ => vec![],
    };
    v.insert("members".into(), Value::Array(members));
    v.insert(
        "meta".into(),
        json!({"resourceType": "Group", "created": rfc3339(g.created_at), "lastModified": rfc3339(g.updated_at),
            "location": format!("{base}/Groups/{}", g.id), "version": etag(g.version)}),
    );
    Ok(Value::Object(v))
}

async fn load(s: &AppState, id: &str) -> ScimResult<ScimGroupRow> {
    s.engine
        .store
        .scim_group(id)
        .await?
        .ok_or_else(|| Refusal(ScimError::status(404, format!("no group {id}"))))
}

fn conflict(g: &ScimGroupRow) -> Refusal {
    Refusal(ScimError::taken(format!("a group named `{}` exists", g.display_name)))
}

pub(super) async fn list(State(s): State<AppState>, _c: ScimClient, RawQuery(q): RawQuery) -> ScimResult<Response> {
    listing(&s, list_query(q.as_deref())?).await
}

/// `POST …/.search`: a list whose query is in the body.
pub(super) async fn search(State(s): State<AppState>, _c: ScimClient, b: Bytes) -> ScimResult<Response> {
    listing(&s, super::search_query(&body(&b)?)?).await
}

async fn listing(s: &AppState, q: super::ListQuery) -> ScimResult<Response> {
    Ok(super::list(all(s).await?, &q))
}

/// Every resource of this type, as served.
pub(super) async fn all(s: &AppState) -> ScimResult<Vec<Value>> {
    let mut all = Vec::new();
    for g in s.engine.store.scim_groups().await? {
        all.push(render(s, &g).await?);
    }
    Ok(all)
}

pub(super) async fn read(
    State(s): State<AppState>,
    _c: ScimClient,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ScimResult<Response> {
    let q = list_query(q.as_deref())?;
    let g = load(&s, &id).await?;
    let v = super::project(render(&s, &g).await?, &q.attributes, &q.excluded);
    Ok(resource(StatusCode::OK, &v))
}

pub(super) async fn create(State(s): State<AppState>, _c: ScimClient, b: Bytes) -> ScimResult<Response> {
    let v = body(&b)?;
    let now = now_ms();
    let (row, members) = row_of(&s, &v, &uuid::Uuid::new_v4().to_string(), 1, now).await?;
    match s.engine.store.scim_insert_group(&row, &members).await {
        Err(StoreError::Conflict) => return Err(conflict(&row)),
        other => other?,
    }
    tracing::info!(group = %row.display_name, members = members.len(), "SCIM: group created");
    Ok(resource(StatusCode::CREATED, &render(&s, &row).await?))
}

async fn store(s: &AppState, old: &ScimGroupRow, v: &Value) -> ScimResult<Response> {
    let (row, members) = row_of(s, v, &old.id, old.version + 1, old.created_at).await?;
    match s.engine.store.scim_update_group(&row, &members).await {
        Err(StoreError::Conflict)
            if s.engine
                .store
                .scim_group(&old.id)
                .await?
                .is_some_and(|g| g.version == old.version) =>
        {
            return Err(conflict(&row));
        }
        other => other?,
    }
    tracing::info!(group = %row.display_name, members = members.len(), "SCIM: group changed");
    Ok(resource(StatusCode::OK, &render(s, &row).await?))
}

pub(super) async fn replace(
    State(s): State<AppState>,
    _c: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Bytes,
) -> ScimResult<Response> {
    let v = body(&b)?;
    let old = load(&s, &id).await?;
    check_if_match(&headers, old.version)?;
    store(&s, &old, &v).await
}

pub(super) async fn patch(
    State(s): State<AppState>,
    _c: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Bytes,
) -> ScimResult<Response> {
    let req: PatchRequest = serde_json::from_value(body(&b)?)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("not a PatchOp: {e}")))?;
    let old = load(&s, &id).await?;
    check_if_match(&headers, old.version)?;
    let mut v = render(&s, &old).await?;
    patch::apply(&mut v, &req)?;
    store(&s, &old, &v).await
}

pub(super) async fn delete(
    State(s): State<AppState>,
    _c: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let old = load(&s, &id).await?;
    check_if_match(&headers, old.version)?;
    if !s.engine.store.scim_delete_group(&id).await? {
        return Err(ScimError::status(404, format!("no group {id}")).into());
    }
    tracing::info!(group = %old.display_name, "SCIM: group deleted");
    Ok(axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT))
}
