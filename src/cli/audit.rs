//! `gate audit verify` and `gate audit witness`: checking the server's audit log from
//! outside it. The export is checked here, not on the server: every event's hash, link
//! and signature, the tree over them against the log's signed checkpoint, and (with
//! `--checkpoint`) that today's log extends one the auditor kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::{Ctx, Exit, Failure, Outcome, print_json};
use crate::client::Client;
use crate::core::api::AuditEvent;
use crate::core::audit::{ChainCheck, Row};
use crate::core::log::{self, VerifiedCheckpoint, WitnessKey, WitnessVkey, tree};

/// What `gate audit verify` takes.
pub struct VerifyArgs {
    /// The server's public key(s); without them, the server's own `/api/v1/keys`.
    pub key: Option<String>,
    /// A checkpoint kept earlier, which today's log must extend.
    pub checkpoint: Option<PathBuf>,
    /// Witnesses whose cosignature the latest checkpoint must carry.
    pub witness_keys: Vec<String>,
    /// Where to save the latest checkpoint once everything verified.
    pub save_checkpoint: Option<PathBuf>,
    /// Check this export (`gate audit export` output) instead of asking a server: fully
    /// offline, against `--key` and `--checkpoint`.
    pub export: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report {
    ok: bool,
    events: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root: Option<String>,
    cosigned_by: Vec<String>,
    requests: i64,
    problems: Vec<String>,
}

pub async fn verify(ctx: &Ctx, a: VerifyArgs) -> Outcome {
    if let Some(file) = &a.export {
        return verify_offline(ctx, file, &a).await;
    }
    let c = ctx.client()?;
    let keys = match &a.key {
        Some(k) => super::tools::load_keys(k).await?,
        None => {
            let text = serde_json::to_string(&c.keys().await?).unwrap_or_default();
            crate::core::audit::record::parse_public_keys(&text)
                .map_err(|e| Failure::usage(format!("server keys: {e}")))?
        }
    };
    let witnesses = parse_witnesses(&a.witness_keys)?;
    let mut problems = Vec::new();

    // 1. Every event: hash, link, signature.
    let mut check = ChainCheck::new(keys.clone());
    let mut after = 0;
    'pages: loop {
        let page = c.audit_export(after, 10_000).await?;
        if page.trim().is_empty() {
            break;
        }
        for line in page.lines().filter(|l| !l.trim().is_empty()) {
            let e: AuditEvent = serde_json::from_str(line)
                .map_err(|e| Failure::usage(format!("the export has a line that is not an event: {e}")))?;
            after = e.seq;
            if !check.push(&Row::from_event(&e)) {
                break 'pages;
            }
        }
    }
    if let Some((_, why)) = &check.broken {
        problems.push(why.clone());
    }
    let leaves = check.leaves().to_vec();

    // 2. The latest checkpoint: signed by the server's key, covering events we hold.
    let note = c.log_checkpoint().await?;
    let latest = match verify_note(&note, &keys, &witnesses) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(format!("the log's latest checkpoint: {e}"));
            None
        }
    };
    if let Some(cp) = &latest {
        problems.extend(extends(&leaves, cp, "the log's latest checkpoint"));
        for w in &witnesses {
            if !cp.cosigned_by.contains(&w.name) {
                problems.push(format!("the latest checkpoint is not cosigned by witness {}", w.name));
            }
        }
    }

    // 3. A checkpoint kept outside: today's log must extend it.
    if let Some(path) = &a.checkpoint {
        problems.extend(kept_checkpoint(path, &leaves, &keys)?);
    }

    // 4. Request rows against their signed events, checked by the server.
    let server = c.audit_verify().await?;
    for t in &server.tampered {
        problems.push(format!("request {}: {}", t.id, t.problem));
    }

    let ok = problems.is_empty();
    if ok && let (Some(path), Some(_)) = (&a.save_checkpoint, &latest) {
        std::fs::write(path, &note).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    }
    let report = Report {
        ok,
        events: check.count(),
        checkpoint_size: latest.as_ref().map(|c| c.size),
        root: latest.as_ref().map(|c| tree::b64(&c.root)),
        cosigned_by: latest.as_ref().map(|c| c.cosigned_by.clone()).unwrap_or_default(),
        requests: server.requests,
        problems,
    };
    if ctx.json() {
        print_json(&report);
    } else if ok {
        outln!(
            "audit log intact: {} events, each signed by the server; tree of {} matches the signed checkpoint{}; {} requests match their events",
            report.events,
            report.checkpoint_size.unwrap_or(0),
            if report.cosigned_by.is_empty() {
                String::new()
            } else {
                format!(" (cosigned by {})", report.cosigned_by.join(", "))
            },
            report.requests
        );
    } else {
        outln!("audit log BROKEN:");
        for p in &report.problems {
            outln!("  {p}");
        }
    }
    Ok(Exit::yes_or_no(ok))
}

