//! Waiting without a runner on GitLab: `gate request --no-wait --gitlab-play deploy` in a
//! short gate job, the server playing the manual job on approval (never otherwise)
//! through the outbox, and `gate consume` as the held job's first step. GitLab is a
//! wiremock fake answering with the shapes of GitLab's Jobs API documentation
//! (`GET /projects/:id/pipelines/:pipeline_id/jobs`, `POST /projects/:id/jobs/:job_id/play`).

use std::sync::{Arc, Mutex};

use crate::helpers::*;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const DEPLOY_JOB: u64 = 7002;
const TOKEN_ENV: &str = "JITGATE_TEST_GITLAB_TOKEN";
const GITLAB_TOKEN: &str = "glpat-test-release";

/// What the fake GitLab knows: whether the deploy job was played, how many play calls it
/// got, and whether the first play's answer is lost (a 502 after the job started).
#[derive(Default)]
struct Pipeline {
    played: bool,
    play_calls: usize,
    lose_first_answer: bool,
}

#[derive(Clone)]
struct FakeGitLab(Arc<Mutex<Pipeline>>);

/// A job as GitLab's Jobs API lists it (the documented fields, trimmed).
fn job(id: u64, name: &str, stage: &str, status: &str) -> Value {
    json!({
        "id": id, "name": name, "stage": stage, "status": status, "ref": "main", "tag": false,
        "allow_failure": false, "created_at": "2026-12-03T10:00:00.000Z", "started_at": null,
        "finished_at": null, "duration": null, "queued_duration": null, "when": "manual",
        "user": {"id": 5, "username": "erin", "name": "Erin", "state": "active"},
        "commit": {"id": COMMIT, "short_id": &COMMIT[..8], "title": "pipeline"},
        "pipeline": {"id": 500, "project_id": 42, "ref": "main", "sha": COMMIT, "status": "manual"},
        "web_url": format!("https://gitlab.example/acme/web/-/jobs/{id}"),
        "artifacts": [], "runner": null, "tag_list": []
    })
}

impl Respond for FakeGitLab {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let auth = r.headers.get("private-token").and_then(|v| v.to_str().ok());
        if auth != Some(GITLAB_TOKEN) {
            return ResponseTemplate::new(401).set_body_json(json!({"message": "401 Unauthorized"}));
        }
        let mut p = self.0.lock().unwrap();
        let path = r.url.path();
        let deploy_status = if p.played { "pending" } else { "manual" };
        if r.method.as_str() == "GET" && path == "/api/v4/projects/acme%2Fweb/pipelines/500/jobs" {
            let manual_only = r.url.query_pairs().any(|(k, v)| k == "scope[]" && v == "manual");
            let page = r
                .url
                .query_pairs()
                .find(|(k, _)| k == "page")
                .map(|(_, v)| v.to_string());
            if manual_only {
                let jobs = if p.played {
                    vec![]
                } else {
                    vec![job(DEPLOY_JOB, "deploy", "deploy", "manual")]
                };
                return ResponseTemplate::new(200).set_body_json(json!(jobs));
            }
            // Every job: one a page, so the server must follow `x-next-page`.
            return match page.as_deref() {
                Some("2") => ResponseTemplate::new(200)
                    .insert_header("x-page", "2")
                    .insert_header("x-next-page", "")
                    .set_body_json(json!([job(DEPLOY_JOB, "deploy", "deploy", deploy_status)])),
                _ => ResponseTemplate::new(200)
                    .insert_header("x-page", "1")
                    .insert_header("x-next-page", "2")
                    .set_body_json(json!([job(7001, "approve", "approve", "success")])),
            };
        }
        if r.method.as_str() == "POST" && path == format!("/api/v4/projects/acme%2Fweb/jobs/{DEPLOY_JOB}/play") {
            p.play_calls += 1;
            if p.played {
                return ResponseTemplate::new(400)
                    .set_body_json(json!({"message": "400 Bad request - Unplayable Job"}));
            }
            p.played = true;
            if p.lose_first_answer && p.play_calls == 1 {
                return ResponseTemplate::new(502).set_body_string("bad gateway");
            }
            return ResponseTemplate::new(200).set_body_json(job(DEPLOY_JOB, "deploy", "deploy", "pending"));
        }
        ResponseTemplate::new(404).set_body_json(json!({"message": "404 Not found"}))
    }
}

