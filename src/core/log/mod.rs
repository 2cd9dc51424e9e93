//! The transparency log over the audit events: an RFC 6962 Merkle tree (`tree`) whose
//! heads are C2SP `tlog-checkpoint`s, signed as C2SP `signed-note`s with the server's
//! Ed25519 key, and cosigned by witnesses (C2SP `tlog-cosignature`, `cosignature/v1`).
//!
//! Leaf `i` is audit event `seq = i + 1`; its bytes are the canonical JSON the chain
//! hashes (`audit::leaf_bytes`), so anyone holding an export can rebuild the tree.
//! The formats are the crates' (`signed_note`, `tlog_tiles`); only the cosignature, which
//! `signed_note` does not implement, is written here, by its spec.

pub mod entry;
pub mod tree;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use signed_note::{Note, StandardSigner, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::Checkpoint;

use self::tree::Hash;

/// The signature type byte of a `cosignature/v1` key (C2SP tlog-cosignature).
const COSIGNATURE_TYPE: u8 = 0x04;
/// The signature type byte of an Ed25519 signed-note key.
const ED25519_TYPE: u8 = 0x01;

/// Why a checkpoint, key or cosignature is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log origin `{0}` is not a valid key name (non-empty, no spaces, no `+`)")]
    Origin(String),
    #[error("not a signed note: {0}")]
    Note(signed_note::NoteError),
    #[error("not a checkpoint (origin, tree size and root hash lines)")]
    Checkpoint,
    #[error("the checkpoint is for log `{found}`, expected `{expected}`")]
    WrongOrigin { found: String, expected: String },
    #[error("the checkpoint is not signed by the log key {0}")]
    NotSignedByLog(String),
    #[error("the checkpoint is not cosigned by witness {0}")]
    NotCosigned(String),
    #[error("verifier key `{0}` is malformed: expected NAME+HEXID+BASE64KEY")]
    Vkey(String),
    #[error("witness key file is malformed: expected PRIVATE+KEY+NAME+HEXID+BASE64")]
    WitnessKey,
}

/// The log's signing side: its origin (the checkpoint's first line and the signed-note
/// key name) and key.
pub struct LogKey {
    origin: String,
    signer: StandardSigner,
    vkey: String,
}

impl LogKey {
    /// The log key over the server's Ed25519 signing key.
    pub fn new(origin: &str, key: &SigningKey) -> Result<LogKey, LogError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(LogError::Origin(origin.to_string()));
        }
        let public = [&[ED25519_TYPE][..], key.verifying_key().as_bytes()].concat();
        let private = [&[ED25519_TYPE][..], key.as_bytes()].concat();
        let id = signed_note::key_id(origin, &public);
        let skey = format!("PRIVATE+KEY+{origin}+{id:08x}+{}", B64.encode(private));
        let signer = StandardSigner::new(&skey).map_err(|_| LogError::Origin(origin.to_string()))?;
        let vkey = vkey_for(origin, &key.verifying_key());
        Ok(LogKey {
            origin: origin.to_string(),
            signer,
            vkey,
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key, `origin+hexid+base64(0x01 || public key)`.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// The checkpoint of a tree, signed: the whole note text as C2SP specifies it.
    pub fn sign_checkpoint(&self, size: u64, root: Hash) -> String {
        let body = checkpoint_body(&self.origin, size, root);
        // The body is well-formed by construction (one line each, newline-terminated)
        // and the origin was checked when the key was made, so neither step can fail.
        let mut note = Note::new(body.as_bytes(), &[]).expect("checkpoint body is a valid note text");
        note.add_sigs(&[&self.signer]).expect("log origin is a valid key name");
        String::from_utf8(note.to_bytes()).unwrap_or_default()
    }
}

/// The signed-note verifier key of a log named `origin` whose key is `key`, so anyone
/// holding the server's public key can check its checkpoints.
pub fn vkey_for(origin: &str, key: &VerifyingKey) -> String {
    let public = [&[ED25519_TYPE][..], key.as_bytes()].concat();
    let id = signed_note::key_id(origin, &public);
    format!("{origin}+{id:08x}+{}", B64.encode(public))
}

/// The origin (first line) of a checkpoint note, unverified: to pick the verifier key.
pub fn origin_of(note: &str) -> &str {
    note.lines().next().unwrap_or_default()
}

/// `origin\nsize\nroot\n`: a checkpoint with no extension lines.
pub fn checkpoint_body(origin: &str, size: u64, root: Hash) -> String {
    format!("{origin}\n{size}\n{}\n", tree::b64(&root))
}

/// A checkpoint whose log signature, and the listed witnesses' cosignatures, verified.
#[derive(Debug, Clone)]
pub struct VerifiedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Names of the witnesses whose cosignature verified.
    pub cosigned_by: Vec<String>,
    /// Each verified cosignature's timestamp (seconds), by witness name.
    pub cosigned_at: Vec<(String, u64)>,
}