/// `gate audit verify --export FILE --key K --checkpoint CP`: no server at all. Every
/// event of the export is checked (hash, link, signature), and the checkpoint kept must
/// be the root of the export's first events; with `--witness-key`, cosigned.
async fn verify_offline(ctx: &Ctx, file: &Path, a: &VerifyArgs) -> Outcome {
    let Some(key) = &a.key else {
        return Err(Failure::usage(
            "--export needs --key: offline, the server's keys cannot be fetched",
        ));
    };
    let Some(cp_path) = &a.checkpoint else {
        return Err(Failure::usage(
            "--export needs --checkpoint: the signed tree head the export must match",
        ));
    };
    let keys = super::tools::load_keys(key).await?;
    let witnesses = parse_witnesses(&a.witness_keys)?;
    let text = std::fs::read_to_string(file).map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    let mut check = ChainCheck::new(keys.clone());
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let e: AuditEvent = serde_json::from_str(line)
            .map_err(|e| Failure::usage(format!("{}:{}: not an audit event: {e}", file.display(), n + 1)))?;
        if !check.push(&Row::from_event(&e)) {
            break;
        }
    }
    let mut problems: Vec<String> = check.broken.iter().map(|(_, why)| why.clone()).collect();
    let leaves = check.leaves().to_vec();
    problems.extend(kept_checkpoint(cp_path, &leaves, &keys)?);
    let cp_text =
        std::fs::read_to_string(cp_path).map_err(|e| Failure::usage(format!("{}: {e}", cp_path.display())))?;
    let cp = verify_note(&cp_text, &keys, &witnesses).ok();
    for w in &witnesses {
        if !cp.as_ref().is_some_and(|c| c.cosigned_by.contains(&w.name)) {
            problems.push(format!("{} is not cosigned by witness {}", cp_path.display(), w.name));
        }
    }
    let ok = problems.is_empty();
    if ctx.json() {
        print_json(&Report {
            ok,
            events: check.count(),
            checkpoint_size: cp.as_ref().map(|c| c.size),
            root: cp.as_ref().map(|c| tree::b64(&c.root)),
            cosigned_by: cp.map(|c| c.cosigned_by).unwrap_or_default(),
            requests: 0,
            problems: problems.clone(),
        });
    } else if ok {
        outln!(
            "export intact: {} events, each signed by the server; its first {} are the tree of {}",
            check.count(),
            leaves.len().min(check.count() as usize),
            cp_path.display()
        );
    } else {
        outln!("audit log BROKEN:");
        for p in &problems {
            outln!("  {p}");
        }
    }
    Ok(Exit::yes_or_no(ok))
}

/// What is wrong if the events held do not extend the signed checkpoint in `path`.
fn kept_checkpoint(path: &Path, leaves: &[tree::Hash], keys: &[VerifyingKey]) -> Result<Vec<String>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let kept = verify_note(&text, keys, &[]).map_err(|e| {
        Failure::usage(format!(
            "{}: not a checkpoint signed by the server's key: {e}",
            path.display()
        ))
    })?;
    Ok(extends(leaves, &kept, &format!("checkpoint {}", path.display())))
}

/// A checkpoint note checked against the server's keys (the log key is the server key
/// under the note's origin) and the witnesses given.
fn verify_note(
    note: &str,
    keys: &[VerifyingKey],
    witnesses: &[WitnessVkey],
) -> Result<VerifiedCheckpoint, log::LogError> {
    let origin = log::origin_of(note);
    let mut last = None;
    for k in keys {
        match log::verify_checkpoint(note, &log::vkey_for(origin, k), witnesses) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(log::LogError::Checkpoint))
}

/// What is wrong if the events held do not extend checkpoint `cp`.
fn extends(leaves: &[tree::Hash], cp: &VerifiedCheckpoint, what: &str) -> Vec<String> {
    let size = cp.size as usize;
    if leaves.len() < size {
        return vec![format!(
            "{what} covers {size} events, but the log has {} that verify: events #{} to #{size} are missing (deleted or rewritten)",
            leaves.len(),
            leaves.len() + 1
        )];
    }
    if tree::root_of(&leaves[..size]) != cp.root {
        return vec![format!(
            "{what} (size {size}) does not match the events: history at or before event #{size} was rewritten"
        )];
    }
    vec![]
}

