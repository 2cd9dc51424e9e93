// What `gate --version` says about the source it was built from. Included by build.rs
// and by the integration tests (tests/it/dist.rs), so both run the same code.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The commit a build came from, as far as the source tree tells.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// The commit, abbreviated to 7 hex digits.
    pub commit: Option<String>,
    /// The commit's date (YYYY-MM-DD), when git is there to say it.
    pub date: Option<String>,
    /// Files whose change means the answer may change.
    pub watch: Vec<PathBuf>,
}

impl BuildInfo {
    /// The part of `gate --version` after the version: ` (4b825dc 2026-12-01)`,
    /// ` (4b825dc)` or nothing.
    pub fn suffix(&self) -> String {
        match (&self.commit, &self.date) {
            (Some(c), Some(d)) => format!(" ({c} {d})"),
            (Some(c), None) => format!(" ({c})"),
            (None, _) => String::new(),
        }
    }
}

fn short(sha: &str) -> Option<String> {
    let sha = sha.trim();
    (sha.len() >= 7 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha[..7].to_ascii_lowercase())
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).current_dir(dir).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// In order: `GATE_BUILD_COMMIT` / `GATE_BUILD_DATE` when set (a container build
/// without `.git`); the git checkout whose top level is `dir`; the
/// `.cargo_vcs_info.json` that `cargo package` writes into a crate (commit only);
/// otherwise nothing.
pub fn build_info(dir: &Path, commit_env: Option<String>, date_env: Option<String>) -> BuildInfo {
    let mut info = BuildInfo::default();
    if let Some(c) = commit_env.as_deref().and_then(short) {
        info.commit = Some(c);
        info.date = date_env.filter(|d| !d.trim().is_empty()).map(|d| d.trim().to_string());
        return info;
    }
    // Only a checkout of this very directory: a crate unpacked inside someone else's
    // repository must not report that repository's commit.
    let top = git(dir, &["rev-parse", "--show-toplevel"]).map(PathBuf::from);
    let same = |a: &Path, b: &Path| a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok() == Some(a));
    if top.as_deref().is_some_and(|t| same(t, dir))
        && let Some(c) = git(dir, &["rev-parse", "HEAD"]).as_deref().and_then(short)
    {
        info.commit = Some(c);
        info.date = git(dir, &["log", "-1", "--format=%cs", "HEAD"]).filter(|d| !d.is_empty());
        let abs = |p: String| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { dir.join(p) }
        };
        if let Some(g) = git(dir, &["rev-parse", "--git-dir"]).map(abs) {
            info.watch.push(g.join("HEAD"));
        }
        if let Some(common) = git(dir, &["rev-parse", "--git-common-dir"]).map(abs) {
            info.watch.push(common.join("packed-refs"));
            if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
                info.watch.push(common.join(r));
            }
        }
        info.watch.retain(|p| p.exists());
        return info;
    }
    let vcs = dir.join(".cargo_vcs_info.json");
    if let Ok(text) = std::fs::read_to_string(&vcs) {
        // {"git": {"sha1": "<40 hex>", ...}, "path_in_vcs": ""}
        if let Some(rest) = text.split("\"sha1\"").nth(1) {
            let sha: String = rest
                .trim_start_matches(|c: char| c == ':' || c == '"' || c.is_whitespace())
                .chars()
                .take_while(|c| c.is_ascii_hexdigit())
                .collect();
            info.commit = short(&sha);
        }
        info.watch.push(vcs);
    }
    info
}
