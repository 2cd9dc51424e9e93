//! `gate policy simulate FILE --since DUR`: the requests of a period, read from the
//! server's audit export (an auditor's or admin's token) or from a file `gate audit
//! export` wrote, replayed through a new policy offline (`core::simulate`). Prints each
//! request whose rule, required approvers or outcome would change, then a summary.
//! Nothing is written anywhere.

use std::path::{Path, PathBuf};

use super::{Ctx, Exit, Failure, Outcome, print_json};
use crate::core::api::AuditEvent;
use crate::core::duration::{Dur, rfc3339};
use crate::core::simulate::{self, Simulated, Summary};

/// The period when `--since` is not given.
const DEFAULT_SINCE: &str = "30d";

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The new policy file (checked as `gate serve` loads it).
    pub file: PathBuf,
    /// Replay the requests opened in the last DUR (e.g. 30d, 12h), counted back from now,
    /// or with --from-export from the export's last event.
    #[arg(long, value_name = "DUR", default_value = DEFAULT_SINCE)]
    pub since: String,
    /// Read the events from this file (`gate audit export` output) instead of the server.
    #[arg(long, value_name = "FILE")]
    pub from_export: Option<PathBuf>,
    /// Also check the new policy's group members against this server config's users.
    #[arg(long, value_name = "GATE_YAML")]
    pub config: Option<PathBuf>,
    /// `text` or `json` (one object); by default what --output says.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub format: Option<String>,
}

pub async fn run(ctx: &Ctx, a: &SimulateArgs) -> Outcome {
    let policy = crate::config::load_policy(&a.file).map_err(|e| Failure::usage(located(&e)))?;
    if let Some(cfg) = &a.config {
        let cfg = crate::config::Config::load(cfg).map_err(|e| Failure::usage(e.to_string()))?;
        policy
            .check_members(&|u| cfg.user(u).is_some())
            .map_err(|e| Failure::usage(e.to_string()))?;
    }
    let since = Dur::parse(&a.since).map_err(|e| Failure::usage(format!("--since {}: {e}", a.since)))?;
    let (events, lines, source) = match &a.from_export {
        Some(file) => {
            let (events, lines) = read_export(file)?;
            (events, lines, file.display().to_string())
        }
        None => (from_server(ctx).await?, vec![], "the server's audit export".to_string()),
    };
    // Offline, the period ends where the export does; online, now.
    let end = match &a.from_export {
        Some(_) => events.iter().map(|e| e.at_ms).max().unwrap_or(0),
        None => crate::core::duration::now_ms(),
    };
    let from = end.saturating_sub(since.millis());
    let histories = simulate::histories(&events, from).map_err(|e| {
        let at = events
            .iter()
            .position(|x| x.seq == e.seq)
            .and_then(|i| lines.get(i))
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        Failure::usage(format!("{source}{at}: {e}"))
    })?;
    let (changed, summary) = simulate::simulate(&policy, &histories, end);
    let json = match a.format.as_deref() {
        Some(f) => f == "json",
        None => ctx.json(),
    };
    if json {
        print_json(&serde_json::json!({
            "policy": a.file.display().to_string(), "digest": policy.digest,
            "from": rfc3339(from), "to": rfc3339(end),
            "changed": changed, "summary": summary, "written": false,
        }));
    } else {
        print_text(&changed, &summary, from, end);
    }
    Ok(Exit::Success)
}

/// A policy error as `file:line:column: message`, or `file: message` when it has no place.
fn located(e: &crate::core::policy::PolicyError) -> String {
    if e.line == 0 {
        format!("{}: {}", e.file, e.message)
    } else {
        e.to_string()
    }
}

/// Every event of the server's export, page by page.
async fn from_server(ctx: &Ctx) -> Result<Vec<AuditEvent>, Failure> {
    let c = ctx.client()?;
    let mut out: Vec<AuditEvent> = Vec::new();
    let mut after = 0;
    loop {
        let page = c.audit_export(after, 10_000).await.map_err(|e| {
            Failure::usage(format!(
                "reading the period's audit events: {e}; or simulate offline with --from-export FILE"
            ))
        })?;
        if page.trim().is_empty() {
            return Ok(out);
        }
        for line in page.lines().filter(|l| !l.trim().is_empty()) {
            let e: AuditEvent = serde_json::from_str(line)
                .map_err(|e| Failure::usage(format!("the server's export has a line that is not an event: {e}")))?;
            after = e.seq;
            out.push(e);
        }
    }
}

/// The events of an export file, with the line each came from.
fn read_export(file: &Path) -> Result<(Vec<AuditEvent>, Vec<usize>), Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    let (mut events, mut lines) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let e: AuditEvent = serde_json::from_str(line).map_err(|e| {
            Failure::usage(format!(
                "{}:{}: not an audit event (a line of `gate audit export`): {e}",
                file.display(),
                n + 1
            ))
        })?;
        events.push(e);
        lines.push(n + 1);
    }
    Ok((events, lines))
}

fn print_text(changed: &[Simulated], sum: &Summary, from: i64, end: i64) {
    for s in changed {
        outln!("{}  {}  {}  opened {}", s.id, s.repository, s.environment, s.opened);
        for c in &s.changes {
            outln!("  {:12}  {} → {}", c.field, c.old, c.new);
        }
        for w in &s.why {
            outln!("  {:12}  {w}", "why");
        }
        outln!();
    }
    let mut kinds = Vec::new();
    for (name, n) in [
        ("rule", sum.rule),
        ("requirements", sum.requirements),
        ("outcome", sum.outcome),
    ] {
        if n > 0 {
            kinds.push(format!("{name} {n}"));
        }
    }
    outln!(
        "{} requests replayed (opened {} to {}): {} unchanged, {} changed{}",
        sum.replayed,
        rfc3339(from),
        rfc3339(end),
        sum.unchanged,
        sum.changed,
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        }
    );
    for (t, n) in &sum.outcomes {
        outln!("  outcome {t}: {n}");
    }
    outln!("nothing is written");
}