pub(super) fn parse_witnesses(vkeys: &[String]) -> Result<Vec<WitnessVkey>, Failure> {
    vkeys
        .iter()
        .map(|v| {
            let text = if Path::new(v).exists() {
                std::fs::read_to_string(v).map_err(|e| Failure::usage(format!("{v}: {e}")))?
            } else {
                v.clone()
            };
            WitnessVkey::parse(&text).map_err(|e| Failure::usage(e.to_string()))
        })
        .collect()
}

/// `gate audit witness --generate-key FILE --name NAME`: a new witness key, private in
/// FILE (mode 0600), its verifier key printed for the server's `log.witnesses`.
pub fn generate_key(path: &Path, name: &str) -> Outcome {
    if path.exists() {
        return Err(Failure::usage(format!(
            "{} exists; not overwriting a key",
            path.display()
        )));
    }
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let key = WitnessKey::from_seed(name, seed).map_err(|e| Failure::usage(e.to_string()))?;
    crate::store::keyfile::write_private(path, &key.to_private())
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    outln!("{}", key.vkey());
    Ok(Exit::Success)
}

/// What a witness remembers between runs: the log it follows and the last checkpoint
/// it cosigned.
#[derive(Serialize, Deserialize)]
struct WitnessState {
    log_vkey: String,
    size: u64,
    root: String,
    checkpoint: String,
}

