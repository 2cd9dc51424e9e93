//! `gate request`: the pipeline step. Opens a request (idempotently), prints what it
//! asks and of whom, long-waits for the decision through restarts and network cuts,
//! cancels on SIGINT/SIGTERM, and on approval uses it, verifies the signed record and
//! writes it out. Exit 0 approved, 1 not approved, 2 no decision could be had.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::{Ctx, Failure, Outcome, print_json};
use crate::api::{CreateRequest, RequestView};
use crate::audit::record::{self, Expect};
use crate::ci;
use crate::client::{Client, ClientError};
use crate::duration::Dur;

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Target environment (matched by the policy).
    #[arg(long, env = "GATE_ENVIRONMENT")]
    pub environment: String,
    /// What is being done, e.g. deploy, migrate, rollback.
    #[arg(long, env = "GATE_ACTION", default_value = "deploy")]
    pub action: String,
    /// One line (or a paragraph) for the approvers.
    #[arg(long, env = "GATE_SUMMARY")]
    pub summary: Option<String>,
    /// key=value, repeatable (GATE_LABEL takes a comma-separated list).
    #[arg(long = "label", env = "GATE_LABEL", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// sha256:HEX digest of what is released, repeatable (GATE_ARTIFACT: comma-separated).
    #[arg(long = "artifact", env = "GATE_ARTIFACT", value_delimiter = ',')]
    pub artifacts: Vec<String>,
    /// Ask for a shorter timeout than the policy's (e.g. 30m).
    #[arg(long, env = "GATE_TIMEOUT")]
    pub timeout: Option<String>,
    /// Where to write the signed record.
    #[arg(long, env = "GATE_RECORD_FILE", default_value = "gate-record.json")]
    pub record_file: PathBuf,
    /// Wait for the decision (the default).
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,
    /// Open the request, print it and exit: 0 if already approved, 1 otherwise.
    #[arg(long, env = "GATE_NO_WAIT")]
    pub no_wait: bool,
    #[arg(long, env = "GATE_REPOSITORY")]
    pub repository: Option<String>,
    #[arg(long = "ref", env = "GATE_REF")]
    pub git_ref: Option<String>,
    #[arg(long, env = "GATE_COMMIT")]
    pub commit: Option<String>,
    #[arg(long, env = "GATE_ACTOR")]
    pub actor: Option<String>,
    #[arg(long, env = "GATE_RUN_URL")]
    pub run_url: Option<String>,
    /// Replays with the same key return the same request (default: the run identity).
    #[arg(long, env = "GATE_IDEMPOTENCY_KEY")]
    pub idempotency_key: Option<String>,
    /// Pin the server's public key (file, URL or PEM); otherwise it is fetched from the server.
    #[arg(long, env = "GATE_SERVER_KEY")]
    pub key: Option<String>,
    /// Give up (exit 2) after the server has been unreachable this long.
    #[arg(long, env = "GATE_RETRY_BUDGET", default_value = "10m")]
    pub retry_budget: String,
    /// How often to print a status line while waiting.
    #[arg(long, env = "GATE_STATUS_EVERY", default_value = "60s", hide = true)]
    pub status_every: String,
    /// --github-check, --gitlab-note and their tokens: reports after the decision.
    #[command(flatten)]
    pub forge: crate::forge::ForgeArgs,
}

/// Capped exponential backoff with jitter.
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        use rand::Rng;
        let base = 200u64.saturating_mul(1 << self.attempt.min(6)).min(10_000);
        self.attempt += 1;
        Duration::from_millis(rand::thread_rng().gen_range(base / 2..=base))
    }
}

struct Printer {
    json: bool,
}

impl Printer {
    fn event(&self, value: serde_json::Value, text: String) {
        if self.json {
            print_json(&value);
        } else {
            println!("{text}");
        }
    }
}

