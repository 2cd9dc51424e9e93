//! `gate request`: the pipeline step. Opens a request (idempotently), prints what it
//! asks and of whom, long-waits for the decision through restarts and network cuts,
//! cancels on SIGINT/SIGTERM, and on approval uses it, verifies the signed record and
//! writes it out. Exit 0 approved, 1 not approved, 2 no decision could be had.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::{Ctx, Failure, Outcome, print_json};
use crate::ci;
use crate::client::{Client, ClientError};
use crate::core::api::{CreateRequest, RequestView};
use crate::core::audit::record::{self, Expect};
use crate::core::duration::Dur;

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
    /// Wait for the decision (the default; wins over --no-wait, e.g. to undo GATE_NO_WAIT).
    #[arg(long, env = "GATE_WAIT")]
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
    #[arg(long = "server-key", visible_alias = "key", env = "GATE_SERVER_KEY")]
    pub key: Option<String>,
    /// Give up (exit 2) after the server has been unreachable this long.
    #[arg(long, env = "GATE_RETRY_BUDGET", default_value = "10m")]
    pub retry_budget: String,
    /// How often to print a status line while waiting.
    #[arg(long, env = "GATE_STATUS_EVERY", default_value = "60s", hide = true)]
    pub status_every: String,
    /// The audience of the OIDC token the gate asks GitHub Actions for.
    #[arg(long, env = "GATE_AUDIENCE", default_value = "jitgate")]
    pub audience: String,
    /// An OIDC token to present instead of the static token (GitLab `id_tokens:`, a Jenkins credential).
    #[arg(long, env = "GATE_ID_TOKEN", hide_env_values = true)]
    pub id_token: Option<String>,
    /// GitLab CI: where to write the dotenv report (GATE_DECISION, GATE_REQUEST_ID, GATE_RECORD).
    #[arg(long, env = "GATE_DOTENV_FILE", default_value = "gate.env")]
    pub dotenv_file: PathBuf,
    /// GitLab CI: where to write the annotations report (a link to the request).
    #[arg(long, env = "GATE_ANNOTATIONS_FILE", default_value = "gate-annotations.json")]
    pub annotations_file: PathBuf,
    /// --github-check, --gitlab-note and their tokens: reports after the decision.
    #[command(flatten)]
    pub forge: crate::ci::report::forge::ForgeArgs,
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

#[derive(Clone, Copy)]
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

    /// A log line that is not an event: stdout in text mode, stderr with `--output json`
    /// (stdout then holds JSON lines only; runners read workflow commands on both).
    fn note(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

pub async fn run(ctx: &Ctx, a: RequestArgs) -> Outcome {
    let budget = Dur::parse(&a.retry_budget)
        .map_err(|e| Failure::usage(format!("--retry-budget: {e}")))?
        .as_std();
    let every = Dur::parse(&a.status_every)
        .map_err(|e| Failure::usage(format!("--status-every: {e}")))?
        .as_std();
    if let Some(t) = &a.timeout {
        Dur::parse(t).map_err(|e| Failure::usage(format!("--timeout: {e}")))?;
    }
    let out = Printer { json: ctx.json() };
    let (platform, _) = ci::detect(&|k| std::env::var(k).ok());
    // Before anything else prints: the identity, its secrets masked first on GitHub.
    let identity = identify(ctx, &a, platform, &out).await?;
    let client = Client::new(&ctx.server, Some(identity.token.clone()))?;
    let refresher = keep_token_fresh(&identity, &client, platform, out);
    let body = build_body(&a)?;
    let mut signals = Signals::new()?;

    // Open, retrying through network trouble: the idempotency key makes that safe.
    let mut backoff = Backoff { attempt: 0 };
    let last_ok = Instant::now();
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
            // No policy rule covers this request: that is a refusal, not a failure to decide.
            Err(e) if e.status() == Some(422) && e.to_string().contains("no_matching_rule") => {
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
            if view.status == "pending" {
                format!("\n  needs:     {}", view.needs())
            } else {
                String::new()
            }
        ),
    );

    if view.status == "pending"
        && let Some(w) = ci::identity::expiry_warning(&identity, &view.expires_at)
    {
        out.note(&format!("jitgate: warning: {w}"));
    }

    let result = follow(&client, &a, &out, &mut signals, &mut view, budget, every).await;
    if let Err(f) = &result {
        // No decision could be had: say so to the platform too, with the last known state.
        report(&client, &a, &view, "error", &f.message, None);
    }
    result
}

