//! What `gate request` tells the forge once the decision is in, and when: a check run on
//! the commit (`--github-check`) and a note on the merge request (`--gitlab-note`),
//! through the forge adapters.
//!
//! They report; they never decide. [`report`] prints what happened (or why it could not)
//! on stderr and returns nothing: the gate's exit code is the decision's, whatever the
//! forge answers.

use std::time::Duration;

use clap::Args;

use crate::core::api::{RequestView, VoteView};
use crate::core::decide::Status;
use crate::forge::github::{CheckRun, Conclusion, GitHub};
use crate::forge::gitlab::GitLab;
use crate::forge::{Error, Timeouts};

/// The flags of `gate request` that turn the side calls on.
#[derive(Debug, Clone, Default, Args)]
pub struct ForgeArgs {
    /// After the decision, create a check run `jitgate / ENV` on the commit (GitHub;
    /// the token needs `checks: write`).
    #[arg(long, env = "GATE_GITHUB_CHECK")]
    pub github_check: bool,
    /// Token for the check run [default: GITHUB_TOKEN].
    #[arg(long, env = "GATE_GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// After the decision, post a note with the outcome on the merge request (GitLab).
    #[arg(long, env = "GATE_GITLAB_NOTE")]
    pub gitlab_note: bool,
    /// Project access token with the `api` scope, for the note (CI_JOB_TOKEN cannot post notes).
    #[arg(long, env = "GATE_GITLAB_TOKEN", hide_env_values = true)]
    pub gitlab_token: Option<String>,
}

/// How long one side call may take before the gate gives up on it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(10),
    read: Duration::from_secs(20),
};

/// How the request ended, as the forges are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approved,
    Denied,
    Expired,
    Canceled,
    /// Anything else that is not an approval (e.g. an approval another gate already used).
    NotApproved,
}

impl Verdict {
    /// From the `decision` of the gate's outcome line.
    pub fn from_decision(decision: &str) -> Verdict {
        match decision {
            "approved" => Verdict::Approved,
            "denied" => Verdict::Denied,
            "expired" => Verdict::Expired,
            "canceled" => Verdict::Canceled,
            _ => Verdict::NotApproved,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Approved => "Approved",
            Verdict::Denied => "Denied",
            Verdict::Expired => "Expired",
            Verdict::Canceled => "Canceled",
            Verdict::NotApproved => "Not approved",
        }
    }

    fn icon(self) -> &'static str {
        match self {
            Verdict::Approved => "✅",
            Verdict::Canceled => "⏹️",
            Verdict::Expired => "⌛",
            Verdict::Denied | Verdict::NotApproved => "❌",
        }
    }

    /// The check run's conclusion.
    pub fn conclusion(self) -> Conclusion {
        match self {
            Verdict::Approved => Conclusion::Success,
            Verdict::Canceled => Conclusion::Cancelled,
            Verdict::Denied | Verdict::Expired | Verdict::NotApproved => Conclusion::Failure,
        }
    }
}

/// What the forges are told, taken from the final state of the request.
#[derive(Debug, Clone)]
pub struct Summary {
    pub id: String,
    /// The approval link.
    pub url: String,
    pub verdict: Verdict,
    /// The status the server holds (`consumed`, `denied`, …).
    pub status: Status,
    pub environment: String,
    pub action: String,
    pub repository: String,
    pub commit: String,
    pub rule: String,
    pub decided_by: Option<String>,
    /// Why: the deciding reason, or why an approval could not be used.
    pub reason: Option<String>,
    pub votes: Vec<VoteView>,
    pub run_url: String,
}

impl Summary {
    /// `decision` and `why` are the gate's own outcome (an approval that could not be
    /// used is `approved` on the server but not for this gate).
    pub fn new(view: &RequestView, decision: &str, why: &str) -> Summary {
        Summary {
            id: view.id.clone(),
            url: view.url.clone(),
            verdict: Verdict::from_decision(decision),
            status: view.status,
            environment: view.context.environment.clone(),
            action: view.context.action.clone(),
            repository: view.context.repository.clone(),
            commit: view.context.commit.clone(),
            rule: view.rule.clone(),
            decided_by: view.decided_by.clone().filter(|s| !s.is_empty()),
            reason: Some(why.to_string())
                .filter(|s| !s.is_empty())
                .or_else(|| view.reason.clone().filter(|s| !s.is_empty())),
            votes: view.votes.clone(),
            run_url: view.context.run_url.clone(),
        }
    }

