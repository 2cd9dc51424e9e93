//! Jenkins holds the build in an `input` step; the server answers it. A wiremock Jenkins
//! that requires basic authentication with the API token (and, in one test, a CSRF
//! crumb, as Jenkins' crumb issuer gives it) sees `proceedEmpty` after an approval and
//! `abort` after a deny; a build outside `jenkins.url` is refused when the request opens.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{COMMIT, Out, TestApp, token};
use crate::support::proxy::until;

const USER: &str = "jitgate-bot";
const API_TOKEN: &str = "11f2c9f9ac5ffcb954158447874613629d";

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{API_TOKEN}"))
    )
}

async fn server(jenkins: &MockServer) -> TestApp {
    TestApp::builder()
        .config_extra(&format!(
            "jenkins:\n  url: {}/\n  user: {USER}\n  token_env: JENKINS_API_TOKEN\n",
            jenkins.uri()
        ))
        .env("JENKINS_API_TOKEN", API_TOKEN)
        .spawn()
        .await
}

/// The gate as a step of build `n` of Jenkins job `web`.
fn build(s: &TestApp, jenkins: &MockServer, n: u32) -> tokio::process::Command {
    let mut cmd = s.gate("ci");
    cmd.env("JENKINS_URL", format!("{}/", jenkins.uri()))
        .env("BUILD_URL", format!("{}/job/web/{n}/", jenkins.uri()))
        .env("BUILD_TAG", format!("jenkins-web-{n}"))
        .env("JOB_NAME", "web")
        .env("GIT_COMMIT", COMMIT)
        .env("BUILD_USER_ID", "dave");
    cmd
}

/// `gate consume ID` in the stage after the input, in build `n`.
async fn consume(s: &TestApp, jenkins: &MockServer, n: u32, id: &str) -> Out {
    let mut cmd = build(s, jenkins, n);
    cmd.env("GATE_REQUEST_ID", id)
        .arg("consume")
        .arg("--record-file")
        .arg(s.dir.path().join(format!("record-{n}.json")));
    Out::of(cmd).await
}

/// `gate request --no-wait --jenkins-input approve --print-id` as docs/jenkins.md's
/// `sh(script: …, returnStdout: true)` step of build `n` of job `web` runs it: stdout is
/// the request id and nothing else. Returns it.
async fn open(s: &TestApp, jenkins: &MockServer, n: u32) -> String {
    let mut cmd = build(s, jenkins, n);
    cmd.args([
        "request",
        "--no-wait",
        "--jenkins-input",
        "approve",
        "--print-id",
        "--environment",
        "production",
        "--repository",
        "acme/web",
    ]);
    let out = Out::of(cmd).await;
    assert_eq!(out.code, 0, "{out:?}");
    let id = out.stdout.trim().to_string();
    assert_eq!(out.stdout, format!("{id}\n"), "stdout is the id alone: {out:?}");
    assert!(id.starts_with("req_"), "{out:?}");
    assert!(out.stderr.contains(&format!("GATE_REQUEST_ID={id}")), "{out:?}");
    let v = s.client("alice").get(&id).await.unwrap();
    let r = serde_json::to_value(&v).unwrap()["release"].clone();
    assert_eq!(
        r,
        json!({"kind": "jenkins_input", "build_url": format!("{}/job/web/{n}/", jenkins.uri()), "input": "approve",
               "build_tag": format!("jenkins-web-{n}")})
    );
    id
}

async fn posts(jenkins: &MockServer, at: &str) -> Vec<wiremock::Request> {
    jenkins
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == at)
        .collect()
}

async fn answered(jenkins: &MockServer, at: &str) -> bool {
    posts(jenkins, at).await.iter().any(|r| {
        r.headers
            .get("authorization")
            .is_some_and(|v| v.to_str().unwrap_or("") == basic())
    })
}

