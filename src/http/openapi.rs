//! The API description served at `/api/v1/openapi.json`.

pub const SPEC: &str = r##"{
  "openapi": "3.1.0",
  "info": {"title": "jitgate API", "version": "1", "description": "Just-in-time approval gate for CI/CD pipelines. Errors are {\"error\": {\"code\", \"message\"}}. Authenticate with `Authorization: Bearer <token>`: pipeline tokens open, wait on, cancel and consume requests; approver tokens vote. A pipeline may instead present an OIDC token (JWT) from an issuer the server trusts: its verified claims fill the request context, and a body field that contradicts one is refused with 401."},
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "schemas": {
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string", "enum": ["bad_request", "unauthorized", "approver_cannot_request", "pipeline_cannot_vote", "approver_cannot_consume", "requester_cannot_vote", "not_eligible", "not_yours", "approvers_only", "oidc_not_allowed", "not_found", "idempotency_mismatch", "already_voted", "not_pending", "expired", "outside_window", "tampered", "no_record_yet", "replayed_delivery", "payload_too_large", "invalid_body", "invalid_field", "bad_cosignature", "invalid_timeout", "no_matching_rule", "requester_unknown", "reason_required", "reason_too_long", "too_many_requests", "internal", "unavailable"]}, "message": {"type": "string"}}}}},
      "Context": {"type": "object", "required": ["environment"], "additionalProperties": false, "properties": {
        "platform": {"type": "string", "enum": ["github", "gitlab", "jenkins", "generic", ""]},
        "repository": {"type": "string"}, "ref": {"type": "string"}, "commit": {"type": "string"},
        "actor": {"type": "string"}, "triggering_actor": {"type": "string"}, "commit_author": {"type": "string"},
        "run_id": {"type": "string"}, "run_attempt": {"type": "string"}, "job": {"type": "string"}, "run_url": {"type": "string"},
        "environment": {"type": "string", "minLength": 1}, "action": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
      "CreateRequest": {"type": "object", "required": ["context"], "additionalProperties": false, "properties": {
        "context": {"$ref": "#/components/schemas/Context"},
        "summary": {"type": "string", "maxLength": 8192},
        "artifacts": {"type": "array", "items": {"type": "string", "pattern": "^sha256:[0-9a-fA-F]{64}$"}},
        "timeout": {"type": "string", "description": "e.g. 30m; never longer than the policy's"},
        "idempotency_key": {"type": "string"}}},
      "Vote": {"type": "object", "properties": {"reason": {"type": "string"}}},
      "Requirement": {"type": "object", "properties": {"group": {"type": "string"}, "count": {"type": "integer"}, "members": {"type": "array", "items": {"type": "string"}}, "approved_by": {"type": "array", "items": {"type": "string"}}, "may_vote": {"type": "array", "items": {"type": "string"}}, "met": {"type": "boolean"}}},
      "Request": {"type": "object", "required": ["id", "status", "url", "context", "requester", "rule", "policy_digest", "requirements", "votes", "created_at", "expires_at", "version"], "properties": {
        "id": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "approved", "denied", "expired", "canceled", "consumed"]},
        "url": {"type": "string"}, "context": {"$ref": "#/components/schemas/Context"}, "summary": {"type": "string"},
        "artifacts": {"type": "array", "items": {"type": "string"}}, "requester": {"type": "array", "items": {"type": "string"}},
        "requester_sources": {"type": "array", "description": "where each requester identity came from", "items": {"type": "object", "required": ["identity", "source", "from"], "properties": {"identity": {"type": "string"}, "source": {"type": "string", "enum": ["verified_claim", "forge_api", "asserted", "config"]}, "from": {"type": "string"}, "given": {"type": "string"}}}},
        "opened_by": {"type": "string"}, "rule": {"type": "string"}, "policy_digest": {"type": "string"},
        "requirements": {"type": "array", "items": {"$ref": "#/components/schemas/Requirement"}},
        "votes": {"type": "array", "items": {"type": "object", "properties": {"voter": {"type": "string"}, "decision": {"type": "string"}, "reason": {"type": "string"}, "at": {"type": "string"}, "via": {"type": "string"}}}},
        "created_at": {"type": "string"}, "expires_at": {"type": "string"}, "decided_at": {"type": "string"}, "decided_by": {"type": "string"}, "reason": {"type": "string"},
        "approval_expires_at": {"type": "string"}, "consumed_at": {"type": "string"}, "version": {"type": "integer"},
        "verified_by": {"type": "string", "description": "the OIDC issuer whose token verified part of the context"},
        "verified_fields": {"type": "array", "items": {"type": "string"}, "description": "context fields that token verified"}}},
      "Envelope": {"type": "object", "description": "DSSE envelope; payload is a base64 in-toto Statement v1", "properties": {"payloadType": {"type": "string"}, "payload": {"type": "string"}, "signatures": {"type": "array", "items": {"type": "object", "properties": {"keyid": {"type": "string"}, "sig": {"type": "string"}}}}}},
      "Keys": {"type": "object", "properties": {"keys": {"type": "array", "description": "every key the server has signed with, oldest first", "items": {"type": "object", "properties": {"keyid": {"type": "string", "description": "securesystemslib keyid: hex SHA-256 of the canonical JSON of keytype, scheme and keyval; the envelopes' keyid"}, "algorithm": {"type": "string"}, "public_key": {"type": "string", "description": "raw Ed25519 key, base64"}, "pem": {"type": "string"}, "keytype": {"type": "string"}, "scheme": {"type": "string"}, "keyval": {"type": "object", "properties": {"public": {"type": "string", "description": "raw key, hex"}}}, "not_before": {"type": ["string", "null"], "format": "date-time", "description": "when the key started signing; null if made before that was recorded"}, "not_after": {"type": ["string", "null"], "format": "date-time", "description": "when the key was rotated out; null for the current key"}}}}}},
      "AuditVerify": {"type": "object", "properties": {"ok": {"type": "boolean"}, "events": {"type": "integer"}, "head": {"type": "string"}, "first_broken": {"type": "integer"}, "problem": {"type": "string"}}}
    },
    "responses": {
      "Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Request": {"description": "the request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}}}
    },
    "parameters": {"id": {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}}
  },
  "security": [{"bearer": []}],
  "paths": {
    "/api/v1/requests": {
      "post": {"summary": "Open a request (pipeline token). Idempotent on the run identity or idempotency_key.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateRequest"}}}},
        "responses": {"201": {"$ref": "#/components/responses/Request"}, "200": {"$ref": "#/components/responses/Request"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}},
      "get": {"summary": "Inbox: requests the caller may act on, oldest first, `limit` at a time (filtered before limited). When more follow, the answer has a `Link: </api/v1/requests?status=…&limit=…&cursor=…>; rel=\"next\"` header; without it, this is the last page", "parameters": [{"name": "status", "in": "query", "schema": {"type": "string", "enum": ["pending", "approved", "denied", "expired", "canceled", "consumed"], "default": "pending"}}, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500}}, {"name": "cursor", "in": "query", "description": "opaque: the `cursor` of a previous answer's next link", "schema": {"type": "string"}}],
        "responses": {"200": {"description": "requests", "headers": {"Link": {"description": "`<url>; rel=\"next\"` when more follow", "schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Request"}}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/requests/{id}": {"get": {"summary": "Read a request", "parameters": [{"$ref": "#/components/parameters/id"}], "responses": {"200": {"$ref": "#/components/responses/Request"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/api/v1/requests/{id}/wait": {"get": {"summary": "Long-wait: returns as soon as the request changes from `version` (or, without it, is not pending), or at timeout", "parameters": [{"$ref": "#/components/parameters/id"}, {"name": "timeout", "in": "query", "schema": {"type": "integer", "default": 30}}, {"name": "version", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"$ref": "#/components/responses/Request"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/api/v1/requests/{id}/approve": {"post": {"summary": "Approve (approver token)", "parameters": [{"$ref": "#/components/parameters/id"}], "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Vote"}}}}, "responses": {"200": {"$ref": "#/components/responses/Request"}, "403": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
    "/api/v1/requests/{id}/deny": {"post": {"summary": "Deny with a reason (approver token)", "parameters": [{"$ref": "#/components/parameters/id"}], "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Vote"}}}}, "responses": {"200": {"$ref": "#/components/responses/Request"}, "403": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}},
    "/api/v1/requests/{id}/cancel": {"post": {"summary": "Withdraw a pending request (its pipeline or requester)", "parameters": [{"$ref": "#/components/parameters/id"}], "responses": {"200": {"$ref": "#/components/responses/Request"}, "403": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
    "/api/v1/requests/{id}/consume": {"post": {"summary": "Use an approval once (its pipeline)", "parameters": [{"$ref": "#/components/parameters/id"}], "responses": {"200": {"$ref": "#/components/responses/Request"}, "403": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
    "/api/v1/requests/{id}/record": {"get": {"summary": "The signed record (DSSE envelope)", "parameters": [{"$ref": "#/components/parameters/id"}], "responses": {"200": {"description": "envelope", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}}, "409": {"$ref": "#/components/responses/Error"}}}},
    "/api/v1/requests/{id}/audit": {"get": {"summary": "The request's audit events", "parameters": [{"$ref": "#/components/parameters/id"}], "responses": {"200": {"description": "events"}}}},
    "/api/v1/events": {"get": {"summary": "Server-sent events: `change` per state change", "responses": {"200": {"description": "text/event-stream"}}}},
    "/api/v1/notifications": {"get": {"summary": "The notification outbox (approver token): per request with `request`, else newest first. With `version` (from a previous answer) and `wait` (seconds), answers at the next change", "parameters": [{"name": "request", "in": "query", "schema": {"type": "string"}}, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500}}, {"name": "version", "in": "query", "schema": {"type": "integer"}}, {"name": "wait", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "{version, notifications: [{id, delivery, request_id, event, channel, recipient, state, attempts, created_at, next_attempt_at, delivered_at, gave_up_at, last_error, payload}]}"}, "400": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}}}},
    "/api/v1/keys": {"get": {"summary": "Public keys records are signed with", "security": [], "responses": {"200": {"description": "keys", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Keys"}}}}}}},
    "/api/v1/audit/verify": {"get": {"summary": "Check the audit hash chain", "responses": {"200": {"description": "result", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuditVerify"}}}}}}},
    "/api/v1/log/checkpoint": {"get": {"summary": "The transparency log's latest checkpoint (C2SP signed note) with witness cosignatures", "security": [], "responses": {"200": {"description": "the signed note", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/api/v1/log/key": {"get": {"summary": "The log's signed-note verifier key (origin+hexid+base64key)", "security": [], "responses": {"200": {"description": "the verifier key", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/api/v1/log/leaves/{index}": {"get": {"summary": "A leaf's bytes, as hashed (audit event index + 1)", "parameters": [{"name": "index", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}}], "responses": {"200": {"description": "the leaf", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}, "400": {"description": "not a number", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}, "401": {"description": "no or unknown token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}, "404": {"description": "no such leaf", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/api/v1/log/proof/inclusion": {"get": {"summary": "RFC 9162 inclusion proof", "security": [], "parameters": [{"name": "index", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 0}}, {"name": "size", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 1}}], "responses": {"200": {"description": "the proof", "content": {"application/json": {"schema": {"type": "object", "required": ["leaf_index", "tree_size", "hashes"], "properties": {"leaf_index": {"type": "integer"}, "tree_size": {"type": "integer"}, "hashes": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}}}}}}, "400": {"description": "outside the tree", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/api/v1/log/proof/consistency": {"get": {"summary": "RFC 9162 consistency proof", "security": [], "parameters": [{"name": "from", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 1}}, {"name": "to", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 1}}], "responses": {"200": {"description": "the proof", "content": {"application/json": {"schema": {"type": "object", "required": ["hashes"], "properties": {"hashes": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}}}}}}, "400": {"description": "outside the tree", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/api/v1/log/cosign": {"post": {"summary": "A witness's cosignature of one of the log's checkpoints", "security": [], "requestBody": {"required": true, "content": {"text/plain": {"schema": {"type": "string"}}}}, "responses": {"200": {"description": "kept", "content": {"application/json": {"schema": {"type": "object", "required": ["witnesses"], "properties": {"witnesses": {"type": "array", "items": {"type": "string"}}}}}}}, "422": {"description": "bad_cosignature", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/api/v1/audit/export": {"get": {"summary": "Audit events as JSON lines", "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer"}}, {"name": "limit", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "application/x-ndjson"}}}},
    "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI"}}}},
    "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok"}}}},
    "/readyz": {"get": {"summary": "Readiness (database reachable)", "security": [], "responses": {"200": {"description": "ready"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "text"}}}}
  }
}"##;

#[cfg(test)]
mod tests {
    #[test]
    fn spec_is_json() {
        let v: serde_json::Value = serde_json::from_str(super::SPEC).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
    }
}
