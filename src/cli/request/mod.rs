//! `gate request`: the pipeline step. Opens a request (idempotently), prints what it
//! asks and of whom, long-waits for the decision through restarts and network cuts,
//! cancels on SIGINT/SIGTERM, and on approval uses it, verifies the signed record and
//! writes it out. Exit 0 approved, 1 not approved, 2 no decision could be had, 3 the
//! approval's record does not verify.

mod args;
mod consume;
mod identity;
mod outcome;
mod retry;
mod signals;
mod wait;

use std::time::Instant;

use serde_json::json;

pub use args::RequestArgs;
use args::build_body;
pub use consume::{ConsumeArgs, run as consume};
use identity::{identify, keep_token_fresh};
use outcome::report;
use retry::Retries;
use signals::Signals;
use wait::follow;

use super::{Ctx, Failure, Outcome};
use crate::ci;
use crate::client::Client;
use crate::core::decide::Status;
use crate::core::duration::Dur;

#[derive(Clone, Copy)]
struct Printer {
    json: bool,
    /// `--print-id`: stdout holds the request id alone; every line goes to stderr.
    id_only: bool,
}

impl Printer {
    fn new(ctx: &Ctx) -> Printer {
        Printer {
            json: ctx.json(),
            id_only: false,
        }
    }

    fn event(&self, value: serde_json::Value, text: String) {
        let line = if self.json {
            serde_json::to_string(&value).unwrap_or_else(|_| "null".into())
        } else {
            // The gate's lines carry the server's text (summary, reasons): never raw.
            crate::core::text::for_terminal(&text, true)
        };
        if self.id_only {
            eprintln!("{line}");
        } else {
            outln!("{line}");
        }
    }

    /// A log line that is not an event: stdout in text mode, stderr with `--output json`
    /// (stdout then holds JSON lines only; runners read workflow commands on both).
    fn note(&self, text: &str) {
        let text = crate::core::text::for_terminal(text, true);
        if self.json || self.id_only {
            eprintln!("{text}");
        } else {
            outln!("{text}");
        }
    }
}

/// A change field the rule requires is missing, or its value is refused: the answer is no.
/// So is break-glass on a rule without it, or by someone not on call.
fn refused_field(e: &crate::client::ClientError) -> bool {
    matches!(e, crate::client::ClientError::Api { status: 422, code, message, .. }
        if code == "missing_field" || (code == "invalid_field" && message.starts_with("field")) || code == "break_glass_not_allowed")
        || matches!(e, crate::client::ClientError::Api { status: 403, code, .. } if code == "not_break_glass")
}

pub async fn run(ctx: &Ctx, a: RequestArgs) -> Outcome {
    let budget = a.job.budget()?;
    let every = Dur::parse(&a.status_every)
        .map_err(|e| Failure::usage(format!("--status-every: {e}")))?
        .as_std();
    if let Some(t) = &a.timeout {
        Dur::parse(t).map_err(|e| Failure::usage(format!("--timeout: {e}")))?;
    }
    let out = Printer {
        id_only: a.print_id,
        ..Printer::new(ctx)
    };
    let (platform, _) = ci::detect(&|k| std::env::var(k).ok());
    // Before anything else prints: the identity, its secrets masked first on GitHub.
    let identity = identify(ctx, &a.job, platform, &out).await?;
    let client = Client::new(&ctx.server, Some(identity.token.clone()))?;
    let refresher = keep_token_fresh(&identity, &client, platform, out);
    let body = build_body(&a)?;
    let mut signals = Signals::new()?;

    // Open, retrying through network trouble: the idempotency key makes that safe.
    let mut retries = Retries::default();
    let last_ok = Instant::now();
    let (mut view, new) = loop {
        match client.create(&body).await {
            Ok(v) => break v,
            Err(e) if e.is_transient() && last_ok.elapsed() < budget => {
                let left = Dur::from_secs(budget.saturating_sub(last_ok.elapsed()).as_secs() as i64);
                eprintln!(
                    "gate: {e}; retrying for up to {left} more (--retry-budget); check that GATE_SERVER={} is right and the server is up",
                    ctx.server
                );
                tokio::select! {
                    _ = tokio::time::sleep(retries.next()) => {}
                    _ = signals.recv() => return Err(Failure::no("interrupted before the request was opened")),
                }
            }
            // No policy rule covers this request, or the credential may not open it: that
            // is a refusal, not a failure to decide.
            Err(e)
                if (e.status() == Some(422) && e.to_string().contains("no_matching_rule"))
                    || (e.status() == Some(403) && e.to_string().contains("out_of_scope"))
                    || refused_field(&e) =>
            {
                return Err(Failure::no(format!("refused: {e}")));
            }
            Err(e) => return Err(Failure::usage(format!("cannot open the request: {e}"))),
        }
    };
    // From here on, the request's own token: it outlives a short-lived OIDC token, so
    // the OIDC refresher is no longer needed.
    let _refresher = match view.holder_token.take() {
        Some(t) => {
            drop(refresher);
            if platform == ci::Platform::Github {
                out.note(&format!("::add-mask::{t}"));
            }
            client.set_token(t);
            None
        }
        None => Some(refresher),
    };
    let approvers = view.approvers();
    out.event(
        json!({"event": "opened", "id": view.id, "url": view.url, "status": view.status, "new": new,
               "rule": view.rule, "approvers": approvers, "needs": view.needs()}),
        format!(
            "jitgate: request {} {}\n  link:      {}\n  rule:      {}\n  approvers: {}{}",
            view.id,
            if new { "opened" } else { "already open for this run" },
            view.url,
            view.rule,
            if approvers.is_empty() {
                "(decided by policy)".to_string()
            } else {
                approvers.join(", ")
            },
            if view.status == Status::Pending {
                format!("\n  needs:     {}", view.needs())
            } else {
                String::new()
            }
        ),
    );

    if view.status == Status::Pending
        && let Some(w) = ci::identity::expiry_warning(&identity, &view.expires_at)
    {
        out.note(&format!("jitgate: warning: {w}"));
    }

    let result = follow(&client, &a, &out, &mut signals, &mut view, budget, every).await;
    if let Err(f) = &result {
        // No decision could be had: say so to the platform too, with the last known state.
        report(&client, &a.job, &view, "error", &f.message, None);
    }
    result
}