/// Checks a signed checkpoint against the log's verifier key and any witness keys given.
/// Signatures by keys not given are ignored, as the spec says; a signature by a given
/// key that does not verify is an error.
pub fn verify_checkpoint(
    text: &str,
    log_vkey: &str,
    witnesses: &[WitnessVkey],
) -> Result<VerifiedCheckpoint, LogError> {
    let log = StandardVerifier::new(log_vkey).map_err(|_| LogError::Vkey(log_vkey.to_string()))?;
    let log_name = log.name().to_string();
    let log_id = log.key_id();
    let mut list: Vec<Box<dyn Verifier>> = vec![Box::new(log)];
    for w in witnesses {
        list.push(Box::new(w.clone()));
    }
    let note = Note::from_bytes(text.as_bytes()).map_err(LogError::Note)?;
    let (verified, _) = note.verify(&VerifierList::new(list)).map_err(|e| match e {
        signed_note::NoteError::UnverifiedNote => LogError::NotSignedByLog(log_vkey.to_string()),
        e => LogError::Note(e),
    })?;
    if !verified.iter().any(|s| s.name() == log_name && s.id() == log_id) {
        return Err(LogError::NotSignedByLog(log_vkey.to_string()));
    }
    let cp = Checkpoint::from_bytes(note.text()).map_err(|_| LogError::Checkpoint)?;
    if cp.origin() != log_name {
        return Err(LogError::WrongOrigin {
            found: cp.origin().to_string(),
            expected: log_name,
        });
    }
    let mut cosigned_by = Vec::new();
    let mut cosigned_at = Vec::new();
    for s in &verified {
        if let Some(w) = witnesses.iter().find(|w| w.name == s.name() && w.id == s.id()) {
            cosigned_by.push(w.name.clone());
            let ts = s.signature().get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok());
            cosigned_at.push((w.name.clone(), ts.map(u64::from_be_bytes).unwrap_or(0)));
        }
    }
    Ok(VerifiedCheckpoint {
        origin: cp.origin().to_string(),
        size: cp.size(),
        root: *cp.hash(),
        cosigned_by,
        cosigned_at,
    })
}

/// The note text of a signed note (its body, without the signature block).
pub fn note_body(text: &str) -> Result<String, LogError> {
    let note = Note::from_bytes(text.as_bytes()).map_err(LogError::Note)?;
    Ok(String::from_utf8_lossy(note.text()).into_owned())
}

/// The signature lines of a signed note, each with its trailing newline.
pub fn note_signature_lines(text: &str) -> Vec<String> {
    text.rsplit_once("\n\n")
        .map(|(_, sigs)| sigs.lines().map(|l| format!("{l}\n")).collect())
        .unwrap_or_default()
}

/// The checkpoint `note` with `lines` (cosignature lines) appended after its own
/// signatures, skipping any already there.
pub fn with_cosignatures(note: &str, lines: &[String]) -> String {
    let mut out = note.to_string();
    let have = note_signature_lines(note);
    for l in lines {
        let l = if l.ends_with('\n') { l.clone() } else { format!("{l}\n") };
        if !have.contains(&l) && !out.contains(&l) {
            out.push_str(&l);
        }
    }
    out
}

/// A witness's public key: `name+hexid+base64(0x04 || public key)`.
#[derive(Debug, Clone)]
pub struct WitnessVkey {
    pub name: String,
    pub id: u32,
    key: VerifyingKey,
    text: String,
}