pub async fn run(ctx: &Ctx, a: RequestArgs) -> Outcome {
    let client = ctx.client()?;
    let budget = Dur::parse(&a.retry_budget)
        .map_err(|e| Failure::usage(format!("--retry-budget: {e}")))?
        .as_std();
    let every = Dur::parse(&a.status_every)
        .map_err(|e| Failure::usage(format!("--status-every: {e}")))?
        .as_std();
    if let Some(t) = &a.timeout {
        Dur::parse(t).map_err(|e| Failure::usage(format!("--timeout: {e}")))?;
    }
    let body = build_body(&a)?;
    let out = Printer { json: ctx.json() };
    let mut signals = Signals::new()?;

    // Open, retrying through network trouble: the idempotency key makes that safe.
    let mut backoff = Backoff { attempt: 0 };
    let mut last_ok = Instant::now();
    let (mut view, new) = loop {
        match client.create(&body).await {
            Ok(v) => break v,
            Err(e) if e.is_transient() && last_ok.elapsed() < budget => {
                eprintln!("gate: {e}; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next()) => {}
                    _ = signals.recv() => return Err(Failure::no("interrupted before the request was opened")),
                }
            }
            Err(e) => return Err(Failure::usage(format!("cannot open the request: {e}"))),
        }
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
            if view.status == "pending" {
                format!("\n  needs:     {}", view.needs())
            } else {
                String::new()
            }
        ),
    );

    if a.no_wait {
        return Ok(if view.status == "approved" { 0 } else { 1 });
    }

    // Wait.
    let started = Instant::now();
    let mut last_line = Instant::now();
    backoff = Backoff { attempt: 0 };
    last_ok = Instant::now();
    while view.status == "pending" {
        tokio::select! {
            r = client.wait(&view.id, Some(view.version), 30) => match r {
                Ok(v) => {
                    backoff = Backoff { attempt: 0 };
                    last_ok = Instant::now();
                    if v.version != view.version && v.status == "pending" {
                        for vote in v.votes.iter().filter(|x| !view.votes.contains(x)) {
                            out.event(json!({"event": "vote", "id": v.id, "voter": vote.voter, "decision": vote.decision, "reason": vote.reason}),
                                format!("jitgate: {} voted {}{}; still needs {}", vote.voter, vote.decision, vote.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default(), v.needs()));
                        }
                    }
                    view = v;
                }
                Err(e) if e.is_transient() => {
                    if last_ok.elapsed() >= budget {
                        return Err(Failure::usage(format!("the server has been unreachable for {}: {e}; request {} is still open", Dur(last_ok.elapsed().as_millis() as i64), view.id)));
                    }
                    let pause = backoff.next();
                    tracing::info!(error = %e, "waiting to reconnect");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = signals.recv() => return cancel(&client, &view.id, &out).await,
                    }
                }
                Err(e) => return Err(Failure::usage(format!("waiting on request {}: {e}", view.id))),
            },
            _ = signals.recv() => return cancel(&client, &view.id, &out).await,
        }
        if view.status == "pending" && last_line.elapsed() >= every {
            last_line = Instant::now();
            out.event(
                json!({"event": "waiting", "id": view.id, "waited_secs": started.elapsed().as_secs(), "needs": view.needs()}),
                format!("jitgate: still waiting after {}: needs {}", Dur::from_secs(started.elapsed().as_secs() as i64), view.needs()),
            );
        }
    }

    if view.status == "approved" {
        view = match retry(&mut signals, budget, || client.consume(&view.id)).await {
            Ok(v) => v,
            Err(Some(e)) if matches!(e.status(), Some(409)) => {
                let latest = client.get(&view.id).await.unwrap_or(view);
                return finish(
                    &client,
                    &a,
                    latest,
                    &out,
                    Some(format!("the approval could not be used: {e}")),
                )
                .await;
            }
            Err(Some(e)) => return Err(Failure::usage(format!("using approval of {}: {e}", view.id))),
            Err(None) => return cancel(&client, &view.id, &out).await,
        };
    }
    finish(&client, &a, view, &out, None).await
}

