//! The notification outbox: rows queued in the same transaction as the change they tell
//! about, claimed by one delivery worker at a time with a compare-and-set lease, retried
//! until delivered or given up. The same SQL runs on SQLite and PostgreSQL.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Store, Tx};
use crate::core::audit;

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

/// A channel that every audit event of the kinds it wants is queued to, as the event
/// is appended, in the writer's transaction: so a kind added to the chain anywhere flows
/// to the SIEM without code of its own (`notify.syslog`, `notify.hec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSink {
    /// The outbox channel (`syslog`, `hec`).
    pub channel: String,
    /// The channel's configured name.
    pub recipient: String,
    /// The kinds wanted; `None` is every kind.
    pub kinds: Option<Vec<String>>,
}

impl AuditSink {
    pub fn wants(&self, kind: &str) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.iter().any(|k| k == kind))
    }
}

/// Where appended audit events go, and what to call once a transaction that queued
/// some committed (the delivery worker's wake-up).
#[derive(Default)]
pub struct AuditOut {
    pub sinks: Vec<AuditSink>,
    pub wake: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for AuditOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditOut")
            .field("sinks", &self.sinks)
            .finish_non_exhaustive()
    }
}

impl AuditOut {
    pub(super) fn woken(&self) {
        if let Some(w) = &self.wake {
            w();
        }
    }
}

/// The document an audit event is delivered as (the syslog MSG, the HEC `event`): the
/// chain's row as stored, with the request's environment and repository beside it.
pub fn audit_document(r: &audit::Row, environment: &str, repository: &str) -> serde_json::Value {
    let data: serde_json::Value = serde_json::from_str(&r.data).unwrap_or(serde_json::Value::String(r.data.clone()));
    serde_json::json!({
        "seq": r.seq,
        "at": crate::core::duration::rfc3339(r.at),
        "kind": r.kind,
        "request_id": r.request_id,
        "actor": r.actor,
        "environment": environment,
        "repository": repository,
        "data": data,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
        "sig": r.sig,
    })
}

impl Tx {
    /// Queues `r`, just appended, to every audit sink that wants its kind.
    pub(super) async fn queue_audit(&mut self, r: &audit::Row) -> Result<()> {
        debug_assert!(
            audit::KINDS.contains(&r.kind.as_str()),
            "audit kind `{}` is not in core::audit::KINDS: add it there (and to docs/notifications.md)",
            r.kind
        );
        let sinks: Vec<AuditSink> = self
            .audit_out
            .sinks
            .iter()
            .filter(|s| s.wants(&r.kind))
            .cloned()
            .collect();
        if sinks.is_empty() {
            return Ok(());
        }
        let (environment, repository) = if r.request_id.is_empty() {
            (String::new(), String::new())
        } else {
            let row = sqlx::query("SELECT environment, repository FROM gate_requests WHERE id = $1")
                .bind(&r.request_id)
                .fetch_optional(&mut *self.tx)
                .await?;
            match row {
                Some(row) => (row.try_get("environment")?, row.try_get("repository")?),
                None => (String::new(), String::new()),
            }
        };
        let payload = audit_document(r, &environment, &repository).to_string();
        for s in sinks {
            self.enqueue_notification(&NotificationDraft {
                key: format!("audit:{}:{}:{}", r.seq, s.channel, s.recipient),
                request_id: r.request_id.clone(),
                event: r.kind.clone(),
                channel: s.channel.clone(),
                recipient: s.recipient.clone(),
                payload: payload.clone(),
                created_at: r.at,
            })
            .await?;
        }
        Ok(())
    }

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

    /// How many rows of `channel` with event `event` request `request_id` has queued
    /// (this transaction's included).
    pub async fn count_notifications(&mut self, request_id: &str, channel: &str, event: &str) -> Result<i64> {
        use sqlx::Row;
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM gate_outbox WHERE request_id = $1 AND channel = $2 AND event = $3")
                .bind(request_id)
                .bind(channel)
                .bind(event)
                .fetch_one(&mut *self.tx)
                .await?;
        Ok(row.try_get::<i64, _>("n")?)
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
