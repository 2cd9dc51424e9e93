//! Signed records: a DSSE envelope around an in-toto Statement v1, signed with the
//! server's Ed25519 key, verifiable offline by `gate verify`.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::{Signature, Signer as _, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::expect::{Admission, Constraints, Expect, Mismatch};
pub use super::keys::{KeyError, KeyPair, keyid, parse_public_keys, public_key_view};
use crate::core::decide::Status;

pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://jitgate.dev/approval/v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<Sig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sig {
    /// The signing key's securesystemslib keyid. DSSE makes it optional and only a
    /// hint: verification tries every given key whatever it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    pub sig: String,
}

/// Why a record does not verify. The causes are part of the message, not `source()`s,
/// so that printing an error with its chain says each once.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("not a DSSE envelope: {0}")]
    NotEnvelope(serde_json::Error),
    #[error("payloadType is `{0}`, expected `{expected}`", expected = PAYLOAD_TYPE)]
    PayloadType(String),
    #[error("payload is not base64: {0}")]
    PayloadBase64(base64::DecodeError),
    /// The record's place in the transparency log does not hold.
    #[error("{0}")]
    Log(crate::core::log::entry::EntryError),
    #[error("signature does not verify with the given key: the record was altered or signed by another server")]
    Signature,
    #[error("payload is not JSON: {0}")]
    PayloadJson(serde_json::Error),
    #[error("payload is not an in-toto Statement v1")]
    NotStatement,
    /// The statement's `predicateType`, as JSON.
    #[error("predicateType is {0}, expected {expected}", expected = PREDICATE_TYPE)]
    PredicateType(Value),
    #[error("the record says it was signed by {claimed}, but key {actual} signed it")]
    SignedBy { claimed: String, actual: String },
    #[error("request {request_id} was not approved: its outcome is `{outcome}`")]
    NotApproved { request_id: String, outcome: String },
    /// `found`: the record's commits, `, `-separated, or `(none)`.
    #[error("the record is for commit {found}, not {expected}")]
    WrongCommit { found: String, expected: String },
    #[error("artifact {0} is not a subject of the record")]
    MissingArtifact(String),
    /// The decision is not the one expected (environment, rule, approvals…).
    #[error("{0}")]
    Mismatch(#[from] Mismatch),
}

/// DSSE pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    v.extend_from_slice(payload);
    v
}

impl KeyPair {
    /// Wraps a statement in a signed DSSE envelope.
    pub fn sign(&self, statement: &Value) -> Envelope {
        let payload = crate::core::audit::canonical_bytes(statement);
        let sig = self.signing_key().sign(&pae(PAYLOAD_TYPE, &payload));
        Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: B64.encode(&payload),
            signatures: vec![Sig {
                keyid: Some(self.keyid.clone()),
                sig: B64.encode(sig.to_bytes()),
            }],
        }
    }
}

/// Base64 as DSSE allows it: the standard or the URL-safe alphabet, padded or not.
fn b64_lenient(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    const ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let standard: String = s.trim().replace('-', "+").replace('_', "/");
    ANY_PADDING.decode(standard)
}

/// A record that passed verification.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The keyid of the key whose signature verified.
    pub keyid: String,
    pub statement: Value,
    pub outcome: String,
    pub request_id: String,
}

/// Checks the envelope's signature against `keys` and that it holds an in-toto
/// statement of our predicate type, whatever its outcome: what every reader of a record
/// does first (`verify` for a pipeline's approval, the auditor's bundle for any record).
/// Returns the key that signed and the statement.
pub fn open(envelope: &str, keys: &[VerifyingKey]) -> Result<(VerifyingKey, Value), RecordError> {
    let env: Envelope = serde_json::from_str(envelope).map_err(RecordError::NotEnvelope)?;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(RecordError::PayloadType(env.payload_type));
    }
    let payload = b64_lenient(&env.payload).map_err(RecordError::PayloadBase64)?;
    let signed = pae(&env.payload_type, &payload);
    let mut good = None;
    for s in &env.signatures {
        let Ok(raw) = b64_lenient(&s.sig) else { continue };
        let Ok(sig) = Signature::from_slice(&raw) else { continue };
        if let Some(k) = keys.iter().find(|k| k.verify(&signed, &sig).is_ok()) {
            good = Some(*k);
            break;
        }
    }
    let signer = good.ok_or(RecordError::Signature)?;
    let st: Value = serde_json::from_slice(&payload).map_err(RecordError::PayloadJson)?;
    if st["_type"] != STATEMENT_TYPE {
        return Err(RecordError::NotStatement);
    }
    if st["predicateType"] != PREDICATE_TYPE {
        return Err(RecordError::PredicateType(st["predicateType"].clone()));
    }
    Ok((signer, st))
}

