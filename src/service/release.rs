//! Waiting without a runner: the platform holds the job, jitgate decides, the server
//! releases it. Here: the [`Release`] built at opening from what the server can trust,
//! the outbox row an outcome queues in its own transaction (channel `release`), the
//! check that only the run the release names consumes it, and the [`Releaser`] that
//! the notification worker hands those rows to, dispatching on the kind to `forge`.

use crate::auth::Principal;
use crate::auth::oidc::VerifiedIdentity;
use crate::core::api::Context;
use crate::core::release::{self, Payload, Release, ReleaseAsk};
use crate::notify::DeliveryError;
use crate::notify::release::ReleaseSender;
use crate::store::{NotificationDraft, NotificationRow, RequestRow, Tx};

use super::commit::Failure;
use super::error::{AppError, ErrorCode, Result};
use super::{Doc, Engine, doc_of};

/// Where the release of `ask` points, from the verified claims where the caller has
/// them, else from the request's context (already filled from those claims).
pub(super) fn release_of(
    ask: &ReleaseAsk,
    ctx: &Context,
    verified: Option<&VerifiedIdentity>,
    jenkins: Option<&crate::config::JenkinsConfig>,
) -> Result<Release> {
    let invalid = |m: String| AppError::Invalid(ErrorCode::InvalidRelease, m);
    ask.check().map_err(invalid)?;
    match ask {
        ReleaseAsk::GitlabPlay(a) => {
            if ctx.platform != "gitlab" {
                return Err(invalid(format!(
                    "release.gitlab_play needs a GitLab pipeline; this request's platform is `{}`",
                    ctx.platform
                )));
            }
            let claim = |k: &str| {
                verified.and_then(|v| v.claims.get(k)).and_then(|c| {
                    c.as_u64()
                        .map(|n| n.to_string())
                        .or_else(|| c.as_str().map(String::from))
                })
            };
            // The numeric id where the token vouches for it: a path can be renamed.
            let project = claim("project_id").unwrap_or_else(|| ctx.repository.clone());
            let pipeline = ctx.run_id.clone();
            if project.is_empty() || !pipeline.bytes().all(|b| b.is_ascii_digit()) || pipeline.is_empty() {
                return Err(invalid(format!(
                    "release.gitlab_play needs the project and the numeric pipeline id (context.repository `{}`, context.run_id `{pipeline}`)",
                    ctx.repository
                )));
            }
            Ok(Release::GitlabPlay {
                project,
                pipeline,
                job: a.job.clone(),
            })
        }
        ReleaseAsk::JenkinsInput(a) => {
            let Some(j) = jenkins else {
                return Err(invalid(
                    "release.jenkins_input is not available on this server (`jenkins:` in gate.yaml)".into(),
                ));
            };
            // The server sends the Jenkins user's API token to this build: only a build
            // under the configured Jenkins will do, whatever the caller says.
            let root = crate::forge::jenkins::root(&j.url).map_err(invalid)?;
            let build = crate::forge::jenkins::build_url_under(&root, &ctx.run_url)
                .map_err(|m| invalid(format!("release.jenkins_input: context.run_url (BUILD_URL): {m}")))?;
            Ok(Release::JenkinsInput {
                build_url: build.to_string(),
                input: a.input.clone(),
                build_tag: ctx.run_id.clone(),
            })
        }
    }
}

/// Refuses a consume of a request whose release names a run, from any other run: the
/// token's verified run (`run_id`, GitLab's `pipeline_id` claim), else the one the
/// caller says (`run`). On GitLab Free anyone may press play on the held job; this is
/// what keeps that job from deploying on an approval meant for another pipeline.
pub(super) fn check_consumer(doc: &Doc, who: &Principal, run: Option<&str>, id: &str) -> Result<()> {
    let Some(r) = &doc.release else {
        return Ok(());
    };
    let Principal::Pipeline { verified, .. } = who else {
        return Ok(());
    };
    let from = verified
        .as_deref()
        .and_then(|v| v.fields.get("run_id").map(String::as_str))
        .or(run);
    let want = r.run();
    match from {
        Some(run) if run == want => Ok(()),
        Some(run) => Err(AppError::Forbidden(
            ErrorCode::OtherRun,
            format!(
                "request {id} releases {} of run {want}; it cannot be consumed from run {run}",
                r.kind()
            ),
        )),
        None => Err(AppError::Forbidden(
            ErrorCode::OtherRun,
            format!(
                "request {id} releases {} of run {want}: say which run consumes it (`run_id`; `gate consume` sends it)",
                r.kind()
            ),
        )),
    }
}

