//! The transparency log's side of the engine: checkpoints signed when a record needs
//! one or when enough events (or time) have passed, records' inclusion proofs, and the
//! witnesses' cosignatures.

use serde_json::{Value, json};

use super::Engine;
use super::commit::Failure;
use super::error::{AppError, ErrorCode, Result};
use crate::core::log::{self, tree};
use crate::store::Tx;

impl Engine {
    /// The signed checkpoint of the tree as `tx` sees it, signing and storing one if the
    /// latest stored is older; returns its size and note.
    pub(super) async fn checkpoint_in(&self, tx: &mut Tx, now: i64) -> Result<(u64, String), Failure> {
        let size = tx.log_head().await?;
        // A transaction that appended events sees a tree no checkpoint covers yet.
        if !tx.log_appended()
            && let Some(cp) = tx.latest_checkpoint().await?
            && cp.size as u64 == size
        {
            return Ok((size, cp.note));
        }
        let root = tx.log_root(size).await?;
        let note = self.log.sign_checkpoint(size, root);
        tx.put_checkpoint(size, &note, now).await?;
        let config = self.config();
        if let Some(n) = &config.notify {
            for d in crate::notify::checkpoint_drafts(n, &self.public_url, size, &tree::b64(&root), &note, now) {
                tx.enqueue_notification(&d).await?;
            }
        }
        self.metrics.checkpoint();
        // A copy for whoever ships the logs off this machine (a SIEM keeps its own).
        tracing::info!(size, root = %tree::b64(&root), origin = self.log.origin(), "log checkpoint signed");
        Ok((size, note))
    }

    /// The record's `log` entry: where its decision event `seq` is in the tree, proved
    /// against a checkpoint that includes it.
    pub(super) async fn record_log(&self, tx: &mut Tx, seq: i64, now: i64) -> Result<Value, Failure> {
        let (size, note) = self.checkpoint_in(tx, now).await?;
        let index = (seq - 1) as u64;
        let proof = tx.log_inclusion(size, index).await?;
        let leaf = tx.log_leaf(index).await?;
        Ok(json!({
            "index": index,
            "leaf": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, leaf),
            "tree_size": size,
            "inclusion_proof": proof.iter().map(tree::b64).collect::<Vec<_>>(),
            "checkpoint": note,
        }))
    }

    /// Signs a checkpoint when `log.checkpoint_every` says one is due: that many events
    /// since the last, or that long since it while any are unsigned. Returns whether it did.
    pub async fn checkpoint_if_due(&self, now: i64) -> Result<bool> {
        let cfg = self.log_config();
        let size = self.store.log_size().await?;
        let last = self.store.latest_checkpoint().await?;
        let (last_size, last_at) = last.map(|c| (c.size as u64, c.created_at)).unwrap_or((0, 0));
        let due = size > last_size && (size - last_size >= cfg.every_events() || now - last_at >= cfg.every_ms());
        if !due {
            return Ok(false);
        }
        self.checkpoint_now(now).await?;
        Ok(true)
    }

    /// Signs (or reuses) the checkpoint of the whole tree as it is now.
    pub async fn checkpoint_now(&self, now: i64) -> Result<(u64, String)> {
        let mut tx = self.store.begin().await?;
        let cp = self.checkpoint_in(&mut tx, now).await.map_err(AppError::from)?;
        let queued = tx.queued_notifications();
        tx.commit().await?;
        if queued {
            self.notify.queued();
        }
        Ok(cp)
    }

    /// The latest checkpoint with every witness cosignature kept for it.
    pub async fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        let Some(cp) = self.store.latest_checkpoint().await? else {
            return Ok(None);
        };
        let lines = self.store.cosignatures(cp.size as u64).await?;
        Ok(Some((cp.size as u64, log::with_cosignatures(&cp.note, &lines))))
    }

    /// Keeps a witness's cosignature of one of our checkpoints. `text` is the checkpoint
    /// as the witness received it with its cosignature line(s) appended.
    pub async fn cosign(&self, text: &str, now: i64) -> Result<Vec<String>> {
        let bad = |m: String| AppError::Invalid(ErrorCode::BadCosignature, m);
        let v = log::verify_checkpoint(text, self.log.vkey(), &self.witnesses).map_err(|e| bad(e.to_string()))?;
        let Some(ours) = self.store.checkpoint_at(v.size).await? else {
            return Err(bad(format!("this log signed no checkpoint of size {}", v.size)));
        };
        let body = log::note_body(&ours).map_err(|e| AppError::Internal(e.into()))?;
        if log::note_body(text).ok().as_deref() != Some(body.as_str()) {
            return Err(bad(
                "the cosigned checkpoint is not the one this log signed at that size".into(),
            ));
        }
        let mut kept = Vec::new();
        for line in log::note_signature_lines(text) {
            if let Some(w) = self.witnesses.iter().find(|w| w.verify_line(&body, &line)) {
                self.store.put_cosignature(&w.name, v.size, &line, now).await?;
                kept.push(w.name.clone());
            }
        }
        if kept.is_empty() {
            return Err(bad(format!(
                "no cosignature by a witness this log lists (log.witnesses: {})",
                if self.witnesses.is_empty() {
                    "none".to_string()
                } else {
                    self.witnesses
                        .iter()
                        .map(|w| w.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        tracing::info!(size = v.size, witnesses = ?kept, "witness cosignature kept");
        Ok(kept)
    }
}
