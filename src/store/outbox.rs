//! The notification outbox: rows queued in the same transaction as the change they tell
//! about, claimed by one delivery worker at a time with a compare-and-set lease, retried
//! until delivered or given up. The same SQL runs on SQLite and PostgreSQL.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Store, Tx};

/// A notification to queue.
#[derive(Debug, Clone)]
pub struct NotificationDraft {
    /// `<request id>:<event>:<channel>:<recipient>`: queuing it twice queues it once.
    pub key: String,
    pub request_id: String,
    pub event: String,
    /// `webhook`, `slack` or `email`.
    pub channel: String,
    /// The webhook or Slack channel's name, or an email address.
    pub recipient: String,
    /// The JSON document delivered (webhooks) or rendered (Slack, email).
    pub payload: String,
    pub created_at: i64,
}

/// A queued notification and where its delivery stands.
#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub id: String,
    pub key: String,
    pub request_id: String,
    pub event: String,
    pub channel: String,
    pub recipient: String,
    pub payload: String,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub claimed_until: Option<i64>,
    pub delivered_at: Option<i64>,
    pub gave_up_at: Option<i64>,
    pub last_error: Option<String>,
}

const COLS: &str = "id, idem_key, request_id, event, channel, recipient, payload, created_at, attempts, next_attempt_at, claimed_until, delivered_at, gave_up_at, last_error";

impl Tx {
    /// Queues a notification, durable exactly when this transaction commits. A key already
    /// queued is left as it is (returns `false`).
    pub async fn enqueue_notification(&mut self, n: &NotificationDraft) -> Result<bool> {
        let id = format!("ntf_{}", uuid::Uuid::new_v4().simple());
        let done = sqlx::query(
            "INSERT INTO gate_outbox (id, idem_key, request_id, event, channel, recipient, payload, created_at, attempts, next_attempt_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,0,$9) ON CONFLICT (idem_key) DO NOTHING",
        )
        .bind(&id)
        .bind(&n.key)
        .bind(&n.request_id)
        .bind(&n.event)
        .bind(&n.channel)
        .bind(&n.recipient)
        .bind(&n.payload)
        .bind(n.created_at)
        .bind(n.created_at)
        .execute(&mut *self.tx)
        .await?;
        let new = done.rows_affected() == 1;
        self.queued |= new;
        Ok(new)
    }

    /// Whether this transaction queued any notification, so whoever commits it wakes
    /// the worker.
    pub fn queued_notifications(&self) -> bool {
        self.queued
    }
}

impl Store {
    /// Claims up to `limit` due notifications for `claimer` until `lease_until`, counting
    /// the attempt. The claim is a compare-and-set on the lease: a row another worker (on
    /// this replica or another) holds is skipped, so no two workers send a row at once.
    pub async fn claim_notifications(
        &self,
        claimer: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<NotificationRow>> {
        let sql = format!(
            "UPDATE gate_outbox SET claimed_by = $1, claimed_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM gate_outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL \
                 AND next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3) \
                 ORDER BY next_attempt_at LIMIT $4) \
             AND delivered_at IS NULL AND gave_up_at IS NULL AND (claimed_until IS NULL OR claimed_until < $3) \
             RETURNING {COLS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(claimer)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        let mut out = rows.iter().map(notification_row).collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|r| (r.next_attempt_at, r.created_at));
        Ok(out)
    }

    /// Marks a claimed notification delivered (if the claim is still `claimer`'s).
    pub async fn notification_delivered(&self, id: &str, claimer: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE gate_outbox SET delivered_at = $1, claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE id = $2 AND claimed_by = $3 AND delivered_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(claimer)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed attempt: retried at `next_attempt_at`, or given up when `give_up`.
    pub async fn notification_failed(
        &self,
        id: &str,
        claimer: &str,
        error: &str,
        next_attempt_at: i64,
        give_up: Option<i64>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE gate_outbox SET last_error = $1, next_attempt_at = $2, gave_up_at = $3, claimed_by = NULL, claimed_until = NULL WHERE id = $4 AND claimed_by = $5 AND delivered_at IS NULL",
        )
        .bind(error)
        .bind(next_attempt_at)
        .bind(give_up)
        .bind(id)
        .bind(claimer)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// When the next undelivered notification becomes due (or its lease runs out).
    pub async fn next_notification_due(&self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > next_attempt_at THEN claimed_until ELSE next_attempt_at END) AS d FROM gate_outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("d")?)
    }

    /// Notifications, newest first; of one request, oldest first, when `request_id` is
    /// given; only those past `after` (a row's position on the previous page).
    pub async fn notifications(
        &self,
        request_id: Option<&str>,
        after: Option<&super::Position>,
        limit: i64,
    ) -> Result<Vec<NotificationRow>> {
        // Keyset pages: one request's oldest first, everyone's newest first; the position
        // is a row's (created_at, idem_key), so a page never repeats or skips a row.
        let (at, key) = after.map_or((None, None), |p| (Some(p.created_at), Some(p.id.as_str())));
        let (filter, order, past) = match request_id {
            Some(_) => ("request_id = $1", "created_at, idem_key", ">"),
            None => ("$1 IS NULL", "created_at DESC, idem_key DESC", "<"),
        };
        let sql = format!(
            "SELECT {COLS} FROM gate_outbox WHERE {filter} AND ($2 IS NULL OR created_at {past} $2 OR (created_at = $2 AND idem_key {past} $3)) ORDER BY {order} LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(request_id)
            .bind(at)
            .bind(key)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(notification_row).collect()
    }
}

fn notification_row(r: &AnyRow) -> Result<NotificationRow> {
    Ok(NotificationRow {
        id: r.try_get("id")?,
        key: r.try_get("idem_key")?,
        request_id: r.try_get("request_id")?,
        event: r.try_get("event")?,
        channel: r.try_get("channel")?,
        recipient: r.try_get("recipient")?,
        payload: r.try_get("payload")?,
        created_at: r.try_get("created_at")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        claimed_until: r.try_get("claimed_until")?,
        delivered_at: r.try_get("delivered_at")?,
        gave_up_at: r.try_get("gave_up_at")?,
        last_error: r.try_get("last_error")?,
    })
}
