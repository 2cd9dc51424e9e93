//! People and groups pushed by the identity provider over SCIM (`http::scim`): one row
//! per user and group with the resource as the provider wrote it (`doc`, JSON, without
//! `id`, `meta` and `members`), the columns the server looks things up by, a version for
//! ETags and compare-and-set, and group memberships as rows. A deleted user keeps its
//! row with `deleted_at` set: the person stays refused until the provider creates them
//! again.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Result, Store, StoreError};

/// A SCIM user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUserRow {
    pub id: String,
    /// `userName` as written.
    pub user_name: String,
    /// `userName` in its normal form (`core::identity`): unique, and what sign-ins match.
    pub user_key: String,
    /// The primary (or first) email in its normal form.
    pub email_key: Option<String>,
    pub external_id: Option<String>,
    pub active: bool,
    pub doc: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A SCIM group as stored; its members are `gate_scim_members` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroupRow {
    pub id: String,
    pub display_name: String,
    /// `displayName` caseless: unique, and what `{ scim_group: NAME }` names.
    pub name_key: String,
    pub external_id: Option<String>,
    pub doc: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Whether the provider lets a person in: what `Engine::check_active` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No SCIM user is this person: `gate.yaml` alone decides.
    Unmanaged,
    Active,
    /// Every SCIM user that is this person is deactivated or deleted.
    Refused,
}

const USER_COLS: &str = "id, user_name, user_key, email_key, external_id, active, doc, version, created_at, updated_at";
const GROUP_COLS: &str = "id, display_name, name_key, external_id, doc, version, created_at, updated_at";

