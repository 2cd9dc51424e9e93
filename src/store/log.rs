//! The transparency log's storage: every stored node hash of the Merkle tree
//! (`gate_log_hashes`, indexed as `tlog_tiles` lays them out), the signed checkpoints,
//! and the witnesses' cosignatures. Leaf `i` is audit event `seq = i + 1`; its hashes
//! are written in the transaction that appends the event.

use sqlx::{AnyConnection, Row};

use super::{Result, Store, StoreError, Tx};
use crate::core::log::tree::{self, Hash, Known, stored_hash_index};

/// What a write transaction knows of the tree: every stored hash it read or wrote (it
/// holds the write lock, so none changes under it), and the events it appended. A
/// decision appends two events, then needs the root and the decision's inclusion proof,
/// all from the tree's right edge: with this, that is one read of stored hashes, not five.
#[derive(Default)]
pub(super) struct TxLog {
    hashes: Known,
    /// The last event appended here: its `seq`.
    head: Option<u64>,
    /// The leaf bytes of the events appended here, by leaf index.
    leaves: std::collections::HashMap<u64, Vec<u8>>,
    /// The chain's head (`seq`, `hash`) after this transaction's last append.
    pub(super) chain_head: Option<(i64, String)>,
    /// Hashes appended here, written in one statement when the transaction commits.
    pending: Vec<(u64, Hash)>,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub size: i64,
    pub note: String,
    pub created_at: i64,
}

/// Runs a tree computation, fetching the stored hashes it asks for. `tlog_tiles` reads
/// everything it needs at once, so the second run succeeds unless hashes are missing.
async fn compute<T>(
    conn: &mut AnyConnection,
    f: impl Fn(&Known) -> std::result::Result<T, tree::TreeError>,
) -> Result<T> {
    compute_with(conn, &mut Known::default(), f).await
}

/// [`compute`] over hashes already known (a transaction's), keeping what it reads.
async fn compute_with<T>(
    conn: &mut AnyConnection,
    known: &mut Known,
    f: impl Fn(&Known) -> std::result::Result<T, tree::TreeError>,
) -> Result<T> {
    for _ in 0..3 {
        match f(known) {
            Ok(v) => return Ok(v),
            Err(e) => {
                let missing = known.take_missing();
                if missing.is_empty() {
                    return Err(StoreError::Corrupt(format!("transparency log: {e}")));
                }
                for (i, h) in fetch(conn, &missing).await? {
                    known.insert(i, h);
                }
            }
        }
    }
    Err(StoreError::Corrupt(
        "transparency log: stored tree hashes are missing (the log table was altered)".into(),
    ))
}

async fn fetch(conn: &mut AnyConnection, indexes: &[u64]) -> Result<Vec<(u64, Hash)>> {
    let mut out = Vec::with_capacity(indexes.len());
    for chunk in indexes.chunks(200) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT idx, hash FROM gate_log_hashes WHERE idx IN ({})",
            marks.join(",")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in chunk {
            q = q.bind(*i as i64);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let idx: i64 = r.try_get("idx")?;
            let h: String = r.try_get("hash")?;
            let h = tree::parse_b64(&h)
                .map_err(|_| StoreError::Corrupt(format!("transparency log: stored hash #{idx} is malformed")))?;
            out.push((idx as u64, h));
        }
    }
    Ok(out)
}

