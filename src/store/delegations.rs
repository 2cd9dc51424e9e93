//! Delegations (`gate delegate`): rows are added and revoked, never deleted.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Store, Tx};
use crate::core::delegation::Delegation;

/// The columns, in one place; a macro so `concat!` builds each statement as a literal.
macro_rules! cols {
    () => {
        "id, delegator, delegate, reason, created_at, created_by, until_at, revoked_at, revoked_by"
    };
}

fn row(r: &AnyRow) -> Result<Delegation> {
    Ok(Delegation {
        id: r.try_get("id")?,
        delegator: r.try_get("delegator")?,
        delegate: r.try_get("delegate")?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        until: r.try_get("until_at")?,
        revoked_at: r.try_get("revoked_at")?,
        revoked_by: r.try_get("revoked_by")?,
    })
}

impl Store {
    /// Every delegation, newest first; only those `who` gave or received when given.
    pub async fn delegations(&self, who: Option<&str>) -> Result<Vec<Delegation>> {
        let rows = match who {
            Some(w) => {
                sqlx::query(concat!(
                    "SELECT ",
                    cols!(),
                    " FROM gate_delegations WHERE delegator = $1 OR delegate = $1 ORDER BY created_at DESC, id"
                ))
                .bind(w)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    cols!(),
                    " FROM gate_delegations ORDER BY created_at DESC, id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(row).collect()
    }

    /// The delegations `delegate` received that have not ended before `since`
    /// (whether one is in force is for the caller to ask at its own `now`).
    pub async fn delegations_to(&self, delegate: &str, since: i64) -> Result<Vec<Delegation>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM gate_delegations WHERE delegate = $1 AND until_at > $2 ORDER BY id"
        ))
        .bind(delegate)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }

    pub async fn delegation(&self, id: &str) -> Result<Option<Delegation>> {
        let r = sqlx::query(concat!("SELECT ", cols!(), " FROM gate_delegations WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(row).transpose()
    }
}

impl Tx {
    pub async fn insert_delegation(&mut self, d: &Delegation) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO gate_delegations (",
            cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&d.id)
        .bind(&d.delegator)
        .bind(&d.delegate)
        .bind(&d.reason)
        .bind(d.created_at)
        .bind(&d.created_by)
        .bind(d.until)
        .bind(d.revoked_at)
        .bind(&d.revoked_by)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Revokes a delegation not yet revoked; `false` when it was (by someone else first).
    pub async fn revoke_delegation(&mut self, id: &str, by: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE gate_delegations SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(by)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
