//! Releasing a job a platform holds (runner-free waiting): where the job is, what the
//! pipeline asks for, and what each outcome makes the server call there. Pure: the
//! calls themselves are in `forge`, queued by `service::release`.

use serde::{Deserialize, Serialize};

use crate::core::decide::Status;

/// The outbox channel of releases; each row's recipient is the [`Release::kind`].
pub const CHANNEL: &str = "release";

/// The longest job name or input id asked for (GitLab's job names are at most 255).
pub const MAX_NAME: usize = 255;

/// The longest comment a platform is sent (GitHub's status reports are at most 1,024).
pub const MAX_COMMENT: usize = 1024;

/// Where a platform holds the job this request gates, and what the server calls
/// there on the outcome. Signed into the `created` event; never changed afterwards.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Release {
    GithubDeployment {
        repository: String,
        installation_id: u64,
        environment: String,
        run_id: String,
        callback_url: String,
    },
    /// A manual job of a GitLab pipeline, played on approval.
    GitlabPlay {
        /// The project's id (or path) as the API takes it.
        project: String,
        /// The pipeline's id.
        pipeline: String,
        /// The manual job's name.
        job: String,
    },
    JenkinsInput {
        build_url: String,
        input: String,
        /// The build's `BUILD_TAG` (`jenkins-JOB-NUMBER`, the request's `run_id`): the run
        /// a consume must come from. Empty in requests opened before it was kept; those
        /// are consumed from their build URL.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        build_tag: String,
    },
}

/// What the pipeline asks for in `release` of a create body: which job the platform
/// holds. The server fills in where (project, pipeline, build) from what it can trust.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReleaseAsk {
    /// `{"gitlab_play": {"job": NAME}}`.
    GitlabPlay(GitlabPlayAsk),
    /// `{"jenkins_input": {"input": ID}}`.
    JenkinsInput(JenkinsInputAsk),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GitlabPlayAsk {
    pub job: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JenkinsInputAsk {
    pub input: String,
}

impl ReleaseAsk {
    /// The field and what is wrong with it, if the ask cannot be used.
    pub fn check(&self) -> Result<(), String> {
        let (field, value) = match self {
            ReleaseAsk::GitlabPlay(a) => ("release.gitlab_play.job", &a.job),
            ReleaseAsk::JenkinsInput(a) => ("release.jenkins_input.input", &a.input),
        };
        check_name(field, value)
    }
}

/// A job name or input id: not blank, at most [`MAX_NAME`] characters, no control characters.
pub fn check_name(field: &str, value: &str) -> Result<(), String> {
    if crate::core::text::is_blank(value) {
        return Err(format!("{field} is required"));
    }
    if value.chars().count() > MAX_NAME {
        return Err(format!("{field}: at most {MAX_NAME} characters"));
    }
    if let Some(m) = crate::core::text::control_message(value, false) {
        return Err(format!("{field}: {m}"));
    }
    Ok(())
}

impl Release {
    /// The outbox recipient: `github_deployment`, `gitlab_play` or `jenkins_input`.
    pub fn kind(&self) -> &'static str {
        match self {
            Release::GithubDeployment { .. } => "github_deployment",
            Release::GitlabPlay { .. } => "gitlab_play",
            Release::JenkinsInput { .. } => "jenkins_input",
        }
    }

    /// Whether the outcome `status` makes the server call the platform. A GitLab job is
    /// only ever played: after a deny, expiry or cancel it stays unplayed (nothing to
    /// call). GitHub and Jenkins are told every outcome (approve or reject, proceed or abort).
    pub fn acts_on(&self, status: Status) -> bool {
        match self {
            Release::GitlabPlay { .. } => status == Status::Approved,
            Release::GithubDeployment { .. } | Release::JenkinsInput { .. } => state(status).is_some(),
        }
    }

    /// The pipeline run the release names: only a consume from it may use the approval.
    pub fn run(&self) -> &str {
        match self {
            Release::GithubDeployment { run_id, .. } => run_id,
            Release::GitlabPlay { pipeline, .. } => pipeline,
            Release::JenkinsInput { build_tag, .. } if !build_tag.is_empty() => build_tag,
            Release::JenkinsInput { build_url, .. } => build_url,
        }
    }
}

/// `approved` for an approval, `rejected` for any other outcome, none while pending
/// (or once consumed: using an approval is not an outcome).
pub fn state(status: Status) -> Option<&'static str> {
    match status {
        Status::Approved => Some("approved"),
        Status::Denied | Status::Expired | Status::Canceled => Some("rejected"),
        Status::Pending | Status::Consumed => None,
    }
}

