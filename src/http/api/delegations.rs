//! `/api/v1/delegations` (create, list, revoke) and `POST /api/v1/admin/reload`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::config::Role;
use crate::core::api::{CreateDelegation, DelegationList, DelegationView, ReloadView};
use crate::core::duration::now_ms;
use crate::http::AppState;
use crate::http::error::{AppError, ErrorCode, Result};
use crate::http::extract::{Caller, Json, Path};

pub(super) async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    Json(body): Json<CreateDelegation>,
) -> Result<Response> {
    let act = s.engine.delegate(&who, body, now_ms());
    let view = s.throttle.action(who.name(), act).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/delegations/{}", view.id))],
        Json(view),
    )
        .into_response())
}

pub(super) async fn list(State(s): State<AppState>, Caller(who): Caller) -> Result<Json<DelegationList>> {
    let delegations = s.engine.delegations(&who, now_ms()).await?;
    Ok(Json(DelegationList { delegations }))
}

pub(super) async fn revoke(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<DelegationView>> {
    let act = s.engine.revoke_delegation(&who, &id, now_ms());
    Ok(Json(s.throttle.action(who.name(), act).await?))
}

/// `POST /admin/reload`: admins only.
pub(super) async fn reload(State(s): State<AppState>, Caller(who): Caller) -> Result<Json<ReloadView>> {
    if !s.engine.has_role(&who, Role::Admin) {
        return Err(AppError::Forbidden(
            ErrorCode::AdminOnly,
            "only an admin (`roles: [admin]`) may reload the configuration".into(),
        ));
    }
    Ok(Json(s.engine.reload(who.name(), now_ms()).await?))
}