impl Engine {
    /// Queues, in `tx`, the release an outcome of `row` calls for (nothing when the
    /// request holds no job, or when its kind does nothing on this outcome). Returns
    /// whether a row was queued; the caller's commit wakes the worker.
    pub(super) async fn queue_release(&self, tx: &mut Tx, row: &RequestRow, now: i64) -> Result<bool, Failure> {
        let doc = doc_of(row)?;
        let Some(r) = doc.release.clone() else {
            return Ok(false);
        };
        if !r.acts_on(row.status) {
            return Ok(false);
        }
        let event = row.status.as_str();
        let comment = release::comment(
            &row.id,
            row.status,
            doc.decided_by.as_deref(),
            doc.reason.as_deref(),
            &self.request_url(&row.id),
        );
        let payload = Payload {
            release: r.clone(),
            event: event.into(),
            state: release::state(row.status).map(String::from),
            comment,
        };
        self.queue_release_row(tx, &row.id, event, &payload, now).await
    }

    /// Queues one `release` row keyed `<id>:release:<key>` (queued twice, kept once). The
    /// status reports a kind sends while waiting use it with their own keys.
    pub(super) async fn queue_release_row(
        &self,
        tx: &mut Tx,
        id: &str,
        key: &str,
        payload: &Payload,
        now: i64,
    ) -> Result<bool, Failure> {
        let draft = NotificationDraft {
            key: release::key(id, key),
            request_id: id.to_string(),
            event: payload.event.clone(),
            channel: release::CHANNEL.into(),
            recipient: payload.release.kind().into(),
            payload: serde_json::to_string(payload)?,
            created_at: now,
        };
        Ok(tx.enqueue_notification(&draft).await?)
    }
}

/// GitHub takes at most this many status reports per deployment.
const MAX_REPORTS: i64 = 10;

/// The outbox event of a status report.
const STATUS_REPORT: &str = "status_report";

impl Engine {
    /// Queues, in `tx`, a status report on the GitHub deployment that pending `row`
    /// holds (nothing for other kinds): `text` says what changed, `key` makes it once.
    /// At most [`MAX_REPORTS`] per request; the outcome is always sent.
    pub(super) async fn report_status(
        &self,
        tx: &mut Tx,
        row: &RequestRow,
        doc: &Doc,
        key: &str,
        text: &str,
        now: i64,
    ) -> Result<bool, Failure> {
        let Some(r @ Release::GithubDeployment { .. }) = &doc.release else {
            return Ok(false);
        };
        if row.status != crate::core::decide::Status::Pending
            || tx.count_notifications(&row.id, release::CHANNEL, STATUS_REPORT).await? >= MAX_REPORTS
        {
            return Ok(false);
        }
        let url = self.request_url(&row.id);
        let room = release::MAX_COMMENT.saturating_sub(url.chars().count() + 3);
        let mut comment: String = format!("jitgate request {}: {text}", row.id)
            .chars()
            .take(room)
            .collect();
        comment.push_str(&format!(" — {url}"));
        let payload = Payload {
            release: r.clone(),
            event: STATUS_REPORT.into(),
            state: None,
            comment,
        };
        self.queue_release_row(tx, &row.id, &format!("{STATUS_REPORT}:{key}"), &payload, now)
            .await
    }

    /// The status report of the escalation `row` just took (its last).
    pub(super) async fn report_escalation(&self, tx: &mut Tx, row: &RequestRow, now: i64) -> Result<bool, Failure> {
        let doc = doc_of(row)?;
        let Some(e) = doc.escalations.last() else {
            return Ok(false);
        };
        let mut text = format!("escalated (step {})", e.step + 1);
        if !e.add_groups.is_empty() {
            text.push_str(&format!("; {} may now approve", e.add_groups.join(", ")));
        }
        let key = format!("escalated-{}", doc.escalations.len());
        self.report_status(tx, row, &doc, &key, &text, now).await
    }
}

