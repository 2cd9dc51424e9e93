//! What every page shares: the header bar and rendering a template.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::session::Session;
use crate::service::Engine;

/// The header bar: who is signed in, and the token its sign-out form needs.
#[derive(Default)]
pub struct Nav {
    pub user: String,
    pub csrf: String,
    pub via: String,
    pub read_only: bool,
    /// Whether the Audit and Reports links show: auditors and admins only, as the pages.
    pub auditor_links: bool,
}

impl Nav {
    pub(super) fn of(s: &Session, engine: &Engine) -> Nav {
        Nav {
            user: s.user().to_string(),
            csrf: s.csrf().to_string(),
            via: if s.row.via == "sso" {
                "single sign-on".into()
            } else {
                "token".into()
            },
            read_only: !s.row.can_vote,
            auditor_links: engine.reads_everything(&s.principal()),
        }
    }
}

pub(super) fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}