async fn fake(lose_first_answer: bool) -> (MockServer, FakeGitLab) {
    let gl = FakeGitLab(Arc::new(Mutex::new(Pipeline {
        lose_first_answer,
        ..Default::default()
    })));
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(gl.clone())
        .mount(&server)
        .await;
    (server, gl)
}

/// A server that plays GitLab jobs on `gl`, with fast retries.
async fn start(db: Db, gl: &MockServer) -> TestApp {
    TestApp::builder()
        .backend(db)
        .rule(ONE_SRE)
        .config_extra(&format!(
            "forge:\n  gitlab:\n    api_url: {}/api/v4\n    token_env: {TOKEN_ENV}\n    requesters: false\nnotify:\n  retry_base: 50ms\n  retry_max: 200ms\n  timeout: 2s\n",
            gl.uri()
        ))
        .env(TOKEN_ENV, GITLAB_TOKEN)
        .spawn()
        .await
}

/// `gate request --no-wait --gitlab-play deploy` in GitLab job `job` of pipeline 500.
async fn gate_job(s: &TestApp, env: &str, extra: &[&str]) -> (Out, String) {
    let dotenv = s.dir.path().join(format!("gate-{}.env", uuid::Uuid::new_v4().simple()));
    let mut c = s.gate("ci");
    c.envs(gitlab_vars("7001"))
        .env("GATE_DOTENV_FILE", &dotenv)
        .args(["request", "--environment", env, "--no-wait"])
        .args(extra);
    let out = Out::of(c).await;
    (out, std::fs::read_to_string(&dotenv).unwrap_or_default())
}

/// `gate consume ID` as the first step of GitLab job `job` of pipeline `pipeline`.
async fn consume(s: &TestApp, id: &str, pipeline: &str) -> (Out, std::path::PathBuf) {
    let record = s
        .dir
        .path()
        .join(format!("record-{}.json", uuid::Uuid::new_v4().simple()));
    let mut c = s.gate("ci");
    c.envs(gitlab_vars("7002"))
        .env("CI_PIPELINE_ID", pipeline)
        .env("GATE_REQUEST_ID", id)
        .env("GATE_DOTENV_FILE", s.dir.path().join("consume.env"))
        .arg("consume")
        .arg("--record-file")
        .arg(&record);
    (Out::of(c).await, record)
}

fn request_id(dotenv: &str) -> String {
    dotenv
        .lines()
        .find_map(|l| l.strip_prefix("GATE_REQUEST_ID="))
        .unwrap_or_else(|| panic!("no GATE_REQUEST_ID in {dotenv:?}"))
        .to_string()
}

async fn plays(gl: &MockServer) -> usize {
    gl.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/play"))
        .count()
}

fn release_rows(rows: &[jitgate::core::api::NotificationView]) -> Vec<&jitgate::core::api::NotificationView> {
    rows.iter().filter(|r| r.channel == "release").collect()
}

