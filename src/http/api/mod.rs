//! API v1, under `/api/v1`. Thin: parse, authenticate ([`super::extract::Caller`]), call
//! the engine. The OpenAPI document is served with the operations routes ([`super::ops`]).

mod audit;
mod delegations;
pub(crate) mod events;
mod log;
mod notifications;
pub(crate) mod reports;
mod requests;

use axum::Router;
use axum::routing::{delete, get, post};

use super::AppState;

/// The API's routes, nested under `/api/v1` (so handlers see paths without the prefix).
pub fn router() -> Router<AppState> {
    let v1 = Router::new()
        .route("/requests", post(requests::create).get(requests::list))
        .route("/requests/{id}", get(requests::show))
        .route("/requests/{id}/wait", get(requests::wait))
        .route("/requests/{id}/{action}", post(requests::act))
        .route("/requests/{id}/record", get(requests::record))
        .route("/requests/{id}/audit", get(requests::request_audit))
        .route("/run/consume", post(requests::consume_for_run))
        .route("/keys", get(audit::keys))
        .route("/audit/verify", get(audit::audit_verify))
        .route("/audit/export", get(audit::audit_export))
        .route("/log/checkpoint", get(log::checkpoint))
        .route("/log/key", get(log::key))
        .route("/log/leaves/{index}", get(log::leaf))
        .route("/log/proof/inclusion", get(log::inclusion))
        .route("/log/proof/consistency", get(log::consistency))
        .route("/log/cosign", post(log::cosign))
        .route("/events", get(events::events))
        .route("/notifications", get(notifications::list))
        .route("/reports/changes", get(reports::changes))
        .route("/delegations", post(delegations::create).get(delegations::list))
        .route("/delegations/{id}", delete(delegations::revoke))
        .route("/admin/reload", post(delegations::reload));
    Router::new().nest("/api/v1", v1)
}
