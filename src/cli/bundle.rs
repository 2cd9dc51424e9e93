//! The evidence bundle: what `gate audit bundle` writes and `gate verify --bundle`
//! checks, offline. A gzipped tar of
//!
//! - `README.md`: what it holds and the commands that check it;
//! - `report.json`, `report.csv`, `report.html`: the change report (CSV and HTML are
//!   renderings of the JSON);
//! - `records/ID.json`: every signed record of the report, byte for byte as stored;
//! - `log/checkpoint`, `log/key`: the transparency log's signed checkpoint and its key;
//! - `log/proofs.json`: each record's decision event's inclusion proof in that checkpoint;
//! - `log/leaves`: every leaf hash of that checkpoint's tree (32 bytes each, in order);
//! - `log/events.jsonl`: the contiguous run of audit events covering the period, and
//!   `log/context.jsonl`: events elsewhere that explain a decision with no row (its
//!   request's environment, or a later decision); see `core::report::complete`;
//! - `keys.json`: the server's public keys (`/api/v1/keys`).
//!
//! The checks reuse the ones of `gate verify` and `gate audit verify`: a record's DSSE
//! signature (`record::open`), its own log entry (`log::entry::check`), an inclusion
//! proof and a signed checkpoint (`log::tree`, `log::verify_checkpoint`); then the report
//! is computed again from the records (`core::report`) and must be the one bundled; and
//! the log shows it complete: every request decided in the period is a row
//! (`core::report::complete`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Component, Path};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::reports::BundleArgs;
use super::{Ctx, Exit, Failure, Outcome, print_json};
use crate::core::audit::record;
use crate::core::log::{self, entry, tree};
use crate::core::report::{self, Period, Report, complete, render};

/// One record's inclusion proof against the bundled checkpoint.
#[derive(Debug, Serialize, Deserialize)]
pub struct Proof {
    pub index: u64,
    pub tree_size: u64,
    pub hashes: Vec<String>,
}

/// What goes into a bundle.
pub struct Contents {
    pub report_json: String,
    pub report_csv: String,
    pub report_html: String,
    pub records: BTreeMap<String, String>,
    pub checkpoint: String,
    pub log_key: String,
    pub proofs: String,
    pub keys: String,
    pub readme: String,
    pub log: LogEvidence,
}

/// The log's part of a bundle (see `core::report::complete`).
pub struct LogEvidence {
    /// Every leaf hash of the checkpoint's tree, 32 bytes each.
    pub leaves: Vec<u8>,
    /// JSON lines of `AuditEvent`s: the run covering the period.
    pub events: String,
    /// JSON lines: single events outside the run.
    pub context: String,
}

/// A bundle is read whole into memory; past these it is refused, not read.
const MAX_FILE: u64 = 64 << 20;
const MAX_TOTAL: u64 = 1 << 30;

/// Writes the bundle (through a temporary file, renamed into place). Every entry is a
/// plain file, mode 0644, dated `generated_at`.
pub fn write(path: &Path, c: &Contents, generated_at: &str) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::usage(format!("{}: {e}", path.display()));
    let mtime = generated_at
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_second().max(0) as u64)
        .unwrap_or(0);
    let tmp = path.with_extension("partial");
    let file = std::fs::File::create(&tmp).map_err(fail)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, bytes)
    };
    add("README.md", c.readme.as_bytes()).map_err(fail)?;
    add("report.json", c.report_json.as_bytes()).map_err(fail)?;
    add("report.csv", c.report_csv.as_bytes()).map_err(fail)?;
    add("report.html", c.report_html.as_bytes()).map_err(fail)?;
    add("keys.json", c.keys.as_bytes()).map_err(fail)?;
    add("log/checkpoint", c.checkpoint.as_bytes()).map_err(fail)?;
    add("log/key", c.log_key.as_bytes()).map_err(fail)?;
    add("log/proofs.json", c.proofs.as_bytes()).map_err(fail)?;
    add("log/leaves", &c.log.leaves).map_err(fail)?;
    add("log/events.jsonl", c.log.events.as_bytes()).map_err(fail)?;
    add("log/context.jsonl", c.log.context.as_bytes()).map_err(fail)?;
    for (id, env) in &c.records {
        add(&format!("records/{id}.json"), env.as_bytes()).map_err(fail)?;
    }
    let gz = tar.into_inner().map_err(fail)?;
    gz.finish().map_err(fail)?.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The bundle's files by name. Only plain files with relative names that stay inside
