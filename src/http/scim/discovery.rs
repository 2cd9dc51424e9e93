//! The discovery documents (RFC 7644 §4, RFC 7643 §5–7): what this server supports
//! (`ServiceProviderConfig`), the two resource types, and their schemas with the
//! attributes we keep. They need no token (RFC 7644 §4 lets a client read them first), only `scim:` in gate.yaml.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{ScimResult, base, scim_json};
use crate::core::scim::{GROUP_SCHEMA, LIST_SCHEMA, ScimError, USER_SCHEMA};
use crate::http::AppState;

/// One attribute definition (RFC 7643 §7).
fn attr(name: &str, kind: &str, multi: bool, required: bool, mutability: &str, subs: Vec<Value>) -> Value {
    let mut a = json!({
        "name": name, "type": kind, "multiValued": multi, "description": name, "required": required,
        "caseExact": false, "mutability": mutability, "returned": "default", "uniqueness": "none",
    });
    if kind == "reference" {
        a["referenceTypes"] = json!(["User", "Group"]);
    }
    if !subs.is_empty() {
        a["subAttributes"] = Value::Array(subs);
    }
    a
}

fn rw(name: &str, kind: &str) -> Value {
    attr(name, kind, false, false, "readWrite", vec![])
}

fn user_schema() -> Value {
    let mut user_name = attr("userName", "string", false, true, "readWrite", vec![]);
    user_name["uniqueness"] = json!("server");
    let name = attr(
        "name",
        "complex",
        false,
        false,
        "readWrite",
        vec![
            rw("formatted", "string"),
            rw("familyName", "string"),
            rw("givenName", "string"),
        ],
    );
    let emails = attr(
        "emails",
        "complex",
        true,
        false,
        "readWrite",
        vec![rw("value", "string"), rw("type", "string"), rw("primary", "boolean")],
    );
    let ro = |n: &str, k: &str| attr(n, k, false, false, "readOnly", vec![]);
    let groups = attr(
        "groups",
        "complex",
        true,
        false,
        "readOnly",
        vec![
            ro("value", "string"),
            ro("$ref", "reference"),
            ro("display", "string"),
            ro("type", "string"),
        ],
    );
    json!({
        "id": USER_SCHEMA, "name": "User", "description": "A person",
        "attributes": [user_name, name, rw("displayName", "string"), rw("active", "boolean"), emails, groups],
    })
}

fn group_schema() -> Value {
    let mut display = attr("displayName", "string", false, true, "readWrite", vec![]);
    display["uniqueness"] = json!("server");
    let members = attr(
        "members",
        "complex",
        true,
        false,
        "readWrite",
        vec![
            attr("value", "string", false, false, "immutable", vec![]),
            attr("$ref", "reference", false, false, "immutable", vec![]),
            attr("display", "string", false, false, "readOnly", vec![]),
            attr("type", "string", false, false, "immutable", vec![]),
        ],
    );
    json!({"id": GROUP_SCHEMA, "name": "Group", "description": "A group of people", "attributes": [display, members]})
}

fn with_meta(mut v: Value, kind: &str, location: String) -> Value {
    v["schemas"] = json!([format!("urn:ietf:params:scim:schemas:core:2.0:{kind}")]);
    v["meta"] = json!({"resourceType": kind, "location": location});
    v
}

fn schemas_all(s: &AppState) -> Vec<Value> {
    let b = base(s);
    [user_schema(), group_schema()]
        .into_iter()
        .map(|sc| {
            let loc = format!("{b}/Schemas/{}", sc["id"].as_str().unwrap_or_default());
            with_meta(sc, "Schema", loc)
        })
        .collect()
}

fn resource_types_all(s: &AppState) -> Vec<Value> {
    let b = base(s);
    [("User", "/Users", USER_SCHEMA), ("Group", "/Groups", GROUP_SCHEMA)]
        .into_iter()
        .map(|(name, endpoint, schema)| {
            with_meta(
                json!({"id": name, "name": name, "endpoint": endpoint, "description": name, "schema": schema, "schemaExtensions": []}),
                "ResourceType",
                format!("{b}/ResourceTypes/{name}"),
            )
        })
        .collect()
}

/// Without `scim:` there is no SCIM service to describe.
fn configured(s: &AppState) -> ScimResult<()> {
    match s.engine.config().scim {
        Some(_) => Ok(()),
        None => Err(ScimError::status(404, "SCIM is not configured on this server (`scim:` in gate.yaml)").into()),
    }
}

fn listing(all: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({"schemas": [LIST_SCHEMA], "totalResults": all.len(), "startIndex": 1, "itemsPerPage": all.len(), "Resources": all}),
    )
}

pub(super) async fn service_provider_config(State(s): State<AppState>) -> ScimResult<Response> {
    configured(&s)?;
    let b = base(&s);
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/jitgate/jitgate/blob/main/docs/scim.md",
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": 1000},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": true},
            "authenticationSchemes": [{"type": "oauthbearertoken", "name": "Bearer token",
                "description": "The token whose SHA-256 is scim.token_sha256 in gate.yaml", "primary": true}],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{b}/ServiceProviderConfig")},
        }),
    ))
}

pub(super) async fn resource_types(State(s): State<AppState>) -> ScimResult<Response> {
    configured(&s)?;
    Ok(listing(resource_types_all(&s)))
}

pub(super) async fn resource_type(State(s): State<AppState>, Path(id): Path<String>) -> ScimResult<Response> {
    configured(&s)?;
    resource_types_all(&s)
        .into_iter()
        .find(|r| r["id"] == id.as_str())
        .map(|r| scim_json(StatusCode::OK, &r))
        .ok_or_else(|| ScimError::status(404, format!("no resource type {id}")).into())
}

pub(super) async fn schemas(State(s): State<AppState>) -> ScimResult<Response> {
    configured(&s)?;
    Ok(listing(schemas_all(&s)))
}

pub(super) async fn schema(State(s): State<AppState>, Path(id): Path<String>) -> ScimResult<Response> {
    configured(&s)?;
    schemas_all(&s)
        .into_iter()
        .find(|r| r["id"] == id.as_str())
        .map(|r| scim_json(StatusCode::OK, &r))
        .ok_or_else(|| ScimError::status(404, format!("no schema {id}")).into())
}
