//! Extractors of the API: [`Caller`], who is calling, and [`Json`], a JSON body whose
//! rejection answers in our error shape.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{AppError, Result};
use crate::auth::Principal;

/// `axum::Json`, rejected with an [`AppError`] (see its `From<JsonRejection>`), and
/// answered as `axum::Json` is.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The authenticated caller, from `Authorization: Bearer …`: a static token (approver or
/// pipeline), else a request's holder token (on that request's routes only), else, if it
/// has the shape of a JWT and OIDC issuers are configured, an OIDC token verified against
/// them (a pipeline carrying its verified claims).
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| AppError::Unauthorized("missing `Authorization: Bearer <token>`".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AppError::Unauthorized("the Authorization header is not `Bearer <token>`".into()))?;
        if let Some(p) = s.engine.tokens.authenticate(token) {
            return Ok(Caller(p));
        }
        if token.starts_with(&format!("{}_", crate::service::HOLDER_PREFIX)) {
            // A holder token is good for its own request's routes only.
            // Nested under /api/v1, the router sees the path without that prefix.
            let path = parts.uri.path();
            let id = path
                .strip_prefix("/api/v1/requests/")
                .or_else(|| path.strip_prefix("/requests/"))
                .and_then(|rest| rest.split('/').next())
                .filter(|id| !id.is_empty());
            let Some(id) = id else {
                return Err(AppError::Unauthorized(
                    "a request token only works on its own request".into(),
                ));
            };
            return match s.engine.holder(id, token).await {
                Ok(Some(p)) => Ok(Caller(p)),
                Ok(None) | Err(AppError::NotFound(_)) => Err(AppError::Unauthorized(
                    "this request token is not valid for this request".into(),
                )),
                Err(e) => Err(e),
            };
        }
        if !crate::auth::oidc::looks_like_jwt(token) {
            return Err(AppError::Unauthorized("unknown token".into()));
        }
        let Some(verifier) = &s.oidc else {
            return Err(AppError::Unauthorized(
                "unknown token: it looks like an OIDC token, but this server trusts no OIDC issuer (`oidc:` in gate.yaml)"
                    .into(),
            ));
        };
        match verifier.verify(token).await {
            Ok((name, identity)) => Ok(Caller(Principal::Pipeline {
                name,
                verified: Some(Arc::new(identity)),
            })),
            Err(e) => {
                tracing::info!(error = %e, "OIDC token not accepted");
                Err(e.into())
            }
        }
    }
}
