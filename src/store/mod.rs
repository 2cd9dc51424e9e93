//! One store over sqlx's `Any` driver: the same SQL and the same code path for SQLite
//! (the default, WAL, under the data dir) and PostgreSQL. Writers use a compare-and-set
//! on the request's `version`, so concurrent votes resolve to one outcome without any
//! lock held in memory; the audit chain's primary key makes a forked chain impossible.

mod chain;
mod connect;
mod copy;
mod delegations;
mod deliveries;
mod health;
pub mod keyfile;
mod log;
mod migrate;
mod promotions;
mod reports;
mod scim;
mod scope;
mod web;

pub use copy::{Copied, CopyError, Side};
pub use log::CheckpointRow;
pub use reports::DecidedRow;
pub use scim::{ScimGroupRow, ScimUserRow, Standing};
pub use web::{HistoryFilter, SessionRow, SsoLogin};

mod outbox;

pub use outbox::{AuditOut, AuditSink, NotificationDraft, NotificationRow};

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::core::decide::Status;

/// Which database we talk to; SQL is shared, only a few statements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Another writer changed the row first; the caller re-reads and tries again.
    #[error("write conflict")]
    Conflict,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Events are signed as they are written; a store opened without the key cannot write them.
    #[error("this store has no event signing key, so it cannot append audit events")]
    NoEventKey,
}

impl StoreError {
    /// Conflicts, unique violations and busy/serialization errors are retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Conflict => true,
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code().map(|c| c.to_string()).unwrap_or_default();
                let msg = e.message().to_ascii_lowercase();
                e.is_unique_violation()
                    || code == "40001"
                    || code == "40P01"
                    || msg.contains("database is locked")
                    || msg.contains("busy")
            }
            StoreError::Db(sqlx::Error::PoolTimedOut) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a page of a listing ended: the `created_at` and id of its last row. Listings are
/// ordered by (`created_at`, id), so this is a stable place to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub created_at: i64,
    pub id: String,
}

/// A request row. `doc` holds the JSON of everything that never changes after creation
/// plus the decision's who and why.
#[derive(Debug, Clone)]
pub struct RequestRow {
    pub id: String,
    pub idem_key: String,
    pub status: Status,
    pub version: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub approval_expires_at: Option<i64>,
    pub decided_at: Option<i64>,
    pub consumed_at: Option<i64>,
    pub environment: String,
    pub repository: String,
    pub opened_by: String,
    pub doc: String,
}

#[derive(Debug, Clone)]
pub struct VoteRow {
    pub voter: String,
    pub approve: bool,
    pub reason: Option<String>,
    pub at: i64,
    pub via: String,
    /// JSON of `api::VoteMeta` beyond `via` (auth time, amr, source); `None` for none.
    pub meta: Option<String>,
}

/// An event to append to the chain.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    pub at: i64,
    pub request_id: String,
    pub kind: String,
    pub actor: String,
    pub data: serde_json::Value,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    /// The key every audit event is signed with as it is appended. It lives in this
    /// process only (the database never holds it), so a row written straight into the
    /// database cannot carry a valid signature.
    event_key: Option<std::sync::Arc<ed25519_dalek::SigningKey>>,
    /// The channels every appended audit event is queued to (`notify.syslog`, `notify.hec`).
    audit_out: std::sync::Arc<AuditOut>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A write transaction. Dropped without `commit`, it rolls back.
pub struct Tx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    event_key: Option<std::sync::Arc<ed25519_dalek::SigningKey>>,
    audit_out: std::sync::Arc<AuditOut>,
    /// Set when a notification is queued in this transaction.
    queued: bool,
    /// The transparency log as this transaction has read and written it (see `log.rs`).
    log: log::TxLog,
}

/// The advisory lock key that serializes writers on PostgreSQL (see `Store::begin`).
const WRITE_LOCK: i64 = 727_576;

/// The PostgreSQL channel that carries request changes between replicas.
pub const CHANGES_CHANNEL: &str = "jitgate_changes";

