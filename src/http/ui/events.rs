//! `GET /ui/events`: the change stream of `/api/v1/events`, for a signed-in browser: by
//! session cookie instead of a bearer token.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{UiError, UiResult};
use super::session::current;
use crate::http::AppState;

pub(super) async fn events(State(s): State<AppState>, headers: HeaderMap) -> UiResult<Response> {
    let Some(sess) = current(&s, &headers).await? else {
        return Err(UiError::new(StatusCode::UNAUTHORIZED, "sign in first"));
    };
    Ok(crate::http::api::events::stream(&s, sess.principal()).into_response())
}
