//! `gate request --github-check` / `--gitlab-note`: the real gate against a real server,
//! with wiremock standing in for the GitHub and GitLab APIs. The side calls report the
//! outcome and never change the gate's exit code.

use crate::helpers::*;
use serde_json::{Value, json};
use tokio::process::Command;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const GH_TOKEN: &str = "ghs_test_token";
const GL_TOKEN: &str = "glpat-test-token";
const CHECK_RUNS: &str = "/repos/acme/web/check-runs";
const NOTES: &str = "/api/v4/projects/42/merge_requests/7/notes";

/// `gate request` as a GitHub Actions step with `--github-check`, GitHub at `api`.
/// ACTIONS_ID_TOKEN_REQUEST_URL stays unset: no OIDC token here.
fn github_gate(s: &TestApp, api: &str) -> Command {
    let mut c = s.gate("ci");
    c.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", "acme/web")
        .env("GITHUB_SHA", COMMIT)
        .env("GITHUB_REF", "refs/heads/main")
        .env("GITHUB_ACTOR", "erin-gh")
        .env("GITHUB_API_URL", api)
        .env("GITHUB_TOKEN", GH_TOKEN)
        .env("GATE_GITHUB_CHECK", "true");
    c
}

/// `gate request` as a GitLab CI job of merge request !7 with `--gitlab-note`.
fn gitlab_gate(s: &TestApp, api: &str) -> Command {
    let mut c = s.gate("ci");
    c.env("GITLAB_CI", "true")
        .env("CI_PROJECT_PATH", "acme/web")
        .env("CI_PROJECT_ID", "42")
        .env("CI_MERGE_REQUEST_IID", "7")
        .env("CI_COMMIT_SHA", COMMIT)
        .env("CI_COMMIT_REF_NAME", "main")
        .env("GITLAB_USER_LOGIN", "erin")
        .env("CI_API_V4_URL", format!("{api}/api/v4"))
        .env("GATE_GITLAB_TOKEN", GL_TOKEN)
        .env("GATE_GITLAB_NOTE", "true");
    c
}

/// What GitHub answers to a created check run (trimmed from the documented example).
fn check_run_created(body: &Value) -> Value {
    json!({
        "id": 4,
        "node_id": "MDg6Q2hlY2tSdW40",
        "head_sha": body["head_sha"],
        "external_id": body["external_id"],
        "url": "https://api.github.com/repos/acme/web/check-runs/4",
        "html_url": "https://github.com/acme/web/runs/4",
        "details_url": body["details_url"],
        "status": "completed",
        "conclusion": body["conclusion"],
        "started_at": "2024-01-01T00:00:00Z",
        "completed_at": "2024-01-01T00:00:00Z",
        "output": {
            "title": body["output"]["title"],
            "summary": body["output"]["summary"],
            "text": null,
            "annotations_count": 0,
            "annotations_url": "https://api.github.com/repos/acme/web/check-runs/4/annotations"
        },
        "name": body["name"],
        "check_suite": { "id": 5 },
        "app": null,
        "pull_requests": []
    })
}

async fn mock_github(status: u16) -> MockServer {
    let gh = MockServer::start().await;
    let m = Mock::given(method("POST"))
        .and(path(CHECK_RUNS))
        .and(header("authorization", format!("Bearer {GH_TOKEN}").as_str()));
    let m = if status == 201 {
        m.respond_with(|r: &Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            ResponseTemplate::new(201).set_body_json(check_run_created(&body))
        })
    } else if status == 403 {
        m.respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run"
        })))
    } else {
        m.respond_with(ResponseTemplate::new(status).set_body_string("<html>Server Error</html>"))
    };
    m.expect(1).mount(&gh).await;
    gh
}