    /// One line: "Approved: deploy to production".
    pub fn title(&self) -> String {
        let what = if self.action.is_empty() { "deploy" } else { &self.action };
        format!("{}: {what} to {}", self.verdict.word(), self.environment)
    }

    /// The check run `jitgate / <environment>` on `head_sha` of `repository`.
    pub fn check_run(&self, repository: &str, head_sha: &str) -> CheckRun {
        CheckRun {
            repository: repository.to_string(),
            head_sha: head_sha.to_string(),
            name: format!("jitgate / {}", self.environment),
            conclusion: self.verdict.conclusion(),
            details_url: self.url.clone(),
            external_id: self.id.clone(),
            title: self.title(),
            summary: self.markdown(),
        }
    }

    /// The outcome, who decided and why, every vote and the request link, as Markdown.
    ///
    /// Everything a person typed (reasons, names) goes into code spans: no mentions,
    /// no links, no markup, and no line that starts with `/` (a GitLab quick action).
    pub fn markdown(&self) -> String {
        let mut s = format!("### {} jitgate: {}\n\n", self.verdict.icon(), self.title());
        s.push_str(&format!("- **Request:** [{}]({})\n", code(&self.id), self.url));
        if !self.rule.is_empty() {
            s.push_str(&format!("- **Rule:** {}\n", code(&self.rule)));
        }
        if !self.repository.is_empty() || !self.commit.is_empty() {
            let commit = if self.commit.is_empty() {
                String::new()
            } else {
                format!(" at {}", code(&self.commit))
            };
            s.push_str(&format!("- **Commit:** {}{commit}\n", code(&self.repository)));
        }
        if let Some(by) = &self.decided_by {
            s.push_str(&format!("- **Decided by:** {}\n", code(by)));
        }
        if let Some(why) = &self.reason {
            s.push_str(&format!("- **Why:** {}\n", code(why)));
        }
        if !self.run_url.is_empty() {
            s.push_str(&format!("- **Run:** {}\n", self.run_url));
        }
        if self.votes.is_empty() {
            s.push_str("\n**Votes:** none\n");
        } else {
            s.push_str(&format!("\n**Votes** ({}):\n\n", self.votes.len()));
            for v in &self.votes {
                let (icon, verb) = if v.decision == "approve" {
                    ("✅", "approved")
                } else {
                    ("❌", "denied")
                };
                let how = if v.via == "policy" {
                    " automatically (policy)".to_string()
                } else {
                    String::new()
                };
                let why = v
                    .reason
                    .as_deref()
                    .filter(|r| !r.trim().is_empty())
                    .map(|r| format!(": {}", code(r)))
                    .unwrap_or_default();
                s.push_str(&format!("- {icon} {} {verb}{how}, {}{why}\n", code(&v.who()), v.at));
            }
        }
        s.push_str(&format!(
            "\n[Open the request]({}) · the signed record is in the job's evidence; check it with `gate verify`.\n",
            self.url
        ));
        s
    }
}

/// Text someone typed, as an inline code span: one line, no backticks, bounded length.
fn code(text: &str) -> String {
    let mut one: String = text
        .chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    if one.chars().count() > 300 {
        one = one.chars().take(300).collect::<String>() + "…";
    }
    let one = one.trim();
    if one.is_empty() {
        "` `".into()
    } else {
        format!("`{one}`")
    }
}

/// Runs the side calls asked for, after the decision. Prints on stderr; never fails.
pub async fn report(args: &ForgeArgs, view: &RequestView, decision: &str, why: &str) {
    report_with(args, view, decision, why, &|k| std::env::var(k).ok()).await
}

