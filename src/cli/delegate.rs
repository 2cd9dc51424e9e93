//! `gate delegate`, `gate delegations [revoke ID]` and `gate admin reload`.

use clap::{Args, Subcommand};

use super::approver::{refused, t};
use super::{Ctx, Exit, Outcome, print_json};
use crate::core::api::{CreateDelegation, DelegationView};

#[derive(Debug, Args)]
pub struct DelegateArgs {
    /// Who votes for you meanwhile (a configured user).
    #[arg(long)]
    pub to: String,
    /// When it ends, RFC 3339 (`2026-12-24T18:00:00Z`).
    #[arg(long)]
    pub until: String,
    /// Why (shown with the delegation and in the audit log; required).
    #[arg(long)]
    pub reason: Option<String>,
    /// Admins only: delegate for this person rather than for yourself.
    #[arg(long)]
    pub from: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DelegationsCommand {
    /// List them (the default).
    List,
    /// End one now: its delegator or an admin may.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Reload gate.yaml's users and pipelines and the policy (as SIGHUP does).
    Reload,
}

fn line(d: &DelegationView) -> String {
    let state = match (&d.revoked_by, d.in_force) {
        (Some(by), _) => format!("revoked by {}", t(by)),
        (None, true) => "in force".into(),
        (None, false) => "ended".into(),
    };
    format!(
        "{}  {} -> {}  until {}  {}  ({})",
        t(&d.id),
        t(&d.delegator),
        t(&d.delegate),
        t(&d.until),
        state,
        t(&d.reason)
    )
}

pub async fn delegate(ctx: &Ctx, a: DelegateArgs) -> Outcome {
    let body = CreateDelegation {
        to: a.to,
        from: a.from,
        until: a.until,
        reason: a.reason.unwrap_or_default(),
    };
    let d = ctx.client()?.delegate(&body).await.map_err(refused)?;
    if ctx.json() {
        print_json(&d);
    } else {
        outln!("delegated: {}", line(&d));
    }
    Ok(Exit::Success)
}

pub async fn delegations(ctx: &Ctx, command: Option<DelegationsCommand>) -> Outcome {
    let c = ctx.client()?;
    match command.unwrap_or(DelegationsCommand::List) {
        DelegationsCommand::List => {
            let list = c.delegations().await.map_err(refused)?;
            if ctx.json() {
                print_json(&list);
            } else if list.is_empty() {
                outln!("no delegations");
            } else {
                for d in &list {
                    outln!("{}", line(d));
                }
            }
        }
        DelegationsCommand::Revoke { id } => {
            let d = c.revoke_delegation(&id).await.map_err(refused)?;
            if ctx.json() {
                print_json(&d);
            } else {
                outln!("revoked: {}", line(&d));
            }
        }
    }
    Ok(Exit::Success)
}

pub async fn admin(ctx: &Ctx, command: AdminCommand) -> Outcome {
    match command {
        AdminCommand::Reload => {
            let r = ctx.client()?.reload().await.map_err(refused)?;
            if ctx.json() {
                print_json(&r);
            } else {
                outln!(
                    "reloaded: {} users, {} pipelines, policy {} (was {})",
                    r.users,
                    r.pipelines,
                    t(&r.policy_digest),
                    t(&r.old_policy_digest)
                );
                if !r.not_reloaded.is_empty() {
                    outln!(
                        "changed but not reloaded (restart to apply): {}",
                        r.not_reloaded.join(", ")
                    );
                }
            }
        }
    }
    Ok(Exit::Success)
}
