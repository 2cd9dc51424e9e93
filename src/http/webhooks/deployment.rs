//! `deployment_protection_rule` on `POST /webhooks/github`: GitHub asks the App whether a
//! job may deploy to an environment; a request opens from the payload, and the outcome
//! is posted to the payload's `deployment_callback_url` through the outbox
//! (`service::release`). See "Deployment protection rule" in docs/github-actions.md.
//!
//! Acted on once per delivery and once per run and environment: a replayed delivery is
//! refused (409), a new delivery for the same run and environment answers with the
//! request already open. A delivery that failed (no matching rule, the forge
//! unreachable) may be delivered again.

use axum::Json;
use serde_json::{Value, json};

use super::parse::GithubProtectionRule;
use super::{AppState, ignored, replayed};
use crate::core::api::{Context, CreateRequest};
use crate::core::duration::now_ms;
use crate::core::release::Release;
use crate::forge::github_app::run_id_of;
use crate::http::error::{AppError, ErrorCode, Result};
use crate::http::extract::json_from_slice;
use crate::service::DeploymentOpening;

/// What a delivery that could not open a request is noted as: it may come again.
const FAILED: &str = "failed";

pub(super) async fn requested(s: &AppState, delivery: &str, body: &[u8]) -> Result<Json<Value>> {
    let store = &s.engine.store;
    if !store.add_delivery("github", delivery, now_ms()).await? {
        let again = store.delivery("github", delivery).await?;
        if again.is_none_or(|(_, outcome)| outcome.as_deref() != Some(FAILED)) {
            return Err(replayed(&format!("GitHub delivery {delivery}")));
        }
    }
    let opened = open(s, body).await;
    let (request, outcome) = match &opened {
        Ok((id, true)) => (Some(id.as_str()), "opened"),
        Ok((id, false)) => (Some(id.as_str()), "replayed"),
        Err(_) => (None, FAILED),
    };
    store.finish_delivery("github", delivery, request, outcome).await?;
    let (id, new) = match opened {
        Ok(o) => o,
        Err(e) if e.is_ignored() => return Ok(ignored(&e.to_string())),
        Err(e) => return Err(e.into_app()),
    };
    let message = if new {
        format!("request {id} opened; the deployment waits for its outcome")
    } else {
        format!("request {id} is already open for this run and environment")
    };
    Ok(Json(
        json!({"result": outcome, "request": id, "url": s.engine.request_url(&id), "message": message}),
    ))
}

/// Why a delivery opened nothing.
enum NotOpened {
    /// Not for us (another action): noted, answered 200.
    Ignored(String),
    App(AppError),
}

impl NotOpened {
    fn is_ignored(&self) -> bool {
        matches!(self, NotOpened::Ignored(_))
    }
    fn into_app(self) -> AppError {
        match self {
            NotOpened::Ignored(m) => AppError::BadRequest(m),
            NotOpened::App(e) => e,
        }
    }
}

impl std::fmt::Display for NotOpened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotOpened::Ignored(m) => f.write_str(m),
            NotOpened::App(e) => write!(f, "{e}"),
        }
    }
}

impl From<AppError> for NotOpened {
    fn from(e: AppError) -> NotOpened {
        NotOpened::App(e)
    }
}

/// Opens the request of the payload; its id, and whether it is new.
async fn open(s: &AppState, body: &[u8]) -> std::result::Result<(String, bool), NotOpened> {
    let p: GithubProtectionRule =
        json_from_slice(body).map_err(|e| e.context("not a deployment_protection_rule event"))?;
    if p.action != "requested" {
        return Err(NotOpened::Ignored(format!(
            "deployment_protection_rule `{}` is not used",
            p.action
        )));
    }
    let opening = opening(p).map_err(|m| AppError::Invalid(ErrorCode::InvalidField, m))?;
    let (view, new) = s.engine.open_deployment(opening, now_ms()).await?;
    Ok((view.id, new))
}

/// The request a protection rule asks for: the context from the payload (GitHub signed
/// it), the deployment's creator and the sender as requesters, the pull requests'
/// authors beside them, and the release that answers GitHub.
fn opening(p: GithubProtectionRule) -> std::result::Result<DeploymentOpening, String> {
    let repository = p.repository.full_name;
    let Some(installation) = p.installation else {
        return Err(
            "installation: missing; protection rules are answered by the App installed on the repository".into(),
        );
    };
    let Some(d) = p.deployment else {
        return Err("deployment: missing".into());
    };
    if p.environment.is_empty() {
        return Err("environment: missing".into());
    }
    let run_id = run_id_of(&p.deployment_callback_url, &repository).ok_or_else(|| {
        format!(
            "deployment_callback_url `{}` is not …/repos/{repository}/actions/runs/RUN_ID/deployment_protection_rule",
            p.deployment_callback_url
        )
    })?;
    let actor = d.creator.map(|c| c.login).unwrap_or_else(|| p.sender.login.clone());
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("deployment_id".to_string(), d.id.to_string());
    if let [one] = p.pull_requests.as_slice() {
        labels.insert("pull_request".to_string(), one.number.to_string());
    }
    let pull_authors = p
        .pull_requests
        .iter()
        .filter_map(|pr| {
            let login = pr.user.as_ref()?.login.clone();
            Some((
                login,
                format!(
                    "github deployment_protection_rule pull request #{} user.login",
                    pr.number
                ),
            ))
        })
        .collect();
    let run_url = match p.repository.html_url.as_str() {
        "" => String::new(),
        html => format!("{}/actions/runs/{run_id}", html.trim_end_matches('/')),
    };
    let context = Context {
        platform: "github".into(),
        repository: repository.clone(),
        git_ref: d.git_ref,
        commit: d.sha,
        actor: actor.clone(),
        triggering_actor: if p.sender.login == actor {
            String::new()
        } else {
            p.sender.login
        },
        run_id: run_id.clone(),
        run_url,
        environment: p.environment.clone(),
        action: "deploy".into(),
        labels,
        ..Default::default()
    };
    Ok(DeploymentOpening {
        body: CreateRequest {
            context,
            summary: format!("GitHub deployment of {repository} to {} (run {run_id})", p.environment),
            ..Default::default()
        },
        release: Release::GithubDeployment {
            repository,
            installation_id: installation.id,
            environment: p.environment,
            run_id,
            callback_url: p.deployment_callback_url,
        },
        also_requesters: pull_authors,
    })
}