/// Sends `release` rows: one client per platform, each `None` when not configured
/// (its rows then fail, are retried and, if it never comes, given up, as any channel).
#[derive(Default)]
pub struct Releaser {
    /// `forge.gitlab`: plays manual jobs.
    pub gitlab: Option<crate::forge::gitlab::GitLab>,
    /// `forge.github.app`: answers deployment protection rules.
    pub github_app: Option<std::sync::Arc<crate::forge::github_app::GithubApp>>,
    /// `jenkins:`: answers held `input` steps.
    pub jenkins: Option<crate::forge::jenkins::Jenkins>,
}

impl Releaser {
    async fn release(&self, p: &Payload) -> Result<(), DeliveryError> {
        let platform = |e: crate::forge::Error| DeliveryError::Platform(e.to_string());
        match &p.release {
            Release::GitlabPlay { project, pipeline, job } => {
                // Only an approval plays (`Release::acts_on`); a row for anything else
                // (none is queued) must never start the job.
                if p.state.as_deref() != Some("approved") {
                    return Ok(());
                }
                let gitlab = self
                    .gitlab
                    .as_ref()
                    .ok_or_else(|| unconfigured("gitlab", "forge.gitlab"))?;
                gitlab.play_job(project, pipeline, job).await.map_err(platform)
            }
            Release::GithubDeployment {
                installation_id,
                environment,
                callback_url,
                ..
            } => {
                use crate::forge::github_app::{Review, State};
                let app = self
                    .github_app
                    .as_ref()
                    .ok_or_else(|| unconfigured("github_deployment", "forge.github.app"))?;
                let state = match p.state.as_deref() {
                    Some("approved") => Some(State::Approved),
                    Some(_) => Some(State::Rejected),
                    None => None,
                };
                // A post GitHub answers "already answered" counts as sent (`review`):
                // a retry after a lost reply never answers the rule twice.
                app.review(&Review {
                    installation_id: *installation_id,
                    callback_url,
                    environment,
                    state,
                    comment: &p.comment,
                })
                .await
                .map_err(platform)
            }
            Release::JenkinsInput { build_url, input, .. } => {
                use crate::forge::jenkins::Answer;
                let answer = match p.state.as_deref() {
                    Some("approved") => Answer::Proceed,
                    Some(_) => Answer::Abort,
                    // Not an outcome: Jenkins has nothing to be told.
                    None => return Ok(()),
                };
                let jenkins = self
                    .jenkins
                    .as_ref()
                    .ok_or_else(|| unconfigured("jenkins_input", "jenkins"))?;
                // An input no longer waiting in a finished build counts as delivered
                // (`Answered::Gone`): it was answered already, and answering again does nothing.
                jenkins
                    .answer(build_url, input, answer)
                    .await
                    .map(|_| ())
                    .map_err(platform)
            }
        }
    }
}

fn unconfigured(kind: &str, section: &str) -> DeliveryError {
    DeliveryError::Platform(format!(
        "{kind} releases need `{section}` in gate.yaml, which this server does not have"
    ))
}

#[async_trait::async_trait]
impl ReleaseSender for Releaser {
    async fn send(&self, row: &NotificationRow) -> std::result::Result<(), DeliveryError> {
        let p: Payload = serde_json::from_str(&row.payload).map_err(DeliveryError::Payload)?;
        self.release(&p).await
    }
}

/// Whether `who` is a job of the run a GitHub deployment release names: an OIDC token
/// verifying its repository and run id. That job consumes the approval with
/// `--request-for-run` and reads the request and its record as its opener would; the
/// opener (the App) is the server itself.
pub(super) fn is_job_of_run(who: &Principal, doc: &Doc) -> bool {
    let Some(crate::core::release::Release::GithubDeployment { repository, run_id, .. }) = &doc.release else {
        return false;
    };
    let Principal::Pipeline { verified: Some(v), .. } = who else {
        return false;
    };
    let claim = |k: &str| v.fields.get(k).map(String::as_str);
    claim("repository").is_some_and(|r| r.eq_ignore_ascii_case(repository)) && claim("run_id") == Some(run_id.as_str())
}
