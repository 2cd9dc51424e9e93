//! `POST /webhooks/github` and `POST /webhooks/gitlab`: `/approve` and `/deny` comments on
//! the pull or merge request a pending request belongs to are that person's vote, with
//! every check any vote gets. The server answers each command in a comment. See
//! docs/comment-approvals.md. GitHub's `deployment_protection_rule` opens a request
//! (`deployment.rs`).
//!
//! A request belongs to a pull request when its repository is the PR's repository and its
//! context has the label `pull_request` = the PR number (or, from GitHub, the ref
//! `refs/pull/N/merge` or `refs/pull/N/head`); to a merge request when its repository is
//! the project's path and it has the label `merge_request` = the MR iid.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

mod deployment;
mod parse;

use parse::{Command, GithubIssueComment, GitlabNote};

use super::AppState;
use super::error::{AppError, ErrorCode, Result};
use super::extract::{RawBody, json_from_slice};
use crate::auth::Principal;
use crate::core::api::VoteMeta;
use crate::core::decide::Status;
use crate::core::duration::now_ms;
use crate::core::identity::Identity;
use crate::forge::{Kind, Thread};
use crate::service::{Engine, doc_of};

/// How many pending requests are searched for the one a comment is about.
const SEARCH_LIMIT: i64 = 5000;

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn ignored(why: &str) -> Json<Value> {
    Json(json!({"result": "ignored", "message": why}))
}

fn replayed(what: &str) -> AppError {
    AppError::Conflict(
        ErrorCode::ReplayedDelivery,
        format!("{what} was already received; a delivery is acted on once"),
    )
}

/// A command from a comment, with where it was written.
struct CommentVote {
    forge: &'static str,
    login: String,
    repo: String,
    number: u64,
    url: String,
    cmd: Command,
}

/// What a comment command did.
struct Acted {
    counted: bool,
    request: Option<String>,
    message: String,
}

pub async fn github(State(s): State<AppState>, headers: HeaderMap, RawBody(body): RawBody) -> Result<Json<Value>> {
    let forge = s.engine.forge.clone();
    let Some(secret) = forge.webhook_secret(Kind::Github) else {
        return Err(AppError::NotFound(
            "GitHub webhooks are not configured on this server (forge.github.webhook_secret_env)".into(),
        ));
    };
    if !parse::github_signature_ok(secret, &body, header(&headers, "x-hub-signature-256")) {
        tracing::warn!("GitHub webhook with a missing or wrong signature refused");
        return Err(AppError::Unauthorized(
            "missing or wrong X-Hub-Signature-256: the delivery is not from the configured GitHub webhook".into(),
        ));
    }
    let event = header(&headers, "x-github-event").unwrap_or_default();
    if event == "ping" {
        return Ok(Json(json!({"result": "pong"})));
    }
    let Some(delivery) = header(&headers, "x-github-delivery").filter(|d| !d.is_empty() && d.len() <= 200) else {
        return Err(AppError::BadRequest("missing X-GitHub-Delivery".into()));
    };
    if event == "deployment_protection_rule" {
        return deployment::requested(&s, delivery, &body).await;
    }
    let store = &s.engine.store;
    if !store.add_delivery("github", delivery, now_ms()).await? {
        return Err(replayed(&format!("GitHub delivery {delivery}")));
    }
    if event != "issue_comment" {
        store.finish_delivery("github", delivery, None, "ignored").await?;
        return Ok(ignored(&format!("`{event}` events are not used")));
    }
    let p: GithubIssueComment = json_from_slice(&body).map_err(|e| e.context("not an issue_comment event"))?;
    let cmd = match (
        p.action.as_str(),
        &p.issue.pull_request,
        parse::parse_command(&p.comment.body),
    ) {
        ("created", Some(_), Some(cmd)) => cmd,
        _ => {
            store.finish_delivery("github", delivery, None, "ignored").await?;
            return Ok(ignored("not a new /approve or /deny comment on a pull request"));
        }
    };
    // The same comment through a second hook (repository and organization) counts once.
    if !store
        .add_delivery("github", &format!("comment:{}", p.comment.id), now_ms())
        .await?
    {
        store.finish_delivery("github", delivery, None, "replayed").await?;
        return Err(replayed(&format!("comment {}", p.comment.id)));
    }
    let vote = CommentVote {
        forge: "github",
        login: p.comment.user.login,
        repo: p.repository.full_name,
        number: p.issue.number,
        url: p.comment.html_url,
        cmd,
    };
    let acted = act(&s.engine, &vote).await;
    let reply = reply_text(&s.engine, &vote, &acted);
    let replied = forge
        .reply(
            Thread::PullRequest {
                repo: &vote.repo,
                number: vote.number,
            },
            &reply,
        )
        .await;
    finish(&s.engine, "github", delivery, &acted, replied).await
}

