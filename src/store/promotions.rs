//! The reads of a `promotion` check: approvals used in an environment lately. The same
//! SQL for both databases.

use super::{REQUEST_COLS, RequestRow, Result, Store, request_row};

impl Store {
    /// Requests in `environment` (and `repository`, when it is not empty) consumed at or
    /// after `since`, newest first, at most `limit`.
    pub async fn consumed_since(
        &self,
        environment: &str,
        repository: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<RequestRow>> {
        let sql = format!(
            "SELECT {REQUEST_COLS} FROM gate_requests WHERE environment = $1 AND ($2 = '' OR repository = $2) \
             AND status = 'consumed' AND consumed_at >= $3 ORDER BY consumed_at DESC, id LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(environment)
            .bind(repository)
            .bind(since)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_row).collect()
    }
}
