//! The auditor's change report: the requests decided in a period, each row computed
//! from its signed record (`core::report`), read a page at a time. Auditors and admins
//! only; every record is checked against the server's keys before it becomes a row, so
//! a report never shows a record the server did not sign.

use super::Engine;
use super::error::{AppError, ErrorCode, Result};
use crate::auth::Principal;
use crate::core::report::{self, Period, Report};

/// Rows read from the database per page.
const PAGE: i64 = 500;

impl Engine {
    /// The report of what was decided in `period` (in `environment`, if given), as of `now`.
    pub async fn change_report(
        &self,
        who: &Principal,
        period: Period,
        environment: Option<&str>,
        now: i64,
    ) -> Result<Report> {
        if !self.reads_everything(who) {
            return Err(AppError::Forbidden(
                ErrorCode::RoleRequired,
                "the change report needs the `auditor` or `admin` role (`roles:` on a user in gate.yaml)".into(),
            ));
        }
        let keys = self.event_keys();
        let mut rows = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .decided_page((period.from, period.to), environment.unwrap_or(""), after.clone(), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.decided_at, last.id.clone()));
            let full = page.len() as i64 == PAGE;
            for d in page {
                let tampered = |why: String| {
                    AppError::Conflict(
                        ErrorCode::Tampered,
                        format!("request {}: {why}; run `gate audit verify`", d.id),
                    )
                };
                let envelope = d
                    .envelope
                    .as_deref()
                    .ok_or_else(|| tampered("it was decided but has no signed record".into()))?;
                crate::core::audit::record::open(envelope, &keys)
                    .map_err(|e| tampered(format!("its signed record does not verify: {e}")))?;
                rows.push(report::row_of(&d.id, envelope).map_err(|e| tampered(e.to_string()))?);
            }
            if !full {
                break;
            }
        }
        Ok(report::build(rows, &period, environment, now))
    }
}