/// After the request is open: wait for the decision, use an approval, finish.
async fn follow(
    client: &Client,
    a: &RequestArgs,
    out: &Printer,
    signals: &mut Signals,
    view: &mut RequestView,
    budget: Duration,
    every: Duration,
) -> Outcome {
    if a.no_wait && !a.wait {
        report(
            client,
            a,
            view,
            &view.status,
            view.reason.as_deref().unwrap_or(""),
            None,
        );
        return Ok(if view.status == "approved" { 0 } else { 1 });
    }

    // Wait.
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut backoff = Backoff { attempt: 0 };
    let mut last_ok = Instant::now();
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
                    *view = v;
                }
                Err(e) if e.is_transient() => {
                    if last_ok.elapsed() >= budget {
                        return Err(Failure::usage(format!("the server has been unreachable for {}: {e}; request {} is still open", Dur(last_ok.elapsed().as_millis() as i64), view.id)));
                    }
                    let pause = backoff.next();
                    tracing::info!(error = %e, "waiting to reconnect");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = signals.recv() => return cancel(client, a, view, out).await,
                    }
                }
                Err(e) => return Err(Failure::usage(format!("waiting on request {}: {e}", view.id))),
            },
            _ = signals.recv() => return cancel(client, a, view, out).await,
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
        let id = view.id.clone();
        *view = match retry(signals, budget, || client.consume(&id)).await {
            Ok(v) => v,
            Err(Some(e)) if matches!(e.status(), Some(409)) => {
                let latest = client.get(&view.id).await.unwrap_or_else(|_| view.clone());
                return finish(
                    client,
                    a,
                    latest,
                    out,
                    Some(format!("the approval could not be used: {e}")),
                )
                .await;
            }
            Err(Some(e)) => return Err(Failure::usage(format!("using approval of {}: {e}", view.id))),
            Err(None) => return cancel(client, a, view, out).await,
        };
        return finish(client, a, view.clone(), out, None).await;
    }
    // Only an approval this gate used itself is a yes: a replay of a request another
    // gate already consumed must not pass twice.
    let note = (view.status == "consumed").then(|| {
        format!(
            "the approval of {} was already used by an earlier gate; approvals are single use",
            view.id
        )
    });
    finish(client, a, view.clone(), out, note).await
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
    let decision = if approved {
        "approved"
    } else if view.status == "consumed" {
        "already-used"
    } else {
        view.status.as_str()
    };
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
                .as_ref()
                .map(|p| format!("\n  record: {p} (check with `gate verify {p} --key SERVER/api/v1/keys`)"))
                .unwrap_or_default()
        ),
    );
    report(client, a, &view, decision, &why, record_path.as_deref());
    // Side calls report the outcome; they never change the exit code.
    crate::ci::report::forge::report(&a.forge, &view, decision, &why).await;
    Ok(if approved { 0 } else { 1 })
}

async fn cancel(client: &Client, a: &RequestArgs, view: &RequestView, out: &Printer) -> Outcome {
    let id = &view.id;
    let why = "the pipeline step was stopped";
    let r = client.cancel(id, Some(why.into())).await;
    let latest = match r {
        Ok(v) => {
            out.event(
                json!({"event": "outcome", "id": id, "decision": "canceled", "status": v.status}),
                format!("jitgate: interrupted; request {id} {}", v.status),
            );
            v
        }
        Err(e) => {
            out.event(
                json!({"event": "outcome", "id": id, "decision": "canceled", "error": e.to_string()}),
                format!("jitgate: interrupted; canceling {id} failed: {e}"),
            );
            view.clone()
        }
    };
    let record_path = if latest.status == "canceled" {
        save_record(client, a, id).await
    } else {
        None
    };
    report(
        client,
        a,
        &latest,
        "canceled",
        latest.reason.as_deref().unwrap_or(why),
        record_path.as_deref(),
    );
    Ok(1)
}

