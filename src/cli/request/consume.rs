//! `gate consume ID`: the first step of a job that a platform held while the request
//! waited (GitLab's manual job, the stage after a Jenkins input). It presents the
//! pipeline credential as `gate request` does, uses the approval once, from this run,
//! and writes the record and the platform's reports as `gate request` does. Exit 0
//! only when approved and consumed by this call; 1 for anything else, saying which.

use clap::Args;

use super::args::JobArgs;
use super::identity::identify;
use super::outcome::finish;
use super::retry::retry;
use super::{Printer, Signals};
use crate::ci;
use crate::cli::{Ctx, Failure, Outcome};
use crate::client::Client;
use crate::core::decide::Status;

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The request to use (GATE_REQUEST_ID, from the gate job's dotenv report on GitLab).
    #[arg(env = "GATE_REQUEST_ID", required_unless_present = "request_for_run")]
    pub id: Option<String>,
    /// GitHub Actions: use the approval a deployment protection rule's request holds for
    /// this workflow run (the run and repository the OIDC token verifies) instead of an ID.
    #[arg(long)]
    pub request_for_run: bool,
    /// With --request-for-run: the deployment environment, when the run deploys to more
    /// than one.
    #[arg(long, requires = "request_for_run")]
    pub environment: Option<String>,
    #[command(flatten)]
    pub job: JobArgs,
}

/// What both forms of `gate consume` start from: the retry budget, the printer, the
/// platform's context and a client holding the pipeline's credential.
struct Connected {
    budget: std::time::Duration,
    out: Printer,
    context: crate::core::api::Context,
    client: Client,
}

async fn connect(ctx: &Ctx, job: &JobArgs) -> Result<Connected, Failure> {
    let budget = job.budget()?;
    let out = Printer::new(ctx);
    let env = |k: &str| std::env::var(k).ok();
    let (platform, context) = ci::detect(&env);
    let identity = identify(ctx, job, platform, &out).await?;
    let client = Client::new(&ctx.server, Some(identity.token.clone()))?;
    Ok(Connected {
        budget,
        out,
        context,
        client,
    })
}

pub async fn run(ctx: &Ctx, a: ConsumeArgs) -> Outcome {
    if a.request_for_run {
        return for_run(ctx, a).await;
    }
    let id = a.id.as_deref().unwrap_or_default().trim().to_string();
    if id.is_empty() {
        return Err(Failure::usage(
            "no request id: pass it, or set GATE_REQUEST_ID (the gate job's dotenv report on GitLab)",
        ));
    }
    let Connected {
        budget,
        out,
        context,
        client,
    } = connect(ctx, &a.job).await?;
    // The run this job is in: a request that held a platform's job is used only from it.
    let run = Some(context.run_id).filter(|r| !r.is_empty());
    let mut signals = Signals::new()?;
    match retry(&mut signals, budget, || client.consume_from(&id, run.clone())).await {
        Ok(view) => finish(&client, &a.job, view, &out, None).await,
        Err(None) => Err(Failure::no(format!("interrupted before request {id} was consumed"))),
        // Refused: say why, with the request as it stands (denied, pending, expired,
        // already used), and leave the same reports and record a refused gate leaves.
        Err(Some(e)) if matches!(e.status(), Some(403 | 409)) => {
            let note = format!("cannot consume {id}: {e}");
            match client.get(&id).await {
                // Still approved (another run, a closed change window): nothing to report
                // as an outcome; the approval stays for the run it belongs to.
                Ok(latest) if latest.status == Status::Approved => Err(Failure::no(note)),
                Ok(latest) => {
                    let note = match latest.status {
                        Status::Pending => format!("{note} (request {id} is still pending: not approved yet)"),
                        _ => note,
                    };
                    finish(&client, &a.job, latest, &out, Some(note)).await
                }
                Err(_) => Err(Failure::no(note)),
            }
        }
        Err(Some(e)) if matches!(e.status(), Some(404 | 422)) => Err(Failure::no(format!("cannot consume {id}: {e}"))),
        Err(Some(e)) => Err(Failure::usage(format!("consuming {id}: {e}"))),
    }
}

/// `gate consume --request-for-run`: the request is found by the run the OIDC token
/// verifies, so the deploy job needs no id from the job that waited (there was none: the
/// platform held the job, not a gate step).
async fn for_run(ctx: &Ctx, a: ConsumeArgs) -> Outcome {
    let Connected {
        budget, out, client, ..
    } = connect(ctx, &a.job).await?;
    let environment = a.environment.clone().filter(|e| !e.trim().is_empty());
    let mut signals = Signals::new()?;
    match retry(&mut signals, budget, || client.consume_for_run(environment.clone())).await {
        Ok(view) => finish(&client, &a.job, view, &out, None).await,
        Err(None) => Err(Failure::no("interrupted before this run's approval was consumed")),
        Err(Some(e)) if matches!(e.status(), Some(403 | 404 | 409 | 422)) => {
            Err(Failure::no(format!("cannot consume this run's approval: {e}")))
        }
        Err(Some(e)) => Err(Failure::usage(format!("consuming this run's approval: {e}"))),
    }
}
