//! Starting a real `gate serve` process on port 0 and learning its URL.
//!
//! Shared by the integration tests (`tests/it`) and `gate-load` (`benches/load.rs`, which
//! includes this file with `#[path]`): only the crate's own dependencies here.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What `gate serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeFiles {
    pub config: PathBuf,
    pub policy: PathBuf,
    pub data_dir: PathBuf,
    /// `127.0.0.1:0` for a free port.
    pub listen: String,
    /// `None`: SQLite in the data dir.
    pub database_url: Option<String>,
}

impl ServeFiles {
    /// `gate serve --config … --policy … --data-dir … --listen … [--database-url …]`, stdin
    /// closed, stdout piped (for [`listening`]), killed when dropped. The caller sets the
    /// environment and stderr.
    pub fn command(&self, gate: &Path) -> Command {
        let mut cmd = Command::new(gate);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--policy")
            .arg(&self.policy)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(&self.listen);
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).kill_on_drop(true);
        cmd
    }
}

/// Reads the server's first stdout line (`jitgate listening on URL`) and returns the URL;
/// then keeps draining stdout so the server never blocks on a full pipe. `Err` holds the
/// line read instead, or says the server exited first.
pub async fn listening(child: &mut Child) -> Result<String, String> {
    let out = child.stdout.take().ok_or("the server's stdout is not piped")?;
    let mut lines = BufReader::new(out).lines();
    let first = lines
        .next_line()
        .await
        .map_err(|e| format!("reading the server's stdout: {e}"))?
        .ok_or("the server exited before listening")?;
    let url = first
        .strip_prefix("jitgate listening on ")
        .ok_or_else(|| format!("unexpected first line {first:?}"))?
        .trim()
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(url)
}
