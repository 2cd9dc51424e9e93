//! The audit trail: one append-only hash chain of every event, and the signed
//! record each terminal outcome gets.

pub mod expect;
pub mod keys;
pub mod record;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::core::log::tree::{self, Hash};

use crate::core::api::AuditEvent;

/// Every `kind` of audit event the chain records: the one list that `notify.syslog` and
/// `notify.hec` `events:` are checked against, that docs/notifications.md is tested to
/// list, and that the store checks each appended event against (in debug builds, so a
/// test that writes a kind missing here fails). Adding a kind is adding it here.
pub const KINDS: &[&str] = &[
    "created",
    "vote",
    "approved",
    "denied",
    "refused",
    "escalated",
    "stage_opened",
    "check",
    "canceled",
    "expired",
    "consumed",
    "delegation_created",
    "delegation_revoked",
    "config_reloaded",
];

/// `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What is signed for an event: this context, then the event's hash (hex), so an event
/// signature can never be mistaken for a record's or a checkpoint's.
const EVENT_SIG_CONTEXT: &[u8] = b"jitgate audit event v1\n";

/// The bytes of one event as the chain and the transparency log hash them: the canonical
/// JSON (sorted keys, no spaces) of every field but the hash itself.
pub fn leaf_bytes(
    seq: i64,
    at: i64,
    request_id: &str,
    kind: &str,
    actor: &str,
    data: &str,
    prev_hash: &str,
) -> Vec<u8> {
    canonical_bytes(&json!({
        "seq": seq,
        "at": at,
        "request_id": request_id,
        "kind": kind,
        "actor": actor,
        "data": data,
        "prev_hash": prev_hash,
    }))
}

/// The hash of one event: SHA-256 (hex) of its leaf bytes, so changing any field, or the
/// order, breaks the chain.
pub fn event_hash(seq: i64, at: i64, request_id: &str, kind: &str, actor: &str, data: &str, prev_hash: &str) -> String {
    hex::encode(Sha256::digest(leaf_bytes(
        seq, at, request_id, kind, actor, data, prev_hash,
    )))
}

/// The signature (base64) of an event with hash `hash`, by the server's key.
pub fn sign_event(key: &SigningKey, hash: &str) -> String {
    B64.encode(key.sign(&event_message(hash)).to_bytes())
}

/// The key among `keys` whose signature `sig` over the event hash `hash` is, if any.
pub fn event_signer<'k>(keys: &'k [VerifyingKey], hash: &str, sig: &str) -> Option<&'k VerifyingKey> {
    let raw = B64.decode(sig).ok()?;
    let sig = Signature::from_slice(&raw).ok()?;
    let msg = event_message(hash);
    keys.iter().find(|k| k.verify(&msg, &sig).is_ok())
}

fn event_message(hash: &str) -> Vec<u8> {
    [EVENT_SIG_CONTEXT, hash.as_bytes()].concat()
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
    /// The server's signature over `hash` (base64); `None` on a row written outside it.
    pub sig: Option<String>,
}

impl Row {
    /// Whether the row's content still matches its hash.
    pub fn hash_holds(&self) -> bool {
        hex::encode(Sha256::digest(self.leaf_bytes())) == self.hash
    }

    /// Whether one of `keys` signed the row's hash.
    pub fn signed_by_one_of(&self, keys: &[VerifyingKey]) -> bool {
        self.sig
            .as_deref()
            .and_then(|s| event_signer(keys, &self.hash, s))
            .is_some()
    }

    pub fn leaf_bytes(&self) -> Vec<u8> {
        leaf_bytes(
            self.seq,
            self.at,
            &self.request_id,
            &self.kind,
            &self.actor,
            &self.data,
            &self.prev_hash,
        )
    }

    /// The row as exported: `data` is the stored canonical JSON, parsed.
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
            at_ms: self.at,
            sig: self.sig.clone(),
        }
    }

    /// The row back from its export; `None` when the export lacks what the hash covers.
    pub fn from_event(e: &AuditEvent) -> Row {
        Row {
            seq: e.seq,
            at: e.at_ms,
            request_id: e.request_id.clone(),
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            data: String::from_utf8(canonical_bytes(&e.data)).unwrap_or_default(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
            sig: e.sig.clone(),
        }
    }
}

/// Walks the chain from the start, carrying the last good hash, and reports the first
/// broken link. Feed rows in `seq` order.
///
/// Given keys, it also checks each event's signature, so an event written with correct
/// hashes but outside the server (where the key is not) is found; and it keeps the leaf
/// hashes, so the caller can compare the tree's root with a checkpoint.
#[derive(Debug)]
pub struct ChainCheck {
    expect_seq: i64,
    prev: String,
    keys: Vec<VerifyingKey>,
    leaves: Vec<Hash>,
    pub broken: Option<(i64, String)>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck::new(vec![])
    }
}

impl ChainCheck {
    /// A check of signatures by `keys` too (none: the chain alone).
    pub fn new(keys: Vec<VerifyingKey>) -> ChainCheck {
        ChainCheck {
            expect_seq: 1,
            prev: GENESIS.to_string(),
            keys,
            leaves: Vec::new(),
            broken: None,
        }
    }

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
        } else if !r.hash_holds() {
            Some(format!(
                "event #{} ({} on {}) was altered: its content no longer matches its hash",
                r.seq, r.kind, r.request_id
            ))
        } else if !self.keys.is_empty() && !r.signed_by_one_of(&self.keys) {
            Some(format!(
                "event #{} ({} on {}) is not signed by the server's key: it was written outside the server",
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
        if !self.keys.is_empty() {
            self.leaves.push(tree::leaf_hash(&r.leaf_bytes()));
        }
        true
    }

    /// The leaf hashes of the events checked so far (kept only when checking signatures).
    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
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
                    sig: None,
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
