//! `gate migrate-data --from URL --to URL`: copies a stopped deployment into another,
//! empty database (SQLite to PostgreSQL, or back), so that a server started on the target
//! with the same signing key carries on where the source stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Ctx, Exit, Failure, Outcome, print_json};
use crate::serve::redact;
use crate::store::{Copied, CopyError, Store};

#[derive(Debug, clap::Args)]
pub struct MigrateDataArgs {
    /// The database to copy from: sqlite://PATH or postgres://…, at this version's
    /// schema. Stop every server on it first.
    #[arg(long, value_name = "URL", env = "GATE_MIGRATE_FROM", hide_env_values = true)]
    pub from: String,
    /// The database to copy into: migrated first; it must hold no rows. A SQLite file is
    /// created if missing.
    #[arg(long, value_name = "URL", env = "GATE_MIGRATE_TO", hide_env_values = true)]
    pub to: String,
}

/// A database URL given on the command line, checked.
struct Db {
    flag: &'static str,
    url: String,
    /// The URL as given (`url` may gain `mode=rwc`), for messages.
    given: String,
    /// The file, for SQLite.
    path: Option<PathBuf>,
}

impl Db {
    fn parse(flag: &'static str, url: &str) -> Result<Db, Failure> {
        let url = url.trim().to_string();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Db {
                flag,
                given: url.clone(),
                url,
                path: None,
            });
        }
        let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
            let scheme = url.split_once("://").map_or(url.as_str(), |(s, _)| s);
            return Err(Failure::usage(format!(
                "{flag} {}: unknown scheme `{scheme}`: use sqlite://PATH or postgres://USER@HOST/DB",
                redact(&url)
            )));
        };
        let file = rest.split('?').next().unwrap_or_default();
        if file.is_empty() || file == ":memory:" || rest.contains("mode=memory") {
            return Err(Failure::usage(format!(
                "{flag} {url}: give a SQLite file (an in-memory database is gone when migrate-data exits)"
            )));
        }
        Ok(Db {
            flag,
            path: Some(PathBuf::from(file)),
            given: url.clone(),
            url,
        })
    }

    fn shown(&self) -> String {
        redact(&self.given)
    }

    /// The error from this database, with its flag and URL (no password) in front.
    fn failed(&self, doing: &str, e: impl std::fmt::Display) -> Failure {
        Failure::usage(format!(
            "{} {}: {doing}: {}",
            self.flag,
            self.shown(),
            scrub(&e.to_string(), &self.url)
        ))
    }

    /// Where this database is, for telling two apart: the canonical file, or the
    /// PostgreSQL server, port, database and options.
    fn identity(&self) -> String {
        match &self.path {
            Some(p) => canonical(p).display().to_string(),
            None => match url::Url::parse(&self.url) {
                Ok(u) => format!(
                    "{}:{}{}?{}",
                    u.host_str().unwrap_or("localhost").to_ascii_lowercase(),
                    u.port().unwrap_or(5432),
                    u.path(),
                    u.query().unwrap_or("")
                ),
                Err(_) => self.url.clone(),
            },
        }
    }
}

/// A file's canonical path; for one not made yet, its directory's joined with its name.
fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            dir.canonicalize().map_or_else(|_| p.to_path_buf(), |d| d.join(name))
        }
        _ => p.to_path_buf(),
    }
}

/// `text` with the URL's password (if any) replaced by `***`.
fn scrub(text: &str, url: &str) -> String {
    let password = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => {
            let decoded = url::form_urlencoded::parse(format!("p={p}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let mut out = text.replace(&p, "***");
            if !decoded.is_empty() {
                out = out.replace(&decoded, "***");
            }
            out
        }
        None => text.to_string(),
    }
}

fn copy_failed(e: CopyError) -> Failure {
    let exit = if e.is_mismatch() {
        Exit::No
    } else {
        Exit::CouldNotDecide
    };
    Failure::new(exit, e.to_string())
}

pub async fn run(ctx: &Ctx, a: &MigrateDataArgs) -> Outcome {
    let started = Instant::now();
    let from = Db::parse("--from", &a.from)?;
    let mut to = Db::parse("--to", &a.to)?;
    if from.identity() == to.identity() {
        return Err(Failure::usage(format!(
            "--from and --to are the same database ({}): copy into another one",
            from.shown()
        )));
    }
    if let Some(p) = &from.path
        && !p.is_file()
    {
        return Err(Failure::usage(format!(
            "--from {}: there is no SQLite database at {}",
            from.shown(),
            p.display()
        )));
    }
    if to.path.is_some() && !to.url.contains("mode=") {
        to.url.push(if to.url.contains('?') { '&' } else { '?' });
        to.url.push_str("mode=rwc");
    }

    Store::probe(&from.url)
        .await
        .map_err(|e| from.failed("cannot connect", e))?;
    let source = Store::open(&from.url)
        .await
        .map_err(|e| from.failed("cannot open", e))?;
    source
        .check_copy_source()
        .await
        .map_err(|e| from.failed("cannot copy from it", e))?;
    Store::probe(&to.url)
        .await
        .map_err(|e| to.failed("cannot connect", e))?;
    let target = Store::open(&to.url).await.map_err(|e| to.failed("cannot open", e))?;
    target
        .check_copy_target()
        .await
        .map_err(|e| to.failed("cannot copy into it", e))?;
    target
        .migrate()
        .await
        .map_err(|e| to.failed("migrating its schema", e))?;
    let copied = source.copy_into(&target).await.map_err(|e| {
        let mut f = copy_failed(e);
        f.message = scrub(&scrub(&f.message, &from.url), &to.url);
        f
    })?;
    source.close().await;
    target.close().await;
    report(ctx, &from, &to, &copied, started.elapsed().as_secs_f64());
    Ok(Exit::Success)
}

fn report(ctx: &Ctx, from: &Db, to: &Db, copied: &[Copied], seconds: f64) {
    let total: i64 = copied.iter().map(|c| c.rows).sum();
    if ctx.json() {
        print_json(&serde_json::json!({
            "from": from.shown(),
            "to": to.shown(),
            "tables": copied.iter().map(|c| serde_json::json!({"table": c.table, "rows": c.rows})).collect::<Vec<_>>(),
            "rows": total,
            "seconds": seconds,
        }));
        return;
    }
    for c in copied {
        outln!("{:<24} {:>10} rows, the same in both", c.table, c.rows);
    }
    outln!(
        "copied {total} rows from {} into {} in one transaction ({seconds:.1} s); start gate serve on the target with the same signing key",
        from.shown(),
        to.shown()
    );
}