/// The number of leaves whose hashes are stored. Appending leaf k stores the hashes
/// `stored_hash_index(0, k)..stored_hash_index(0, k+1)`, so the stored indexes are exactly
/// `0..stored_hash_index(0, size)`: the largest is one primary-key lookup, where a
/// COUNT(*) would read the whole table.
async fn tree_size(conn: &mut AnyConnection) -> Result<u64> {
    let max: Option<i64> = sqlx::query("SELECT MAX(idx) AS n FROM gate_log_hashes")
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
    let n = max.map_or(0, |m| m as u64 + 1);
    let (mut lo, mut hi) = (0u64, n + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if stored_hash_index(0, mid) < n {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if stored_hash_index(0, lo) != n {
        return Err(StoreError::Corrupt(format!(
            "transparency log: stored hashes end at #{} which ends no tree (the log table was altered)",
            n.saturating_sub(1)
        )));
    }
    Ok(lo)
}

async fn root(conn: &mut AnyConnection, size: u64) -> Result<Hash> {
    compute(conn, |k| tree::root(size, k)).await
}

async fn latest(conn: &mut AnyConnection) -> Result<Option<CheckpointRow>> {
    let r = sqlx::query("SELECT size, note, created_at FROM gate_checkpoints ORDER BY size DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    r.map(|r| {
        Ok(CheckpointRow {
            size: r.try_get("size")?,
            note: r.try_get("note")?,
            created_at: r.try_get("created_at")?,
        })
    })
    .transpose()
}

impl Tx {
    /// A tree computation over the hashes this transaction knows, reading the rest.
    async fn compute<T>(&mut self, f: impl Fn(&Known) -> std::result::Result<T, tree::TreeError>) -> Result<T> {
        compute_with(&mut self.tx, &mut self.log.hashes, f).await
    }

    /// The number of leaves in the tree as this transaction sees it: after its own
    /// appends, the last event's `seq`; otherwise the leaves whose hashes are stored (an
    /// event written straight into the database has none, and is not in the tree).
    pub async fn log_head(&mut self) -> Result<u64> {
        if let Some(h) = self.log.head {
            return Ok(h);
        }
        tree_size(&mut self.tx).await
    }

    /// Appends leaf `n` (0-based: event `seq = n + 1`), whose bytes are `bytes`, to the tree.
    pub async fn log_append(&mut self, n: u64, bytes: Vec<u8>) -> Result<()> {
        let leaf = tree::leaf_hash(&bytes);
        let hashes = self.compute(|k| tree::appended(n, leaf, k)).await?;
        let start = stored_hash_index(0, n);
        for (i, h) in hashes.iter().enumerate() {
            self.log.hashes.insert(start + i as u64, *h);
            self.log.pending.push((start + i as u64, *h));
        }
        self.log.head = Some(n + 1);
        self.log.leaves.insert(n, bytes);
        Ok(())
    }

    /// Writes the hashes appended in this transaction (before it commits).
    pub(super) async fn log_flush(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.log.pending);
        for chunk in pending.chunks(400) {
            let marks: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!("INSERT INTO gate_log_hashes (idx, hash) VALUES {}", marks.join(","));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (i, h) in chunk {
                q = q.bind(*i as i64).bind(tree::b64(h));
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// The root of the first `size` leaves, as this transaction sees them.
    pub async fn log_root(&mut self, size: u64) -> Result<Hash> {
        self.compute(|k| tree::root(size, k)).await
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub async fn log_inclusion(&mut self, size: u64, index: u64) -> Result<Vec<Hash>> {
        self.compute(|k| tree::inclusion(size, index, k)).await
    }

    /// Whether this transaction appended events (so the tree it sees is newer than any
    /// stored checkpoint).
    pub fn log_appended(&self) -> bool {
        self.log.head.is_some()
    }

    pub async fn latest_checkpoint(&mut self) -> Result<Option<CheckpointRow>> {
        latest(&mut self.tx).await
    }

    /// The bytes of leaf `index` (audit event `index + 1`), as this transaction sees them.
    pub async fn log_leaf(&mut self, index: u64) -> Result<Vec<u8>> {
        if let Some(b) = self.log.leaves.get(&index) {
            return Ok(b.clone());
        }
        let r = sqlx::query(
            "SELECT seq, at, request_id, kind, actor, data, prev_hash, hash, sig FROM gate_audit WHERE seq = $1",
        )
        .bind(index as i64 + 1)
        .fetch_optional(&mut *self.tx)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("audit event #{} is missing", index + 1)))?;
        Ok(super::chain::audit_row(&r)?.leaf_bytes())
    }

    /// Stores a signed checkpoint; one per tree size (a second for the same size is ignored).
    pub async fn put_checkpoint(&mut self, size: u64, note: &str, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO gate_checkpoints (size, note, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(size as i64)
            .bind(note)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

impl Store {
    /// The number of leaves in the tree: the events whose hashes are stored.
    pub async fn log_size(&self) -> Result<u64> {
        tree_size(&mut *self.pool.acquire().await?).await
    }

    /// Adds the leaves of events appended before the log existed (databases from before
    /// migration 8). Their hashes are derived from the events, so nothing is trusted that
    /// the chain does not already hold; it signs nothing.
    pub async fn log_catch_up(&self) -> Result<u64> {
        let size = self.log_size().await?;
        let mut added = 0;
        let mut after = size as i64;
        loop {
            let page = self.audit_page(after, 1000).await?;
            if page.is_empty() {
                return Ok(added);
            }
            let mut tx = self.begin().await?;
            for r in &page {
                if r.seq != after + 1 {
                    return Err(StoreError::Corrupt(format!(
                        "audit event #{} is missing; the transparency log cannot skip it",
                        after + 1
                    )));
                }
                tx.log_append(after as u64, r.leaf_bytes()).await?;
                after = r.seq;
                added += 1;
            }
            tx.commit().await?;
        }
    }

    pub async fn log_root(&self, size: u64) -> Result<Hash> {
        root(&mut *self.pool.acquire().await?, size).await
    }

    pub async fn log_inclusion(&self, size: u64, index: u64) -> Result<Vec<Hash>> {
        compute(&mut *self.pool.acquire().await?, |k| tree::inclusion(size, index, k)).await
    }

    pub async fn log_consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        compute(&mut *self.pool.acquire().await?, |k| tree::consistency(from, to, k)).await
    }

    pub async fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>> {
        latest(&mut *self.pool.acquire().await?).await
    }

    pub async fn checkpoint_at(&self, size: u64) -> Result<Option<String>> {
        let r = sqlx::query("SELECT note FROM gate_checkpoints WHERE size = $1")
            .bind(size as i64)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.map(|r| r.try_get("note")).transpose()?)
    }

    /// The cosignature lines witnesses posted for the checkpoint of `size`.
    pub async fn cosignatures(&self, size: u64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT line FROM gate_cosignatures WHERE size = $1 ORDER BY witness")
            .bind(size as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("line")?)).collect()
    }

    /// Keeps a witness's cosignature of the checkpoint of `size` (the latest per witness
    /// and size wins).
    pub async fn put_cosignature(&self, witness: &str, size: u64, line: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO gate_cosignatures (witness, size, line, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (witness, size) DO UPDATE SET line = excluded.line, created_at = excluded.created_at",
        )
        .bind(witness)
        .bind(size as i64)
        .bind(line)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The bytes of leaf `index`: the canonical JSON of audit event `index + 1`.
    pub async fn log_leaf(&self, index: u64) -> Result<Option<Vec<u8>>> {
        let seq = index as i64 + 1;
        Ok(self
            .audit_page(seq - 1, 1)
            .await?
            .into_iter()
            .find(|r| r.seq == seq)
            .map(|r| r.leaf_bytes()))
    }
}
