//! Webhook deliveries from GitHub and GitLab: each is acted on once.

use super::{Result, Store};

impl Store {
    /// Remembers a delivery (`forge` is `github` or `gitlab`; `id` its delivery id).
    /// Returns `false`, changing nothing, when it was seen before: a replay.
    pub async fn add_delivery(&self, forge: &str, id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO gate_webhook_deliveries (forge, delivery_id, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(forge)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes what a delivery did: the request it voted on, and the outcome.
    pub async fn finish_delivery(&self, forge: &str, id: &str, request_id: Option<&str>, outcome: &str) -> Result<()> {
        sqlx::query(
            "UPDATE gate_webhook_deliveries SET request_id = $1, outcome = $2 WHERE forge = $3 AND delivery_id = $4",
        )
        .bind(request_id)
        .bind(outcome)
        .bind(forge)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What a delivery did, if it was seen: `(request_id, outcome)`.
    pub async fn delivery(&self, forge: &str, id: &str) -> Result<Option<(Option<String>, Option<String>)>> {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT request_id, outcome FROM gate_webhook_deliveries WHERE forge = $1 AND delivery_id = $2",
        )
        .bind(forge)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("request_id")?, r.try_get("outcome")?)))
            .transpose()
    }
}
