//! Opening the pool: SQLite tuned for durable concurrent use, or PostgreSQL.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;

use super::{Backend, Result, Store, StoreError};

impl Store {
    /// Connects and tunes SQLite for durable concurrent use, without migrating: the
    /// schema is as found (`gate migrate-data` reads a source it must not change).
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Corrupt(format!(
                "unsupported database URL `{}`: use sqlite://PATH or postgres://…",
                url.split('@').next_back().unwrap_or(url)
            )));
        };
        let opts = sqlx::any::AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the writer; FULL makes each commit durable.
                            sqlx::raw_sql(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000; PRAGMA foreign_keys=ON;",
                            )
                            .execute(conn)
                            .await?;
                            Ok(())
                        })
                    })
                    // See `health.rs`: a connection SQLite left "in a transaction" is dropped.
                    .before_acquire(|conn, _| {
                        Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
                    })
                    .connect_with(opts)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await?
            }
        };
        let store = Store {
            pool,
            backend,
            url: url.to_string(),
            event_key: None,
            audit_out: Default::default(),
        };
        Ok(store)
    }
}
