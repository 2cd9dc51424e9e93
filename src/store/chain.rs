//! The audit chain's rows: appended (hashed, signed, and added to the transparency log
//! in the writer's transaction), read back a page or a request at a time, verified.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{AuditDraft, Result, Store, StoreError, Tx};
use crate::core::audit;

impl Store {
    /// Every request id, sorted.
    pub async fn request_ids(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM gate_requests ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Every request id the audit chain has events for, sorted. Events about no request
    /// (a delegation, a reload) have the empty id and are not listed.
    pub async fn audited_request_ids(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT request_id FROM gate_audit WHERE request_id <> '' ORDER BY request_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("request_id")?)).collect()
    }

    /// Audit rows from `after` (exclusive), in order, at most `limit`.
    pub async fn audit_page(&self, after: i64, limit: i64) -> Result<Vec<audit::Row>> {
        let rows = sqlx::query(
            "SELECT seq, at, request_id, kind, actor, data, prev_hash, hash, sig FROM gate_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    /// Audit rows of one request, in order.
    pub async fn audit_for(&self, id: &str) -> Result<Vec<audit::Row>> {
        let rows = sqlx::query(
            "SELECT seq, at, request_id, kind, actor, data, prev_hash, hash, sig FROM gate_audit WHERE request_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    /// Walks the whole chain, a page at a time, checking each event's signature by one of
    /// `keys` too.
    pub async fn verify_chain(&self, keys: Vec<ed25519_dalek::VerifyingKey>) -> Result<audit::ChainCheck> {
        let mut check = audit::ChainCheck::new(keys);
        let mut after = 0;
        loop {
            let page = self.audit_page(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                if !check.push(r) {
                    return Ok(check);
                }
            }
        }
        Ok(check)
    }
}

impl Tx {
    /// Appends one event to the chain and the transparency log, signed with the store's
    /// event key; returns its sequence number and hash.
    pub async fn append_audit(&mut self, d: &AuditDraft) -> Result<(i64, String)> {
        let key = self.event_key.clone().ok_or(StoreError::NoEventKey)?;
        let (prev_seq, prev_hash) = match self.log.chain_head.take() {
            // This transaction appended before, holding the write lock: that is the head.
            Some(h) => h,
            None => {
                let head = sqlx::query("SELECT seq, hash FROM gate_audit ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut *self.tx)
                    .await?;
                match head {
                    Some(r) => (r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?),
                    None => (0, audit::GENESIS.to_string()),
                }
            }
        };
        let seq = prev_seq + 1;
        let data = String::from_utf8(audit::canonical_bytes(&d.data)).unwrap_or_default();
        let leaf = audit::leaf_bytes(seq, d.at, &d.request_id, &d.kind, &d.actor, &data, &prev_hash);
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&leaf));
        let sig = audit::sign_event(&key, &hash);
        sqlx::query(
            "INSERT INTO gate_audit (seq, at, request_id, kind, actor, data, prev_hash, hash, sig) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        )
        .bind(seq)
        .bind(d.at)
        .bind(&d.request_id)
        .bind(&d.kind)
        .bind(&d.actor)
        .bind(&data)
        .bind(&prev_hash)
        .bind(&hash)
        .bind(&sig)
        .execute(&mut *self.tx)
        .await?;
        self.log_append(prev_seq as u64, leaf).await?;
        self.log.chain_head = Some((seq, hash.clone()));
        let row = audit::Row {
            seq,
            at: d.at,
            request_id: d.request_id.clone(),
            kind: d.kind.clone(),
            actor: d.actor.clone(),
            data,
            prev_hash,
            hash: hash.clone(),
            sig: Some(sig),
        };
        self.queue_audit(&row).await?;
        Ok((seq, hash))
    }
}

pub(super) fn audit_row(r: &AnyRow) -> Result<audit::Row> {
    Ok(audit::Row {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        request_id: r.try_get("request_id")?,
        kind: r.try_get("kind")?,
        actor: r.try_get("actor")?,
        data: r.try_get("data")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
        sig: r.try_get("sig")?,
    })
}
