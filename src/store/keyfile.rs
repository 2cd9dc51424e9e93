//! The server's signing key on disk: one base64 Ed25519 seed in a file of mode 0600.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::core::audit::record::KeyPair;

/// Loads the key at `path`, or makes one there (mode 0600) if there is none.
pub fn load_or_create(path: &Path) -> std::io::Result<KeyPair> {
    if path.exists() {
        let text = std::fs::read_to_string(path)?;
        let seed = B64
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not an Ed25519 key (expected 32 bytes, base64)", path.display()),
                )
            })?;
        return Ok(KeyPair::from_seed(seed));
    }
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(path, format!("{}\n", B64.encode(seed)).as_bytes())?;
    Ok(KeyPair::from_seed(seed))
}

#[cfg(unix)]
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