async fn mock_gitlab(status: u16) -> MockServer {
    let gl = MockServer::start().await;
    let m = Mock::given(method("POST"))
        .and(path(NOTES))
        .and(header("PRIVATE-TOKEN", GL_TOKEN));
    let m = match status {
        201 => m.respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": 3001, "body": "…", "noteable_iid": 7})),
        ),
        403 => m.respond_with(ResponseTemplate::new(403).set_body_json(json!({"message": "403 Forbidden"}))),
        _ => {
            m.respond_with(ResponseTemplate::new(status).set_body_json(json!({"message": "500 Internal Server Error"})))
        }
    };
    m.expect(1).mount(&gl).await;
    gl
}

/// The one request the mock received, as JSON.
async fn only_json(mock: &MockServer) -> (Request, Value) {
    let got = mock.received_requests().await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let body = serde_json::from_slice(&got[0].body).unwrap();
    (got[0].clone(), body)
}

/// The `body` field of the one form-encoded note GitLab received.
async fn only_note(mock: &MockServer) -> String {
    let got = mock.received_requests().await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let ct = got[0].headers.get("content-type").unwrap().to_str().unwrap();
    assert_eq!(ct, "application/x-www-form-urlencoded");
    url::form_urlencoded::parse(&got[0].body)
        .find(|(k, _)| k == "body")
        .map(|(_, v)| v.into_owned())
        .expect("a body field")
}

#[tokio::test]
async fn github_check_run_on_an_approval() {
    let s = TestApp::spawn().await;
    let gh = mock_github(201).await;
    let w = s
        .open_with(github_gate(&s, &gh.uri()), &["--environment", "production"])
        .await;
    s.client("bob")
        .approve(&w.id, Some("change CHG-42 looks good".into()))
        .await
        .unwrap();
    let (id, url) = (w.id.clone(), w.opened["url"].as_str().unwrap().to_string());
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    assert_eq!(
        outcome(&events)["decision"],
        "approved",
        "the outcome stays the last line"
    );
    assert!(
        err.contains("GitHub check run `jitgate / production` (success) created")
            && err.contains("https://github.com/acme/web/runs/4"),
        "{err}"
    );
    gh.verify().await;

    let (req, body) = only_json(&gh).await;
    assert_eq!(req.headers.get("authorization").unwrap(), &format!("Bearer {GH_TOKEN}"));
    assert_eq!(body["name"], "jitgate / production");
    assert_eq!(body["head_sha"], COMMIT);
    assert_eq!(body["status"], "completed");
    assert_eq!(body["conclusion"], "success");
    assert_eq!(body["details_url"], url.as_str());
    assert_eq!(body["external_id"], id.as_str());
    assert_eq!(body["output"]["title"], "Approved: deploy to production");
    let summary = body["output"]["summary"].as_str().unwrap();
    for want in [
        "Approved",
        &format!("[`{id}`]({url})"),
        "`bob`",
        "approved",
        "`change CHG-42 looks good`",
        "- **Rule:** `production`",
    ] {
        assert!(summary.contains(want), "{want:?} missing from {summary}");
    }
}

#[tokio::test]
async fn github_check_run_on_a_denial_and_a_cancel() {
    let s = TestApp::spawn().await;
    let gh = mock_github(201).await;
    // `qa` matches "everything else": denied by policy.
    let w = s.open_with(github_gate(&s, &gh.uri()), &["--environment", "qa"]).await;
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 1, "{events:?} {err}");
    gh.verify().await;
    let (_, body) = only_json(&gh).await;
    assert_eq!(body["conclusion"], "failure");
    assert_eq!(body["name"], "jitgate / qa");
    assert_eq!(body["output"]["title"], "Denied: deploy to qa");
    let summary = body["output"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("Denied") && summary.contains("everything else"),
        "{summary}"
    );

    // Withdrawn while waiting: `cancelled`.
    let gh = mock_github(201).await;
    let w = s
        .open_with(github_gate(&s, &gh.uri()), &["--environment", "production"])
        .await;
    s.client("ci")
        .cancel(&w.id, Some("release postponed".into()))
        .await
        .unwrap();
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 1, "{events:?} {err}");
    assert_eq!(outcome(&events)["decision"], "canceled");
    gh.verify().await;
    let (_, body) = only_json(&gh).await;
    assert_eq!(body["conclusion"], "cancelled");
}