const REQUEST_COLS: &str = "id, idem_key, status, version, created_at, expires_at, approval_expires_at, decided_at, consumed_at, environment, repository, opened_by, doc";

impl Store {
    /// Connects (see [`Store::open`]) and applies migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        let store = Store::open(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Brings the schema to this version's (the migrations not yet applied, in order).
    pub async fn migrate(&self) -> Result<()> {
        migrate::run(self).await
    }

    /// Streams changes committed by any replica (PostgreSQL only; `None` on SQLite).
    /// Reconnects are the caller's business: the stream ends when the connection drops.
    pub async fn listen_changes(&self) -> Result<Option<sqlx::postgres::PgListener>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut l = sqlx::postgres::PgListener::connect(&self.url).await?;
        l.listen(CHANGES_CHANNEL).await?;
        Ok(Some(l))
    }

    /// The store, signing the audit events it appends with `key`.
    pub fn with_event_key(mut self, key: ed25519_dalek::SigningKey) -> Store {
        self.event_key = Some(std::sync::Arc::new(key));
        self
    }

    /// The store, queuing every audit event it appends to `out`'s channels.
    pub fn with_audit_out(mut self, out: AuditOut) -> Store {
        self.audit_out = std::sync::Arc::new(out);
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction that holds the write lock from its first statement, so
    /// writers queue instead of colliding. Every write appends to the one audit chain, so
    /// writes are serial anyway; without this, concurrent PostgreSQL writers read the same
    /// chain head and all but one fail and retry (measured: thousands of rollbacks under
    /// 16 concurrent approvers). SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped
    /// advisory lock, which every replica honours.
    pub async fn begin(&self) -> Result<Tx> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        Ok(Tx {
            tx,
            backend: self.backend,
            event_key: self.event_key.clone(),
            audit_out: self.audit_out.clone(),
            queued: false,
            log: Default::default(),
        })
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<(RequestRow, Vec<VoteRow>)>> {
        let sql = format!("SELECT {REQUEST_COLS} FROM gate_requests WHERE id = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let req = request_row(&row)?;
        let votes = self.votes(id).await?;
        Ok(Some((req, votes)))
    }

    pub async fn find_by_key(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT id FROM gate_requests WHERE idem_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    pub async fn votes(&self, id: &str) -> Result<Vec<VoteRow>> {
        let rows = sqlx::query(
            "SELECT request_id, voter, approve, reason, at, via, meta FROM gate_votes WHERE request_id = $1 ORDER BY at, voter",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(vote_row(r)?.1)).collect()
    }

    /// The votes on every request in `status`, by request id, in one query (for listings).
    pub async fn votes_by_status(&self, status: Status) -> Result<std::collections::HashMap<String, Vec<VoteRow>>> {
        let rows = sqlx::query(
            "SELECT v.request_id, v.voter, v.approve, v.reason, v.at, v.via, v.meta FROM gate_votes v JOIN gate_requests r ON r.id = v.request_id WHERE r.status = $1 ORDER BY v.at, v.voter",
        )
        .bind(status.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out: std::collections::HashMap<String, Vec<VoteRow>> = std::collections::HashMap::new();
        for r in &rows {
            let (id, v) = vote_row(r)?;
            out.entry(id).or_default().push(v);
        }
        Ok(out)
    }

    /// Requests in a status, oldest first; without a status, newest first.
    pub async fn list(&self, status: Option<Status>, limit: i64) -> Result<Vec<RequestRow>> {
        self.list_after(status, None, limit).await
    }

    /// One page of [`Store::list`]: the rows that come after `after` (the `created_at` and
    /// id of the last row of the previous page) in the listing's order. Keyset paging, so a
    /// page costs the same however deep it is and rows added meanwhile are not skipped.
    pub async fn list_after(
        &self,
        status: Option<Status>,
        after: Option<&Position>,
        limit: i64,
    ) -> Result<Vec<RequestRow>> {
        // With no position, one before every row: no request is created at or before the
        // epoch, nor at or after the end of time.
        let start = if status.is_some() { i64::MIN } else { i64::MAX };
        let (at, id) = after
            .map(|p| (p.created_at, p.id.clone()))
            .unwrap_or((start, String::new()));
        let rows = match status {
            Some(s) => {
                let sql = format!(
                    "SELECT {REQUEST_COLS} FROM gate_requests WHERE status = $1 AND (created_at > $2 OR (created_at = $2 AND id > $3)) ORDER BY created_at, id LIMIT $4"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(s.as_str())
                    .bind(at)
                    .bind(id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {REQUEST_COLS} FROM gate_requests WHERE (created_at < $1 OR (created_at = $1 AND id > $2)) ORDER BY created_at DESC, id LIMIT $3"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(at)
                    .bind(id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(request_row).collect()
    }

    /// The votes on these requests, by request id, in one query (for a page of a listing).
    pub async fn votes_for(&self, ids: &[String]) -> Result<std::collections::HashMap<String, Vec<VoteRow>>> {
        let mut out: std::collections::HashMap<String, Vec<VoteRow>> = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let marks: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT request_id, voter, approve, reason, at, via, meta FROM gate_votes WHERE request_id IN ({}) ORDER BY at, voter",
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(id.clone());
        }
        for r in &q.fetch_all(&self.pool).await? {
            let (id, v) = vote_row(r)?;
            out.entry(id).or_default().push(v);
        }
        Ok(out)
    }

    /// Ids of requests whose deadline (timeout, or end of the approval window) has passed,
    /// and the earliest deadline still ahead.
    pub async fn due(&self, now: i64) -> Result<(Vec<String>, Option<i64>)> {
        let rows = sqlx::query(
            "SELECT id FROM gate_requests WHERE deadline IS NOT NULL AND deadline <= $1 ORDER BY deadline LIMIT 500",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let ids = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<Vec<String>, _>>()?;
        let next: Option<i64> =
            sqlx::query("SELECT MIN(deadline) AS d FROM gate_requests WHERE deadline IS NOT NULL AND deadline > $1")
                .bind(now)
                .fetch_one(&self.pool)
                .await?
                .try_get("d")?;
        Ok((ids, next))
    }

    /// Remembers a holder token (its digest) for a request.
    pub async fn add_holder(&self, id: &str, token_sha256: &str, now: i64, keep: i64) -> Result<()> {
        sqlx::query("INSERT INTO gate_holders (request_id, token_sha256, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(token_sha256)
            .bind(now)
            .execute(&self.pool)
            .await?;
        // The new one and the `keep - 1` newest before it stay; older ones stop working.
        sqlx::query("DELETE FROM gate_holders WHERE request_id = $1 AND token_sha256 <> $2 AND token_sha256 NOT IN (SELECT token_sha256 FROM gate_holders WHERE request_id = $1 AND token_sha256 <> $2 ORDER BY created_at DESC, token_sha256 LIMIT $3)")
            .bind(id).bind(token_sha256).bind(keep - 1).execute(&self.pool).await?;
        Ok(())
    }

    /// Digests of a request's holder tokens.
    pub async fn holders(&self, id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT token_sha256 FROM gate_holders WHERE request_id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("token_sha256")?)).collect()
    }

    pub async fn record(&self, id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT envelope FROM gate_records WHERE request_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("envelope")).transpose()?)
    }

    pub async fn count_records(&self, id: &str) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM gate_records WHERE request_id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }
}

impl Tx {
    pub async fn commit(mut self) -> Result<()> {
        self.log_flush().await?;
        self.tx.commit().await?;
        if self.queued {
            self.audit_out.woken();
        }
        Ok(())
    }

    /// Inserts a new request (fails with a unique violation on a duplicate idempotency key).
    pub async fn insert_request(&mut self, r: &RequestRow, deadline: Option<i64>) -> Result<()> {
        sqlx::query(
            "INSERT INTO gate_requests (id, idem_key, status, version, created_at, expires_at, approval_expires_at, decided_at, consumed_at, environment, repository, opened_by, doc, deadline) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
        )
        .bind(&r.id)
        .bind(&r.idem_key)
        .bind(r.status.as_str())
        .bind(r.version)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.approval_expires_at)
        .bind(r.decided_at)
        .bind(r.consumed_at)
        .bind(&r.environment)
        .bind(&r.repository)
        .bind(&r.opened_by)
        .bind(&r.doc)
        .bind(deadline)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Compare-and-set: writes the new state only if nobody changed the row since
    /// `r.version - 1` was read. `Conflict` otherwise.
    pub async fn update_request(&mut self, r: &RequestRow, deadline: Option<i64>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE gate_requests SET status = $1, version = $2, approval_expires_at = $3, decided_at = $4, consumed_at = $5, doc = $6, deadline = $7 WHERE id = $8 AND version = $9",
        )
        .bind(r.status.as_str())
        .bind(r.version)
        .bind(r.approval_expires_at)
        .bind(r.decided_at)
        .bind(r.consumed_at)
        .bind(&r.doc)
        .bind(deadline)
        .bind(&r.id)
        .bind(r.version - 1)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    /// Gives request `id` another idempotency key, so that its old key may open a new
    /// request (a re-run of a GitHub workflow run asks again under the same run id).
    pub async fn rekey_request(&mut self, id: &str, key: &str) -> Result<()> {
        sqlx::query("UPDATE gate_requests SET idem_key = $1 WHERE id = $2")
            .bind(key)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn insert_vote(&mut self, request_id: &str, v: &VoteRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO gate_votes (request_id, voter, approve, reason, at, via, meta) VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(request_id)
        .bind(&v.voter)
        .bind(v.approve as i64)
        .bind(&v.reason)
        .bind(v.at)
        .bind(&v.via)
        .bind(&v.meta)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Tells other replicas (PostgreSQL LISTEN/NOTIFY, delivered on commit) that a request
    /// changed. SQLite has one server process, so there is no one to tell.
    pub async fn notify_change(&mut self, id: &str, status: Status, version: i64) -> Result<()> {
        if self.backend == Backend::Postgres {
            let payload = serde_json::json!({"id": id, "status": status, "version": version}).to_string();
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind(payload)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Stores (or supersedes, when an approval is consumed or lapses) the signed record.
    pub async fn put_record(&mut self, request_id: &str, envelope: &str, now: i64) -> Result<()> {
        let n = sqlx::query("UPDATE gate_records SET envelope = $1, updated_at = $2 WHERE request_id = $3")
            .bind(envelope)
            .bind(now)
            .bind(request_id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        if n == 0 {
            sqlx::query("INSERT INTO gate_records (request_id, envelope, updated_at) VALUES ($1,$2,$3)")
                .bind(request_id)
                .bind(envelope)
                .bind(now)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}

fn vote_row(r: &AnyRow) -> Result<(String, VoteRow)> {
    Ok((
        r.try_get("request_id")?,
        VoteRow {
            voter: r.try_get("voter")?,
            approve: r.try_get::<i64, _>("approve")? != 0,
            reason: r.try_get("reason")?,
            at: r.try_get("at")?,
            via: r.try_get("via")?,
            meta: r.try_get("meta")?,
        },
    ))
}

fn request_row(r: &AnyRow) -> Result<RequestRow> {
    let id: String = r.try_get("id")?;
    let status: String = r.try_get("status")?;
    let status = Status::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("request {id} has the unknown status `{status}`")))?;
    Ok(RequestRow {
        id,
        idem_key: r.try_get("idem_key")?,
        status,
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        approval_expires_at: r.try_get("approval_expires_at")?,
        decided_at: r.try_get("decided_at")?,
        consumed_at: r.try_get("consumed_at")?,
        environment: r.try_get("environment")?,
        repository: r.try_get("repository")?,
        opened_by: r.try_get("opened_by")?,
        doc: r.try_get("doc")?,
    })
}
