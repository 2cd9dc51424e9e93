//! Where the gate runs: GitHub Actions, GitLab CI, Jenkins or any shell. Each platform's
//! standard variables give the request context; flags fill what they lack.

pub mod identity;
pub mod report;

use crate::core::api::Context;
use crate::core::context::full_ref;

/// The platform, from the variables each one always sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Github,
    Gitlab,
    Jenkins,
    Generic,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Github => "github",
            Platform::Gitlab => "gitlab",
            Platform::Jenkins => "jenkins",
            Platform::Generic => "generic",
        }
    }
}

/// Reads variables through `env` so detection is testable without touching the process.
pub fn detect(env: &dyn Fn(&str) -> Option<String>) -> (Platform, Context) {
    let get = |k: &str| env(k).filter(|v| !v.is_empty()).unwrap_or_default();
    let mut c = Context::default();
    let platform = if get("GITHUB_ACTIONS") == "true" {
        c.repository = get("GITHUB_REPOSITORY");
        c.git_ref = get("GITHUB_REF");
        c.commit = get("GITHUB_SHA");
        c.actor = get("GITHUB_ACTOR");
        let trig = get("GITHUB_TRIGGERING_ACTOR");
        if trig != c.actor {
            c.triggering_actor = trig;
        }
        c.run_id = get("GITHUB_RUN_ID");
        c.run_attempt = get("GITHUB_RUN_ATTEMPT");
        c.job = get("GITHUB_JOB");
        let server = env("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
        if !c.repository.is_empty() && !c.run_id.is_empty() {
            c.run_url = format!("{server}/{}/actions/runs/{}", c.repository, c.run_id);
            if !c.run_attempt.is_empty() {
                c.run_url.push_str(&format!("/attempts/{}", c.run_attempt));
            }
        }
        // A pull request's run: comments on that PR may vote (docs/comment-approvals.md).
        if let Some(n) = c
            .git_ref
            .strip_prefix("refs/pull/")
            .and_then(|r| r.strip_suffix("/merge"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            c.labels.insert("pull_request".into(), n.to_string());
        }
        Platform::Github
    } else if get("GITLAB_CI") == "true" {
        c.repository = get("CI_PROJECT_PATH");
        // Full ref names, as GitHub gives them, so one policy `ref:` pattern fits every
        // platform (the server maps GitLab's `ref` + `ref_type` claims the same way).
        c.git_ref = if !get("CI_COMMIT_TAG").is_empty() {
            full_ref(&get("CI_COMMIT_TAG"), "tag")
        } else {
            full_ref(&get("CI_COMMIT_REF_NAME"), "branch")
        };
        c.commit = get("CI_COMMIT_SHA");
        c.actor = get("GITLAB_USER_LOGIN");
        c.commit_author = author_email(&get("CI_COMMIT_AUTHOR"));
        c.run_id = get("CI_PIPELINE_ID");
        c.job = get("CI_JOB_ID");
        c.run_url = get("CI_JOB_URL");
        // A merge request pipeline: notes on that MR may vote (docs/comment-approvals.md).
        if !get("CI_MERGE_REQUEST_IID").is_empty() {
            c.labels.insert("merge_request".into(), get("CI_MERGE_REQUEST_IID"));
        }
        Platform::Gitlab
    } else if !get("JENKINS_URL").is_empty() || get("BUILD_TAG").starts_with("jenkins-") {
        // Multibranch jobs are named `folder/repo/branch` (the branch URL-encoded); the
        // repository is the remote's path where the git plugin says it, else the job's parent.
        c.repository = repo_from_git_url(&get("GIT_URL")).unwrap_or_else(|| {
            let job = get("JOB_NAME");
            let base = get("JOB_BASE_NAME");
            match job.rsplit_once('/') {
                Some((parent, last)) if !get("BRANCH_NAME").is_empty() && (base.is_empty() || last == base) => {
                    parent.to_string()
                }
                _ => job,
            }
        });
        c.git_ref = if !get("TAG_NAME").is_empty() {
            full_ref(&get("TAG_NAME"), "tag")
        } else if !get("CHANGE_ID").is_empty() {
            format!("refs/pull/{}/head", get("CHANGE_ID"))
        } else if !get("BRANCH_NAME").is_empty() {
            full_ref(&get("BRANCH_NAME"), "branch")
        } else {
            // GIT_BRANCH is the remote-tracking name, e.g. `origin/main`.
            let b = get("GIT_BRANCH");
            full_ref(
                b.split_once('/')
                    .filter(|_| !b.starts_with("refs/"))
                    .map_or(b.as_str(), |(_, rest)| rest),
                "branch",
            )
        };
        c.commit = get("GIT_COMMIT");
        c.actor = if get("BUILD_USER_ID").is_empty() {
            get("CHANGE_AUTHOR")
        } else {
            get("BUILD_USER_ID")
        };
        c.commit_author = get("CHANGE_AUTHOR");
        if c.commit_author == c.actor {
            c.commit_author.clear();
        }
        // BUILD_TAG (jenkins-JOB-NUMBER) is the run identity: a retried step replays.
        c.run_id = get("BUILD_TAG");
        c.run_attempt = get("BUILD_NUMBER");
        c.job = get("JOB_NAME");
        c.run_url = get("BUILD_URL");
        for (var, label) in [
            ("CHANGE_ID", "change_id"),
            ("CHANGE_TARGET", "change_target"),
            ("CHANGE_BRANCH", "change_branch"),
            ("CHANGE_URL", "change_url"),
        ] {
            if !get(var).is_empty() {
                c.labels.insert(label.into(), get(var));
            }
        }
        Platform::Jenkins
    } else {
        Platform::Generic
    };
    c.platform = platform.as_str().into();
    (platform, c)
}

/// `https://github.com/acme/web.git` or `git@gitlab.com:acme/web.git` → `acme/web`.
fn repo_from_git_url(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    let path = if let Some((_, rest)) = url.split_once("://") {
        rest.split_once('/')?.1
    } else {
        url.split_once(':')?.1
    };
    let path = path.trim_start_matches('/').trim_end_matches(".git");
    path.contains('/').then(|| path.to_string())
}

/// `Jane Doe <jane@example.com>` → `jane@example.com`.
fn author_email(s: &str) -> String {
    match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(b)) if b > a => s[a + 1..b].to_string(),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn github() {
        let (p, c) = detect(&env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "acme/web"),
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_SHA", "abc1234"),
            ("GITHUB_ACTOR", "dev"),
            ("GITHUB_TRIGGERING_ACTOR", "rerunner"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_JOB", "deploy"),
            ("GITHUB_SERVER_URL", "https://github.example"),
        ]));
        assert_eq!(p, Platform::Github);
        assert_eq!(c.triggering_actor, "rerunner");
        assert_eq!(c.run_url, "https://github.example/acme/web/actions/runs/42/attempts/2");
        assert!(c.labels.is_empty());
        let (_, c) = detect(&env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF", "refs/pull/17/merge"),
        ]));
        assert_eq!(c.labels["pull_request"], "17");
        let (_, c) = detect(&env(&[("GITLAB_CI", "true"), ("CI_MERGE_REQUEST_IID", "5")]));
        assert_eq!(c.labels["merge_request"], "5");
    }

    #[test]
    fn gitlab_and_jenkins_and_generic() {
        let (p, c) = detect(&env(&[
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_PATH", "g/p"),
            ("GITLAB_USER_LOGIN", "u"),
            ("CI_COMMIT_AUTHOR", "Jane <jane@x.io>"),
            ("CI_PIPELINE_ID", "7"),
            ("CI_JOB_ID", "99"),
        ]));
        assert_eq!(
            (p, c.repository.as_str(), c.commit_author.as_str(), c.job.as_str()),
            (Platform::Gitlab, "g/p", "jane@x.io", "99")
        );
        let (p, c) = detect(&env(&[
            ("JENKINS_URL", "http://j"),
            ("JOB_NAME", "web/main"),
            ("BUILD_TAG", "jenkins-web-main-5"),
            ("BRANCH_NAME", "main"),
            ("GIT_BRANCH", "origin/main"),
            ("CHANGE_ID", "12"),
            ("CHANGE_AUTHOR", "pat"),
        ]));
        assert_eq!(p, Platform::Jenkins);
        assert_eq!(
            (c.git_ref.as_str(), c.run_id.as_str(), c.actor.as_str()),
            ("refs/pull/12/head", "jenkins-web-main-5", "pat")
        );
        assert_eq!(c.labels["change_id"], "12");
        // Refs are full names on every platform, so one policy pattern fits all.
        let jenkins_branch = detect(&env(&[("JENKINS_URL", "http://j"), ("GIT_BRANCH", "origin/release/2")])).1;
        assert_eq!(jenkins_branch.git_ref, "refs/heads/release/2");
        let gitlab_tag = detect(&env(&[
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_REF_NAME", "v1"),
            ("CI_COMMIT_TAG", "v1"),
        ]))
        .1;
        assert_eq!(gitlab_tag.git_ref, "refs/tags/v1");
        let gitlab_branch = detect(&env(&[("GITLAB_CI", "true"), ("CI_COMMIT_REF_NAME", "main")])).1;
        assert_eq!(gitlab_branch.git_ref, "refs/heads/main");
        assert_eq!(full_ref("refs/heads/x", "tag"), "refs/heads/x");
        assert_eq!(c.repository, "web", "multibranch: the job's parent");
        let (_, c) = detect(&env(&[
            ("BUILD_TAG", "jenkins-acme-web-PR-12-3"),
            ("JOB_NAME", "acme/web/PR-12"),
            ("JOB_BASE_NAME", "PR-12"),
            ("BRANCH_NAME", "PR-12"),
            ("CHANGE_ID", "12"),
            ("CHANGE_TARGET", "main"),
            ("CHANGE_BRANCH", "feature/x"),
            ("CHANGE_AUTHOR", "pat"),
            ("BUILD_USER_ID", "lee"),
            ("GIT_URL", "git@github.com:acme/web.git"),
        ]));
        assert_eq!(c.repository, "acme/web");
        assert_eq!((c.actor.as_str(), c.commit_author.as_str()), ("lee", "pat"));
        assert_eq!(c.labels["change_target"], "main");
        assert_eq!(c.labels["change_branch"], "feature/x");
        assert_eq!(c.run_id, "jenkins-acme-web-PR-12-3");
        assert_eq!(
            repo_from_git_url("https://github.com/acme/web.git").as_deref(),
            Some("acme/web")
        );
        assert_eq!(
            repo_from_git_url("ssh://git@host:22/g/sub/p.git").as_deref(),
            Some("g/sub/p")
        );
        assert_eq!(repo_from_git_url("nope"), None);
        assert_eq!(detect(&env(&[])).0, Platform::Generic);
    }
}