#[tokio::test]
async fn an_approval_proceeds_the_input_and_a_deny_aborts_it() {
    let jenkins = MockServer::start().await;
    // Jenkins' input step answers 200 to an authenticated proceedEmpty or abort.
    for action in ["proceedEmpty", "abort"] {
        Mock::given(method("POST"))
            .and(header("authorization", basic().as_str()))
            .and(wiremock::matchers::path_regex(format!(
                "^/job/web/[0-9]+/input/Approve/{action}$"
            )))
            .respond_with(ResponseTemplate::new(200))
            .mount(&jenkins)
            .await;
    }
    let s = server(&jenkins).await;

    let id = open(&s, &jenkins, 7).await;
    assert!(
        posts(&jenkins, "/job/web/7/input/Approve/proceedEmpty")
            .await
            .is_empty()
    );
    s.client("alice").approve(&id, None).await.unwrap();
    let at = "/job/web/7/input/Approve/proceedEmpty";
    until("proceedEmpty for build 7", Duration::from_secs(30), || {
        answered(&jenkins, at)
    })
    .await;
    // The stage after the input consumes it, from this build only, once.
    let other = consume(&s, &jenkins, 9, &id).await;
    assert_eq!(other.code, 1, "{other:?}");
    assert!(
        format!("{}{}", other.stdout, other.stderr).contains("other_run"),
        "{other:?}"
    );
    let ok = consume(&s, &jenkins, 7, &id).await;
    assert_eq!(ok.code, 0, "{ok:?}");
    let again = consume(&s, &jenkins, 7, &id).await;
    assert_eq!(again.code, 1, "{again:?}");

    let id = open(&s, &jenkins, 8).await;
    s.client("alice").deny(&id, Some("not today".into())).await.unwrap();
    let at = "/job/web/8/input/Approve/abort";
    until("abort for build 8", Duration::from_secs(30), || answered(&jenkins, at)).await;
    let denied = consume(&s, &jenkins, 8, &id).await;
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(
        format!("{}{}", denied.stdout, denied.stderr).contains("DENIED"),
        "{denied:?}"
    );
    assert!(
        posts(&jenkins, "/job/web/8/input/Approve/proceedEmpty")
            .await
            .is_empty()
    );
    assert_eq!(posts(&jenkins, "/job/web/7/input/Approve/proceedEmpty").await.len(), 1);
}

#[tokio::test]
async fn a_crumb_is_fetched_when_jenkins_asks_for_one() {
    let jenkins = MockServer::start().await;
    let at = "/job/web/3/input/Approve/proceedEmpty";
    Mock::given(method("GET"))
        .and(path("/crumbIssuer/api/json"))
        .and(header("authorization", basic().as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("set-cookie", "JSESSIONID.abc=node01; Path=/; HttpOnly")
                .set_body_json(json!({
                    "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                    "crumb": "6e78c5725ea0c522bdcb787d548465aa",
                    "crumbRequestField": "Jenkins-Crumb"
                })),
        )
        .mount(&jenkins)
        .await;
    Mock::given(method("POST"))
        .and(path(at))
        .and(header("authorization", basic().as_str()))
        .and(header("jenkins-crumb", "6e78c5725ea0c522bdcb787d548465aa"))
        .and(header("cookie", "JSESSIONID.abc=node01"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(1)
        .mount(&jenkins)
        .await;
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_string("<html><body>Error 403 No valid crumb was included in the request</body></html>"),
        )
        .with_priority(2)
        .mount(&jenkins)
        .await;
    let s = server(&jenkins).await;
    let id = open(&s, &jenkins, 3).await;
    s.client("alice").approve(&id, None).await.unwrap();
    let crumbed = || async {
        posts(&jenkins, at)
            .await
            .iter()
            .any(|r| r.headers.get("jenkins-crumb").is_some())
    };
    until("proceedEmpty with the crumb", Duration::from_secs(30), crumbed).await;
    let all = posts(&jenkins, at).await;
    assert!(all[0].headers.get("jenkins-crumb").is_none(), "no crumb until asked");
}

#[tokio::test]
async fn a_build_outside_jenkins_url_is_refused_at_open() {
    let jenkins = MockServer::start().await;
    let s = server(&jenkins).await;
    for run_url in [
        "https://evil.example/job/web/1/".to_string(),
        format!("{}/../job/web/1/", jenkins.uri().replace("127.0.0.1", "localhost")),
        String::new(),
    ] {
        let body = json!({
            "context": {"platform": "jenkins", "repository": "acme/web", "actor": "dave",
                        "environment": "production", "run_url": run_url},
            "summary": "deploy",
            "release": {"jenkins_input": {"input": "approve"}},
        });
        let (status, v) = s.http().api("POST", "/requests", &token("ci"), Some(body)).await;
        assert_eq!(status, 422, "{run_url}: {v}");
        assert_eq!(v["error"]["code"], "invalid_release", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("jenkins.url") && m.contains("context.run_url"), "{m}");
    }
    assert!(jenkins.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unset_token_variable_stops_the_start_naming_it() {
    let (cmd, _dir) = TestApp::builder()
        .config_extra("jenkins:\n  url: https://ci.example.com/\n  user: bot\n  token_env: NO_SUCH_JENKINS_TOKEN\n")
        .serve_command()
        .await;
    let o = crate::helpers::Out::of(cmd).await;
    assert_ne!(o.code, 0);
    assert!(
        o.stderr
            .contains("jenkins: `token_env` names `NO_SUCH_JENKINS_TOKEN`, which is not set"),
        "{}",
        o.stderr
    );
}