pub async fn gitlab(State(s): State<AppState>, headers: HeaderMap, RawBody(body): RawBody) -> Result<Json<Value>> {
    let forge = s.engine.forge.clone();
    let Some(secret) = forge.webhook_secret(Kind::Gitlab) else {
        return Err(AppError::NotFound(
            "GitLab webhooks are not configured on this server (forge.gitlab.webhook_secret_env)".into(),
        ));
    };
    if !parse::gitlab_token_ok(secret, header(&headers, "x-gitlab-token")) {
        tracing::warn!("GitLab webhook with a missing or wrong token refused");
        return Err(AppError::Unauthorized(
            "missing or wrong X-Gitlab-Token: the delivery is not from the configured GitLab webhook".into(),
        ));
    }
    let event = header(&headers, "x-gitlab-event").unwrap_or_default();
    if event != "Note Hook" {
        return Ok(ignored(&format!("`{event}` events are not used")));
    }
    let p: GitlabNote = json_from_slice(&body).map_err(|e| e.context("not a note event"))?;
    let created = p.object_attributes.action.as_deref().is_none_or(|a| a == "create");
    let cmd = match (
        p.object_kind.as_str(),
        p.object_attributes.noteable_type.as_str(),
        &p.merge_request,
        created,
        parse::parse_command(&p.object_attributes.note),
    ) {
        ("note", "MergeRequest", Some(_), true, Some(cmd)) => cmd,
        _ => return Ok(ignored("not a new /approve or /deny note on a merge request")),
    };
    // A note is acted on once, however often it is delivered (GitLab retries, resends).
    let delivery = format!("note:{}", p.object_attributes.id);
    if !s.engine.store.add_delivery("gitlab", &delivery, now_ms()).await? {
        return Err(replayed(&format!("GitLab note {}", p.object_attributes.id)));
    }
    let vote = CommentVote {
        forge: "gitlab",
        login: p.user.username,
        repo: p.project.path_with_namespace,
        number: p.merge_request.map(|m| m.iid).unwrap_or_default(),
        url: p.object_attributes.url,
        cmd,
    };
    let acted = act(&s.engine, &vote).await;
    let reply = reply_text(&s.engine, &vote, &acted);
    let project = p.project.id.to_string();
    let replied = forge
        .reply(
            Thread::MergeRequest {
                project: &project,
                iid: vote.number,
            },
            &reply,
        )
        .await;
    finish(&s.engine, "gitlab", &delivery, &acted, replied).await
}

async fn finish(
    engine: &Engine,
    forge: &str,
    delivery: &str,
    acted: &Acted,
    replied: std::result::Result<(), crate::forge::Error>,
) -> Result<Json<Value>> {
    let result = if acted.counted { "counted" } else { "refused" };
    engine
        .store
        .finish_delivery(forge, delivery, acted.request.as_deref(), result)
        .await?;
    let mut out = json!({"result": result, "request": acted.request, "message": acted.message});
    if let Err(e) = replied {
        tracing::warn!(error = %e, "could not answer the comment");
        out["reply_error"] = json!(e.to_string());
    }
    Ok(Json(out))
}

