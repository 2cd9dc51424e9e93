//! The server's Ed25519 keys: the one that signs now, and the set it publishes (every
//! key it ever signed with, each with its validity window) so old records keep
//! verifying after a rotation. Key ids are securesystemslib's, so a standard DSSE
//! verifier matches our envelopes to `/api/v1/keys` entries without help.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::core::api::{KeyVal, PublicKey};
use crate::core::duration::rfc3339;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// Why public keys do not parse. The causes are part of the message, not `source()`s,
/// so that printing an error with its chain says each once.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
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
}

/// The key the server signs with now.
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

    /// The private key, for whatever else the server signs with the same identity.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Its public half, without a validity window.
    pub fn public(&self) -> PublicKey {
        public_key_view(&self.key.verifying_key())
    }
}

/// A public key the server lists, with when it signed: times in ms since the epoch;
/// `None` before rotation was recorded (`not_before`) or while it is current (`not_after`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub key: VerifyingKey,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
}

impl Published {
    pub fn view(&self) -> PublicKey {
        PublicKey {
            not_before: self.not_before.map(rfc3339),
            not_after: self.not_after.map(rfc3339),
            ..public_key_view(&self.key)
        }
    }
}

/// The current key and every key to publish (the current one included), oldest first.
pub struct KeyRing {
    pub current: KeyPair,
    pub published: Vec<Published>,
}

/// securesystemslib's default keyid for an Ed25519 key: the SHA-256, in hex, of the
/// canonical JSON of its `keytype`, `scheme` and `keyval` (the raw key in hex).
pub fn keyid(k: &VerifyingKey) -> String {
    // Written out rather than serialized: canonical JSON sorts keys and has no spaces,
    // and a hex string needs no escaping, so this is exactly what securesystemslib hashes.
    let canonical = format!(
        r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
        hex::encode(k.as_bytes())
    );
    hex::encode(Sha256::digest(canonical.as_bytes()))
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
        keytype: "ed25519".into(),
        scheme: "ed25519".into(),
        keyval: KeyVal {
            public: hex::encode(k.as_bytes()),
        },
        not_before: None,
        not_after: None,
    }
}

/// Reads public keys from any of the forms we hand out: PEM, raw base64, or the JSON of
/// `/api/v1/keys` (or one key of it).
pub fn parse_public_keys(text: &str) -> Result<Vec<VerifyingKey>, KeyError> {
    let t = text.trim();
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).map_err(KeyError::KeyJson)?;
        let items: Vec<Value> = match v.get("keys") {
            Some(Value::Array(a)) => a.clone(),
            _ => vec![v],
        };
        let mut out = Vec::new();
        for k in items {
            let b = k
                .get("public_key")
                .and_then(Value::as_str)
                .ok_or(KeyError::KeyJsonNoPublicKey)?;
            out.push(raw_key(b)?);
        }
        if out.is_empty() {
            return Err(KeyError::KeyJsonNoKeys);
        }
        return Ok(out);
    }
    if t.starts_with("-----BEGIN PUBLIC KEY-----") {
        let body: String = t.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = B64.decode(body.trim()).map_err(KeyError::PemBase64)?;
        if der.len() != 44 || der[..12] != SPKI_PREFIX {
            return Err(KeyError::PemNotEd25519);
        }
        return Ok(vec![bytes_key(&der[12..])?]);
    }
    Ok(vec![raw_key(t)?])
}

/// A raw 32-byte key, base64.
pub fn raw_key(b64: &str) -> Result<VerifyingKey, KeyError> {
    let b = B64.decode(b64.trim()).map_err(KeyError::KeyBase64)?;
    bytes_key(&b)
}

fn bytes_key(b: &[u8]) -> Result<VerifyingKey, KeyError> {
    let arr: [u8; 32] = b.try_into().map_err(|_| KeyError::KeyLength)?;
    VerifyingKey::from_bytes(&arr).map_err(KeyError::KeyInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyid_is_securesystemslibs() {
        // securesystemslib 1.6: SSlibKey.from_crypto(Ed25519PublicKey.from_private_bytes(
        // bytes([7] * 32)).public_key()).keyid
        let kp = KeyPair::from_seed([7; 32]);
        assert_eq!(
            kp.keyid,
            "bfe1a83869e5bf574e3ff3acbb83f840de84a990d10059f3096f0bf4f2b90c10"
        );
        assert_eq!(kp.public().keyval.public, hex::encode(kp.verifying_key().as_bytes()));
    }

    #[test]
    fn every_published_form_parses() {
        let kp = KeyPair::from_seed([7; 32]);
        let v = kp.public();
        for text in [v.pem.clone(), v.public_key.clone(), serde_json::to_string(&v).unwrap()] {
            assert_eq!(parse_public_keys(&text).unwrap(), vec![kp.verifying_key()], "{text}");
        }
        let two = serde_json::json!({"keys": [v, KeyPair::from_seed([8; 32]).public()]});
        assert_eq!(parse_public_keys(&two.to_string()).unwrap().len(), 2);
        assert!(matches!(
            parse_public_keys(r#"{"keys": []}"#),
            Err(KeyError::KeyJsonNoKeys)
        ));
        assert!(matches!(parse_public_keys("AAAA"), Err(KeyError::KeyLength)));
    }

    #[test]
    fn a_published_key_shows_its_window() {
        let p = Published {
            key: KeyPair::from_seed([7; 32]).verifying_key(),
            not_before: Some(1_700_000_000_000),
            not_after: None,
        };
        let v = p.view();
        assert_eq!(v.not_before.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(v.not_after, None);
        let j = serde_json::to_value(&v).unwrap();
        assert!(j["not_after"].is_null(), "{j}");
    }
}