#[tokio::test]
async fn github_refusing_the_check_run_never_changes_the_exit_code() {
    let s = TestApp::spawn().await;
    // 403 (the token lacks `checks: write`) on an approval: still exit 0.
    let gh = mock_github(403).await;
    let w = s
        .open_with(github_gate(&s, &gh.uri()), &["--environment", "staging"])
        .await;
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    assert_eq!(outcome(&events)["decision"], "approved");
    assert!(
        err.contains(
            "GitHub answered 403 creating the check run: Resource not accessible by integration — add `permissions: checks: write`"
        ),
        "{err}"
    );
    gh.verify().await;

    // 500 on a denial: still exit 1.
    let gh = mock_github(500).await;
    let w = s.open_with(github_gate(&s, &gh.uri()), &["--environment", "qa"]).await;
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 1, "{events:?} {err}");
    assert_eq!(outcome(&events)["decision"], "denied");
    assert!(
        err.contains("GitHub answered 500 creating the check run: Internal Server Error (the gate's outcome stands)"),
        "{err}"
    );
    assert!(err.contains("the gate's outcome stands"), "{err}");
    gh.verify().await;
}

#[tokio::test]
async fn gitlab_note_on_the_merge_request() {
    let s = TestApp::spawn().await;
    let gl = mock_gitlab(201).await;
    let w = s
        .open_with(gitlab_gate(&s, &gl.uri()), &["--environment", "production"])
        .await;
    s.client("carol").approve(&w.id, None).await.unwrap();
    let (id, url) = (w.id.clone(), w.opened["url"].as_str().unwrap().to_string());
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    assert!(err.contains("GitLab note 3001 posted on merge request !7"), "{err}");
    gl.verify().await;
    let note = only_note(&gl).await;
    for want in [
        "Approved: deploy to production",
        &format!("[`{id}`]({url})"),
        "`carol` approved",
        "`acme/web` at `4b825dc642cb6eb9a060e54bf8d69288fbee4904`",
    ] {
        assert!(note.contains(want), "{want:?} missing from {note}");
    }

    // A denial is noted too.
    let gl = mock_gitlab(201).await;
    let w = s
        .open_with(gitlab_gate(&s, &gl.uri()), &["--environment", "production"])
        .await;
    s.client("bob")
        .deny(&w.id, Some("no change ticket".into()))
        .await
        .unwrap();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 1, "{err}");
    gl.verify().await;
    let note = only_note(&gl).await;
    assert!(note.contains("Denied: deploy to production"), "{note}");
    assert!(note.contains("- **Why:** `no change ticket`"), "{note}");
    assert!(note.contains("`bob` denied"), "{note}");
}

#[tokio::test]
async fn gitlab_refusing_the_note_never_changes_the_exit_code() {
    let s = TestApp::spawn().await;
    // 403 on a denial: still exit 1, and the message says what the token needs.
    let gl = mock_gitlab(403).await;
    let w = s.open_with(gitlab_gate(&s, &gl.uri()), &["--environment", "qa"]).await;
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("GitLab answered 403 posting the merge request note: 403 Forbidden")
            && err.contains("`api` scope"),
        "{err}"
    );
    gl.verify().await;

    // 500 on an approval: still exit 0.
    let gl = mock_gitlab(500).await;
    let w = s
        .open_with(gitlab_gate(&s, &gl.uri()), &["--environment", "staging"])
        .await;
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("GitLab answered 500 posting the merge request note"),
        "{err}"
    );
    gl.verify().await;
}

#[tokio::test]
async fn gitlab_without_a_merge_request_is_skipped() {
    let s = TestApp::spawn().await;
    let gl = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&gl)
        .await;
    let mut cmd = gitlab_gate(&s, &gl.uri());
    cmd.env_remove("CI_MERGE_REQUEST_IID");
    let w = s.open_with(cmd, &["--environment", "staging"]).await;
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("--gitlab-note skipped: this pipeline has no merge request (CI_MERGE_REQUEST_IID is unset)"),
        "{err}"
    );
    gl.verify().await;
}
