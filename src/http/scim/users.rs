//! `/scim/v2/Users`: people, as the identity provider writes them. `userName` must be an
//! identity (`core::identity`) and is unique caseless; `active: false` or a DELETE stops
//! the person's tokens and sessions at their next call (`Engine::check_active`).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{Refusal, ScimClient, ScimResult, base, body, check_if_match, etag, list_query, resource};
use crate::core::duration::{now_ms, rfc3339};
use crate::core::identity::Identity;
use crate::core::scim::filter::get_ci;
use crate::core::scim::patch::{self, PatchRequest};
use crate::core::scim::{ScimError, USER_SCHEMA};
use crate::http::AppState;
use crate::store::{ScimUserRow, StoreError};

/// Attributes the server sets: dropped from what a client writes.
const READ_ONLY: [&str; 4] = ["id", "meta", "schemas", "groups"];

/// The stored part of a resource: what the client wrote, without the server's attributes.
pub(super) fn writable(v: &Value) -> Map<String, Value> {
    let mut m = v.as_object().cloned().unwrap_or_default();
    m.retain(|k, _| !READ_ONLY.iter().any(|r| r.eq_ignore_ascii_case(k)));
    m
}

/// `true`, `false`, or Entra ID's `"True"` / `"False"`.
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Checks a user as written and builds its row (id, version and times from `base_row`).
fn row_of(doc: Map<String, Value>, id: &str, version: i64, created_at: i64, now: i64) -> ScimResult<ScimUserRow> {
    let v = Value::Object(doc);
    let user_name = match get_ci(&v, "userName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(_) => return Err(ScimError::bad("invalidValue", "`userName` must be a non-empty string").into()),
        None => return Err(ScimError::bad("invalidValue", "`userName` is required").into()),
    };
    let user_key = Identity::parse(&user_name)
        .map_err(|p| ScimError::bad("invalidValue", format!("`userName` {p}")))?
        .to_string();
    let active = match get_ci(&v, "active") {
        None | Some(Value::Null) => true,
        Some(a) => boolean(a).ok_or_else(|| ScimError::bad("invalidValue", "`active` must be true or false"))?,
    };
    let emails = match get_ci(&v, "emails") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ScimError::bad("invalidValue", "`emails` must be a list").into()),
    };
    let primary = emails
        .iter()
        .find(|e| get_ci(e, "primary").and_then(boolean) == Some(true))
        .or(emails.first());
    let email_key = match primary.map(|e| get_ci(e, "value")) {
        None | Some(None) => None,
        Some(Some(Value::String(e))) => Some(
            Identity::parse(e)
                .map_err(|p| ScimError::bad("invalidValue", format!("email `{}` {p}", e.escape_debug())))?
                .to_string(),
        ),
        Some(Some(_)) => return Err(ScimError::bad("invalidValue", "an email's `value` must be a string").into()),
    };
    let external_id = match get_ci(&v, "externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ScimError::bad("invalidValue", "`externalId` must be a string").into()),
    };
    let Value::Object(mut doc) = v else {
        unreachable!("built from a map above")
    };
    // `active` is stored as the boolean it means.
    if let Some(k) = doc.keys().find(|k| k.eq_ignore_ascii_case("active")).cloned() {
        doc.insert(k, json!(active));
    }
    Ok(ScimUserRow {
        id: id.to_string(),
        user_name,
        user_key,
        email_key,
        external_id,
        active,
        doc: Value::Object(doc).to_string(),
        version,
        created_at,
        updated_at: now,
    })
}

/// The resource as served.
async fn render(s: &AppState, u: &ScimUserRow) -> ScimResult<Value> {
    let mut v: Map<String, Value> = serde_json::from_str(&u.doc).unwrap_or_default();
    let base = base(s);
    let groups = s.engine.store.scim_groups_of(&u.id).await?;
    v.insert("schemas".into(), json!([USER_SCHEMA]));
    v.insert("id".into(), json!(u.id));
    if !groups.is_empty() {
        v.insert(
            "groups".into(),
            groups
                .iter()
                .map(|(id, name)| json!({"value": id, "display": name, "$ref": format!("{base}/Groups/{id}"), "type": "direct"}))
                .collect(),
        );
    }
    v.insert(
        "meta".into(),
        json!({"resourceType": "User", "created": rfc3339(u.created_at), "lastModified": rfc3339(u.updated_at),
            "location": format!("{base}/Users/{}", u.id), "version": etag(u.version)}),
    );
    Ok(Value::Object(v))
}

fn conflict(u: &ScimUserRow) -> Refusal {
    Refusal(ScimError::taken(format!(
        "a user with userName `{}` exists",
        u.user_name
    )))
}

async fn load(s: &AppState, id: &str) -> ScimResult<ScimUserRow> {
    s.engine
        .store
        .scim_user(id)
        .await?
        .ok_or_else(|| Refusal(ScimError::status(404, format!("no user {id}"))))
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
    for u in s.engine.store.scim_users().await? {
        all.push(render(s, &u).await?);
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
    let u = load(&s, &id).await?;
    let v = super::project(render(&s, &u).await?, &q.attributes, &q.excluded);
    Ok(resource(StatusCode::OK, &v))
}

pub(super) async fn create(State(s): State<AppState>, _c: ScimClient, b: Bytes) -> ScimResult<Response> {
    let v = body(&b)?;
    let now = now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let row = row_of(writable(&v), &id, 1, now, now)?;
    match s.engine.store.scim_insert_user(&row).await {
        Err(StoreError::Conflict) => return Err(conflict(&row)),
        other => other?,
    }
    tracing::info!(user = %row.user_name, active = row.active, "SCIM: user created");
    Ok(resource(StatusCode::CREATED, &render(&s, &row).await?))
}

/// Stores a new state of a user (PUT or PATCH).
async fn store(s: &AppState, old: &ScimUserRow, doc: Map<String, Value>) -> ScimResult<Response> {
    let row = row_of(doc, &old.id, old.version + 1, old.created_at, now_ms())?;
    match s.engine.store.scim_update_user(&row).await {
        Err(StoreError::Conflict)
            if s.engine
                .store
                .scim_user(&old.id)
                .await?
                .is_some_and(|u| u.version == old.version) =>
        {
            return Err(conflict(&row));
        }
        other => other?,
    }
    if old.active != row.active {
        tracing::info!(user = %row.user_name, active = row.active, "SCIM: user {}", if row.active { "reactivated" } else { "deactivated" });
    }
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
    store(&s, &old, writable(&v)).await
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
    let mut v = Value::Object(serde_json::from_str(&old.doc).unwrap_or_default());
    patch::apply(&mut v, &req)?;
    store(&s, &old, writable(&v)).await
}

pub(super) async fn delete(
    State(s): State<AppState>,
    _c: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let old = load(&s, &id).await?;
    check_if_match(&headers, old.version)?;
    if !s.engine.store.scim_delete_user(&id, now_ms()).await? {
        return Err(ScimError::status(404, format!("no user {id}")).into());
    }
    tracing::info!(user = %old.user_name, "SCIM: user deleted");
    Ok(axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT))
}
