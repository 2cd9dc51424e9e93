//! What the web UI keeps: sessions (by the SHA-256 of their id), single sign-on logins in
//! flight (by the SHA-256 of their `state`), and the filtered history query.

use sqlx::Row;

use super::{Position, REQUEST_COLS, RequestRow, Result, Store, request_row};
use crate::core::decide::Status;

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id_sha256: String,
    /// A `users:` name, or for a read-only session, the identity that signed in.
    pub user_name: String,
    /// False for read-only sessions (admitted by `allowed_domains` without a `users:` entry).
    pub can_vote: bool,
    /// `session` (token sign-in) or `sso`.
    pub via: String,
    /// Unix ms of the authentication (the ID token's `auth_time`, or the token sign-in).
    pub auth_time: i64,
    /// The ID token's `amr` values.
    pub amr: Vec<String>,
    /// The per-session anti-forgery token every form carries.
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// The identity provider's groups at sign-in (`sso.groups_claim`); `None` when the
    /// session did not come from single sign-on with a groups claim.
    pub idp_groups: Option<Vec<String>>,
}

/// A single sign-on login between the redirect to the provider and its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoLogin {
    pub state_sha256: String,
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Where to go once signed in (a local path).
    pub next: String,
    pub expires_at: i64,
}

/// Filters of the history page; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub repository: Option<String>,
    pub environment: Option<String>,
    pub status: Option<Status>,
    /// Unix ms, inclusive.
    pub from: Option<i64>,
    /// Unix ms, exclusive.
    pub to: Option<i64>,
    /// Resume after this row of the previous page.
    pub after: Option<Position>,
    pub limit: i64,
}

impl Store {
    pub async fn insert_session(&self, s: &SessionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO gate_sessions (id_sha256, user_name, can_vote, via, auth_time, amr, csrf, created_at, expires_at, idp_groups) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
        )
        .bind(&s.id_sha256)
        .bind(&s.user_name)
        .bind(s.can_vote as i64)
        .bind(&s.via)
        .bind(s.auth_time)
        .bind(serde_json::to_string(&s.amr).unwrap_or_else(|_| "[]".into()))
        .bind(&s.csrf)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.idp_groups.as_ref().and_then(|g| serde_json::to_string(g).ok()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this id digest, if it has not expired at `now`.
    pub async fn session(&self, id_sha256: &str, now: i64) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT id_sha256, user_name, can_vote, via, auth_time, amr, csrf, created_at, expires_at, idp_groups FROM gate_sessions WHERE id_sha256 = $1 AND expires_at > $2",
        )
        .bind(id_sha256)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let amr: String = r.try_get("amr")?;
        let groups: Option<String> = r.try_get("idp_groups")?;
        Ok(Some(SessionRow {
            id_sha256: r.try_get("id_sha256")?,
            user_name: r.try_get("user_name")?,
            can_vote: r.try_get::<i64, _>("can_vote")? != 0,
            via: r.try_get("via")?,
            auth_time: r.try_get("auth_time")?,
            amr: serde_json::from_str(&amr).unwrap_or_default(),
            csrf: r.try_get("csrf")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
            idp_groups: groups.and_then(|g| serde_json::from_str(&g).ok()),
        }))
    }

    pub async fn delete_session(&self, id_sha256: &str) -> Result<()> {
        sqlx::query("DELETE FROM gate_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets expired sessions and logins.
    pub async fn purge_sessions(&self, now: i64) -> Result<()> {
        sqlx::query("DELETE FROM gate_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM gate_sso_logins WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn insert_sso_login(&self, l: &SsoLogin) -> Result<()> {
        sqlx::query(
            "INSERT INTO gate_sso_logins (state_sha256, nonce, verifier, next, expires_at) VALUES ($1,$2,$3,$4,$5)",
        )
        .bind(&l.state_sha256)
        .bind(&l.nonce)
        .bind(&l.verifier)
        .bind(&l.next)
        .bind(l.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes (deletes and returns) a login in flight: each `state` is good once.
    pub async fn take_sso_login(&self, state_sha256: &str, now: i64) -> Result<Option<SsoLogin>> {
        let row = sqlx::query(
            "SELECT state_sha256, nonce, verifier, next, expires_at FROM gate_sso_logins WHERE state_sha256 = $1",
        )
        .bind(state_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let gone = sqlx::query("DELETE FROM gate_sso_logins WHERE state_sha256 = $1")
            .bind(state_sha256)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let l = SsoLogin {
            state_sha256: r.try_get("state_sha256")?,
            nonce: r.try_get("nonce")?,
            verifier: r.try_get("verifier")?,
            next: r.try_get("next")?,
            expires_at: r.try_get("expires_at")?,
        };
        // Someone else took it between the read and the delete: not ours to use.
        Ok((gone == 1 && l.expires_at > now).then_some(l))
    }

    /// Requests matching the filter, newest first (then by id), at most `limit`.
    pub async fn history(&self, f: &HistoryFilter) -> Result<Vec<RequestRow>> {
        let mut sql = format!("SELECT {REQUEST_COLS} FROM gate_requests WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if f.repository.is_some() {
            sql.push_str(&format!(" AND repository = {}", next()));
        }
        if f.environment.is_some() {
            sql.push_str(&format!(" AND environment = {}", next()));
        }
        if f.status.is_some() {
            sql.push_str(&format!(" AND status = {}", next()));
        }
        if f.from.is_some() {
            sql.push_str(&format!(" AND created_at >= {}", next()));
        }
        if f.to.is_some() {
            sql.push_str(&format!(" AND created_at < {}", next()));
        }
        if f.after.is_some() {
            let (at, id) = (next(), next());
            sql.push_str(&format!(
                " AND (created_at < {at} OR (created_at = {at} AND id > {id}))"
            ));
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, id LIMIT {}", next()));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        let status = f.status.map(|s| s.as_str().to_string());
        for s in [&f.repository, &f.environment, &status].into_iter().flatten() {
            q = q.bind(s.clone());
        }
        for t in [f.from, f.to].into_iter().flatten() {
            q = q.bind(t);
        }
        if let Some(p) = &f.after {
            q = q.bind(p.created_at).bind(p.id.clone());
        }
        let rows = q.bind(f.limit).fetch_all(&self.pool).await?;
        rows.iter().map(request_row).collect()
    }
}