/// the bundle are taken; anything else is refused, naming the entry.
fn read(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, Failure> {
    let at = |what: String| Failure::no(format!("{}: {what}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = BTreeMap::new();
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| at(format!("not a gzipped tar: {e}")))?;
    for e in entries {
        let mut e = e.map_err(|e| at(format!("not a gzipped tar: {e}")))?;
        let name = e
            .path()
            .map_err(|err| at(format!("an entry has an unreadable name: {err}")))?
            .into_owned();
        let shown = name.display().to_string();
        match e.header().entry_type() {
            tar::EntryType::Regular => {}
            tar::EntryType::Directory => continue,
            other => {
                return Err(at(format!(
                    "{shown}: a {other:?} entry; a bundle holds plain files only"
                )));
            }
        }
        if !name.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(at(format!("{shown}: a name outside the bundle")));
        }
        let size = e.size();
        total = total.saturating_add(size);
        if size > MAX_FILE || total > MAX_TOTAL {
            return Err(at(format!("{shown}: too large ({size} bytes)")));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        e.read_to_end(&mut bytes).map_err(|err| at(format!("{shown}: {err}")))?;
        let key = name.to_string_lossy().trim_start_matches("./").to_string();
        if out.insert(key, bytes).is_some() {
            return Err(at(format!("{shown}: twice in the bundle")));
        }
    }
    Ok(out)
}

/// The first field in which two rows differ, with both values.
fn first_difference(a: &report::Row, b: &report::Row) -> Option<(String, String, String)> {
    let (a, b) = (serde_json::to_value(a).ok()?, serde_json::to_value(b).ok()?);
    let (a, b) = (a.as_object()?, b.as_object()?);
    a.iter().find(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| {
        (
            k.clone(),
            v.to_string(),
            b.get(k).map(|x| x.to_string()).unwrap_or_default(),
        )
    })
}

#[derive(Serialize)]
struct Verdict {
    ok: bool,
    records: usize,
    checkpoint_size: Option<u64>,
    rows: usize,
    /// The decision events of the period found in the log's run.
    decisions: usize,
    warnings: Vec<String>,
    problems: Vec<String>,
}

/// `gate verify --bundle FILE [--key K]`: every check, every problem named by its file.
pub async fn verify(ctx: &Ctx, path: &Path, key: Option<&str>) -> Outcome {
    let files = read(path)?;
    let text = |name: &str| -> Result<String, Failure> {
        let bytes = files
            .get(name)
            .ok_or_else(|| Failure::no(format!("{}: the bundle has no {name}", path.display())))?;
        String::from_utf8(bytes.clone()).map_err(|_| Failure::no(format!("{name}: not UTF-8 text")))
    };
    let mut problems: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();

    // The keys: pinned with --key, or the bundle's own.
    let keys = match key {
        Some(k) => super::tools::load_keys(k).await?,
        None => record::parse_public_keys(&text("keys.json")?).map_err(|e| Failure::no(format!("keys.json: {e}")))?,
    };

    // The checkpoint, signed by the log key, which is one of the server's keys.
    let note = text("log/checkpoint")?;
    let log_key = text("log/key")?.trim().to_string();
    if !keys.iter().any(|k| log::vkey_for(log::origin_of(&note), k) == log_key) {
        problems.push("log/key: not the log key of any of the server's keys".into());
    }
    let cp = match log::verify_checkpoint(&note, &log_key, &[]) {
        Ok(cp) => Some(cp),
        Err(e) => {
            problems.push(format!("log/checkpoint: does not verify with log/key: {e}"));
            None
        }
    };
    let proofs: BTreeMap<String, Proof> =
        serde_json::from_str(&text("log/proofs.json")?).map_err(|e| Failure::no(format!("log/proofs.json: {e}")))?;

    // Every record: signed, its own log entry holds, and it is in the bundled checkpoint.
    let mut rows = Vec::new();
    let mut present = BTreeSet::new();
    for (name, bytes) in &files {
        let Some(id) = name.strip_prefix("records/").and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        present.insert(id.to_string());
        let Ok(env) = std::str::from_utf8(bytes) else {
            problems.push(format!("{name}: not UTF-8 text"));
            continue;
        };
        let (signer, st) = match record::open(env, &keys) {
            Ok(x) => x,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        let pred = &st["predicate"];
        if pred["request"]["id"].as_str() != Some(id) {
            problems.push(format!("{name}: is the record of {}, not {id}", pred["request"]["id"]));
            continue;
        }
        match entry::check(pred, &signer, &[]) {
            Ok(_) => {}
            Err(entry::EntryError::Missing) => {
                warnings.push(format!(
                    "{name}: no transparency log entry (a record from before the log)"
                ));
            }
            Err(e) => problems.push(format!("{name}: {e}")),
        }
        if let (Some(cp), Some(index)) = (&cp, pred["log"]["index"].as_u64()) {
            match proofs.get(id) {
                None => problems.push(format!("log/proofs.json: no inclusion proof for {id}")),
                Some(p) => {
                    let leaf = pred["log"]["leaf"]
                        .as_str()
                        .and_then(|l| B64.decode(l).ok())
                        .unwrap_or_default();
                    let held = p
                        .hashes
                        .iter()
                        .map(|h| tree::parse_b64(h))
                        .collect::<Result<Vec<_>, _>>()
                        .and_then(|h| tree::check_inclusion(&h, cp.size, cp.root, index, tree::leaf_hash(&leaf)));
                    if p.index != index || p.tree_size != cp.size {
                        problems.push(format!(
                            "log/proofs.json: the proof for {id} is for leaf {} of {}, not leaf {index} of the checkpoint's {}",
                            p.index, p.tree_size, cp.size
                        ));
                    } else if let Err(e) = held {
                        problems.push(format!(
                            "{name}: its decision (log leaf {index}) is not in log/checkpoint (size {}): {e}",
                            cp.size
                        ));
                    }
                }
            }
        }
        match report::row_of(id, env) {
            Ok(r) => rows.push(r),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }

    // The report: computed again from the records, it must be the one bundled.
    let report_text = text("report.json")?;
    let bundled: Report = serde_json::from_str(&report_text)
        .map_err(|e| Failure::no(format!("report.json: not a change report: {e}")))?;
    let period =
        Period::parse(&bundled.from, &bundled.to).map_err(|e| Failure::no(format!("report.json: its period: {e}")))?;
    let expected = report::build(rows, &period, bundled.environment.as_deref(), 0);
    let by_id: BTreeMap<&str, &report::Row> = expected.rows.iter().map(|r| (r.request_id.as_str(), r)).collect();
    let listed: BTreeSet<&str> = bundled.rows.iter().map(|r| r.request_id.as_str()).collect();
    for row in &bundled.rows {
        let id = row.request_id.as_str();
        if !present.contains(id) {
            problems.push(format!("report.json lists {id}, but records/{id}.json is missing"));
        } else if let Some(want) = by_id.get(id)
            && let Some((field, have, from_record)) = first_difference(row, want)
        {
            problems.push(format!(
                "report.json: row {id}: {field} is {have}, but records/{id}.json says {from_record}"
            ));
        }
    }
    for id in present.iter().filter(|id| !listed.contains(id.as_str())) {
        problems.push(format!("records/{id}.json: not a row of report.json"));
    }
    let order: Vec<&str> = expected.rows.iter().map(|r| r.request_id.as_str()).collect();
    let given: Vec<&str> = bundled.rows.iter().map(|r| r.request_id.as_str()).collect();
    if problems.is_empty() && order != given {
        problems.push("report.json: its rows are not the records of its period in decision order".into());
    }
    let complete = completeness(&files, &text, cp.as_ref(), &keys, &period, &bundled)?;
    warnings.extend(complete.warnings);
    problems.extend(complete.problems);
    if bundled.summary != report::summarise(&bundled.rows) {
        problems.push("report.json: its summary does not match its rows".into());
    }
    if text("report.csv")? != render::csv(&bundled) {
        problems.push("report.csv: not the rows of report.json (changed, or made by another gate version)".into());
    }
    if text("report.html")? != render::html(&bundled) {
        problems
            .push("report.html: not the rendering of report.json (changed, or made by another gate version)".into());
    }
    text("README.md")?;

    let ok = problems.is_empty();
    if ctx.json() {
        print_json(&Verdict {
            ok,
            records: present.len(),
            checkpoint_size: cp.as_ref().map(|c| c.size),
            rows: bundled.rows.len(),
            decisions: complete.decisions,
            warnings,
            problems,
        });
    } else {
        for w in &warnings {
            eprintln!("gate: warning: {w}");
        }
        if ok {
            outln!(
                "bundle intact: {} signed record(s), each in the log checkpoint of size {}; report.json's {} row(s) and summary agree with the records, and report.csv and report.html with report.json; complete: the log's {} decision(s) of the period are its rows",
                present.len(),
                cp.as_ref().map(|c| c.size).unwrap_or(0),
                bundled.rows.len(),
                complete.decisions
            );
        } else {
            outln!("bundle REFUSED ({}):", path.display());
            for p in &problems {
                outln!("  {p}");
            }
        }
    }
    Ok(Exit::yes_or_no(ok))
}

/// The events of a JSON-lines file of the bundle.
fn events_of(name: &str, text: &str) -> Result<Vec<crate::core::audit::Row>, Failure> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<crate::core::api::AuditEvent>(l)
                .map(|e| crate::core::audit::Row::from_event(&e))
                .map_err(|e| Failure::no(format!("{name}:{}: not an audit event: {e}", i + 1)))
        })
        .collect()
}

/// The completeness check of `core::report::complete` over the bundle's log files.
fn completeness(
    files: &BTreeMap<String, Vec<u8>>,
    text: &dyn Fn(&str) -> Result<String, Failure>,
    cp: Option<&log::VerifiedCheckpoint>,
    keys: &[ed25519_dalek::VerifyingKey],
    period: &Period,
    bundled: &Report,
) -> Result<complete::Verdict, Failure> {
    let Some(cp) = cp else {
        return Ok(complete::Verdict::default());
    };
    let raw = files
        .get("log/leaves")
        .ok_or_else(|| Failure::no("the bundle has no log/leaves"))?;
    if raw.len() % 32 != 0 {
        return Ok(complete::Verdict {
            problems: vec![format!("log/leaves: {} bytes, not a list of 32-byte hashes", raw.len())],
            ..Default::default()
        });
    }
    let leaves: Vec<tree::Hash> = raw
        .chunks(32)
        .map(|c| tree::Hash(c.try_into().unwrap_or_default()))
        .collect();
    let run = events_of("log/events.jsonl", &text("log/events.jsonl")?)?;
    let context = events_of("log/context.jsonl", &text("log/context.jsonl")?)?;
    let rows: Vec<(String, i64)> = bundled
        .rows
        .iter()
        .map(|r| (r.request_id.clone(), report::ms_of(&r.decided_at).unwrap_or(i64::MIN)))
        .collect();
    Ok(complete::check(&complete::Evidence {
        leaves: &leaves,
        size: cp.size,
        root: cp.root,
        run: &run,
        context: &context,
        keys,
        period,
        environment: bundled.environment.as_deref(),
        rows: &rows,
    }))
}

/// The bundle's README: what each file is and the commands that check it.
pub fn readme(a: &BundleArgs, r: &Report, server: &str) -> String {
    let file = a
        .file
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| "evidence.tar.gz".into());
    format!(
        "# Change evidence: {from} to {to}{env}

Made by `gate audit bundle` from {server} at {at}: {n} change(s).

| file | what it is |
|---|---|
| `report.json` | the change report: one row per request decided in the period, and the summary |
| `report.csv` | the same rows, RFC 4180 (cells starting with = + - @ are prefixed with ') |
| `report.html` | the same, printable on A4 |
| `records/ID.json` | each change's signed record (DSSE envelope, in-toto statement), as stored |
| `log/checkpoint` | the transparency log's signed checkpoint (C2SP signed note) |
| `log/key` | the log's verifier key |
| `log/proofs.json` | each record's inclusion proof in that checkpoint |
| `log/leaves` | every leaf hash of that checkpoint's tree, 32 bytes each, in order |
| `log/events.jsonl` | the contiguous run of signed audit events covering the period (an hour's margin either side) |
| `log/context.jsonl` | events outside the run that explain a decision with no row (its request's environment, or a later decision) |
| `keys.json` | the server's public keys (`/api/v1/keys`) |

## Verify it, offline

    gate verify --bundle {file}

checks every record's signature against `keys.json`, each record's decision event
against `log/checkpoint` (signed by `log/key`, which must be one of the server's keys)
with its inclusion proof, that `report.json` is exactly what the records say (no row
changed, none missing, none added) and that `report.csv` and `report.html` are
renderings of it. Then completeness: `log/leaves` must hash to the checkpoint's root,
each event in `log/events.jsonl` must be its leaf and signed, the run must be unbroken
and cover the period, and every request the run shows decided in the period must be a
row (and every row such a request). Exit 0: intact and complete; exit 1: refused, each
problem named by its file.

`keys.json` comes from the same server as the records. Pin the key you obtained on your
own (the team's published key, or `SERVER/api/v1/keys` fetched earlier):

    gate verify --bundle {file} --key server-keys.json

## By hand

    tar xzf {file}
    sha256sum records/*.json      # each is the row's record_digest
    gate verify records/ID.json --key keys.json   # an approved record, with its log entry
",
        from = r.from,
        to = r.to,
        env = r.environment.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
        at = r.generated_at,
        n = r.rows.len(),
    )
}