/// [`report`] with the environment passed in.
pub async fn report_with(
    args: &ForgeArgs,
    view: &RequestView,
    decision: &str,
    why: &str,
    env: &dyn Fn(&str) -> Option<String>,
) {
    if !args.github_check && !args.gitlab_note {
        return;
    }
    let summary = Summary::new(view, decision, why);
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if args.github_check {
        match github_target(args, &summary, &get) {
            Err(why) => eprintln!("gate: --github-check skipped: {why}"),
            Ok(t) => {
                let run = summary.check_run(&t.repository, &t.head_sha);
                let created = async { GitHub::new(&t.api, &t.token, TIMEOUTS)?.create_check_run(&run).await };
                match bounded("GitHub", "creating the check run", created).await {
                    Ok(done) => eprintln!(
                        "gate: GitHub check run `{}` ({}) created on {}{}",
                        run.name,
                        run.conclusion.as_str(),
                        short(&t.head_sha),
                        done.html_url.map(|u| format!(": {u}")).unwrap_or_default()
                    ),
                    Err(e) => eprintln!("gate: warning: {e} (the gate's outcome stands)"),
                }
            }
        }
    }
    if args.gitlab_note {
        match gitlab_target(args, &get) {
            Err(why) => eprintln!("gate: --gitlab-note skipped: {why}"),
            Ok(t) => {
                let body = summary.markdown();
                let posted = async {
                    GitLab::new(&t.api, &t.token, TIMEOUTS)?
                        .create_mr_note(&t.project, t.mr_iid, &body)
                        .await
                };
                match bounded("GitLab", "posting the merge request note", posted).await {
                    Ok(note) => eprintln!("gate: GitLab note {} posted on merge request !{}", note.id, t.mr_iid),
                    Err(e) => eprintln!("gate: warning: {e} (the gate's outcome stands)"),
                }
            }
        }
    }
}

async fn bounded<T>(
    forge: &'static str,
    doing: &'static str,
    call: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(Error::Transport {
            forge,
            doing,
            message: format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
        }),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Why a side call is skipped: what the pipeline lacks for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TargetError {
    #[error("no token: set GITHUB_TOKEN (e.g. `env: GITHUB_TOKEN: ${{{{ github.token }}}}`) or --github-token")]
    GithubNoToken,
    #[error("no repository: GITHUB_REPOSITORY is unset and the request has none")]
    NoRepository,
    #[error("repository `{0}` is not owner/name")]
    BadRepository(String),
    #[error("no commit: the request has none and GITHUB_SHA is unset")]
    NoCommit,
    #[error("this pipeline has no merge request (CI_MERGE_REQUEST_IID is unset)")]
    NoMergeRequest,
    #[error("CI_MERGE_REQUEST_IID `{0}` is not a number")]
    BadMergeRequestIid(String),
    /// A variable GitLab CI always sets.
    #[error("{0} is unset (not in GitLab CI?)")]
    NotGitlabCi(&'static str),
    #[error(
        "no token: set GATE_GITLAB_TOKEN to a project access token with the `api` scope (CI_JOB_TOKEN cannot post notes)"
    )]
    GitlabNoToken,
}

struct GithubTarget {
    api: String,
    token: String,
    repository: String,
    head_sha: String,
}

