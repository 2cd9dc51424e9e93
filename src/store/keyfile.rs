//! The server's signing keys on disk, in a file of mode 0600. Two forms are read:
//!
//! - one base64 Ed25519 seed (what servers before key rotation wrote; still read);
//! - a key ring, JSON, written by first start and by `gate key rotate`:
//!
//! ```json
//! {"version": 1, "keys": [
//!   {"public_key": "<base64>", "created_at": null, "retired_at": "2026-03-01T09:00:00Z"},
//!   {"public_key": "<base64>", "created_at": "2026-03-01T09:00:00Z", "retired_at": null, "seed": "<base64>"}]}
//! ```
//!
//! Oldest first. Exactly one key is current (no `retired_at`), and only it has a
//! `seed`: a retired key never signs again, so rotation drops its private half and
//! keeps the public one, which the server goes on publishing.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::core::audit::keys::{KeyError, KeyPair, KeyRing, Published, raw_key};
use crate::core::duration::rfc3339;
use crate::store::{Result as StoreResult, Store};

/// What is wrong with a key file, or with doing something to it.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{0}: no such key file")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: Problem },
    #[error("{0}: a key file is already there; refusing to replace it")]
    Exists(PathBuf),
}

/// Why a key file's content is not a key ring.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("not a jitgate key file (expected a base64 Ed25519 seed of 32 bytes, or a JSON key ring)")]
    NotAKey,
    #[error("not a jitgate key ring: {0}")]
    Json(serde_json::Error),
    #[error("unsupported key ring `version: {0}` (this gate reads version 1)")]
    Version(u32),
    #[error("key {0}: `seed` is not 32 bytes of base64")]
    Seed(usize),
    #[error("key {0}: `public_key`: {1}")]
    PublicKey(usize, KeyError),
    #[error("key {0}: `public_key` is not the public half of its `seed`")]
    SeedMismatch(usize),
    #[error("key {index}: `{field}` is not an RFC 3339 time: {value:?}")]
    Time {
        index: usize,
        field: &'static str,
        value: String,
    },
    #[error("key {0} has no `retired_at` but no `seed` either: the current key needs its seed")]
    CurrentWithoutSeed(usize),
    #[error("no current key (every key has a `retired_at`)")]
    NoCurrent,
    #[error("keys {0} and {1} both lack `retired_at`: only one key can be current")]
    SeveralCurrent(usize, usize),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RingFile {
    version: u32,
    keys: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    public_key: String,
    created_at: Option<String>,
    retired_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<String>,
}

/// Loads the key file at `path`.
pub fn load(path: &Path) -> Result<KeyRing, KeyFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyFileError::Missing(path.into())),
        Err(source) => return Err(io(path, source)),
    };
    parse(&text).map_err(|why| KeyFileError::Invalid { path: path.into(), why })
}

/// Makes a new key file at `path` with one fresh key, created `now` (ms); never
/// replaces an existing file.
pub fn create(path: &Path, now: i64) -> Result<KeyRing, KeyFileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let (seed, entry) = fresh(now);
    let file = RingFile {
        version: 1,
        keys: vec![entry],
    };
    write_private(path, &render(&file)).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyFileError::Exists(path.into()),
        _ => io(path, e),
    })?;
    let current = KeyPair::from_seed(seed);
    Ok(KeyRing {
        published: vec![Published {
            key: current.verifying_key(),
            not_before: Some(now),
            not_after: None,
        }],
        current,
    })
}

/// Retires the current key at `now` (ms), keeping its public half, and adds a new
/// current key. The file is replaced atomically; a server already running keeps
/// signing with the key it loaded until it restarts.
pub fn rotate(path: &Path, now: i64) -> Result<KeyRing, KeyFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyFileError::Missing(path.into())),
        Err(source) => return Err(io(path, source)),
    };
    let invalid = |why| KeyFileError::Invalid { path: path.into(), why };
    parse(&text).map_err(invalid)?;
    let mut file = ring_file(&text).map_err(invalid)?;
    for e in file.keys.iter_mut().filter(|e| e.retired_at.is_none()) {
        e.retired_at = Some(rfc3339(now));
        e.seed = None;
    }
    file.keys.push(fresh(now).1);
    let text = render(&file);
    let ring = parse(&text).map_err(invalid)?;
    replace_private(path, &text).map_err(|e| io(path, e))?;
    Ok(ring)
}

impl Store {
    /// How many audit events and records the database holds: none means a brand-new
    /// database, where a first start may make the signing key.
    pub async fn events_and_records(&self) -> StoreResult<i64> {
        use sqlx::Row as _;
        Ok(
            sqlx::query("SELECT (SELECT COUNT(*) FROM gate_audit) + (SELECT COUNT(*) FROM gate_records) AS n")
                .fetch_one(self.pool())
                .await?
                .try_get("n")?,
        )
    }
}

fn io(path: &Path, source: std::io::Error) -> KeyFileError {
    KeyFileError::Io {
        path: path.into(),
        source,
    }
}

/// A new random key, as the entry that records it.
fn fresh(now: i64) -> ([u8; 32], Entry) {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let kp = KeyPair::from_seed(seed);
    let entry = Entry {
        public_key: kp.public().public_key,
        created_at: Some(rfc3339(now)),
        retired_at: None,
        seed: Some(B64.encode(seed)),
    };
    (seed, entry)
}

fn render(file: &RingFile) -> String {
    let mut s = serde_json::to_string_pretty(file).unwrap_or_default();
    s.push('\n');
    s
}