/// Fetches and writes the record of a request that ended without an approval (best effort).
async fn save_record(client: &Client, a: &RequestArgs, id: &str) -> Option<String> {
    let env = client.record(id).await.ok()?;
    if let Some(dir) = a.record_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&a.record_file, env).ok()?;
    Some(a.record_file.display().to_string())
}

/// Chooses the credential to present (`ci::identity`) and says which and why, in one
/// line. On GitHub Actions every secret the gate holds is masked before anything prints.
async fn identify(
    ctx: &Ctx,
    a: &RequestArgs,
    platform: ci::Platform,
    out: &Printer,
) -> Result<ci::identity::Identity, Failure> {
    let inputs = ci::identity::Inputs {
        audience: a.audience.clone(),
        id_token: a.id_token.clone(),
        static_token: ctx.token.clone(),
    };
    let github = platform == ci::Platform::Github;
    let mut masked: Vec<String> = Vec::new();
    let mut mask = |t: &str, out: &Printer| {
        let t = t.trim();
        if github && !t.is_empty() && !masked.iter().any(|m| m == t) {
            out.note(&format!("::add-mask::{t}"));
            masked.push(t.to_string());
        }
    };
    for t in [&inputs.static_token, &inputs.id_token].into_iter().flatten() {
        mask(t, out);
    }
    let identity = ci::identity::select(platform, &inputs, &|k| std::env::var(k).ok())
        .await
        .map_err(Failure::usage)?;
    for t in &identity.masks {
        mask(t, out);
    }
    for w in &identity.warnings {
        out.note(&if github {
            format!("::warning title=jitgate::{w}")
        } else {
            format!("jitgate: warning: {w}")
        });
    }
    out.note(&format!("jitgate: identity: {}", identity.line));
    Ok(identity)
}

/// Replaces a short-lived OIDC token (GitHub's live minutes) before it expires, for as
/// long as the gate runs; the task stops when this is dropped.
struct Refresher(Option<tokio::task::JoinHandle<()>>);

impl Drop for Refresher {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

fn keep_token_fresh(
    identity: &ci::identity::Identity,
    client: &Client,
    platform: ci::Platform,
    out: Printer,
) -> Refresher {
    let (Some(refresh), Some(exp)) = (identity.refresh.clone(), identity.expires()) else {
        return Refresher(None);
    };
    let client = client.clone();
    let on_token = move |token: String| {
        if platform == ci::Platform::Github {
            out.note(&format!("::add-mask::{token}"));
        }
        client.set_token(token);
    };
    let on_error = move |e: String| out.note(&format!("jitgate: warning: could not refresh the OIDC token: {e}"));
    Refresher(Some(tokio::spawn(ci::identity::refresh_loop(
        refresh, exp, on_token, on_error,
    ))))
}

/// Leaves the outcome where the platform keeps job evidence (`ci::report`: GitHub step
/// outputs and summary, GitLab dotenv and annotations reports). Kept out of `finish`'s
/// body so that other side effects can be added there independently.
fn report(
    client: &Client,
    a: &RequestArgs,
    view: &RequestView,
    decision: &str,
    reason: &str,
    record_path: Option<&str>,
) {
    let env = |k: &str| std::env::var(k).ok();
    let (platform, _) = ci::detect(&env);
    let approvers: Vec<String> = view
        .votes
        .iter()
        .filter(|v| v.decision == "approve")
        .map(|v| v.voter.clone())
        .collect();
    let r = ci::report::Report {
        decision,
        view,
        reason,
        approvers: &approvers,
        record_path,
        server: client.base(),
    };
    let files = ci::report::Files {
        dotenv: a.dotenv_file.clone(),
        annotations: a.annotations_file.clone(),
    };
    for w in ci::report::write(platform, &r, &files, &env) {
        eprintln!("gate: {w}");
    }
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
    let labels = crate::core::context::parse_labels(&a.labels).map_err(Failure::usage)?;
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every `gate request` flag can be given as `GATE_` + the flag in upper snake case.
    #[test]
    fn every_request_flag_has_its_gate_variable() {
        let mut cli = super::super::Cli::command();
        cli.build();
        let request = cli.find_subcommand("request").expect("request command");
        let mut seen = 0;
        for arg in request.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let want = format!("GATE_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "--{long} should be readable from {want}"
            );
            seen += 1;
        }
        assert!(seen > 20, "{seen}");
    }
}