/// Where the check run goes: the workflow's repository (the one its token is for) and
/// the commit the request was decided for.
fn github_target(
    args: &ForgeArgs,
    s: &Summary,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<GithubTarget, TargetError> {
    let token = args
        .github_token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| get("GITHUB_TOKEN"))
        .ok_or(TargetError::GithubNoToken)?;
    let repository = get("GITHUB_REPOSITORY")
        .or_else(|| Some(s.repository.clone()).filter(|r| !r.is_empty()))
        .ok_or(TargetError::NoRepository)?;
    if repository.split('/').count() != 2 || repository.split('/').any(str::is_empty) {
        return Err(TargetError::BadRepository(repository));
    }
    let head_sha = Some(s.commit.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| get("GITHUB_SHA"))
        .ok_or(TargetError::NoCommit)?;
    let api = get("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
    Ok(GithubTarget {
        api,
        token,
        repository,
        head_sha,
    })
}

struct GitlabTarget {
    api: String,
    token: String,
    project: String,
    mr_iid: u64,
}

fn gitlab_target(args: &ForgeArgs, get: &dyn Fn(&str) -> Option<String>) -> Result<GitlabTarget, TargetError> {
    let Some(iid) = get("CI_MERGE_REQUEST_IID") else {
        return Err(TargetError::NoMergeRequest);
    };
    let mr_iid = iid
        .trim()
        .parse::<u64>()
        .map_err(|_| TargetError::BadMergeRequestIid(iid.clone()))?;
    let api = get("CI_API_V4_URL").ok_or(TargetError::NotGitlabCi("CI_API_V4_URL"))?;
    let project = get("CI_PROJECT_ID").ok_or(TargetError::NotGitlabCi("CI_PROJECT_ID"))?;
    let token = args
        .gitlab_token
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or(TargetError::GitlabNoToken)?;
    Ok(GitlabTarget {
        api,
        token,
        project,
        mr_iid,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::api::Context;

    fn view(status: Status) -> RequestView {
        RequestView {
            id: "r-1".into(),
            status,
            url: "https://gate.example/r/r-1".into(),
            context: Context {
                repository: "acme/web".into(),
                commit: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
                environment: "production".into(),
                action: "deploy".into(),
                ..Context::default()
            },
            summary: String::new(),
            artifacts: vec![],
            fields: Default::default(),
            requester: vec![],
            requester_sources: vec![],
            opened_by: "ci".into(),
            rule: "production".into(),
            policy_digest: String::new(),
            requirements: vec![],
            open_stage: None,
            votes: vec![VoteView {
                voter: "bob".into(),
                decision: "deny".into(),
                reason: Some("/merge\n@all `rm` [x](y)".into()),
                at: "2024-01-01T00:00:00Z".into(),
                via: "token".into(),
                auth_time: None,
                amr: vec![],
                source: None,
                idp_groups: vec![],
                on_behalf_of: None,
            }],
            created_at: String::new(),
            expires_at: String::new(),
            decided_at: None,
            decided_by: Some("bob (deny)".into()),
            reason: Some("no ticket".into()),
            approval_expires_at: None,
            consumed_at: None,
            version: 1,
            verified_by: None,
            verified_fields: vec![],
            holder_token: None,
            release: None,
            links: Default::default(),
            covered_by: None,
            superseded_by: None,
            checks: vec![],
        }
    }

    #[test]
    fn markdown_quotes_what_people_typed() {
        let s = Summary::new(&view(Status::Denied), "denied", "");
        assert_eq!(s.title(), "Denied: deploy to production");
        let md = s.markdown();
        assert!(md.contains("- **Why:** `no ticket`"), "{md}");
        assert!(
            md.contains("- ❌ `bob` denied, 2024-01-01T00:00:00Z: `/merge @all 'rm' [x](y)`"),
            "{md}"
        );
        assert!(md.lines().all(|l| !l.starts_with('/')), "{md}");
        assert!(md.contains("[`r-1`](https://gate.example/r/r-1)"), "{md}");
    }

    #[test]
    fn verdicts() {
        assert_eq!(Verdict::from_decision("approved"), Verdict::Approved);
        assert_eq!(Verdict::from_decision("consumed"), Verdict::NotApproved);
        let s = Summary::new(&view(Status::Consumed), "consumed", "the approval could not be used");
        assert_eq!(s.reason.as_deref(), Some("the approval could not be used"));
    }

    #[test]
    fn targets_say_what_is_missing() {
        let args = ForgeArgs {
            github_check: true,
            gitlab_note: true,
            ..ForgeArgs::default()
        };
        let s = Summary::new(&view(Status::Denied), "denied", "");
        let none = |_: &str| None;
        let e = github_target(&args, &s, &none).err().unwrap().to_string();
        assert!(e.contains("GITHUB_TOKEN"), "{e}");
        // The workflow syntax in the hint survives the format string's escaping.
        assert_eq!(
            e,
            "no token: set GITHUB_TOKEN (e.g. `env: GITHUB_TOKEN: ${{ github.token }}`) or --github-token"
        );
        let gh = |k: &str| (k == "GITHUB_TOKEN").then(|| "t".to_string());
        let t = github_target(&args, &s, &gh).unwrap();
        assert_eq!(
            (t.api.as_str(), t.repository.as_str(), t.head_sha.as_str()),
            ("https://api.github.com", "acme/web", s.commit.as_str())
        );
        let e = gitlab_target(&args, &none).err().unwrap().to_string();
        assert!(e.contains("no merge request"), "{e}");
        let gl = |k: &str| match k {
            "CI_MERGE_REQUEST_IID" => Some("7".to_string()),
            "CI_API_V4_URL" => Some("https://gitlab.example/api/v4".to_string()),
            "CI_PROJECT_ID" => Some("42".to_string()),
            _ => None,
        };
        let e = gitlab_target(&args, &gl).err().unwrap().to_string();
        assert!(e.contains("GATE_GITLAB_TOKEN") && e.contains("CI_JOB_TOKEN"), "{e}");
    }
}
