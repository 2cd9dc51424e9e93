//! After the request is open: the wait loop, then using an approval.

use std::time::{Duration, Instant};

use serde_json::json;

use super::outcome::{cancel, finish, report};
use super::retry::{Retries, retry};
use super::{Printer, RequestArgs, Signals};
use crate::cli::{Exit, Failure, Outcome};
use crate::client::Client;
use crate::core::api::RequestView;
use crate::core::decide::Status;
use crate::core::duration::Dur;

/// After the request is open: wait for the decision, use an approval, finish.
pub(super) async fn follow(
    client: &Client,
    a: &RequestArgs,
    out: &Printer,
    signals: &mut Signals,
    view: &mut RequestView,
    budget: Duration,
    every: Duration,
) -> Outcome {
    if a.no_wait && !a.wait {
        // Open is enough: a later job (or the platform, for a held job) takes it from
        // here with GATE_REQUEST_ID. Only a request the policy already ended is a no.
        let open = matches!(view.status, Status::Pending | Status::Approved);
        let reason = view.reason.clone().unwrap_or_default();
        report(client, &a.job, view, view.status.as_str(), &reason, None);
        if !open {
            out.event(
                json!({"event": "outcome", "id": view.id, "decision": view.status, "status": view.status,
                       "decided_by": view.decided_by, "reason": reason}),
                format!(
                    "jitgate: request {} {}{}{}",
                    view.id,
                    view.status.as_str().to_uppercase(),
                    view.decided_by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default(),
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                ),
            );
        } else {
            out.note(&format!(
                "jitgate: not waiting (--no-wait): GATE_REQUEST_ID={}",
                view.id
            ));
            if a.print_id {
                outln!("{}", view.id);
            }
        }
        return Ok(Exit::yes_or_no(open));
    }

    // Wait.
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut retries = Retries::default();
    let mut last_ok = Instant::now();
    while view.status == Status::Pending {
        tokio::select! {
            r = client.wait(&view.id, Some(view.version), 30) => match r {
                Ok(v) => {
                    retries = Retries::default();
                    last_ok = Instant::now();
                    if v.version != view.version && v.status == Status::Pending {
                        for vote in v.votes.iter().filter(|x| !view.votes.contains(x)) {
                            out.event(json!({"event": "vote", "id": v.id, "voter": vote.voter, "decision": vote.decision, "reason": vote.reason}),
                                format!("jitgate: {} voted {}{}; still needs {}", vote.who(), vote.decision, vote.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default(), v.needs()));
                        }
                    }
                    *view = v;
                }
                Err(e) if e.is_transient() => {
                    if last_ok.elapsed() >= budget {
                        return Err(Failure::usage(format!("the server has been unreachable for {}: {e}; request {} is still open", Dur(last_ok.elapsed().as_millis() as i64), view.id)));
                    }
                    let pause = retries.next();
                    tracing::info!(error = %e, "waiting to reconnect");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = signals.recv() => return cancel(client, &a.job, view, out).await,
                    }
                }
                Err(e) => return Err(Failure::usage(format!("waiting on request {}: {e}", view.id))),
            },
            _ = signals.recv() => return cancel(client, &a.job, view, out).await,
        }
        if view.status == Status::Pending && last_line.elapsed() >= every {
            last_line = Instant::now();
            out.event(
                json!({"event": "waiting", "id": view.id, "waited_secs": started.elapsed().as_secs(), "needs": view.needs()}),
                format!("jitgate: still waiting after {}: needs {}", Dur::from_secs(started.elapsed().as_secs() as i64), view.needs()),
            );
        }
    }

    if view.status == Status::Approved {
        let id = view.id.clone();
        *view = match retry(signals, budget, || client.consume(&id)).await {
            Ok(v) => v,
            Err(Some(e)) if matches!(e.status(), Some(409)) => {
                let latest = client.get(&view.id).await.unwrap_or_else(|_| view.clone());
                return finish(
                    client,
                    &a.job,
                    latest,
                    out,
                    Some(format!("the approval could not be used: {e}")),
                )
                .await;
            }
            Err(Some(e)) => return Err(Failure::usage(format!("using approval of {}: {e}", view.id))),
            Err(None) => return cancel(client, &a.job, view, out).await,
        };
        return finish(client, &a.job, view.clone(), out, None).await;
    }
    // Only an approval this gate used itself is a yes: a replay of a request another
    // gate already consumed must not pass twice.
    let note = (view.status == Status::Consumed).then(|| {
        format!(
            "the approval of {} was already used by an earlier gate; approvals are single use",
            view.id
        )
    });
    finish(client, &a.job, view.clone(), out, note).await
}
