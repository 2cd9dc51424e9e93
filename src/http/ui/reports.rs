//! `GET /reports`: the auditor's change report in the web UI: a form for the period and
//! environment, the summary of what it selects, and download links for the three forms
//! (`GET /reports/changes.json|csv|html`, the same documents as the API's). Auditors and
//! admins only.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::error::UiError;
use super::page::{Nav, render};
use super::session::{Session, signed_in};
use crate::core::report::Report;
use crate::http::AppState;
use crate::http::api::reports::{ReportQuery, answer};

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage<'a> {
    nav: Nav,
    watch: &'a str,
    from: String,
    to: String,
    environment: String,
    /// The query string of the download links (`from=…&to=…`).
    query: String,
    report: Option<Report>,
    problem: String,
}

fn allowed(s: &AppState, sess: &Session) -> Result<(), UiError> {
    if s.engine.reads_everything(&sess.principal()) {
        Ok(())
    } else {
        Err(UiError::forbidden(
            "reports need the `auditor` or `admin` role (`roles:` on your user in gate.yaml)",
        ))
    }
}

pub(super) async fn reports(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<ReportQuery>) -> Response {
    let sess = match signed_in(&s, &headers, "/reports").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = allowed(&s, &sess) {
        return e.into_response();
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut page = ReportsPage {
        nav: Nav::of(&sess, &s.engine),
        watch: "",
        from: text(&q.from),
        to: text(&q.to),
        environment: text(&q.environment),
        query: String::new(),
        report: None,
        problem: String::new(),
    };
    if q.from.is_some() || q.to.is_some() {
        match q.period() {
            Ok((period, env)) => {
                page.query = {
                    let mut w = url::form_urlencoded::Serializer::new(String::new());
                    w.append_pair("from", &page.from).append_pair("to", &page.to);
                    if let Some(e) = env {
                        w.append_pair("environment", e);
                    }
                    w.finish()
                };
                match s
                    .engine
                    .change_report(&sess.principal(), period, env, crate::core::duration::now_ms())
                    .await
                {
                    Ok(r) => page.report = Some(r),
                    Err(e) => return UiError::from(e).into_response(),
                }
            }
            Err(e) => page.problem = e.to_string(),
        }
    }
    render(&page)
}

/// `GET /reports/changes.json|csv|html?from=&to=&environment=`: a download.
pub(super) async fn download(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let sess = match signed_in(&s, &headers, "/reports").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = allowed(&s, &sess) {
        return e.into_response();
    }
    let Some(format) = file
        .strip_prefix("changes.")
        .filter(|f| matches!(*f, "json" | "csv" | "html"))
    else {
        return UiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("no report `{file}`: changes.json, changes.csv or changes.html"),
        )
        .into_response();
    };
    let result = async {
        let (period, env) = q.period()?;
        let r = s
            .engine
            .change_report(&sess.principal(), period, env, crate::core::duration::now_ms())
            .await?;
        answer(&r, format, true)
    }
    .await;
    result.unwrap_or_else(|e| UiError::from(e).into_response())
}