impl WitnessVkey {
    pub fn parse(vkey: &str) -> Result<WitnessVkey, LogError> {
        let bad = || LogError::Vkey(vkey.to_string());
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let raw = B64.decode(key).map_err(|_| bad())?;
        if id.len() != 8 || !signed_note::is_key_name_valid(name) || raw.len() != 33 || raw[0] != COSIGNATURE_TYPE {
            return Err(bad());
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad())?;
        if id != signed_note::key_id(name, &raw) {
            return Err(bad());
        }
        let arr: [u8; 32] = raw[1..].try_into().map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&arr).map_err(|_| bad())?;
        Ok(WitnessVkey {
            name: name.to_string(),
            id,
            key,
            text: vkey.trim().to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Checks one cosignature line (`— name base64`) over the checkpoint body `body`.
    pub fn verify_line(&self, body: &str, line: &str) -> bool {
        let Ok(sig) = signed_note::Signature::from_bytes(line.trim_end_matches('\n').as_bytes()) else {
            return false;
        };
        sig.name() == self.name && sig.id() == self.id && self.verify(body.as_bytes(), sig.signature())
    }
}

impl Verifier for WitnessVkey {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    /// `sig` is the 8-byte big-endian timestamp and the Ed25519 signature over
    /// `cosignature/v1\ntime T\n` and the checkpoint body.
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 72 {
            return false;
        }
        let ts = u64::from_be_bytes(sig[..8].try_into().unwrap_or([0; 8]));
        let Ok(s) = ed25519_dalek::Signature::from_slice(&sig[8..]) else {
            return false;
        };
        self.key.verify(&cosignature_message(ts, msg), &s).is_ok()
    }
}

fn cosignature_message(timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// A witness's signing key, kept in a file as `PRIVATE+KEY+name+hexid+base64(0x04 || seed)`.
pub struct WitnessKey {
    name: String,
    id: u32,
    key: SigningKey,
}

impl WitnessKey {
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<WitnessKey, LogError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(LogError::Origin(name.to_string()));
        }
        let key = SigningKey::from_bytes(&seed);
        let public = [&[COSIGNATURE_TYPE][..], key.verifying_key().as_bytes()].concat();
        Ok(WitnessKey {
            name: name.to_string(),
            id: signed_note::key_id(name, &public),
            key,
        })
    }

    pub fn parse(text: &str) -> Result<WitnessKey, LogError> {
        let mut parts = text.trim().splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(id), Some(key)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LogError::WitnessKey);
        };
        let raw = B64.decode(key).map_err(|_| LogError::WitnessKey)?;
        if raw.len() != 33 || raw[0] != COSIGNATURE_TYPE {
            return Err(LogError::WitnessKey);
        }
        let seed: [u8; 32] = raw[1..].try_into().map_err(|_| LogError::WitnessKey)?;
        let w = WitnessKey::from_seed(name, seed)?;
        if format!("{:08x}", w.id) != id {
            return Err(LogError::WitnessKey);
        }
        Ok(w)
    }

    /// The private key file's text.
    pub fn to_private(&self) -> String {
        let raw = [&[COSIGNATURE_TYPE][..], self.key.as_bytes()].concat();
        format!("PRIVATE+KEY+{}+{:08x}+{}\n", self.name, self.id, B64.encode(raw))
    }

    pub fn vkey(&self) -> String {
        let raw = [&[COSIGNATURE_TYPE][..], self.key.verifying_key().as_bytes()].concat();
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cosignature line (`— name base64(id || timestamp || signature)\n`) for the
    /// checkpoint body `body` at `timestamp` (seconds since the epoch).
    pub fn cosign(&self, body: &str, timestamp: u64) -> String {
        let sig = self.key.sign(&cosignature_message(timestamp, body.as_bytes()));
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_sign_verify_and_carry_cosignatures() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let log = LogKey::new("gate.example/log", &key).unwrap();
        let root = tree::leaf_hash(b"x");
        let note = log.sign_checkpoint(1, root);
        assert!(note.starts_with("gate.example/log\n1\n"));
        let v = verify_checkpoint(&note, log.vkey(), &[]).unwrap();
        assert_eq!((v.size, v.root), (1, root));

        let w = WitnessKey::from_seed("witness.example/w1", [9; 32]).unwrap();
        let wv = WitnessVkey::parse(&w.vkey()).unwrap();
        assert_eq!(WitnessKey::parse(&w.to_private()).unwrap().vkey(), w.vkey());
        let body = note_body(&note).unwrap();
        let line = w.cosign(&body, 1_767_000_000);
        assert!(wv.verify_line(&body, &line));
        let cosigned = with_cosignatures(&note, std::slice::from_ref(&line));
        let v = verify_checkpoint(&cosigned, log.vkey(), std::slice::from_ref(&wv)).unwrap();
        assert_eq!(v.cosigned_by, vec!["witness.example/w1".to_string()]);
        assert_eq!(v.cosigned_at[0].1, 1_767_000_000);
        // Without the cosignature, nobody cosigned; a different log key refuses it.
        assert!(
            verify_checkpoint(&note, log.vkey(), &[wv])
                .unwrap()
                .cosigned_by
                .is_empty()
        );
        let other = LogKey::new("gate.example/log", &SigningKey::from_bytes(&[4; 32])).unwrap();
        assert!(matches!(
            verify_checkpoint(&note, other.vkey(), &[]),
            Err(LogError::NotSignedByLog(_))
        ));
        // An altered size fails the signature.
        let forged = note.replacen("\n1\n", "\n2\n", 1);
        assert!(verify_checkpoint(&forged, log.vkey(), &[]).is_err());
        assert!(LogKey::new("bad origin", &key).is_err());
        assert!(WitnessVkey::parse("nope").is_err());
    }
}