/// Why a record's decision is not vouched for by the witnesses asked for.
#[derive(Debug, thiserror::Error)]
pub enum WitnessedError {
    #[error("{0}")]
    Entry(#[from] log::entry::EntryError),
    #[error("its log checkpoint is not cosigned by {0}, and no later cosigned one could be fetched: {1}")]
    Fetch(String, String),
    #[error("the log's cosigned checkpoint: {0}")]
    Later(log::LogError),
    #[error("the log's cosigned checkpoint (size {later}) is older than the record's (size {record})")]
    Older { later: u64, record: u64 },
    #[error("the log's cosigned checkpoint is not an extension of the record's: {0}")]
    Inconsistent(String),
}

/// Requires each of `witnesses` to vouch for the record's decision: its own checkpoint
/// cosigned, or a later checkpoint cosigned by them that is a proven extension of it
/// (witnesses cosign the latest checkpoint they see, usually after the record was made).
/// Cosignatures prove themselves, so they may come from any server.
pub async fn witnessed(
    v: &crate::core::audit::record::Verified,
    keys: &[VerifyingKey],
    witnesses: &[WitnessVkey],
    server: Option<&str>,
) -> Result<(), WitnessedError> {
    let pred = &v.statement["predicate"];
    let key = keys
        .iter()
        .find(|k| crate::core::audit::record::keyid(k) == v.keyid)
        .ok_or(log::entry::EntryError::Missing)?;
    let own = log::entry::check(pred, key, &[])?;
    let missing: Vec<&WitnessVkey> = witnesses
        .iter()
        .filter(|w| !own.cosigned_by.contains(&w.name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names = missing.iter().map(|w| w.name.as_str()).collect::<Vec<_>>().join(", ");
    let server = server.or(pred["server"].as_str()).unwrap_or_default();
    let fetch = |e: crate::client::ClientError| WitnessedError::Fetch(names.clone(), format!("{server}: {e}"));
    let c = Client::new(server, None).map_err(fetch)?;
    let note = c.log_checkpoint().await.map_err(fetch)?;
    let later = log::verify_checkpoint(&note, &log::vkey_for(log::origin_of(&note), key), witnesses)
        .map_err(WitnessedError::Later)?;
    if let Some(w) = missing.iter().find(|w| !later.cosigned_by.contains(&w.name)) {
        return Err(log::entry::EntryError::NotCosigned(w.name.clone()).into());
    }
    if later.size < own.size {
        return Err(WitnessedError::Older {
            later: later.size,
            record: own.size,
        });
    }
    if later.size == own.size {
        return if later.root == own.root {
            Ok(())
        } else {
            Err(WitnessedError::Inconsistent("same size, another root".into()))
        };
    }
    let proof = c
        .log_consistency(own.size, later.size)
        .await
        .map_err(fetch)?
        .iter()
        .map(|h| tree::parse_b64(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WitnessedError::Inconsistent(e.to_string()))?;
    tree::check_consistency(&proof, own.size, own.root, later.size, later.root)
        .map_err(|e| WitnessedError::Inconsistent(e.to_string()))
}

/// What `gate audit witness` takes.
pub struct WitnessArgs {
    pub server: String,
    pub key: PathBuf,
    pub state: PathBuf,
    /// The log's verifier key; by default the one saved in the state (or, on the first
    /// run, the server's `/api/v1/log/key`).
    pub log_key: Option<String>,
    pub every: Option<Duration>,
}

pub async fn witness(ctx: &Ctx, a: WitnessArgs) -> Outcome {
    let text = std::fs::read_to_string(&a.key).map_err(|e| Failure::usage(format!("{}: {e}", a.key.display())))?;
    let key = WitnessKey::parse(&text).map_err(|e| Failure::usage(format!("{}: {e}", a.key.display())))?;
    let c = Client::new(&a.server, None)?;
    loop {
        let r = witness_once(ctx, &c, &key, &a).await;
        match (&r, a.every) {
            (_, None) => return r,
            // A fork is never retried away: stop, loudly.
            (Err(f), Some(_)) if f.exit == Exit::No => return r,
            (Err(f), Some(_)) => eprintln!("gate: {f}; trying again"),
            (Ok(_), Some(_)) => {}
        }
        if let Some(d) = a.every {
            tokio::time::sleep(d).await;
        }
    }
}

async fn witness_once(ctx: &Ctx, c: &Client, key: &WitnessKey, a: &WitnessArgs) -> Outcome {
    let old: Option<WitnessState> = match std::fs::read_to_string(&a.state) {
        Ok(t) => Some(
            serde_json::from_str(&t)
                .map_err(|e| Failure::usage(format!("{}: not a witness state file: {e}", a.state.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Failure::usage(format!("{}: {e}", a.state.display()))),
    };
    let log_vkey = match (&a.log_key, &old) {
        (Some(k), _) => k.clone(),
        (None, Some(s)) => s.log_vkey.clone(),
        (None, None) => c.log_key().await?,
    };
    if let Some(s) = &old
        && s.log_vkey != log_vkey
    {
        return Err(Failure::no(format!(
            "the log key is {log_vkey}, but this witness follows {}; refusing (use a new state file for a new log)",
            s.log_vkey
        )));
    }
    let note = c.log_checkpoint().await?;
    let cp = log::verify_checkpoint(&note, &log_vkey, &[]).map_err(|e| Failure::no(format!("checkpoint: {e}")))?;
    if let Some(s) = &old {
        let root = tree::parse_b64(&s.root).map_err(|e| Failure::usage(format!("{}: {e}", a.state.display())))?;
        let fork = |why: String| {
            Failure::no(format!(
                "FORK: the log at {} is not an extension of the checkpoint this witness cosigned (size {}): {why}. Not cosigning.",
                a.server, s.size
            ))
        };
        if cp.size < s.size {
            return Err(fork(format!("it shrank to {}", cp.size)));
        }
        if cp.size == s.size && cp.root != root {
            return Err(fork("same size, another root".into()));
        }
        if cp.size > s.size && s.size > 0 {
            let proof = c
                .log_consistency(s.size, cp.size)
                .await?
                .iter()
                .map(|h| tree::parse_b64(h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fork(e.to_string()))?;
            tree::check_consistency(&proof, s.size, root, cp.size, cp.root).map_err(|e| fork(e.to_string()))?;
        }
    }
    let body = log::note_body(&note).map_err(|e| Failure::no(e.to_string()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let line = key.cosign(&body, now);
    let kept = c.log_cosign(&log::with_cosignatures(&note, &[line])).await?;
    let state = WitnessState {
        log_vkey,
        size: cp.size,
        root: tree::b64(&cp.root),
        checkpoint: note,
    };
    let tmp = a.state.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&state).unwrap_or_default())
        .and_then(|_| std::fs::rename(&tmp, &a.state))
        .map_err(|e| Failure::usage(format!("{}: {e}", a.state.display())))?;
    if ctx.json() {
        print_json(&serde_json::json!({"cosigned": true, "size": cp.size, "root": state.root, "kept_by": kept}));
    } else {
        outln!("cosigned checkpoint {} of {} as {}", cp.size, cp.origin, key.name());
    }
    Ok(Exit::Success)
}
