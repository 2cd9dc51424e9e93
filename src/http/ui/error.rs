//! [`UiError`]: an error answered as a page with its status, the way `AppError` is
//! answered as JSON by the API; 500s are logged with their cause and shown without it.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::page::{Nav, render};
use crate::http::error::AppError;

/// An error shown as a page.
pub struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError {
            status,
            message: message.into(),
        }
    }

    pub(super) fn forbidden(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<AppError> for UiError {
    fn from(e: AppError) -> Self {
        let status = e.status();
        let message = match e {
            AppError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        UiError { status, message }
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        AppError::from(e).into()
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: Nav,
    watch: &'a str,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            nav: Nav::default(),
            watch: "",
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or(""),
            message: &self.message,
        };
        (self.status, render(&page)).into_response()
    }
}

pub(super) type UiResult<T> = Result<T, UiError>;