/// Finds the request and votes as the commenter. Never fails: a refusal is an answer.
async fn act(engine: &Engine, v: &CommentVote) -> Acted {
    let refused = |request: Option<String>, message: String| Acted {
        counted: false,
        request,
        message,
    };
    // The login as the forge gave it is only echoed back; who it is is its normal form.
    let login = match Identity::parse(&v.login) {
        Ok(l) => l,
        Err(e) => return refused(None, format!("@{} is not a jitgate approver: the login {e}", v.login)),
    };
    let config = engine.config();
    let Some(user) = config.user_for_login(v.forge, &login) else {
        return refused(
            None,
            format!(
                "@{} is not a jitgate approver: no user in the server config has `{}: {}`",
                v.login, v.forge, v.login
            ),
        );
    };
    let user = user.name.clone();
    let who = Principal::Approver(user.clone());
    let found = match pending_for(engine, v, &who).await {
        Ok(c) => c,
        Err(e) => return refused(None, format!("the vote was not counted: {e}")),
    };
    // Requests the commenter may not read are not theirs to see named here, except those
    // of a forge group, whose live members may vote (the vote checks membership).
    let candidates: Vec<String> = found
        .iter()
        .filter(|p| p.readable || p.forge_groups)
        .map(|p| p.id.clone())
        .collect();
    let what = if v.forge == "github" {
        format!("pull request #{}", v.number)
    } else {
        format!("merge request !{}", v.number)
    };
    let unknown = |want: &str| format!("`{want}` is not a pending jitgate request of this {what}");
    let id = match (&v.cmd.request, candidates.as_slice()) {
        (Some(want), _) if candidates.contains(want) => want.clone(),
        (Some(want), _) => return refused(None, unknown(want)),
        (None, []) => return refused(None, format!("no pending jitgate request belongs to this {what}")),
        (None, [one]) => one.clone(),
        (None, many) => {
            return refused(
                None,
                format!(
                    "{} pending requests belong to this {what} ({}); name one, e.g. `/{} {} …`",
                    many.len(),
                    many.join(", "),
                    if v.cmd.approve { "approve" } else { "deny" },
                    many[0]
                ),
            );
        }
    };
    let meta = VoteMeta {
        via: "comment".into(),
        source: (!v.url.is_empty()).then(|| v.url.clone()),
        ..Default::default()
    };
    match engine
        .vote(&who, &id, v.cmd.approve, v.cmd.reason.clone(), meta, now_ms)
        .await
    {
        Ok(view) => {
            let kind = if v.cmd.approve { "approval" } else { "denial" };
            let message = match view.status {
                Status::Approved => {
                    format!("{user}'s {kind} counted: request {id} is **approved**; the pipeline may proceed")
                }
                Status::Denied => format!("{user}'s {kind} counted: request {id} is **denied**"),
                _ => format!(
                    "{user}'s {kind} counted on request {id}; still needed: {}",
                    view.needs()
                ),
            };
            Acted {
                counted: true,
                request: Some(id),
                message,
            }
        }
        // Not readable (not a live member either): the same answer as an unknown id.
        Err(AppError::NotFound(_)) => match &v.cmd.request {
            Some(want) => refused(None, unknown(want)),
            None => refused(None, format!("no pending jitgate request belongs to this {what}")),
        },
        Err(e) => refused(Some(id), format!("{user}'s vote was not counted: {e}")),
    }
}

fn reply_text(engine: &Engine, v: &CommentVote, a: &Acted) -> String {
    let mark = if a.counted { "✅" } else { "⛔" };
    let mut out = format!("{mark} **jitgate** (@{}): {}", v.login, a.message);
    if let Some(id) = &a.request {
        out.push_str(&format!("\n\nRequest: {}", engine.request_url(id)));
    }
    out
}

/// A pending request of the pull/merge request a comment is on.
struct Pending {
    id: String,
    /// The commenter may read it (see `Engine::may_read`).
    readable: bool,
    /// It has a forge-group requirement, whose live members may vote on it.
    forge_groups: bool,
}

/// Pending requests of the pull/merge request a comment is on, oldest first.
async fn pending_for(engine: &Engine, v: &CommentVote, who: &Principal) -> Result<Vec<Pending>> {
    let n = v.number.to_string();
    let mut out = Vec::new();
    let mut votes = engine.store.votes_by_status(Status::Pending).await?;
    let reach = engine.reach(who, crate::core::duration::now_ms()).await?;
    for row in engine.store.list(Some(Status::Pending), SEARCH_LIMIT).await? {
        if !row.repository.eq_ignore_ascii_case(&v.repo) {
            continue;
        }
        let doc = doc_of(&row)?;
        let readable = engine.may_read(who, &reach, &row, &votes.remove(&row.id).unwrap_or_default())?;
        let forge_groups = doc.requirements.iter().any(|r| r.source.is_some());
        let ctx = doc.context;
        let hit = match v.forge {
            "github" => {
                ctx.labels.get("pull_request") == Some(&n)
                    || ctx.git_ref == format!("refs/pull/{n}/merge")
                    || ctx.git_ref == format!("refs/pull/{n}/head")
            }
            _ => ctx.labels.get("merge_request") == Some(&n),
        };
        if hit {
            out.push(Pending {
                id: row.id,
                readable,
                forge_groups,
            });
        }
    }
    Ok(out)
}

/// `POST /webhooks/github` and `POST /webhooks/gitlab`, with room for forge payloads.
pub fn router() -> axum::Router<AppState> {
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    let limit = || DefaultBodyLimit::max(super::WEBHOOK_BODY_LIMIT);
    axum::Router::new()
        .route("/webhooks/github", post(github).layer(limit()))
        .route("/webhooks/gitlab", post(gitlab).layer(limit()))
}
