//! Signed records: a DSSE envelope around an in-toto Statement v1, signed with the
//! server's Ed25519 key, verifiable offline by `gate verify`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::core::api::PublicKey;
use crate::core::decide::Status;

pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://jitgate.dev/approval/v1";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<Sig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sig {
    pub keyid: String,
    pub sig: String,
}

/// Why keys do not parse or a record does not verify. The causes are part of the
/// message, not `source()`s, so that printing an error with its chain says each once.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("key JSON is malformed: {0}")]
    KeyJson(serde_json::Error),
    #[error("key JSON has no `public_key`")]
    KeyJsonNoPublicKey,
    #[error("key JSON lists no keys")]
    KeyJsonNoKeys,
    #[error("PEM body is not base64: {0}")]
    PemBase64(base64::DecodeError),
    #[error("PEM key is not an Ed25519 public key")]
    PemNotEd25519,
    #[error("public key is not base64: {0}")]
    KeyBase64(base64::DecodeError),
    #[error("an Ed25519 public key is 32 bytes")]
    KeyLength,
    #[error("not a valid Ed25519 public key: {0}")]
    KeyInvalid(ed25519_dalek::SignatureError),
    #[error("not a DSSE envelope: {0}")]
    NotEnvelope(serde_json::Error),
    #[error("payloadType is `{0}`, expected `{expected}`", expected = PAYLOAD_TYPE)]
    PayloadType(String),
    #[error("payload is not base64: {0}")]
    PayloadBase64(base64::DecodeError),
    #[error("signature does not verify with the given key: the record was altered or signed by another server")]
    Signature,
    #[error("payload is not JSON: {0}")]
    PayloadJson(serde_json::Error),
    #[error("payload is not an in-toto Statement v1")]
    NotStatement,
    /// The statement's `predicateType`, as JSON.
    #[error("predicateType is {0}, expected {expected}", expected = PREDICATE_TYPE)]
    PredicateType(Value),
    #[error("request {request_id} was not approved: its outcome is `{outcome}`")]
    NotApproved { request_id: String, outcome: String },
    /// `found`: the record's commits, `, `-separated, or `(none)`.
    #[error("the record is for commit {found}, not {expected}")]
    WrongCommit { found: String, expected: String },
    #[error("artifact {0} is not a subject of the record")]
    MissingArtifact(String),
}

/// DSSE pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    v.extend_from_slice(payload);
    v
}

/// The server's signing key.
pub struct KeyPair {
    key: SigningKey,
    pub keyid: String,
}

impl KeyPair {
    pub fn from_seed(seed: [u8; 32]) -> KeyPair {
        let key = SigningKey::from_bytes(&seed);
        let keyid = keyid(&key.verifying_key());
        KeyPair { key, keyid }
    }

    /// The Ed25519 key itself, for what else the server signs with it (audit events,
    /// log checkpoints).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn public(&self) -> PublicKey {
        public_key_view(&self.key.verifying_key())
    }

    /// Wraps a statement in a signed DSSE envelope.
    pub fn sign(&self, statement: &Value) -> Envelope {
        let payload = crate::core::audit::canonical_bytes(statement);
        let sig = self.key.sign(&pae(PAYLOAD_TYPE, &payload));
        Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: B64.encode(&payload),
            signatures: vec![Sig {
                keyid: self.keyid.clone(),
                sig: B64.encode(sig.to_bytes()),
            }],
        }
    }
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of the raw public key.
pub fn keyid(k: &VerifyingKey) -> String {
    format!("sha256:{}", &hex::encode(Sha256::digest(k.as_bytes()))[..16])
}

pub fn public_key_view(k: &VerifyingKey) -> PublicKey {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(k.as_bytes());
    PublicKey {
        keyid: keyid(k),
        algorithm: "ed25519".into(),
        public_key: B64.encode(k.as_bytes()),
        pem: format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            B64.encode(der)
        ),
    }
}

/// Reads public keys from any of the forms we hand out: PEM, raw base64, or the JSON of
/// `/api/v1/keys` (or one key of it).
pub fn parse_public_keys(text: &str) -> Result<Vec<VerifyingKey>, RecordError> {
    let t = text.trim();
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).map_err(RecordError::KeyJson)?;
        let items: Vec<Value> = match v.get("keys") {
            Some(Value::Array(a)) => a.clone(),
            _ => vec![v],
        };
        let mut out = Vec::new();
        for k in items {
            let b = k
                .get("public_key")
                .and_then(Value::as_str)
                .ok_or(RecordError::KeyJsonNoPublicKey)?;
            out.push(raw_key(b)?);
        }
        if out.is_empty() {
            return Err(RecordError::KeyJsonNoKeys);
        }
        return Ok(out);
    }
    if t.starts_with("-----BEGIN PUBLIC KEY-----") {
        let body: String = t.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = B64.decode(body.trim()).map_err(RecordError::PemBase64)?;
        if der.len() != 44 || der[..12] != SPKI_PREFIX {
            return Err(RecordError::PemNotEd25519);
        }
        return Ok(vec![bytes_key(&der[12..])?]);
    }
    Ok(vec![raw_key(t)?])
}

fn raw_key(b64: &str) -> Result<VerifyingKey, RecordError> {
    let b = B64.decode(b64.trim()).map_err(RecordError::KeyBase64)?;
    bytes_key(&b)
}

fn bytes_key(b: &[u8]) -> Result<VerifyingKey, RecordError> {
    let arr: [u8; 32] = b.try_into().map_err(|_| RecordError::KeyLength)?;
    VerifyingKey::from_bytes(&arr).map_err(RecordError::KeyInvalid)
}

/// What `gate verify` asserts beyond the signature.
#[derive(Debug, Default, Clone)]
pub struct Expect {
    pub commit: Option<String>,
    pub artifacts: Vec<String>,
}

/// A record that passed verification.
#[derive(Debug, Clone)]
pub struct Verified {
    pub keyid: String,
    pub statement: Value,
    pub outcome: String,
    pub request_id: String,
}

/// Checks the envelope's signature against `keys`, then the statement's shape, subjects
/// and outcome. Only an approved (or approved-and-used) record for the expected commit and
/// artifacts passes.
pub fn verify(envelope: &str, keys: &[VerifyingKey], expect: &Expect) -> Result<Verified, RecordError> {
    let env: Envelope = serde_json::from_str(envelope).map_err(RecordError::NotEnvelope)?;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(RecordError::PayloadType(env.payload_type));
    }
    let payload = B64.decode(&env.payload).map_err(RecordError::PayloadBase64)?;
    let signed = pae(&env.payload_type, &payload);
    let mut good = None;
    for s in &env.signatures {
        let Ok(raw) = B64.decode(&s.sig) else { continue };
        let Ok(sig) = Signature::from_slice(&raw) else { continue };
        if let Some(k) = keys.iter().find(|k| k.verify(&signed, &sig).is_ok()) {
            good = Some(keyid(k));
            break;
        }
    }
    let keyid = good.ok_or(RecordError::Signature)?;
    let st: Value = serde_json::from_slice(&payload).map_err(RecordError::PayloadJson)?;
    if st["_type"] != STATEMENT_TYPE {
        return Err(RecordError::NotStatement);
    }
    if st["predicateType"] != PREDICATE_TYPE {
        return Err(RecordError::PredicateType(st["predicateType"].clone()));
    }
    let pred = &st["predicate"];
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
}
