//! SCIM 2.0 provisioning at `/scim/v2` (RFC 7643, RFC 7644): the identity provider (Okta,
//! Entra ID) pushes people (`users.rs`) and groups (`groups.rs`); the discovery
//! documents are in `discovery.rs`. One bearer token, `scim.token_sha256` in gate.yaml,
//! is the only credential these routes take (and it works nowhere else). Every answer is
//! `application/scim+json`; every refusal is a SCIM error body. SCIM is self-describing
//! (`/Schemas`, `/ResourceTypes`), so these routes are not in the OpenAPI document.

mod discovery;
mod groups;
mod users;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::core::scim::filter::{self, Filter};
use crate::core::scim::{LIST_SCHEMA, ScimError};

/// The content type of every answer.
pub const SCIM_JSON: &str = "application/scim+json";
/// The most resources one page lists.
const MAX_COUNT: usize = 1000;

/// A refusal, answered as a SCIM error body.
pub struct Refusal(pub ScimError);

impl From<ScimError> for Refusal {
    fn from(e: ScimError) -> Self {
        Refusal(e)
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict => Refusal(ScimError::status(
                412,
                "the resource changed while this request was handled; read it again",
            )),
            other => match other.unavailable() {
                Some(why) => Refusal(ScimError::status(503, why)),
                None => {
                    tracing::error!(error = %other, "SCIM store error");
                    Refusal(ScimError::status(500, "internal error; see the server log"))
                }
            },
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = scim_json(status, &self.0.body());
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub type ScimResult<T = Response> = Result<T, Refusal>;

/// A JSON answer with the SCIM content type.
pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON))],
        body.to_string(),
    )
        .into_response()
}

/// A resource with its `ETag` (`meta.version`).
pub fn resource(status: StatusCode, body: &Value) -> Response {
    let mut resp = scim_json(status, body);
    if let Some(v) = body["meta"]["version"]
        .as_str()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// `W/"N"`: a resource version as an entity tag.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Refuses a write whose `If-Match` names another version (412).
pub fn check_if_match(headers: &HeaderMap, version: i64) -> ScimResult<()> {
    let Some(want) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let have = etag(version);
    if want
        .split(',')
        .map(str::trim)
        .any(|w| w == "*" || w == have || w == &have[2..])
    {
        Ok(())
    } else {
        Err(ScimError::status(412, format!("If-Match {want} is not the current version {have}")).into())
    }
}

/// The identity provider's client: the `scim.token_sha256` bearer token.
pub struct ScimClient;

impl FromRequestParts<AppState> for ScimClient {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Refusal> {
        let client = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let config = s.engine.config();
        let Some(cfg) = &config.scim else {
            return Err(ScimError::status(404, "SCIM is not configured on this server (`scim:` in gate.yaml)").into());
        };
        s.throttle
            .failed_auth
            .check(&client)
            .map_err(|e| Refusal(ScimError::status(429, e.to_string())))?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .unwrap_or("");
        let want = hex::decode(&cfg.token_sha256).unwrap_or_default();
        let got = crate::auth::hash_token(token);
        let got = hex::decode(got).unwrap_or_default();
        if token.is_empty() || !bool::from(want.ct_eq(&got)) {
            s.throttle.failed_auth.spend(client);
            tracing::warn!(target: "jitgate::auth", "SCIM authentication failed");
            return Err(ScimError::status(401, "missing or unknown SCIM bearer token").into());
        }
        super::extract::note_caller("scim");
        Ok(ScimClient)
    }
}

/// A JSON body (`application/scim+json` or `application/json`): an object, or 400
/// `invalidSyntax`.
pub fn body(bytes: &Bytes) -> ScimResult<Value> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(ScimError::bad("invalidSyntax", "the body must be a JSON object").into());
    }
    Ok(v)
}

/// The query of a list: `filter`, `startIndex`, `count`, `attributes`, `excludedAttributes`.
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub start: usize,
    pub count: usize,
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

fn names(v: Option<&String>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// Parses a query string; every bad value is 400 (`invalidFilter`, `invalidValue`).
pub fn list_query(raw: Option<&str>) -> ScimResult<ListQuery> {
    let q: HashMap<String, String> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| q.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v);
    let number = |k: &str, default: i64| -> ScimResult<i64> {
        match get(k) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map_err(|_| ScimError::bad("invalidValue", format!("`{k}` must be an integer, not `{v}`")).into()),
        }
    };
    let filter = get("filter").map(|f| filter::parse(f)).transpose()?;
    Ok(ListQuery {
        filter,
        start: number("startIndex", 1)?.max(1) as usize,
        count: number("count", 100)?.clamp(0, MAX_COUNT as i64) as usize,
        attributes: names(get("attributes")),
        excluded: names(get("excludedAttributes")),
    })
}

