//! The service's error as an HTTP answer: `{"error": {"code", "message"}}` with the
//! variant's status; 500s are logged with their cause and answered without it. A JSON
//! body axum refuses becomes one too.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::core::api::{ErrorBody, ErrorDetail};
pub use crate::service::error::{AppError, ErrorCode, Result};

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            AppError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let message = match &self {
            AppError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

impl AppError {
    /// The same refusal, its message prefixed with what was being read (`context: …`).
    pub fn context(self, what: &str) -> AppError {
        match self {
            AppError::BadRequest(m) => AppError::BadRequest(format!("{what}: {m}")),
            AppError::Invalid(c, m) => AppError::Invalid(c, format!("{what}: {m}")),
            other => other,
        }
    }
}

/// What [`super::extract::Json`] answers when the body is not the JSON it expects.
impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return AppError::TooLarge("request body is larger than the server accepts".into());
        }
        let text = r.body_text();
        match r {
            JsonRejection::JsonDataError(_) => AppError::Invalid(ErrorCode::InvalidBody, text),
            JsonRejection::MissingJsonContentType(_) => {
                AppError::BadRequest("expected `Content-Type: application/json`".into())
            }
            _ => AppError::BadRequest(text),
        }
    }
}

/// What [`super::extract::Query`] answers when the query string does not parse.
impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::BadRequest(r.body_text())
    }
}

/// What [`super::extract::Path`] answers when a path parameter does not parse.
impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        if r.status().is_server_error() {
            return AppError::Internal(anyhow::anyhow!("path extraction: {}", r.body_text()));
        }
        AppError::BadRequest(r.body_text())
    }
}

/// What [`super::extract::RawBody`] answers when the body cannot be read.
impl From<BytesRejection> for AppError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return AppError::TooLarge("request body is larger than the server accepts".into());
        }
        AppError::BadRequest(r.body_text())
    }
}
