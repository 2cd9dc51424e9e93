//! How a request ends for the gate: the outcome printed, the record fetched, verified
//! (approvals) and written, and the platform's reports left behind.

use serde_json::json;

use super::Printer;
use super::args::JobArgs;
use crate::ci;
use crate::cli::{Exit, Failure, Outcome};
use crate::client::Client;
use crate::core::api::RequestView;
use crate::core::audit::record::{self, Constraints, Expect};
use crate::core::decide::Status;

/// Prints the outcome, fetches and (for approvals) verifies the record, writes it.
pub(super) async fn finish(
    client: &Client,
    a: &JobArgs,
    view: RequestView,
    out: &Printer,
    note: Option<String>,
) -> Outcome {
    let approved = view.status == Status::Consumed && note.is_none();
    // An approval is only as good as its record: it is fetched through network trouble
    // within the retry budget, and one that cannot be had fails the gate.
    let record = if approved {
        let mut signals = super::Signals::new()?;
        match super::retry::retry(&mut signals, a.budget()?, || client.record(&view.id)).await {
            Ok(env) => Ok(env),
            Err(None) => {
                return Err(Failure::no(format!(
                    "interrupted before the record of {} was fetched; this gate consumed the approval, so the step does not go ahead",
                    view.id
                )));
            }
            Err(Some(e)) => {
                return Err(Failure::no(format!(
                    "request {} was approved and this gate consumed it, but its signed record could not be fetched ({e}); without it the step does not go ahead (a re-run asks for a new approval)",
                    view.id
                )));
            }
        }
    } else {
        client.record(&view.id).await
    };
    let mut record_path = None;
    match &record {
        Ok(env) => {
            if approved {
                let keys = match &a.key {
                    Some(k) => crate::cli::tools::load_keys(k).await?,
                    None => {
                        let ks = client
                            .keys()
                            .await
                            .map_err(|e| Failure::usage(format!("fetching the server key: {e}")))?;
                        record::parse_public_keys(&serde_json::to_string(&ks).unwrap_or_default())
                            .map_err(|e| Failure::usage(e.to_string()))?
                    }
                };
                // The record must be this request's decision: for what it asked, where.
                let expect = Expect {
                    commit: Some(view.context.commit.clone()).filter(|c| !c.is_empty()),
                    artifacts: view.artifacts.clone(),
                    request_id: Some(view.id.clone()),
                    environment: Some(view.context.environment.clone()),
                    constraints: Constraints {
                        // A name is a glob that matches itself.
                        repository: Some(view.context.repository.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                if let Err(why) = record::verify(env, &keys, &expect) {
                    // Fail closed: an approval whose record does not check out is no approval.
                    return Err(Failure::new(
                        Exit::RecordDoesNotVerify,
                        format!("the record of {} does not verify: {why}", view.id),
                    ));
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
    let decision = if approved && view.links.break_glass.is_some() {
        // Approved, by the on-call engineer, pending review: the pipeline may say so.
        "break_glass"
    } else if approved {
        "approved"
    } else if view.status == Status::Consumed {
        "already-used"
    } else if view.superseded_by.is_some() {
        "superseded"
    } else {
        view.status.as_str()
    };
    let why = note.clone().or(view.reason.clone()).unwrap_or_default();
    let mut line = json!({"event": "outcome", "id": view.id, "decision": decision, "status": view.status,
           "decided_by": view.decided_by, "reason": why, "approved_by": who, "record": record_path});
    if let Some(b) = &view.links.break_glass {
        line["break_glass"] = json!(b);
        line["review"] = json!(b.review_id);
    }
    if let Some(n) = &view.superseded_by {
        line["superseded_by"] = json!(n);
    }
    out.event(
        line,
        format!(
            "jitgate: request {} {}{}{}{}{}",
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
                .unwrap_or_default(),
            view.links
                .break_glass
                .as_ref()
                .map(|b| format!(
                    "\n  review:  {} (the review group must approve or deny it, with a reason)",
                    b.review_id
                ))
                .unwrap_or_default()
        ),
    );
    report(client, a, &view, decision, &why, record_path.as_deref());
    // Side calls report the outcome; they never change the exit code.
    crate::ci::report::forge::report(&a.forge, &view, decision, &why).await;
    Ok(Exit::yes_or_no(approved))
}

pub(super) async fn cancel(client: &Client, a: &JobArgs, view: &RequestView, out: &Printer) -> Outcome {
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
    let record_path = if latest.status == Status::Canceled {
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
    Ok(Exit::No)
}

/// Fetches and writes the record of a request that ended without an approval (best effort).
async fn save_record(client: &Client, a: &JobArgs, id: &str) -> Option<String> {
    let env = client.record(id).await.ok()?;
    if let Some(dir) = a.record_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&a.record_file, env).ok()?;
    Some(a.record_file.display().to_string())
}

/// Leaves the outcome where the platform keeps job evidence (`ci::report`: GitHub step
/// outputs and summary, GitLab dotenv and annotations reports). Kept out of `finish`'s
/// body so that other side effects can be added there independently.
pub(super) fn report(
    client: &Client,
    a: &JobArgs,
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
