//! The auditor's report reads: the requests decided in a period, with their stored
//! signed record, one keyset page at a time (ordered by decision time, then id), so a
//! year of changes never sits in one answer of the database. The same SQL for both.

use sqlx::Row;

use super::{Result, Store};

/// A request decided in the period and its record as stored (`None`: it has none, which
/// only a hand-edited database can produce).
#[derive(Debug, Clone)]
pub struct DecidedRow {
    pub id: String,
    pub decided_at: i64,
    pub envelope: Option<String>,
}

impl Store {
    /// The requests decided in `[from, to)`, in `environment` when it is not empty, after
    /// `after` (the `decided_at` and id of the previous page's last row), at most `limit`.
    pub async fn decided_page(
        &self,
        (from, to): (i64, i64),
        environment: &str,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<DecidedRow>> {
        let (at, id) = after.unwrap_or((i64::MIN, String::new()));
        let rows = sqlx::query(
            "SELECT r.id, r.decided_at, g.envelope FROM gate_requests r LEFT JOIN gate_records g ON g.request_id = r.id \
             WHERE r.decided_at >= $1 AND r.decided_at < $2 AND ($3 = '' OR r.environment = $3) \
             AND (r.decided_at > $4 OR (r.decided_at = $4 AND r.id > $5)) \
             ORDER BY r.decided_at, r.id LIMIT $6",
        )
        .bind(from)
        .bind(to)
        .bind(environment)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DecidedRow {
                    id: r.try_get("id")?,
                    decided_at: r.try_get("decided_at")?,
                    envelope: r.try_get("envelope")?,
                })
            })
            .collect()
    }
}
