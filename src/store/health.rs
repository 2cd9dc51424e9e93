//! Whether the database can serve: the errors that mean it cannot (for now), and the
//! database's clock, which replicas share.
//!
//! A statement that fails with SQLITE_FULL (or an I/O error) can make SQLite roll the
//! transaction back by itself; sqlx's own ROLLBACK then fails and the connection stays
//! "in a transaction" for sqlx, refusing every later BEGIN. The SQLite pool therefore
//! drops such a connection instead of handing it out (`before_acquire` in `mod.rs`; found
//! by tests/it/faults_disk.rs). The pool's release ping has flushed any queued rollback
//! by then, so a healthy connection is never dropped.

use super::{Backend, Result, Store, StoreError};

impl StoreError {
    /// Why the database cannot serve right now, when that is the trouble: it is out of
    /// reach (down, restarting, the connection dropped) or its disk is full. Such an error
    /// is the client's to retry later (503), not a failure inside the server.
    pub fn unavailable(&self) -> Option<&'static str> {
        let StoreError::Db(e) = self else { return None };
        match e {
            // `Protocol`: the other end did not speak PostgreSQL's protocol, as when a
            // proxy in front of a database that is down accepts and closes at once.
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => {
                Some("the database is unavailable; retry")
            }
            sqlx::Error::Database(e) => {
                let code = e.code().map(|c| c.to_string()).unwrap_or_default();
                match code.as_str() {
                    // SQLite's SQLITE_FULL; PostgreSQL's disk_full.
                    "13" | "53100" => Some("the database's disk is full; retry once there is room"),
                    // PostgreSQL: connection exceptions (class 08), the server shutting
                    // down or restarting (57P01-57P03), too many connections (53300).
                    c if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "53300") => {
                        Some("the database is unavailable; retry")
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

impl Store {
    /// The database's clock in milliseconds since the Unix epoch (PostgreSQL); `None` on
    /// SQLite, where the database and the server share one machine's clock.
    pub async fn clock_ms(&self) -> Result<Option<i64>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let ms: i64 = sqlx::query_scalar("SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)")
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(ms))
    }
}
