//! GitHub deployment protection rules: the request a `deployment_protection_rule` event
//! opens (by the App, [`GITHUB_APP`], never by a pipeline), and its approval used by the
//! deploy job of that run (`POST /api/v1/run/consume`).
//!
//! One open request per repository, run and environment: its idempotency key is made
//! from those three, so a second delivery for the same deployment, or for another while
//! the request is pending, replays it, and the deploy job finds it again from its OIDC
//! token's verified claims. A re-run of the workflow run keeps the run id and asks again
//! for a new deployment: once the earlier request is decided, its key moves aside
//! (`KEY|<its id>`) and the new request takes it.

use super::error::{AppError, ErrorCode, Result};
use super::open::{Trusted, stored_key};
use super::{Engine, doc_of};
use crate::auth::Principal;
use crate::core::api::{CreateRequest, RequestView};
use crate::core::decide::Status;
use crate::core::release::Release;

/// The opener of every request a protection rule opens: the GitHub App.
pub const GITHUB_APP: &str = "github-app";

/// A request asked for by a `deployment_protection_rule` event (see
/// `http::webhooks::deployment`), from a payload GitHub signed.
#[derive(Debug, Clone)]
pub struct DeploymentOpening {
    pub body: CreateRequest,
    /// A [`Release::GithubDeployment`].
    pub release: Release,
    /// Requesters the payload names beyond the context's (the pull requests' authors):
    /// `(login, where it was read)`.
    pub also_requesters: Vec<(String, String)>,
}

/// The idempotency key of a deployment's request.
fn deployment_key(repository: &str, run_id: &str, environment: &str) -> String {
    format!(
        "deployment:{}:{run_id}:{}",
        repository.to_lowercase(),
        environment.to_lowercase()
    )
}

impl Engine {
    /// Opens the request of a deployment protection rule, or returns the one already open
    /// for the same repository, run and environment (`false`).
    pub async fn open_deployment(&self, o: DeploymentOpening, now: i64) -> Result<(RequestView, bool)> {
        let Release::GithubDeployment {
            repository,
            run_id,
            environment,
            ..
        } = &o.release
        else {
            return Err(AppError::Internal(anyhow::anyhow!(
                "a deployment opening without a GitHub release"
            )));
        };
        let mut body = o.body;
        let key = deployment_key(repository, run_id, environment);
        let namespaced = stored_key(GITHUB_APP, &key);
        if let Some(old) = self.store.find_by_key(&namespaced).await? {
            let (row, votes) = self.load(&old).await?;
            let deployment = |labels: &std::collections::BTreeMap<String, String>| labels.get("deployment_id").cloned();
            let same = deployment(&doc_of(&row)?.context.labels) == deployment(&body.context.labels);
            // Another deployment of the run while its request is pending (the attempt
            // before was canceled and re-run): the answer goes to the run's callback, so
            // the pending request answers this deployment too.
            if !same && row.status == Status::Pending {
                return Ok((self.view(&row, &votes)?, false));
            }
            // Another deployment once the first is decided (approved included: its answer
            // went to the attempt before): a re-run, which needs its own answer.
            if !same {
                let mut tx = self.store.begin().await?;
                tx.rekey_request(&old, &format!("{namespaced}|{old}")).await?;
                tx.commit().await?;
            }
        }
        body.idempotency_key = Some(key);
        let trusted = Trusted {
            release: Some(o.release.clone()),
            requesters: o.also_requesters,
        };
        self.create_trusted(&Principal::pipeline(GITHUB_APP), body, trusted, now)
            .await
    }

    /// Uses the approval of the deployment protection rule of the caller's run: the
    /// repository, run and environment its OIDC token verified (the environment from
    /// `environment` when the token has none). Refused for any other run or repository.
    pub async fn consume_for_run(
        &self,
        who: &Principal,
        environment: Option<&str>,
        now_fn: fn() -> i64,
    ) -> Result<RequestView> {
        let refuse = |m: String| AppError::Forbidden(ErrorCode::OtherRun, m);
        let Some(v) = who.verified() else {
            return Err(refuse(
                "consuming the approval of a run needs the run's OIDC token (`permissions: id-token: write`): a static token does not say which run it is".into(),
            ));
        };
        let claim = |k: &str| v.fields.get(k).map(String::as_str).filter(|s| !s.is_empty());
        let (Some(repository), Some(run_id)) = (claim("repository"), claim("run_id")) else {
            return Err(refuse(format!(
                "the OIDC token from {} verifies no repository and run_id: only a GitHub Actions token names a run",
                v.issuer
            )));
        };
        let Some(environment) = claim("environment").or(environment.filter(|e| !e.is_empty())) else {
            return Err(refuse(
                "the OIDC token names no environment: consume from the job with `environment:`, or send `environment`"
                    .into(),
            ));
        };
        let key = stored_key(GITHUB_APP, &deployment_key(repository, run_id, environment));
        let Some(id) = self.store.find_by_key(&key).await? else {
            return Err(AppError::NotFound(format!(
                "no deployment protection rule opened a request for run {run_id} of {repository} to {environment}"
            )));
        };
        let (row, _) = self.load(&id).await?;
        let doc = doc_of(&row)?;
        let ours = match &doc.release {
            Some(Release::GithubDeployment {
                repository: r,
                run_id: n,
                environment: e,
                ..
            }) => r.eq_ignore_ascii_case(repository) && n == run_id && e.eq_ignore_ascii_case(environment),
            _ => false,
        };
        if row.opened_by != GITHUB_APP || !ours {
            return Err(refuse(format!(
                "request {id} does not release a GitHub deployment of run {run_id} of {repository}"
            )));
        }
        self.use_approval(who.name(), &id, now_fn).await
    }
}