/// What the platform is told of an outcome: `jitgate request r_1 approved by alice:
/// reason — URL`, at most [`MAX_COMMENT`] characters (the link is kept whole).
pub fn comment(id: &str, status: Status, decided_by: Option<&str>, reason: Option<&str>, url: &str) -> String {
    let mut head = format!("jitgate request {id} {}", status.as_str());
    if let Some(by) = decided_by.filter(|b| !b.is_empty()) {
        head.push_str(&format!(" by {by}"));
    }
    if let Some(r) = reason.filter(|r| !r.is_empty()) {
        head.push_str(&format!(": {r}"));
    }
    let tail = format!(" — {url}");
    let room = MAX_COMMENT.saturating_sub(tail.chars().count());
    if head.chars().count() > room {
        head = head.chars().take(room.saturating_sub(1)).collect();
        head.push('…');
    }
    head + &tail
}

/// `POST /api/v1/run/consume`: the deploy job of a GitHub deployment protection rule
/// uses the approval its run was given.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeForRun {
    /// The environment, where the OIDC token names none (a verified claim wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// One queued release, as the outbox stores it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Payload {
    pub release: Release,
    /// The event that queued it: an outcome (`approved`, `denied`, …) or a status report.
    pub event: String,
    /// `approved` or `rejected` for an outcome; none for a status report.
    pub state: Option<String>,
    pub comment: String,
}

/// The outbox key of a release row: queuing it twice queues it once.
pub fn key(id: &str, event: &str) -> String {
    format!("{id}:release:{event}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_are_externally_tagged_and_strict() {
        let a: ReleaseAsk = serde_json::from_str(r#"{"gitlab_play": {"job": "deploy"}}"#).unwrap();
        assert_eq!(a, ReleaseAsk::GitlabPlay(GitlabPlayAsk { job: "deploy".into() }));
        let e = serde_json::from_str::<ReleaseAsk>(r#"{"gitlab_play": {"job": "d", "project": "1"}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `project`"), "{e}");
        assert!(serde_json::from_str::<ReleaseAsk>(r#"{"github_deployment": {}}"#).is_err());
        let blank = ReleaseAsk::GitlabPlay(GitlabPlayAsk { job: " ".into() });
        assert_eq!(blank.check().unwrap_err(), "release.gitlab_play.job is required");
    }

    #[test]
    fn a_gitlab_job_is_played_on_approval_only() {
        let r = Release::GitlabPlay {
            project: "7".into(),
            pipeline: "99".into(),
            job: "deploy".into(),
        };
        assert!(r.acts_on(Status::Approved));
        for s in [
            Status::Denied,
            Status::Expired,
            Status::Canceled,
            Status::Consumed,
            Status::Pending,
        ] {
            assert!(!r.acts_on(s), "{s:?}");
        }
        let j = Release::JenkinsInput {
            build_url: "https://ci/job/a/1/".into(),
            input: "gate".into(),
            build_tag: "jenkins-a-1".into(),
        };
        assert!(j.acts_on(Status::Denied) && j.acts_on(Status::Approved) && !j.acts_on(Status::Consumed));
        // A consume comes from the build's BUILD_TAG; a request opened before the tag
        // was kept parses, and names its build by URL.
        assert_eq!(j.run(), "jenkins-a-1");
        let old: Release = serde_json::from_value(serde_json::json!({
            "kind": "jenkins_input", "build_url": "https://ci/job/a/1/", "input": "gate",
        }))
        .unwrap();
        assert_eq!(old.run(), "https://ci/job/a/1/");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "gitlab_play");
        assert_eq!(serde_json::from_value::<Release>(v).unwrap(), r);
    }

    #[test]
    fn comments_name_the_outcome_and_keep_the_link() {
        let c = comment(
            "r_1",
            Status::Denied,
            Some("bob"),
            Some("not today"),
            "https://g/requests/r_1",
        );
        assert_eq!(
            c,
            "jitgate request r_1 denied by bob: not today — https://g/requests/r_1"
        );
        let long = "x".repeat(5000);
        let c = comment("r_1", Status::Approved, None, Some(&long), "https://g/r");
        assert_eq!(c.chars().count(), MAX_COMMENT);
        assert!(c.ends_with("… — https://g/r"));
        assert_eq!(state(Status::Expired), Some("rejected"));
    }
}
