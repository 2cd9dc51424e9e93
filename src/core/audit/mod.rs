//! The audit trail: one append-only hash chain of every event, and the signed
//! record each terminal outcome gets.

pub mod expect;
pub mod keys;
pub mod record;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::core::api::AuditEvent;

/// `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of one event: SHA-256 over the canonical JSON (sorted keys, no spaces) of
/// every field but the hash itself, so changing any of them, or the order, breaks the chain.
pub fn event_hash(seq: i64, at: i64, request_id: &str, kind: &str, actor: &str, data: &str, prev_hash: &str) -> String {
    let canonical = json!({
        "seq": seq,
        "at": at,
        "request_id": request_id,
        "kind": kind,
        "actor": actor,
        "data": data,
        "prev_hash": prev_hash,
    });
    hex::encode(Sha256::digest(canonical_bytes(&canonical)))
}

/// serde_json's default map is ordered by key, so this is a stable canonical form.
pub fn canonical_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// One stored audit row, as read back for verification.
#[derive(Debug, Clone)]
pub struct Row {
    pub seq: i64,
    pub at: i64,
    pub request_id: String,
    pub kind: String,
    pub actor: String,
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Row {
    pub fn to_event(&self) -> AuditEvent {
        AuditEvent {
            seq: self.seq,
            at: crate::core::duration::rfc3339(self.at),
            request_id: self.request_id.clone(),
            kind: self.kind.clone(),
            actor: self.actor.clone(),
            data: serde_json::from_str(&self.data).unwrap_or(Value::String(self.data.clone())),
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        }
    }
}

/// Walks the chain from the start, carrying the last good hash, and reports the first
/// broken link. Feed rows in `seq` order.
#[derive(Debug)]
pub struct ChainCheck {
    expect_seq: i64,
    prev: String,
    pub broken: Option<(i64, String)>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            expect_seq: 1,
            prev: GENESIS.to_string(),
            broken: None,
        }
    }
}

impl ChainCheck {
    /// Checks one row; returns false once the chain is broken.
    pub fn push(&mut self, r: &Row) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let problem = if r.seq != self.expect_seq {
            Some(format!(
                "expected event #{} but found #{} (an event is missing)",
                self.expect_seq, r.seq
            ))
        } else if r.prev_hash != self.prev {
            Some(format!(
                "event #{} does not link to the hash of event #{}",
                r.seq,
                r.seq - 1
            ))
        } else if event_hash(r.seq, r.at, &r.request_id, &r.kind, &r.actor, &r.data, &r.prev_hash) != r.hash {
            Some(format!(
                "event #{} ({} on {}) was altered: its content no longer matches its hash",
                r.seq, r.kind, r.request_id
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            self.broken = Some((self.expect_seq.min(r.seq), p));
            return false;
        }
        self.expect_seq += 1;
        self.prev = r.hash.clone();
        true
    }

    pub fn head(&self) -> &str {
        &self.prev
    }

    pub fn count(&self) -> i64 {
        self.expect_seq - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Row> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let hash = event_hash(seq, seq * 10, "r1", "vote", "alice", "{}", &prev);
                let r = Row {
                    seq,
                    at: seq * 10,
                    request_id: "r1".into(),
                    kind: "vote".into(),
                    actor: "alice".into(),
                    data: "{}".into(),
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                r
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let mut c = ChainCheck::default();
        assert!(chain(5).iter().all(|r| c.push(r)));
        assert_eq!(c.count(), 5);
    }

    #[test]
    fn each_kind_of_tamper_is_named() {
        let mut rows = chain(5);
        rows[2].actor = "mallory".into();
        let mut c = ChainCheck::default();
        rows.iter().for_each(|r| {
            c.push(r);
        });
        let (seq, why) = c.broken.unwrap();
        assert_eq!(seq, 3);
        assert!(why.contains("altered"), "{why}");

        let mut rows = chain(5);
        rows.remove(1);
        let mut c = ChainCheck::default();
        rows.iter().for_each(|r| {
            c.push(r);
        });
        assert_eq!(c.broken.unwrap().0, 2);
    }
}
