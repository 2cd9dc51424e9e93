//! The lookup behind `approval_scope: run` and `supersede`: the live requests of one
//! repository and environment, read through the status index (pending and approved
//! requests are few; consumed ones only as far back as an approval can still last).

use super::{REQUEST_COLS, RequestRow, Result, Store, request_row};
use crate::core::decide::Status;

impl Store {
    /// Requests of `repository` and `environment` in one of `statuses`, created at or
    /// after `since`, oldest first (at most 500).
    pub async fn live_in(
        &self,
        repository: &str,
        environment: &str,
        statuses: &[Status],
        since: i64,
    ) -> Result<Vec<RequestRow>> {
        let mut out = Vec::new();
        // One range of the (status, created_at) index per status, the same SQL for both.
        for s in statuses {
            let sql = format!(
                "SELECT {REQUEST_COLS} FROM gate_requests WHERE status = $1 AND created_at >= $2 AND repository = $3 AND environment = $4 ORDER BY created_at, id LIMIT 500"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(s.as_str())
                .bind(since)
                .bind(repository)
                .bind(environment)
                .fetch_all(&self.pool)
                .await?;
            for r in &rows {
                out.push(request_row(r)?);
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }
}