#[tokio::test]
async fn an_approval_plays_the_held_job_once_and_only_its_pipeline_consumes_it() {
    for db in backends() {
        let (gl, state) = fake(false).await;
        let s = start(db, &gl).await;
        let (out, dotenv) = gate_job(&s, "production", &["--gitlab-play", "deploy"]).await;
        assert_eq!(out.code, 0, "--no-wait exits 0 once the request is open: {out:?}");
        assert!(dotenv.contains("GATE_DECISION=pending\n"), "{dotenv}");
        let id = request_id(&dotenv);
        assert!(out.stdout.contains(&format!("GATE_REQUEST_ID={id}")), "{out:?}");
        let v = s.client("ci").get(&id).await.unwrap();
        assert_eq!(
            serde_json::to_value(&v.release).unwrap(),
            json!({"kind": "gitlab_play", "project": "acme/web", "pipeline": "500", "job": "deploy"})
        );
        // Signed where it was asked: the `created` event carries it.
        let (_, events) = s
            .http()
            .api("GET", &format!("/requests/{id}/audit"), &token("ci"), None)
            .await;
        assert_eq!(events[0]["data"]["release"]["job"], "deploy", "{events}");
        assert_eq!(plays(&gl).await, 0, "nothing is played while pending");

        s.client("bob").approve(&id, Some("go".into())).await.unwrap();
        let rows = outbox_until(&s, &id, "the play delivered", |rows| {
            release_rows(rows).iter().any(|r| r.state == "delivered")
        })
        .await;
        let rel = release_rows(&rows);
        assert_eq!(rel.len(), 1, "{rows:#?}");
        assert_eq!(rel[0].recipient, "gitlab_play");
        assert_eq!(rel[0].delivery, format!("{id}:release:approved"));
        assert_eq!(rel[0].payload["state"], "approved");
        assert!(state.0.lock().unwrap().played);
        assert_eq!(plays(&gl).await, 1);

        // Someone presses play in another pipeline: its consume is refused.
        let (other, _) = consume(&s, &id, "501").await;
        assert_eq!(other.code, 1, "{other:?}");
        assert!(
            other.stderr.contains("cannot be consumed from run 501") && other.stderr.contains("other_run"),
            "{other:?}"
        );
        assert_eq!(
            s.client("ci").get(&id).await.unwrap().status,
            jitgate::core::decide::Status::Approved
        );
        // The held job of this pipeline consumes it and keeps the verified record.
        let (ok, record) = consume(&s, &id, "500").await;
        assert_eq!(ok.code, 0, "{ok:?}");
        assert!(
            ok.stdout.contains(&format!("jitgate: request {id} APPROVED by bob")),
            "{ok:?}"
        );
        let keys = format!("{}/api/v1/keys", s.url);
        let verified = s
            .run(
                "ci",
                &["verify", record.to_str().unwrap(), "--key", &keys, "--commit", COMMIT],
            )
            .await;
        assert_eq!(verified.code, 0, "{verified:?}");
        let env = std::fs::read_to_string(s.dir.path().join("consume.env")).unwrap();
        assert!(env.contains("GATE_DECISION=approved\n"), "{env}");
        // Single use: the second press of play gets nothing.
        let (again, _) = consume(&s, &id, "500").await;
        assert_eq!(again.code, 1, "{again:?}");
        assert!(again.stdout.contains("ALREADY-USED"), "{again:?}");
        assert!(
            again.stdout.contains("cannot consume: the request is consumed"),
            "{again:?}"
        );
        assert_eq!(plays(&gl).await, 1);
    }
}

