//! Fresh PostgreSQL databases, one per server under test.
//!
//! Shared by the integration tests (`tests/it`) and `gate-load` (`benches/load.rs`, which
//! includes this file with `#[path]`): only the crate's own dependencies here.
#![allow(dead_code)]

/// A new database name with `prefix`: `PREFIX<24 hex digits>`.
pub fn database_name(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// `url` with its database (path) replaced by `db`, keeping credentials and query.
pub fn with_database(url: &str, db: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| *s == "postgres" || *s == "postgresql")
        .ok_or_else(|| "a PostgreSQL URL must be postgres://…".to_string())?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    Ok(match query {
        Some(q) => format!("{scheme}://{authority}/{db}?{q}"),
        None => format!("{scheme}://{authority}/{db}"),
    })
}

/// `CREATE DATABASE name`, connected as `admin_url`.
pub async fn create_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection as _;
    let mut conn = sqlx::postgres::PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await
}
