//! `gate key rotate` and `gate key init`: offline, on the key file `gate serve` would use.

use std::path::PathBuf;

use clap::Args;

use super::{Ctx, Exit, Failure, Outcome, print_json};
use crate::config::Config;
use crate::core::audit::keys::KeyRing;
use crate::core::duration::now_ms;
use crate::store::keyfile;

/// Where the key file is, found as `gate serve` finds it.
#[derive(Debug, Args)]
pub struct KeyFileArgs {
    /// Server config file (for its `signing_key` and `data_dir`).
    #[arg(long, env = "GATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The server's data dir (the key is DATA_DIR/signing-key unless set otherwise).
    #[arg(long, env = "GATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The signing key file itself.
    #[arg(long, env = "GATE_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
}

impl KeyFileArgs {
    fn path(&self) -> Result<PathBuf, Failure> {
        let config = match &self.config {
            Some(p) => Config::load(p).map_err(|e| Failure::usage(e.to_string()))?,
            None => Config::default(),
        };
        let data_dir = super::serve::data_dir(self.data_dir.as_ref(), &config);
        Ok(super::serve::signing_key(self.signing_key.as_ref(), &config, &data_dir))
    }
}

pub fn rotate(ctx: &Ctx, a: &KeyFileArgs) -> Outcome {
    let path = a.path()?;
    let before = keyfile::load(&path).map_err(|e| Failure::usage(e.to_string()))?;
    let ring = keyfile::rotate(&path, now_ms()).map_err(|e| Failure::usage(e.to_string()))?;
    if ctx.json() {
        print_json(&summary(&path, &ring, Some(&before.current.keyid)));
    } else {
        outln!(
            "{}: key {} signs from now on; {} is retired and stays published ({} keys in all)",
            path.display(),
            ring.current.keyid,
            before.current.keyid,
            ring.published.len()
        );
        outln!("restart every server that uses this key file so that it signs with the new key");
    }
    Ok(Exit::Success)
}

pub fn init(ctx: &Ctx, a: &KeyFileArgs) -> Outcome {
    let path = a.path()?;
    let ring = keyfile::create(&path, now_ms()).map_err(|e| Failure::usage(e.to_string()))?;
    if ctx.json() {
        print_json(&summary(&path, &ring, None));
    } else {
        outln!("{}: made a new signing key {}", path.display(), ring.current.keyid);
    }
    Ok(Exit::Success)
}

fn summary(path: &std::path::Path, ring: &KeyRing, retired: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "path": path.display().to_string(),
        "current": ring.current.keyid,
        "retired": retired,
        "keys": ring.published.iter().map(|k| k.view()).collect::<Vec<_>>(),
    })
}