#[tokio::test]
async fn a_denied_request_is_never_played_and_its_consume_exits_1() {
    let (gl, state) = fake(false).await;
    let s = start(Db::Sqlite, &gl).await;
    let (out, dotenv) = gate_job(&s, "production", &["--gitlab-play", "deploy"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let id = request_id(&dotenv);
    s.client("bob").deny(&id, Some("not today".into())).await.unwrap();
    // The deny's transaction queued no release: nothing can ever play the job.
    let rows = outbox_until(&s, &id, "the request's outbox", |_| true).await;
    assert!(release_rows(&rows).is_empty(), "{rows:#?}");
    let (no, record) = consume(&s, &id, "500").await;
    assert_eq!(no.code, 1, "{no:?}");
    assert!(
        no.stdout.contains(&format!("jitgate: request {id} DENIED by bob")),
        "{no:?}"
    );
    assert!(no.stdout.contains("cannot consume: the request is denied"), "{no:?}");
    assert!(record.exists(), "the denial's record is kept too");
    assert_eq!(plays(&gl).await, 0);
    assert!(!state.0.lock().unwrap().played);
}

#[tokio::test]
async fn a_retried_delivery_does_not_play_twice() {
    // The first play starts the job, but its answer is lost: the retry sees the job is no
    // longer manual and counts it as done.
    let (gl, state) = fake(true).await;
    let s = start(Db::Sqlite, &gl).await;
    let (out, dotenv) = gate_job(&s, "production", &["--gitlab-play", "deploy"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let id = request_id(&dotenv);
    s.client("bob").approve(&id, None).await.unwrap();
    let rows = outbox_until(&s, &id, "the play delivered", |rows| {
        release_rows(rows).iter().any(|r| r.state == "delivered")
    })
    .await;
    let rel = release_rows(&rows);
    assert_eq!(rel[0].attempts, 2, "{rows:#?}");
    assert_eq!(state.0.lock().unwrap().play_calls, 1, "played once, never again");
    assert_eq!(plays(&gl).await, 1);
}

#[tokio::test]
async fn no_wait_exits_1_on_an_at_once_deny_and_play_needs_no_wait() {
    let (gl, _) = fake(false).await;
    let s = start(Db::Sqlite, &gl).await;
    // `qa` falls to the catch-all deny: the request is decided as it opens.
    let (out, dotenv) = gate_job(&s, "qa", &["--gitlab-play", "deploy"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(dotenv.contains("GATE_DECISION=denied\n"), "{dotenv}");
    assert!(
        out.stdout.contains("DENIED by policy rule `everything else`"),
        "{out:?}"
    );
    let id = request_id(&dotenv);
    let rows = outbox_until(&s, &id, "the request's outbox", |_| true).await;
    assert!(release_rows(&rows).is_empty(), "{rows:#?}");
    assert_eq!(plays(&gl).await, 0);

    // --gitlab-play without --no-wait is a usage error, before anything is opened.
    let mut c = s.gate("ci");
    c.envs(gitlab_vars("7001"))
        .args(["request", "--environment", "production", "--gitlab-play", "deploy"]);
    let o = Out::of(c).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--no-wait"), "{o:?}");
    // Outside GitLab there is no pipeline to play a job in: 422 `invalid_release`.
    let mut c = s.gate("ci");
    c.args([
        "request",
        "--environment",
        "production",
        "--actor",
        "erin",
        "--no-wait",
        "--gitlab-play",
        "deploy",
    ]);
    let o = Out::of(c).await;
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("invalid_release") && o.stderr.contains("needs a GitLab pipeline"),
        "{o:?}"
    );
    assert!(s.client("ci").list("pending").await.unwrap().is_empty());
}

/// The pipeline gitlab-ci-local runs (its CI_PIPELINE_ID is 1000, the project acme/web):
/// the gate job and the held deploy job, as GitLab's Jobs API lists them.
async fn fake_for_gitlab_ci_local() -> MockServer {
    use wiremock::matchers::{method, path};
    const DEPLOY: u64 = 9002;
    let listed = |status: &str| {
        let mut deploy = job(DEPLOY, "deploy-prod", "deploy", status);
        deploy["pipeline"]["id"] = json!(1000);
        json!([job(9001, "approve-prod", "approve", "success"), deploy])
    };
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/projects/acme%2Fweb/pipelines/1000/jobs"))
        .respond_with(ResponseTemplate::new(200).set_body_json(listed("manual")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/api/v4/projects/acme%2Fweb/jobs/{DEPLOY}/play")))
        .respond_with(ResponseTemplate::new(200).set_body_json(job(DEPLOY, "deploy-prod", "deploy", "pending")))
        .mount(&server)
        .await;
    server
}

/// Runs one job of `repo` to its end with gitlab-ci-local; whether it passed, and its log.
async fn gitlab_ci_local(repo: &std::path::Path, home: &std::path::Path, s: &TestApp, job: &str) -> (bool, String) {
    let out = crate::pipelines::GclJob::command(repo, home, s, job)
        .output()
        .await
        .expect("run gitlab-ci-local");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

/// The template's `.jitgate-no-wait` and `.jitgate-consume` jobs, run by gitlab-ci-local:
/// the gate job opens the request and ends; a press of play before the approval gets
/// nowhere; the approval plays the deploy job on the (fake) GitLab, and the deploy job's
/// `gate consume` uses it, from that pipeline, and keeps the record.
#[tokio::test]
async fn the_template_s_no_wait_jobs_in_gitlab_ci_local() {
    use crate::pipelines::{GclJob, gitlab_repo, have};
    if !have("gitlab-ci-local") || !have("rsync") {
        skip_or_fail(
            "the_template_s_no_wait_jobs_in_gitlab_ci_local",
            "gitlab-ci-local or rsync is not installed (npm install -g gitlab-ci-local@4.62.0; apt install rsync)",
        );
        return;
    }
    let gl = fake_for_gitlab_ci_local().await;
    let s = start(Db::Sqlite, &gl).await;
    let tmp = tempfile::tempdir().unwrap();
    let (repo, home, _) = gitlab_repo(
        tmp.path(),
        "include:
  - local: .gitlab-ci-template.yml

stages: [approve, deploy]

approve-prod:
  extends: .jitgate-no-wait
  stage: approve
  variables:
    GITLAB_CI: \"true\"   # gitlab-ci-local says false; GitLab says true
    GATE_ENVIRONMENT: production
    GATE_GITLAB_PLAY: deploy-prod

deploy-prod:
  extends: .jitgate-consume
  stage: deploy
  needs: [approve-prod]
  variables:
    GITLAB_CI: \"true\"
  script:
    - echo \"deploying with $GATE_REQUEST_ID\"
",
    );

    // The gate job opens the request and passes at once, its id in the dotenv report.
    let (gate, id) = GclJob::start(&repo, &home, &s, "approve-prod").await;
    let (ok, log) = gate.finish().await;
    assert!(ok, "the no-wait gate job passes while the request is pending:\n{log}");
    assert!(log.contains(&format!("GATE_REQUEST_ID={id}")), "{log}");
    let arts = repo.join(".gitlab-ci-local/artifacts/approve-prod");
    let dotenv = std::fs::read_to_string(arts.join(".gitlab-ci-reports/dotenv/gate.env")).unwrap();
    assert!(dotenv.contains(&format!("GATE_REQUEST_ID={id}\n")), "{dotenv}");
    let v = s.client("bob").get(&id).await.unwrap();
    assert_eq!(v.status.as_str(), "pending");
    let release = serde_json::to_value(v.release.as_ref().unwrap()).unwrap();
    assert_eq!(
        release,
        json!({"kind": "gitlab_play", "project": "acme/web", "pipeline": "1000", "job": "deploy-prod"})
    );

    // Someone presses play before the approval: `gate consume` refuses, the deploy never runs.
    let (ok, log) = gitlab_ci_local(&repo, &home, &s, "deploy-prod").await;
    assert!(!ok, "a deploy job played before the approval must fail:\n{log}");
    assert!(log.contains("still pending"), "{log}");
    assert!(!log.contains("deploying with"), "{log}");

    // Approved: the server plays the deploy job (on the fake), which then uses the approval.
    s.client("bob").approve(&id, Some("go".into())).await.unwrap();
    delivered_row(&s, &id, "the play", |n| n.channel == "release").await;
    let played = gl
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/jobs/9002/play"))
        .count();
    assert_eq!(played, 1, "the deploy job is played once");
    let (ok, log) = gitlab_ci_local(&repo, &home, &s, "deploy-prod").await;
    assert!(ok, "{log}");
    assert!(log.contains(&format!("deploying with {id}")), "{log}");
    let arts = repo.join(".gitlab-ci-local/artifacts/deploy-prod");
    assert!(arts.join("gate-record.json").exists(), "{log}");
    let dotenv = std::fs::read_to_string(arts.join("gate-consume.env")).unwrap();
    assert!(dotenv.contains("GATE_DECISION=approved\n"), "{dotenv}");
    assert_eq!(s.client("bob").get(&id).await.unwrap().status.as_str(), "consumed");
    // A second press gets nothing: the approval was used once.
    let (ok, log) = gitlab_ci_local(&repo, &home, &s, "deploy-prod").await;
    assert!(!ok && !log.contains("deploying with"), "{log}");
}
