//! `GET /api/v1/reports/changes?from=&to=&environment=&format=json|csv|html`: the
//! auditor's change report (auditors and admins; `role_required` otherwise).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::core::report::{Period, Report, render};
use crate::http::AppState;
use crate::http::error::{AppError, Result};
use crate::http::extract::{Caller, Query};

#[derive(Deserialize)]
pub(crate) struct ReportQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
}

impl ReportQuery {
    /// The period and environment asked for; a 400 naming what is wrong otherwise.
    pub(crate) fn period(&self) -> Result<(Period, Option<&str>)> {
        let (Some(from), Some(to)) = (&self.from, &self.to) else {
            return Err(AppError::BadRequest(
                "give `from` and `to` (dates like 2026-10-01 or RFC 3339 times)".into(),
            ));
        };
        let p = Period::parse(from, to).map_err(|e| AppError::BadRequest(e.to_string()))?;
        Ok((p, self.environment.as_deref().filter(|e| !e.is_empty())))
    }
}

/// The report in one of its three forms, as an HTTP answer; `download` names the file.
pub(crate) fn answer(report: &Report, format: &str, download: bool) -> Result<Response> {
    let (kind, ext, body) = match format {
        "json" => (
            "application/json",
            "json",
            serde_json::to_string_pretty(report).map_err(|e| AppError::Internal(e.into()))?,
        ),
        "csv" => ("text/csv; charset=utf-8; header=present", "csv", render::csv(report)),
        "html" => ("text/html; charset=utf-8", "html", render::html(report)),
        other => {
            return Err(AppError::BadRequest(format!(
                "format `{other}` is not one of json, csv, html"
            )));
        }
    };
    let name = format!(
        "changes-{}-{}.{ext}",
        report.from.get(..10).unwrap_or("from"),
        report.to.get(..10).unwrap_or("to")
    );
    let disposition = if download {
        format!("attachment; filename=\"{name}\"")
    } else {
        format!("inline; filename=\"{name}\"")
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

pub(super) async fn changes(State(s): State<AppState>, c: Caller, Query(q): Query<ReportQuery>) -> Result<Response> {
    let (period, environment) = q.period()?;
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv" | "html") {
        return Err(AppError::BadRequest(format!(
            "format `{format}` is not one of json, csv, html"
        )));
    }
    let report = s
        .engine
        .change_report(&c.0, period, environment, crate::core::duration::now_ms())
        .await?;
    answer(&report, format, false)
}
