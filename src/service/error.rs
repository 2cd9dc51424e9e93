//! The one error type of the service and the HTTP layer above it. Each variant names its
//! status; `http::error` turns it into the JSON answer.

use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request cannot be understood.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or one we do not know.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a known caller not allowed to do this.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request is not in a state that allows this.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 422: well-formed but invalid.
    #[error("{1}")]
    Invalid(&'static str, String),
    /// 503: the store is unreachable or overloaded; retry.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(..) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(..) => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(c, _) | AppError::Conflict(c, _) | AppError::Invalid(c, _) => c,
            AppError::NotFound(_) => "not_found",
            AppError::TooLarge(_) => "payload_too_large",
            AppError::Unavailable(_) => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        match &e {
            crate::store::StoreError::Db(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => {
                tracing::warn!(error = %e, "store unavailable");
                AppError::Unavailable("the database is unavailable; retry".into())
            }
            _ => AppError::Internal(anyhow::Error::new(e)),
        }
    }
}

impl From<crate::auth::oidc::OidcError> for AppError {
    fn from(e: crate::auth::oidc::OidcError) -> Self {
        use crate::auth::oidc::OidcError;
        match e {
            OidcError::Refused(_) => AppError::Unauthorized(e.to_string()),
            OidcError::NotAllowed(m) => AppError::Forbidden("oidc_not_allowed", m),
            OidcError::Unavailable(m) => AppError::Unavailable(m),
        }
    }
}
