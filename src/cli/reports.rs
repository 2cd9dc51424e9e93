//! `gate audit report` and `gate audit bundle`: the change report of a period from the
//! server, and the evidence bundle an auditor takes away and checks offline with
//! `gate verify --bundle` (see `bundle.rs` for its layout and checks).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::bundle::{self, Proof};
use super::{Ctx, Exit, Failure, Outcome};
use crate::core::report::{Report, render};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The first day (2026-10-01) or instant (RFC 3339) of the period.
    #[arg(long, value_name = "DATE")]
    pub from: String,
    /// The last day (included) or the instant the period ends (excluded).
    #[arg(long, value_name = "DATE")]
    pub to: String,
    /// Only this environment.
    #[arg(long, value_name = "E")]
    pub environment: Option<String>,
    /// `json` (rows and summary), `csv` (RFC 4180, one row per change) or `html` (printable).
    #[arg(long, value_name = "FORMAT", default_value = "json", value_parser = ["json", "csv", "html"])]
    pub format: String,
    /// Write it to FILE instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// The first day (2026-10-01) or instant (RFC 3339) of the period.
    #[arg(long, value_name = "DATE")]
    pub from: String,
    /// The last day (included) or the instant the period ends (excluded).
    #[arg(long, value_name = "DATE")]
    pub to: String,
    /// Only this environment.
    #[arg(long, value_name = "E")]
    pub environment: Option<String>,
    /// The bundle to write (a gzipped tar).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub file: PathBuf,
}

fn write_out(path: Option<&PathBuf>, bytes: &[u8]) -> Result<(), Failure> {
    match path {
        Some(p) => std::fs::write(p, bytes).map_err(|e| Failure::usage(format!("{}: {e}", p.display()))),
        None => {
            // A closed stdout (`| head`) is not an error of ours.
            let _ = std::io::stdout().lock().write_all(bytes);
            Ok(())
        }
    }
}

pub async fn report(ctx: &Ctx, a: &ReportArgs) -> Outcome {
    let c = ctx.client()?;
    let text = c
        .change_report(&a.from, &a.to, a.environment.as_deref(), &a.format)
        .await?;
    write_out(a.file.as_ref(), text.as_bytes())?;
    Ok(Exit::Success)
}

/// How many times the bundle asks again when a record changed under it (an approval
/// used between the report and the record's download signs the record again).
const ATTEMPTS: usize = 3;

pub async fn bundle(ctx: &Ctx, a: &BundleArgs) -> Outcome {
    let c = ctx.client()?;
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let text = c
            .change_report(&a.from, &a.to, a.environment.as_deref(), "json")
            .await?;
        let report: Report = serde_json::from_str(&text)
            .map_err(|e| Failure::usage(format!("the server's report is not a report: {e}")))?;
        let mut records = BTreeMap::new();
        let mut changed = None;
        for row in &report.rows {
            let env = c.record(&row.request_id).await?;
            if hex::encode(Sha256::digest(env.as_bytes())) != row.record_digest {
                changed = Some(row.request_id.clone());
                break;
            }
            records.insert(row.request_id.clone(), env);
        }
        if let Some(id) = changed {
            last = id;
            continue;
        }
        let keys = serde_json::to_string_pretty(&c.keys().await?).unwrap_or_default();
        let log_key = c.log_key().await?;
        let checkpoint = c.log_checkpoint().await?;
        let cp = crate::core::log::verify_checkpoint(&checkpoint, &log_key, &[]).map_err(|e| {
            Failure::no(format!(
                "the server's log checkpoint does not verify with its log key: {e}"
            ))
        })?;
        let mut proofs = BTreeMap::new();
        for (id, env) in &records {
            let Some(index) =
                crate::core::report::statement_of(env).and_then(|st| st["predicate"]["log"]["index"].as_u64())
            else {
                continue;
            };
            proofs.insert(
                id.clone(),
                Proof {
                    index,
                    tree_size: cp.size,
                    hashes: c.log_inclusion(index, cp.size).await?,
                },
            );
        }
        let log = log_evidence(&c, &report, &records, &cp).await?;
        let files = bundle::Contents {
            report_json: serde_json::to_string_pretty(&report).unwrap_or_default(),
            report_csv: render::csv(&report),
            report_html: render::html(&report),
            records,
            checkpoint,
            log_key: format!("{log_key}\n"),
            proofs: serde_json::to_string_pretty(&proofs).unwrap_or_default(),
            keys,
            readme: bundle::readme(a, &report, c.base()),
            log,
        };
        bundle::write(&a.file, &files, &report.generated_at)?;
        if ctx.json() {
            super::print_json(&serde_json::json!({
                "bundle": a.file.display().to_string(),
                "records": files.records.len(),
                "checkpoint_size": cp.size,
            }));
        } else {
            outln!(
                "wrote {}: {} change(s), their signed records, log checkpoint of size {} with an inclusion proof for each; check it with `gate verify --bundle {}`",
                a.file.display(),
                files.records.len(),
                cp.size,
                a.file.display()
            );
        }
        return Ok(Exit::Success);
    }
    Err(Failure::usage(format!(
        "the record of {last} kept changing while the bundle was made; try again"
    )))
}

