//! Approvers' commands: `approve`, `deny`, `pending`, `show`, `cancel`.

use super::{Ctx, Exit, Failure, Outcome, print_json};
use crate::client::ClientError;
use crate::core::api::RequestView;
use crate::core::decide::Status;

fn refused(e: ClientError) -> Failure {
    match e.status() {
        // The server said no to this action: report why, exit 1.
        Some(403 | 409 | 422 | 404) => Failure::no(e.to_string()),
        _ => Failure::from(e),
    }
}

pub async fn vote(ctx: &Ctx, id: &str, approve: bool, reason: Option<String>) -> Outcome {
    let c = ctx.client()?;
    if !approve && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(Failure::usage("a deny needs a reason: --reason \"…\""));
    }
    let v = if approve {
        c.approve(id, reason).await
    } else {
        c.deny(id, reason).await
    }
    .map_err(refused)?;
    if ctx.json() {
        print_json(&v);
    } else {
        println!(
            "{} {}: request {} is now {}",
            if approve { "approved" } else { "denied" },
            id,
            v.id,
            v.status
        );
        if v.status == Status::Pending {
            println!("still needed: {}", v.needs());
        }
    }
    Ok(Exit::Success)
}

pub async fn cancel(ctx: &Ctx, id: &str, reason: Option<String>) -> Outcome {
    let v = ctx.client()?.cancel(id, reason).await.map_err(refused)?;
    if ctx.json() {
        print_json(&v);
    } else {
        println!("request {} is {}", v.id, v.status);
    }
    Ok(Exit::Success)
}

pub async fn pending(ctx: &Ctx) -> Outcome {
    let list = ctx.client()?.list(Status::Pending.as_str()).await?;
    if ctx.json() {
        print_json(&list);
        return Ok(Exit::Success);
    }
    if list.is_empty() {
        println!("nothing waits for you");
        return Ok(Exit::Success);
    }
    println!(
        "{:<26} {:<12} {:<28} {:<14} NEEDS",
        "ID", "ENVIRONMENT", "REPOSITORY", "REQUESTER"
    );
    for r in &list {
        println!(
            "{:<26} {:<12} {:<28} {:<14} {}",
            r.id,
            r.context.environment,
            r.context.repository,
            r.requester.first().cloned().unwrap_or_default(),
            r.needs()
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
        println!("timeline:");
        for e in events {
            println!("  #{:<6} {} {:<9} by {} {}", e.seq, e.at, e.kind, e.actor, e.data);
        }
    }
    Ok(Exit::Success)
}

pub fn print_view(v: &RequestView) {
    let c = &v.context;
    println!("request     {} ({})", v.id, v.status);
    println!("link        {}", v.url);
    println!(
        "environment {}{}",
        c.environment,
        if c.action.is_empty() {
            String::new()
        } else {
            format!(" / {}", c.action)
        }
    );
    println!("repository  {} @ {} {}", c.repository, c.git_ref, c.commit);
    println!("requester   {}", v.requester.join(", "));
    if !c.run_url.is_empty() {
        println!("run         {}", c.run_url);
    }
    if !v.summary.is_empty() {
        println!("summary     {}", v.summary);
    }
    for a in &v.artifacts {
        println!("artifact    {a}");
    }
    println!("rule        {} ({})", v.rule, v.policy_digest);
    for r in &v.requirements {
        println!(
            "  {} {} of {}: approved by [{}]{}",
            if r.met { "✓" } else { "·" },
            r.count,
            r.group,
            r.approved_by.join(", "),
            if r.may_vote.is_empty() {
                String::new()
            } else {
                format!(", may vote: {}", r.may_vote.join(", "))
            }
        );
    }
    for vote in &v.votes {
        println!(
            "vote        {} {} at {} via {}{}",
            vote.voter,
            vote.decision,
            vote.at,
            vote.via,
            vote.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        );
    }
    if let Some(by) = &v.decided_by {
        println!(
            "decided     by {by}{}",
            v.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        );
    }
    println!(
        "expires     {}",
        v.approval_expires_at.as_ref().unwrap_or(&v.expires_at)
    );
}