/// The query of a `POST …/.search` (RFC 7644 §3.4.3): the same parameters in a body.
pub fn search_query(v: &Value) -> ScimResult<ListQuery> {
    if !v["schemas"].as_array().is_some_and(|a| {
        a.iter()
            .any(|s| s == "urn:ietf:params:scim:api:messages:2.0:SearchRequest")
    }) {
        return Err(ScimError::bad(
            "invalidSyntax",
            "`schemas` must include urn:ietf:params:scim:api:messages:2.0:SearchRequest",
        )
        .into());
    }
    let list = |k: &str| -> ScimResult<Vec<String>> {
        match &v[k] {
            Value::Null => Ok(vec![]),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ScimError::bad("invalidValue", format!("`{k}` lists strings")).into())
                })
                .collect(),
            _ => Err(ScimError::bad("invalidValue", format!("`{k}` must be a list")).into()),
        }
    };
    let number = |k: &str, default: i64| -> ScimResult<i64> {
        match &v[k] {
            Value::Null => Ok(default),
            n => n
                .as_i64()
                .ok_or_else(|| ScimError::bad("invalidValue", format!("`{k}` must be an integer")).into()),
        }
    };
    let filter = match &v["filter"] {
        Value::Null => None,
        Value::String(f) => Some(filter::parse(f)?),
        _ => return Err(ScimError::bad("invalidFilter", "`filter` must be a string").into()),
    };
    Ok(ListQuery {
        filter,
        start: number("startIndex", 1)?.max(1) as usize,
        count: number("count", 100)?.clamp(0, MAX_COUNT as i64) as usize,
        attributes: list("attributes")?,
        excluded: list("excludedAttributes")?,
    })
}

/// `attributes` / `excludedAttributes` of one resource (`id` and `schemas` always stay).
pub fn project(mut r: Value, attributes: &[String], excluded: &[String]) -> Value {
    let strip = |a: &str| {
        let a = if a.len() > 4 && a[..4].eq_ignore_ascii_case("urn:") {
            a.rsplit_once(':').map_or(a, |(_, x)| x)
        } else {
            a
        };
        a.split_once('.')
            .map_or((a.to_string(), None), |(x, y)| (x.to_string(), Some(y.to_string())))
    };
    let Some(obj) = r.as_object_mut() else { return r };
    let keep_always = |k: &str| k == "id" || k == "schemas";
    if !attributes.is_empty() {
        let wanted: Vec<(String, Option<String>)> = attributes.iter().map(|a| strip(a)).collect();
        obj.retain(|k, _| keep_always(k) || wanted.iter().any(|(a, _)| a.eq_ignore_ascii_case(k)));
        for (k, v) in obj.iter_mut() {
            let subs: Vec<&String> = wanted
                .iter()
                .filter(|(a, _)| a.eq_ignore_ascii_case(k))
                .filter_map(|(_, s)| s.as_ref())
                .collect();
            let whole = wanted.iter().any(|(a, s)| a.eq_ignore_ascii_case(k) && s.is_none());
            if whole || subs.is_empty() {
                continue;
            }
            let keep = |o: &mut serde_json::Map<String, Value>| {
                o.retain(|sk, _| subs.iter().any(|s| s.eq_ignore_ascii_case(sk)))
            };
            match v {
                Value::Object(o) => keep(o),
                Value::Array(a) => a.iter_mut().filter_map(Value::as_object_mut).for_each(keep),
                _ => {}
            }
        }
    }
    for (a, sub) in excluded.iter().map(|a| strip(a)) {
        if keep_always(&a) {
            continue;
        }
        let key = obj.keys().find(|k| k.eq_ignore_ascii_case(&a)).cloned();
        let Some(key) = key else { continue };
        match sub {
            None => {
                obj.remove(&key);
            }
            Some(sub) => {
                let drop = |o: &mut serde_json::Map<String, Value>| o.retain(|sk, _| !sk.eq_ignore_ascii_case(&sub));
                match obj.get_mut(&key) {
                    Some(Value::Object(o)) => drop(o),
                    Some(Value::Array(a)) => a.iter_mut().filter_map(Value::as_object_mut).for_each(drop),
                    _ => {}
                }
            }
        }
    }
    r
}

/// A `ListResponse` page of the resources that match.
pub fn list(all: Vec<Value>, q: &ListQuery) -> Response {
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|r| q.filter.as_ref().is_none_or(|f| f.matches(r)))
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .into_iter()
        .skip(q.start - 1)
        .take(q.count)
        .map(|r| project(r, &q.attributes, &q.excluded))
        .collect();
    scim_json(
        StatusCode::OK,
        &json!({"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": q.start, "itemsPerPage": page.len(), "Resources": page}),
    )
}

/// `POST /.search`: users and groups in one list (RFC 7644 §3.4.3).
async fn search_all(
    axum::extract::State(s): axum::extract::State<AppState>,
    _c: ScimClient,
    b: Bytes,
) -> ScimResult<Response> {
    let q = search_query(&body(&b)?)?;
    let mut all = users::all(&s).await?;
    all.extend(groups::all(&s).await?);
    Ok(list(all, &q))
}

/// The URL of the SCIM root, for `meta.location` and `$ref`.
pub fn base(s: &AppState) -> String {
    format!("{}/scim/v2", s.engine.public_url)
}

/// The routes under `/scim/v2`, with SCIM's 404 and 405.
pub fn router() -> Router<AppState> {
    use axum::routing::{get, post};
    let inner = Router::new()
        .route("/ServiceProviderConfig", get(discovery::service_provider_config))
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{id}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema))
        .route("/Users", get(users::list).post(users::create))
        .route("/Users/.search", post(users::search))
        .route(
            "/Users/{id}",
            get(users::read)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/.search", post(search_all))
        .route("/Groups", get(groups::list).post(groups::create))
        .route("/Groups/.search", post(groups::search))
        .route(
            "/Groups/{id}",
            get(groups::read)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .fallback(|| async { Refusal(ScimError::status(404, "no such SCIM endpoint")) })
        .method_not_allowed_fallback(|req: axum::extract::Request| async move {
            Refusal(ScimError::status(
                405,
                format!("{} is not allowed on {}", req.method(), req.uri().path()),
            ))
        });
    Router::new().nest("/scim/v2", inner)
}