/// The log's side of the bundle: every leaf hash of the checkpoint's tree, the run of
/// events covering the period with `complete::MARGIN_MS` either side, and the events
/// that explain a decision of the period with no row (see `core::report::complete`).
/// Read from the audit export; the root is checked before anything is written.
async fn log_evidence(
    c: &crate::client::Client,
    report: &Report,
    records: &BTreeMap<String, String>,
    cp: &crate::core::log::VerifiedCheckpoint,
) -> Result<bundle::LogEvidence, Failure> {
    use crate::core::audit::Row;
    use crate::core::log::tree;
    use crate::core::report::complete::{DECIDING, MARGIN_MS};
    let period = crate::core::report::Period::parse(&report.from, &report.to)
        .map_err(|e| Failure::usage(format!("the server's report has a bad period: {e}")))?;
    let mut events = Vec::new();
    let mut after = 0;
    'pages: while (events.len() as u64) < cp.size {
        let page = c.audit_export(after, 10_000).await?;
        if page.trim().is_empty() {
            break;
        }
        for line in page.lines().filter(|l| !l.trim().is_empty()) {
            let e: crate::core::api::AuditEvent = serde_json::from_str(line)
                .map_err(|e| Failure::usage(format!("the export has a line that is not an event: {e}")))?;
            after = e.seq;
            if e.seq as u64 > cp.size {
                break 'pages;
            }
            events.push(e);
        }
    }
    let rows: Vec<Row> = events.iter().map(Row::from_event).collect();
    let leaves: Vec<tree::Hash> = rows.iter().map(|r| tree::leaf_hash(&r.leaf_bytes())).collect();
    if leaves.len() as u64 != cp.size || tree::root_of(&leaves) != cp.root {
        return Err(Failure::no(format!(
            "the server's audit export is not the tree of its checkpoint (size {}); run `gate audit verify`",
            cp.size
        )));
    }
    let start = rows.iter().rposition(|r| r.at < period.from - MARGIN_MS).unwrap_or(0);
    let end = rows
        .iter()
        .skip(start + 1)
        .position(|r| r.at >= period.to + MARGIN_MS)
        .map_or(rows.len().saturating_sub(1), |p| start + 1 + p);
    let run = if rows.is_empty() { &[][..] } else { &rows[start..=end] };
    let unlisted: std::collections::BTreeSet<&str> = run
        .iter()
        .filter(|r| {
            DECIDING.contains(&r.kind.as_str()) && period.contains(r.at) && !records.contains_key(&r.request_id)
        })
        .map(|r| r.request_id.as_str())
        .collect();
    let outside = |i: usize| i < start || i > end;
    let context: Vec<&crate::core::api::AuditEvent> = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| outside(*i) && unlisted.contains(r.request_id.as_str()))
        .map(|(i, _)| &events[i])
        .collect();
    let lines = |es: &mut dyn Iterator<Item = &crate::core::api::AuditEvent>| -> String {
        es.map(|e| serde_json::to_string(e).unwrap_or_default() + "\n")
            .collect()
    };
    Ok(bundle::LogEvidence {
        leaves: leaves.iter().flat_map(|h| h.0).collect(),
        events: lines(&mut events[start..(end + 1).min(events.len())].iter()),
        context: lines(&mut context.into_iter()),
    })
}