/// Prints the outcome, fetches and (for approvals) verifies the record, writes it.
async fn finish(client: &Client, a: &RequestArgs, view: RequestView, out: &Printer, note: Option<String>) -> Outcome {
    let approved = view.status == "consumed" && note.is_none();
    let record = client.record(&view.id).await;
    let mut record_path = None;
    match &record {
        Ok(env) => {
            if approved {
                let keys = match &a.key {
                    Some(k) => super::tools::load_keys(k).await?,
                    None => {
                        let ks = client
                            .keys()
                            .await
                            .map_err(|e| Failure::usage(format!("fetching the server key: {e}")))?;
                        record::parse_public_keys(&serde_json::to_string(&ks).unwrap_or_default())
                            .map_err(Failure::usage)?
                    }
                };
                let expect = Expect {
                    commit: Some(view.context.commit.clone()).filter(|c| !c.is_empty()),
                    artifacts: view.artifacts.clone(),
                };
                if let Err(why) = record::verify(env, &keys, &expect) {
                    // Fail closed: an approval whose record does not check out is no approval.
                    return Err(Failure::usage(format!(
                        "the record of {} does not verify: {why}",
                        view.id
                    )));
                }
            }
            if let Some(dir) = a.record_file.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(&a.record_file, env)
                .map_err(|e| Failure::usage(format!("writing {}: {e}", a.record_file.display())))?;
            record_path = Some(a.record_file.display().to_string());
        }
        Err(e) => eprintln!("gate: could not fetch the record of {}: {e}", view.id),
    }
    let who: Vec<String> = view
        .votes
        .iter()
        .filter(|v| v.decision == "approve")
        .map(|v| v.voter.clone())
        .collect();
    let decision = if approved { "approved" } else { view.status.as_str() };
    let why = note.clone().or(view.reason.clone()).unwrap_or_default();
    out.event(
        json!({"event": "outcome", "id": view.id, "decision": decision, "status": view.status,
               "decided_by": view.decided_by, "reason": why, "approved_by": who, "record": record_path}),
        format!(
            "jitgate: request {} {}{}{}{}",
            view.id,
            decision.to_uppercase(),
            view.decided_by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default(),
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            },
            record_path
                .map(|p| format!("\n  record: {p} (check with `gate verify {p} --key SERVER/api/v1/keys`)"))
                .unwrap_or_default()
        ),
    );
    // Side calls report the outcome; they never change the exit code.
    crate::forge::report(&a.forge, &view, decision, &why).await;
    Ok(if approved { 0 } else { 1 })
}

async fn cancel(client: &Client, id: &str, out: &Printer) -> Outcome {
    let r = client.cancel(id, Some("the pipeline step was stopped".into())).await;
    match r {
        Ok(v) => out.event(
            json!({"event": "outcome", "id": id, "decision": "canceled", "status": v.status}),
            format!("jitgate: interrupted; request {id} {}", v.status),
        ),
        Err(e) => out.event(
            json!({"event": "outcome", "id": id, "decision": "canceled", "error": e.to_string()}),
            format!("jitgate: interrupted; canceling {id} failed: {e}"),
        ),
    }
    Ok(1)
}

/// Retries a call through transient errors within the budget. `Err(None)`: interrupted.
async fn retry<F, Fut, T>(signals: &mut Signals, budget: Duration, f: F) -> Result<T, Option<ClientError>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let start = Instant::now();
    let mut b = Backoff { attempt: 0 };
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && start.elapsed() < budget => {
                tokio::select! {
                    _ = tokio::time::sleep(b.next()) => {}
                    _ = signals.recv() => return Err(None),
                }
            }
            Err(e) => return Err(Some(e)),
        }
    }
}

fn build_body(a: &RequestArgs) -> Result<CreateRequest, Failure> {
    let (platform, mut c) = ci::detect(&|k| std::env::var(k).ok());
    let set = |name: &str, slot: &mut String, flag: &Option<String>| {
        if let Some(v) = flag.as_ref().filter(|v| !v.is_empty()) {
            if !slot.is_empty() && slot != v {
                eprintln!(
                    "gate: --{name} `{v}` replaces `{slot}` from the {} environment",
                    platform.as_str()
                );
            }
            *slot = v.clone();
        }
    };
    set("repository", &mut c.repository, &a.repository);
    set("ref", &mut c.git_ref, &a.git_ref);
    set("commit", &mut c.commit, &a.commit);
    set("actor", &mut c.actor, &a.actor);
    set("run-url", &mut c.run_url, &a.run_url);
    c.environment = a.environment.clone();
    c.action = a.action.clone();
    let labels = crate::server::engine::parse_labels(&a.labels).map_err(Failure::usage)?;
    c.labels.extend(labels);
    for art in &a.artifacts {
        let ok = art
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err(Failure::usage(format!(
                "--artifact `{art}` is not sha256:<64 hex digits>"
            )));
        }
    }
    // Without a run identity, a fresh key still makes our own retries of this call safe.
    let idempotency_key = a
        .idempotency_key
        .clone()
        .or_else(|| c.run_id.is_empty().then(|| uuid::Uuid::new_v4().to_string()));
    Ok(CreateRequest {
        context: c,
        summary: a.summary.clone().unwrap_or_default(),
        artifacts: a.artifacts.clone(),
        timeout: a.timeout.clone(),
        idempotency_key,
    })
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let term = signal(SignalKind::terminate()).map_err(|e| Failure::usage(format!("signals: {e}")))?;
            let int = signal(SignalKind::interrupt()).map_err(|e| Failure::usage(format!("signals: {e}")))?;
            Ok(Signals { term, int })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