/// Checks the envelope's signature against `keys`, then the statement's shape, subjects,
/// outcome and the decision `expect` asks for. Only an approved (or approved-and-used)
/// record for the expected commit, artifacts and decision passes.
pub fn verify(envelope: &str, keys: &[VerifyingKey], expect: &Expect) -> Result<Verified, RecordError> {
    let (signer, st) = open(envelope, keys)?;
    let keyid = keyid(&signer);
    let pred = &st["predicate"];
    if let Some(claimed) = pred["signed_by"].as_str()
        && claimed != keyid
    {
        return Err(RecordError::SignedBy {
            claimed: claimed.to_string(),
            actual: keyid,
        });
    }
    let outcome = pred["outcome"]["status"].as_str().unwrap_or("").to_string();
    let request_id = pred["request"]["id"].as_str().unwrap_or("").to_string();
    if !matches!(Status::parse(&outcome), Some(Status::Approved | Status::Consumed)) {
        return Err(RecordError::NotApproved { request_id, outcome });
    }
    let subjects = st["subject"].as_array().cloned().unwrap_or_default();
    if let Some(c) = &expect.commit {
        let found = subjects.iter().any(|s| {
            s["digest"]["gitCommit"]
                .as_str()
                .is_some_and(|d| d.eq_ignore_ascii_case(c))
        });
        if !found {
            let have: Vec<&str> = subjects
                .iter()
                .filter_map(|s| s["digest"]["gitCommit"].as_str())
                .collect();
            return Err(RecordError::WrongCommit {
                found: if have.is_empty() {
                    "(none)".to_string()
                } else {
                    have.join(", ")
                },
                expected: c.clone(),
            });
        }
    }
    for a in &expect.artifacts {
        let hexd = a.strip_prefix("sha256:").unwrap_or(a);
        let found = subjects.iter().any(|s| {
            s["digest"]["sha256"]
                .as_str()
                .is_some_and(|d| d.eq_ignore_ascii_case(hexd))
        });
        if !found {
            return Err(RecordError::MissingArtifact(a.clone()));
        }
    }
    super::expect::check(pred, expect)?;
    // Where the decision is in the transparency log. Records from before the log carry
    // no entry; they still verify, unless a witness's cosignature is required.
    match crate::core::log::entry::check(pred, &signer, &expect.witnesses) {
        Ok(_) => {}
        Err(crate::core::log::entry::EntryError::Missing) if expect.witnesses.is_empty() => {}
        Err(e) => return Err(RecordError::Log(e)),
    }
    Ok(Verified {
        keyid,
        statement: st,
        outcome,
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn statement(status: &str) -> Value {
        json!({
            "_type": STATEMENT_TYPE,
            "subject": [{"name": "git+acme/web", "digest": {"gitCommit": "abc123"}},
                        {"name": "artifact", "digest": {"sha256": "ff00"}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {"request": {"id": "r1"}, "outcome": {"status": status}}
        })
    }

    #[test]
    fn sign_verify_and_refuse() {
        let kp = KeyPair::from_seed([7; 32]);
        let keys = parse_public_keys(&kp.public().pem).unwrap();
        let env = serde_json::to_string(&kp.sign(&statement("approved"))).unwrap();
        let ok = verify(
            &env,
            &keys,
            &Expect {
                commit: Some("ABC123".into()),
                artifacts: vec!["sha256:ff00".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ok.outcome, "approved");
        assert!(
            verify(
                &env,
                &keys,
                &Expect {
                    commit: Some("def".into()),
                    ..Default::default()
                }
            )
            .unwrap_err()
            .to_string()
            .contains("not def")
        );
        assert!(
            verify(
                &env,
                &keys,
                &Expect {
                    artifacts: vec!["sha256:00".into()],
                    ..Default::default()
                }
            )
            .is_err()
        );
        let other = parse_public_keys(&KeyPair::from_seed([8; 32]).public().public_key).unwrap();
        assert!(
            verify(&env, &other, &Expect::default())
                .unwrap_err()
                .to_string()
                .contains("signature")
        );
        let denied = serde_json::to_string(&kp.sign(&statement("denied"))).unwrap();
        assert!(
            verify(&denied, &keys, &Expect::default())
                .unwrap_err()
                .to_string()
                .contains("`denied`")
        );
        // Tamper with the payload: the signature no longer holds.
        let mut e: Envelope = serde_json::from_str(&env).unwrap();
        let mut st = statement("approved");
        st["subject"][0]["digest"]["gitCommit"] = json!("evil");
        e.payload = B64.encode(crate::core::audit::canonical_bytes(&st));
        assert!(verify(&serde_json::to_string(&e).unwrap(), &keys, &Expect::default()).is_err());
        // The /api/v1/keys form parses too.
        let keys_json = serde_json::to_string(&crate::core::api::Keys {
            keys: vec![kp.public()],
        })
        .unwrap();
        assert_eq!(parse_public_keys(&keys_json).unwrap().len(), 1);
    }

    #[test]
    fn accepts_what_dsse_allows() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let kp = KeyPair::from_seed([7; 32]);
        let keys = vec![kp.verifying_key()];
        // A statement whose payload and signature contain `+` or `/` in standard base64,
        // so the URL-safe form really differs.
        let mut e = (0..64)
            .map(|i| {
                let mut st = statement("approved");
                // `~~~` encodes to `+` at one of three alignments.
                st["predicate"]["n"] = json!(format!("{}~~~~~~{i}", "x".repeat(i % 3)));
                kp.sign(&st)
            })
            .find(|e| e.payload.contains(['+', '/']) && e.signatures[0].sig.contains(['+', '/']))
            .unwrap();
        let payload = B64.decode(&e.payload).unwrap();
        let sig = B64.decode(&e.signatures[0].sig).unwrap();
        e.payload = URL_SAFE_NO_PAD.encode(&payload);
        e.signatures[0].sig = URL_SAFE_NO_PAD.encode(&sig);
        e.signatures[0].keyid = None;
        let text = serde_json::to_string(&e).unwrap();
        assert!(!text.contains("keyid"), "{text}");
        let ok = verify(&text, &keys, &Expect::default()).unwrap();
        assert_eq!(ok.keyid, kp.keyid);
        e.signatures[0].keyid = Some("someone else's".into());
        verify(&serde_json::to_string(&e).unwrap(), &keys, &Expect::default()).unwrap();
    }

    #[test]
    fn the_signer_named_in_the_predicate_must_be_the_one_that_signed() {
        let kp = KeyPair::from_seed([7; 32]);
        let mut st = statement("approved");
        st["predicate"]["signed_by"] = json!(kp.keyid);
        let env = serde_json::to_string(&kp.sign(&st)).unwrap();
        verify(&env, &[kp.verifying_key()], &Expect::default()).unwrap();
        st["predicate"]["signed_by"] = json!("another");
        let env = serde_json::to_string(&kp.sign(&st)).unwrap();
        let e = verify(&env, &[kp.verifying_key()], &Expect::default()).unwrap_err();
        assert!(e.to_string().contains("signed by another"), "{e}");
    }

    #[test]
    fn a_valid_record_for_another_decision_is_refused() {
        let kp = KeyPair::from_seed([7; 32]);
        let mut st = statement("approved");
        st["predicate"]["request"]["context"] = json!({"environment": "staging"});
        let env = serde_json::to_string(&kp.sign(&st)).unwrap();
        let e = verify(
            &env,
            &[kp.verifying_key()],
            &Expect {
                environment: Some("production".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(
            e,
            RecordError::Mismatch(Mismatch {
                field: "environment",
                ..
            })
        ));
        assert_eq!(
            e.to_string(),
            r#"environment: the record is for "staging", expected "production""#
        );
    }
}