fn user_row(r: &AnyRow) -> Result<ScimUserRow> {
    Ok(ScimUserRow {
        id: r.try_get("id")?,
        user_name: r.try_get("user_name")?,
        user_key: r.try_get("user_key")?,
        email_key: r.try_get("email_key")?,
        external_id: r.try_get("external_id")?,
        active: r.try_get::<i64, _>("active")? != 0,
        doc: r.try_get("doc")?,
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn group_row(r: &AnyRow) -> Result<ScimGroupRow> {
    Ok(ScimGroupRow {
        id: r.try_get("id")?,
        display_name: r.try_get("display_name")?,
        name_key: r.try_get("name_key")?,
        external_id: r.try_get("external_id")?,
        doc: r.try_get("doc")?,
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

// Dynamic SQL here is only column lists and `$n` placeholders built from constants;
// every value is bound.

/// `$from, $from+1, …` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// A transaction that writes from its first statement (SQLite: `BEGIN IMMEDIATE`, so
    /// two writers queue rather than fail on upgrading their lock).
    async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Adds a user; `Conflict` when a live user has the same `user_key`. A deleted user
    /// of that name is replaced (the provider created the person again).
    pub async fn scim_insert_user(&self, u: &ScimUserRow) -> Result<()> {
        let mut tx = self.write().await?;
        let old: Option<(String, Option<i64>)> =
            sqlx::query("SELECT id, deleted_at FROM gate_scim_users WHERE user_key = $1")
                .bind(&u.user_key)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("deleted_at")?)))
                .transpose()?;
        match old {
            Some((_, None)) => return Err(StoreError::Conflict),
            Some((id, Some(_))) => {
                sqlx::query("DELETE FROM gate_scim_users WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {}
        }
        sqlx::query(
            "INSERT INTO gate_scim_users (id, user_name, user_key, email_key, external_id, active, doc, version, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
        )
        .bind(&u.id)
        .bind(&u.user_name)
        .bind(&u.user_key)
        .bind(&u.email_key)
        .bind(&u.external_id)
        .bind(u.active as i64)
        .bind(&u.doc)
        .bind(u.version)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A live (not deleted) user.
    pub async fn scim_user(&self, id: &str) -> Result<Option<ScimUserRow>> {
        let q = format!("SELECT {USER_COLS} FROM gate_scim_users WHERE id = $1 AND deleted_at IS NULL");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_row)
            .transpose()
    }

    /// Every live user, oldest first (filters and pages are applied by the caller).
    pub async fn scim_users(&self) -> Result<Vec<ScimUserRow>> {
        let q = format!("SELECT {USER_COLS} FROM gate_scim_users WHERE deleted_at IS NULL ORDER BY created_at, id");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_row)
            .collect()
    }

    /// Replaces a user if it is still at `u.version - 1`; `Conflict` when it moved on or
    /// another live user has the new `user_key`.
    pub async fn scim_update_user(&self, u: &ScimUserRow) -> Result<()> {
        let taken = sqlx::query("SELECT id FROM gate_scim_users WHERE user_key = $1 AND id <> $2")
            .bind(&u.user_key)
            .bind(&u.id)
            .fetch_optional(&self.pool)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict);
        }
        let done = sqlx::query(
            "UPDATE gate_scim_users SET user_name = $1, user_key = $2, email_key = $3, external_id = $4, active = $5, doc = $6, version = $7, updated_at = $8 WHERE id = $9 AND version = $10 AND deleted_at IS NULL",
        )
        .bind(&u.user_name)
        .bind(&u.user_key)
        .bind(&u.email_key)
        .bind(&u.external_id)
        .bind(u.active as i64)
        .bind(&u.doc)
        .bind(u.version)
        .bind(u.updated_at)
        .bind(&u.id)
        .bind(u.version - 1)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    /// Marks a user deleted and drops it from its groups; false when there was none.
    pub async fn scim_delete_user(&self, id: &str, now: i64) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE gate_scim_users SET deleted_at = $1, active = 0, version = version + 1 WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM gate_scim_members WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether any SCIM user with one of these normal forms (as `userName` or email) is
    /// live and active.
    pub async fn scim_standing(&self, keys: &[String]) -> Result<Standing> {
        if keys.is_empty() {
            return Ok(Standing::Unmanaged);
        }
        let q = format!(
            "SELECT active, deleted_at FROM gate_scim_users WHERE user_key IN ({}) OR email_key IN ({})",
            placeholders(1, keys.len()),
            placeholders(1 + keys.len(), keys.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(q));
        for k in keys.iter().chain(keys) {
            query = query.bind(k);
        }
        let rows = query.fetch_all(&self.pool).await?;
        if rows.is_empty() {
            return Ok(Standing::Unmanaged);
        }
        for r in &rows {
            let deleted: Option<i64> = r.try_get("deleted_at")?;
            if r.try_get::<i64, _>("active")? != 0 && deleted.is_none() {
                return Ok(Standing::Active);
            }
        }
        Ok(Standing::Refused)
    }

    /// Adds a group with its members; `Conflict` when the name is taken.
    pub async fn scim_insert_group(&self, g: &ScimGroupRow, members: &[String]) -> Result<()> {
        let mut tx = self.write().await?;
        let taken = sqlx::query("SELECT id FROM gate_scim_groups WHERE name_key = $1")
            .bind(&g.name_key)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict);
        }
        sqlx::query(
            "INSERT INTO gate_scim_groups (id, display_name, name_key, external_id, doc, version, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        )
        .bind(&g.id)
        .bind(&g.display_name)
        .bind(&g.name_key)
        .bind(&g.external_id)
        .bind(&g.doc)
        .bind(g.version)
        .bind(g.created_at)
        .bind(g.updated_at)
        .execute(&mut *tx)
        .await?;
        set_members(&mut tx, &g.id, members).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn scim_group(&self, id: &str) -> Result<Option<ScimGroupRow>> {
        let q = format!("SELECT {GROUP_COLS} FROM gate_scim_groups WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(group_row)
            .transpose()
    }

    /// The group `{ scim_group: NAME }` names, by its caseless name.
    pub async fn scim_group_named(&self, name_key: &str) -> Result<Option<ScimGroupRow>> {
        let q = format!("SELECT {GROUP_COLS} FROM gate_scim_groups WHERE name_key = $1");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(name_key)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(group_row)
            .transpose()
    }

    pub async fn scim_groups(&self) -> Result<Vec<ScimGroupRow>> {
        let q = format!("SELECT {GROUP_COLS} FROM gate_scim_groups ORDER BY created_at, id");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(group_row)
            .collect()
    }

    /// Replaces a group and its members if it is still at `g.version - 1`.
    pub async fn scim_update_group(&self, g: &ScimGroupRow, members: &[String]) -> Result<()> {
        let mut tx = self.write().await?;
        let taken = sqlx::query("SELECT id FROM gate_scim_groups WHERE name_key = $1 AND id <> $2")
            .bind(&g.name_key)
            .bind(&g.id)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict);
        }
        let done = sqlx::query(
            "UPDATE gate_scim_groups SET display_name = $1, name_key = $2, external_id = $3, doc = $4, version = $5, updated_at = $6 WHERE id = $7 AND version = $8",
        )
        .bind(&g.display_name)
        .bind(&g.name_key)
        .bind(&g.external_id)
        .bind(&g.doc)
        .bind(g.version)
        .bind(g.updated_at)
        .bind(&g.id)
        .bind(g.version - 1)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        set_members(&mut tx, &g.id, members).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn scim_delete_group(&self, id: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM gate_scim_members WHERE group_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM gate_scim_groups WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// The live users in a group.
    pub async fn scim_members(&self, group_id: &str) -> Result<Vec<ScimUserRow>> {
        let cols = USER_COLS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let q = format!(
            "SELECT {cols} FROM gate_scim_members m JOIN gate_scim_users u ON u.id = m.user_id WHERE m.group_id = $1 AND u.deleted_at IS NULL ORDER BY u.created_at, u.id"
        );
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(group_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_row)
            .collect()
    }

    /// The groups a user is in: `(id, displayName)`.
    pub async fn scim_groups_of(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT g.id, g.display_name FROM gate_scim_members m JOIN gate_scim_groups g ON g.id = m.group_id WHERE m.user_id = $1 ORDER BY g.display_name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("display_name")?)))
            .collect()
    }
}

/// Replaces a group's memberships (the caller has checked each is a live user).
async fn set_members(tx: &mut sqlx::Transaction<'_, sqlx::Any>, group_id: &str, members: &[String]) -> Result<()> {
    sqlx::query("DELETE FROM gate_scim_members WHERE group_id = $1")
        .bind(group_id)
        .execute(&mut **tx)
        .await?;
    for m in members {
        sqlx::query("INSERT INTO gate_scim_members (group_id, user_id) VALUES ($1, $2)")
            .bind(group_id)
            .bind(m)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
