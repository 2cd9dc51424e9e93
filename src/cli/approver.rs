//! Approvers' commands: `approve`, `deny`, `pending`, `show`, `cancel`.

use super::{Ctx, Exit, Failure, Outcome, print_json};
use crate::client::ClientError;
use crate::core::api::RequestView;
use crate::core::decide::Status;
use crate::core::text::for_terminal;

/// Text from the network, one line, safe to print: control characters (escape
/// sequences, carriage returns, newlines) are shown as `\u{..}` escapes.
pub(super) fn t(s: &str) -> String {
    for_terminal(s, false)
}

pub(super) fn refused(e: ClientError) -> Failure {
    match e.status() {
        // The server said no to this action: report why, exit 1.
        Some(403 | 409 | 422 | 404) => Failure::no(e.to_string()),
        _ => Failure::from(e),
    }
}

pub async fn vote(ctx: &Ctx, id: &str, approve: bool, reason: Option<String>, for_whom: Option<String>) -> Outcome {
    let c = ctx.client()?;
    if !approve && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(Failure::usage("a deny needs a reason: --reason \"…\""));
    }
    let v = if let Some(f) = for_whom {
        c.vote_for(id, approve, reason, f).await
    } else if approve {
        c.approve(id, reason).await
    } else {
        c.deny(id, reason).await
    }
    .map_err(refused)?;
    if ctx.json() {
        print_json(&v);
    } else {
        outln!(
            "{} {}: request {} is now {}",
            if approve { "approved" } else { "denied" },
            t(id),
            t(&v.id),
            v.status
        );
        if v.status == Status::Pending {
            outln!("still needed: {}", t(&v.needs()));
        }
    }
    Ok(Exit::Success)
}

pub async fn cancel(ctx: &Ctx, id: &str, reason: Option<String>) -> Outcome {
    let v = ctx.client()?.cancel(id, reason).await.map_err(refused)?;
    if ctx.json() {
        print_json(&v);
    } else {
        outln!("request {} is {}", t(&v.id), v.status);
    }
    Ok(Exit::Success)
}

pub async fn pending(ctx: &Ctx, quiet: bool) -> Outcome {
    let list = ctx.client()?.list(Status::Pending.as_str()).await?;
    if quiet {
        for r in &list {
            outln!("{}", t(&r.id));
        }
        return Ok(Exit::Success);
    }
    if ctx.json() {
        print_json(&list);
        return Ok(Exit::Success);
    }
    if list.is_empty() {
        outln!("nothing waits for you");
        return Ok(Exit::Success);
    }
    outln!(
        "{:<26} {:<12} {:<28} {:<14} NEEDS",
        "ID",
        "ENVIRONMENT",
        "REPOSITORY",
        "REQUESTER"
    );
    for r in &list {
        outln!(
            "{:<26} {:<12} {:<28} {:<14} {}",
            t(&r.id),
            t(&r.context.environment),
            t(&r.context.repository),
            t(r.requester.first().map(String::as_str).unwrap_or_default()),
            match (&r.links.review_of, r.links.overdue) {
                (Some(of), true) => format!("OVERDUE review of {}: {}", t(of), t(&r.needs())),
                (Some(of), false) => format!("review of {}: {}", t(of), t(&r.needs())),
                _ => t(&r.needs()),
            }
        );
    }
    Ok(Exit::Success)
}

pub async fn show(ctx: &Ctx, id: &str) -> Outcome {
    let c = ctx.client()?;
    let v = c.get(id).await.map_err(refused)?;
    if ctx.json() {
        print_json(&v);
        return Ok(Exit::Success);
    }
    print_view(&v);
    if let Ok(events) = c.audit(id).await {
        outln!("timeline:");
        for e in events {
            outln!(
                "  #{:<6} {} {:<9} by {} {}",
                e.seq,
                t(&e.at),
                t(&e.kind),
                t(&e.actor),
                e.data
            );
        }
    }
    Ok(Exit::Success)
}

pub fn print_view(v: &RequestView) {
    let c = &v.context;
    outln!("request     {} ({})", t(&v.id), v.status);
    outln!("link        {}", t(&v.url));
    outln!(
        "environment {}{}",
        t(&c.environment),
        if c.action.is_empty() {
            String::new()
        } else {
            format!(" / {}", t(&c.action))
        }
    );
    outln!("repository  {} @ {} {}", t(&c.repository), t(&c.git_ref), t(&c.commit));
    outln!("requester   {}", t(&v.requester.join(", ")));
    if !c.run_url.is_empty() {
        outln!("run         {}", t(&c.run_url));
    }
    if !v.summary.is_empty() {
        outln!("summary     {}", t(&v.summary));
    }
    for a in &v.artifacts {
        outln!("artifact    {}", t(a));
    }
    for (name, value) in &v.fields {
        outln!("field       {}: {}", t(name), t(value));
    }
    outln!("rule        {} ({})", t(&v.rule), t(&v.policy_digest));
    if let Some(s) = &v.open_stage {
        outln!("open stage  {}", t(s));
    }
    print_break_glass(v);
    for r in &v.requirements {
        outln!(
            "  {} {}{} of {}: {}{}",
            if r.met { "✓" } else { "·" },
            r.stage.as_ref().map(|s| format!("[{}] ", t(s))).unwrap_or_default(),
            r.count,
            t(&r.group),
            if r.approved_by.is_empty() {
                "no approvals yet".to_string()
            } else {
                format!("approved by {}", t(&r.approved_by.join(", ")))
            },
            if r.may_vote.is_empty() {
                String::new()
            } else {
                format!(", may vote: {}", t(&r.may_vote.join(", ")))
            }
        );
    }
    for c in &v.checks {
        outln!(
            "check       {}[{}] {}: {}{}",
            c.list.as_str(),
            c.index,
            t(&c.check),
            c.answer.as_str(),
            if c.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", t(&c.reason))
            }
        );
    }
    for vote in &v.votes {
        outln!(
            "vote        {} {} at {} via {}{}",
            t(&vote.who()),
            t(&vote.decision),
            t(&vote.at),
            t(&vote.via),
            vote.reason.as_ref().map(|r| format!(": {}", t(r))).unwrap_or_default()
        );
    }
    if let Some(by) = &v.decided_by {
        outln!(
            "decided     by {}{}",
            t(by),
            v.reason.as_ref().map(|r| format!(": {}", t(r))).unwrap_or_default()
        );
    }
    outln!(
        "expires     {}",
        t(v.approval_expires_at.as_ref().unwrap_or(&v.expires_at))
    );
}

/// The break-glass lines of a request: who broke the glass and why, or what it reviews.
fn print_break_glass(v: &RequestView) {
    let l = &v.links;
    if let Some(b) = &l.break_glass {
        outln!(
            "break-glass by {} for incident {}: {}",
            t(&b.by),
            t(&b.incident),
            t(&b.reason)
        );
        outln!("review      {}", t(&b.review_id));
    }
    if let Some(of) = &l.review_of {
        outln!(
            "review of   break-glass change {}{}{}",
            t(of),
            l.review_due_at
                .as_ref()
                .map(|d| format!(", due {}", t(d)))
                .unwrap_or_default(),
            if l.overdue { " (OVERDUE)" } else { "" }
        );
    }
}