/// The file as a ring: a bare seed is a ring of one key whose creation is unknown.
fn ring_file(text: &str) -> Result<RingFile, Problem> {
    let t = text.trim();
    if t.starts_with('{') {
        return serde_json::from_str(t).map_err(Problem::Json);
    }
    let seed = B64
        .decode(t)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(Problem::NotAKey)?;
    Ok(RingFile {
        version: 1,
        keys: vec![Entry {
            public_key: KeyPair::from_seed(seed).public().public_key,
            created_at: None,
            retired_at: None,
            seed: Some(t.to_string()),
        }],
    })
}

fn parse(text: &str) -> Result<KeyRing, Problem> {
    let file = ring_file(text)?;
    if file.version != 1 {
        return Err(Problem::Version(file.version));
    }
    let time = |index: usize, field: &'static str, v: &Option<String>| -> Result<Option<i64>, Problem> {
        v.as_deref()
            .map(|s| {
                s.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|_| Problem::Time {
                        index,
                        field,
                        value: s.into(),
                    })
            })
            .transpose()
    };
    let mut published = Vec::new();
    let mut current: Option<(usize, KeyPair)> = None;
    for (i, e) in file.keys.iter().enumerate() {
        let index = i + 1;
        let key = raw_key(&e.public_key).map_err(|k| Problem::PublicKey(index, k))?;
        let not_before = time(index, "created_at", &e.created_at)?;
        let not_after = time(index, "retired_at", &e.retired_at)?;
        let pair = match &e.seed {
            Some(s) => {
                let seed = B64
                    .decode(s.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or(Problem::Seed(index))?;
                let kp = KeyPair::from_seed(seed);
                if kp.verifying_key() != key {
                    return Err(Problem::SeedMismatch(index));
                }
                Some(kp)
            }
            None => None,
        };
        if not_after.is_none() {
            let kp = pair.ok_or(Problem::CurrentWithoutSeed(index))?;
            if let Some((first, _)) = &current {
                return Err(Problem::SeveralCurrent(*first, index));
            }
            current = Some((index, kp));
        }
        published.push(Published {
            key,
            not_before,
            not_after,
        });
    }
    let (_, current) = current.ok_or(Problem::NoCurrent)?;
    Ok(KeyRing { current, published })
}

#[cfg(unix)]
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Writes a new private file beside `path`, then renames it over `path`, so a crash
/// leaves the old file or the new one, never half of either.
fn replace_private(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    write_private(&tmp, text)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn a_bare_seed_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("signing-key");
        std::fs::write(&p, format!("{}\n", B64.encode([7u8; 32]))).unwrap();
        let ring = load(&p).unwrap();
        assert_eq!(ring.current.keyid, KeyPair::from_seed([7; 32]).keyid);
        assert_eq!(ring.published.len(), 1);
        assert_eq!(
            (ring.published[0].not_before, ring.published[0].not_after),
            (None, None)
        );
    }

    #[test]
    fn rotation_keeps_the_old_public_key_and_drops_its_seed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("signing-key");
        std::fs::write(&p, B64.encode([7u8; 32])).unwrap();
        let old = KeyPair::from_seed([7; 32]);
        let ring = rotate(&p, T0).unwrap();
        assert_ne!(ring.current.keyid, old.keyid);
        assert_eq!(ring.published.len(), 2);
        assert_eq!(ring.published[0].key, old.verifying_key());
        assert_eq!(ring.published[0].not_after, Some(T0));
        assert_eq!(ring.published[1].key, ring.current.verifying_key());
        assert_eq!(
            (ring.published[1].not_before, ring.published[1].not_after),
            (Some(T0), None)
        );
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            !text.contains(&B64.encode([7u8; 32])),
            "the retired seed is gone: {text}"
        );
        let again = rotate(&p, T0 + 1000).unwrap();
        assert_eq!(again.published.len(), 3);
        assert_eq!(again.published[1].not_after, Some(T0 + 1000));
        assert_eq!(load(&p).unwrap().current.keyid, again.current.keyid);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn create_never_replaces_and_rotate_needs_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/signing-key");
        assert!(matches!(load(&p), Err(KeyFileError::Missing(_))));
        assert!(matches!(rotate(&p, T0), Err(KeyFileError::Missing(_))));
        let ring = create(&p, T0).unwrap();
        assert_eq!(ring.published[0].not_before, Some(T0));
        assert!(matches!(create(&p, T0), Err(KeyFileError::Exists(_))));
        assert_eq!(load(&p).unwrap().current.keyid, ring.current.keyid);
    }

    #[test]
    fn a_bad_ring_says_what_is_wrong() {
        let e = |text: &str| parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        let k = KeyPair::from_seed([7; 32]).public().public_key;
        let seed = B64.encode([7u8; 32]);
        let other = B64.encode([8u8; 32]);
        assert!(e("hello").contains("not a jitgate key file"));
        assert!(e(r#"{"version": 2, "keys": []}"#).contains("version: 2"));
        assert!(e(r#"{"version": 1, "keys": []}"#).contains("no current key"));
        assert!(e(r#"{"version": 1, "keys": [], "extra": 1}"#).contains("unknown field `extra`"));
        let one = |created: &str, retired: &str, seed: &str| {
            format!(
                r#"{{"version": 1, "keys": [{{"public_key": "{k}", "created_at": {created}, "retired_at": {retired}{seed}}}]}}"#
            )
        };
        assert!(e(&one("null", "null", "")).contains("key 1 has no `retired_at` but no `seed`"));
        assert!(e(&one("null", "null", &format!(r#", "seed": "{other}""#))).contains("not the public half"));
        assert!(
            e(&one("\"yesterday\"", "null", &format!(r#", "seed": "{seed}""#)))
                .contains("`created_at` is not an RFC 3339 time")
        );
        assert!(e(&one("null", r#""2026-01-01T00:00:00Z""#, "")).contains("no current key"));
        assert!(parse(&one("null", "null", &format!(r#", "seed": "{seed}""#))).is_ok());
    }
}
