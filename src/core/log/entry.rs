//! A record's place in the transparency log, checked offline: the record's `log` entry
//! carries its decision event (the leaf's bytes), the inclusion proof, and the signed
//! checkpoint the proof is against.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::tree::{self, TreeError};
use super::{LogError, VerifiedCheckpoint, WitnessVkey, origin_of, verify_checkpoint, vkey_for};

/// Why a record's log entry does not hold.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("the record has no transparency log entry")]
    Missing,
    #[error("its log entry is malformed: {0}")]
    Malformed(&'static str),
    #[error("its log checkpoint: {0}")]
    Checkpoint(#[from] LogError),
    #[error("its log entry is for event #{found}, but the record's decision is event #{expected}")]
    WrongEvent { found: i64, expected: i64 },
    #[error("its logged decision event is not the one the record names (hash or request differs)")]
    WrongLeaf,
    #[error("its inclusion proof does not hold: {0}")]
    Inclusion(#[from] TreeError),
    #[error("its log checkpoint is not cosigned by witness {0}")]
    NotCosigned(String),
}

/// Checks `predicate.log` against the server key `key` (the checkpoint is the server's
/// key under the log's origin) and requires a cosignature by each of `witnesses`.
pub fn check(
    predicate: &Value,
    key: &VerifyingKey,
    witnesses: &[WitnessVkey],
) -> Result<VerifiedCheckpoint, EntryError> {
    let log = &predicate["log"];
    if log.is_null() {
        return Err(EntryError::Missing);
    }
    let note = log["checkpoint"]
        .as_str()
        .ok_or(EntryError::Malformed("no checkpoint"))?;
    let index = log["index"].as_u64().ok_or(EntryError::Malformed("no index"))?;
    let size = log["tree_size"].as_u64().ok_or(EntryError::Malformed("no tree_size"))?;
    let leaf = log["leaf"]
        .as_str()
        .and_then(|l| B64.decode(l).ok())
        .ok_or(EntryError::Malformed("no leaf"))?;
    let proof = log["inclusion_proof"]
        .as_array()
        .ok_or(EntryError::Malformed("no inclusion_proof"))?
        .iter()
        .map(|h| h.as_str().ok_or(TreeError::BadHash).and_then(tree::parse_b64))
        .collect::<Result<Vec<_>, _>>()?;
    let cp = verify_checkpoint(note, &vkey_for(origin_of(note), key), witnesses)?;
    if cp.size != size {
        return Err(EntryError::Malformed("tree_size is not the checkpoint's"));
    }
    // The leaf is the decision event the record names: same sequence, hash and request.
    let audit = &predicate["audit"];
    let seq = audit["seq"].as_i64().unwrap_or(0);
    if index as i64 + 1 != seq {
        return Err(EntryError::WrongEvent {
            found: index as i64 + 1,
            expected: seq,
        });
    }
    let event: Value = serde_json::from_slice(&leaf).map_err(|_| EntryError::WrongLeaf)?;
    if audit["hash"].as_str() != Some(hex::encode(Sha256::digest(&leaf)).as_str())
        || event["request_id"] != predicate["request"]["id"]
        || event["seq"].as_i64() != Some(seq)
    {
        return Err(EntryError::WrongLeaf);
    }
    tree::check_inclusion(&proof, size, cp.root, index, tree::leaf_hash(&leaf))?;
    for w in witnesses {
        if !cp.cosigned_by.contains(&w.name) {
            return Err(EntryError::NotCosigned(w.name.clone()));
        }
    }
    Ok(cp)
}
