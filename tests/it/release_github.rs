//! GitHub deployment protection rules end to end: a real server acting as a GitHub App,
//! a GitHub fake on wiremock that hands out an installation token only for a JWT that
//! verifies against the App's public key, signed `deployment_protection_rule` deliveries
//! (GitHub's payload shape, checked against `@octokit/webhooks-schemas`), the callback
//! posted through the outbox, and the approval used by the run's OIDC token
//! (`POST /api/v1/run/consume`, what `gate consume --request-for-run` calls).

use std::path::Path;

use crate::helpers::*;
use crate::oidc::{github_claims, github_issuer, jwks_server, sign, with};
use jitgate::core::api::{NotificationView, RequestView};
use jitgate::core::decide::Status;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "gh-app-webhook-secret";
const KEY_ENV: &str = "JITGATE_TEST_GITHUB_APP_KEY";
const APP_ID: u64 = 4711;
/// The fixture's `installation.id`.
const INSTALLATION: u64 = 31337;
const CALLBACK: &str = "/repos/acme/app/actions/runs/4242/deployment_protection_rule";
const INSTALLATION_TOKEN: &str = "ghs_installation_token_for_tests";
const FIXTURE: &str = "tests/fixtures/github/deployment_protection_rule.json";
const SCHEMA: &str = "tests/github-schemas/node_modules/@octokit/webhooks-schemas/schema.json";

/// The App's key pair, made for the test: the PEM the server is given, the public key
/// (PKCS#1 DER) the fake checks JWTs with.
struct AppKey {
    pem: String,
    public: Vec<u8>,
}

fn app_key() -> AppKey {
    let kp = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    AppKey {
        pem: kp.serialize_pem(),
        public: kp.public_key_raw().to_vec(),
    }
}

/// A token exchange whose bearer JWT GitHub would take: RS256 under the App's key, `iss`
/// the App id, issued in the past, 10 minutes' life.
struct SignedByApp(Vec<u8>);

impl wiremock::Match for SignedByApp {
    fn matches(&self, r: &Request) -> bool {
        let Some(jwt) = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[APP_ID.to_string()]);
        v.set_required_spec_claims(&["exp", "iat", "iss"]);
        let Ok(t) = jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_rsa_der(&self.0), &v) else {
            return false;
        };
        let (iat, exp) = (
            t.claims["iat"].as_i64().unwrap_or(0),
            t.claims["exp"].as_i64().unwrap_or(0),
        );
        exp - iat == 600 && iat < crate::oidc::now()
    }
}

/// GitHub: the token exchange (only for the App's JWT) and the deployment's callback
/// (only with the installation token).
async fn github(key: &AppKey) -> MockServer {
    let gh = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/app/installations/{INSTALLATION}/access_tokens")))
        .and(SignedByApp(key.public.clone()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": INSTALLATION_TOKEN, "expires_at": "2099-01-01T00:00:00Z",
            "permissions": {"actions": "read", "deployments": "write"}, "repository_selection": "selected",
        })))
        .mount(&gh)
        .await;
    Mock::given(method("POST"))
        .and(path(CALLBACK))
        .and(header("authorization", format!("Bearer {INSTALLATION_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(204))
        .mount(&gh)
        .await;
    gh
}

async fn start(db: Db, gh: &MockServer, key: &AppKey, extra: &str) -> TestApp {
    start_with(TestApp::builder().backend(db), gh, key, extra).await
}

async fn start_with(b: TestAppBuilder, gh: &MockServer, key: &AppKey, extra: &str) -> TestApp {
    let forge = format!(
        "forge:\n  github:\n    api_url: {}\n    token: ghp_unused\n    webhook_secret: {SECRET}\n    requesters: false\n    app:\n      app_id: {APP_ID}\n      private_key_env: {KEY_ENV}\nnotify:\n  retry_base: 50ms\n  retry_max: 400ms\n  timeout: 2s\n",
        gh.uri()
    );
    b.config_extra(&format!("{forge}{extra}"))
        .env(KEY_ENV, &key.pem)
        .spawn()
        .await
}

/// The fixture with its callback on the fake, checked against the schemas; `None` (the
/// test skipped) where check-jsonschema or the schemas are not installed.
async fn delivery_body(gh: &MockServer) -> Option<Vec<u8>> {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(Path::new(root).join(FIXTURE)).unwrap();
    let text = text.replace(
        &format!("https://api.github.com{CALLBACK}"),
        &format!("{}{CALLBACK}", gh.uri()),
    );
    let schema = Path::new(root).join(SCHEMA);
    if !schema.exists() {
        skip_or_fail(
            "release_github",
            "@octokit/webhooks-schemas is not installed (npm ci --prefix tests/github-schemas)",
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("delivery.json");
    std::fs::write(&file, &text).unwrap();
    let out = tokio::process::Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(&schema)
        .arg(&file)
        .output()
        .await;
    let Ok(out) = out else {
        skip_or_fail("release_github", "check-jsonschema is not installed");
        return None;
    };
    assert!(
        out.status.success(),
        "the delivery does not match @octokit/webhooks-schemas: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text.into_bytes())
}

async fn deliver(s: &TestApp, delivery: &str, body: &[u8]) -> (u16, Value) {
    github_delivery(
        s,
        "deployment_protection_rule",
        delivery,
        body,
        Some(github_signature(SECRET, body)),
    )
    .await
}

async fn view(s: &TestApp, id: &str) -> RequestView {
    s.client(AUDITOR).get(id).await.unwrap()
}

/// The release row of `id` once it is delivered.
async fn released(s: &TestApp, id: &str) -> NotificationView {
    delivered_row(s, id, "the release delivered", |n| n.channel == "release").await
}

/// What the fake received at `route`: the bodies, in order.
async fn posts(gh: &MockServer, route: &str) -> Vec<Value> {
    gh.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == route)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

/// Opens the request of the fixture's deployment; its id.
async fn opened(s: &TestApp, body: &[u8]) -> String {
    let (st, v) = deliver(s, "dlv-1", body).await;
    assert_eq!(st, 200, "{v}\n{}", s.log());
    assert_eq!(v["result"], "opened", "{v}");
    v["request"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_protection_rule_opens_a_request_and_its_approval_is_posted_back() {
    for db in backends() {
        let key = app_key();
        let gh = github(&key).await;
        let Some(body) = delivery_body(&gh).await else { return };
        let s = start(db, &gh, &key, "").await;
        let id = opened(&s, &body).await;

        // The same delivery again opens nothing; another delivery for the same run and
        // environment answers with the request already open; an unsigned one is refused.
        let (st, v) = deliver(&s, "dlv-1", &body).await;
        assert_eq!(st, 409, "{v}");
        let (st, v) = deliver(&s, "dlv-2", &body).await;
        assert_eq!(
            (st, v["result"].as_str(), v["request"].as_str()),
            (200, Some("replayed"), Some(id.as_str())),
            "{v}"
        );
        let (st, _) = github_delivery(&s, "deployment_protection_rule", "dlv-3", &body, None).await;
        assert_eq!(st, 401);
        let (st, list) = s
            .http()
            .api("GET", "/requests?status=pending", &token(AUDITOR), None)
            .await;
        assert_eq!(st, 200);
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

        // From the payload: the context, the App as opener, the release.
        let v = view(&s, &id).await;
        assert_eq!(v.context.repository, "acme/app");
        assert_eq!(v.context.environment, "production");
        assert_eq!(v.context.run_id, "4242");
        assert_eq!(v.context.commit, COMMIT);
        assert_eq!(v.context.actor, "dave-gh");
        assert_eq!(v.context.triggering_actor, "erin-gh");
        assert_eq!(v.opened_by, "github-app");
        let release = serde_json::to_value(v.release.as_ref().unwrap()).unwrap();
        assert_eq!(release["kind"], "github_deployment");
        assert_eq!(release["installation_id"], INSTALLATION);
        assert_eq!(release["callback_url"], format!("{}{CALLBACK}", gh.uri()));

        // carol wrote the pull request: a requester, so her approval does not count.
        let refused = s.run("carol", &["approve", &id]).await;
        assert_ne!(refused.code, 0, "{refused:?}");
        assert!(posts(&gh, CALLBACK).await.is_empty());
        let ok = s.run("alice", &["approve", &id, "--reason", "ship it"]).await;
        assert_eq!(ok.code, 0, "{ok:?}");

        let row = released(&s, &id).await;
        assert_eq!(row.recipient, "github_deployment");
        let sent = posts(&gh, CALLBACK).await;
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["environment_name"], "production");
        assert_eq!(sent[0]["state"], "approved");
        let comment = sent[0]["comment"].as_str().unwrap();
        assert!(comment.contains("approved") && comment.contains("alice"), "{comment}");
        assert!(comment.contains(&format!("/requests/{id}")), "{comment}");
        let exchanges = posts(&gh, &format!("/app/installations/{INSTALLATION}/access_tokens")).await;
        assert_eq!(exchanges.len(), 1, "one token exchange, its JWT verified");
    }
}

#[tokio::test]
async fn a_denial_is_posted_as_rejected_with_the_reason() {
    let key = app_key();
    let gh = github(&key).await;
    let Some(body) = delivery_body(&gh).await else { return };
    let s = start(Db::Sqlite, &gh, &key, "").await;
    let id = opened(&s, &body).await;
    let out = s.run("bob", &["deny", &id, "--reason", "freeze week"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    released(&s, &id).await;
    let sent = posts(&gh, CALLBACK).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["state"], "rejected");
    let comment = sent[0]["comment"].as_str().unwrap();
    assert!(comment.contains("bob") && comment.contains("freeze week"), "{comment}");
}

#[tokio::test]
async fn the_deploy_job_of_that_run_consumes_the_approval_and_no_other_run_can() {
    let key = app_key();
    let gh = github(&key).await;
    let Some(body) = delivery_body(&gh).await else { return };
    let jwks = jwks_server(&["rsa-1"]).await;
    let s = start(Db::Sqlite, &gh, &key, &github_issuer(&jwks)).await;
    let id = opened(&s, &body).await;
    assert_eq!(s.run("alice", &["approve", &id]).await.code, 0);
    assert_eq!(view(&s, &id).await.status, Status::Approved);

    let consume = |claims: Value| {
        let c = jitgate::client::Client::new(&s.url, Some(sign("rsa-1", &claims))).unwrap();
        async move { c.consume_for_run(None).await }
    };
    let run = |repo: &str, run_id: &str| {
        with(
            github_claims("production"),
            json!({"repository": repo, "run_id": run_id}),
        )
    };
    let other_run = consume(run("acme/app", "4243")).await.unwrap_err();
    assert!(other_run.to_string().contains("run 4243"), "{other_run}");
    let other_repo = consume(run("acme/web", "4242")).await.unwrap_err();
    assert!(other_repo.to_string().contains("acme/web"), "{other_repo}");
    assert_eq!(view(&s, &id).await.status, Status::Approved);
    // A static pipeline token says no run: refused.
    let e = s
        .client("ci")
        .consume_for_run(Some("production".into()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("OIDC token"), "{e}");

    // The deploy job's first step: the real `gate consume --request-for-run`, with the
    // run's OIDC token; it writes the record as `gate request` does.
    let record = s.dir.path().join("deploy-record.json");
    let mut c = s.gate("ci");
    c.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", "acme/app")
        .env("GITHUB_RUN_ID", "4242")
        .env_remove("GATE_TOKEN")
        .args([
            "consume",
            "--request-for-run",
            "--environment",
            "production",
            "--id-token",
        ])
        .arg(sign("rsa-1", &run("acme/app", "4242")))
        .arg("--record-file")
        .arg(&record);
    let out = Out::of(c).await;
    assert_eq!(out.code, 0, "{out:?}");
    let envelope = std::fs::read_to_string(&record).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert!(envelope.contains("payloadType"), "{envelope}");
    assert_eq!(view(&s, &id).await.status, Status::Consumed);
    let again = consume(run("acme/app", "4242")).await.unwrap_err();
    assert!(again.to_string().contains("consumed"), "{again}");
}

#[tokio::test]
async fn a_stage_that_opens_is_reported_on_the_deployment_while_it_waits() {
    let key = app_key();
    let gh = github(&key).await;
    let Some(body) = delivery_body(&gh).await else { return };
    let staged = "    stages:\n      - name: first\n        require: [{ group: security }]\n      - name: second\n        require: [{ group: sre }]";
    let s = start_with(TestApp::builder().rule(staged), &gh, &key, "").await;
    let id = opened(&s, &body).await;
    assert_eq!(s.run("alice", &["approve", &id]).await.code, 0);
    let report = delivered_row(&s, &id, "the status report", |n| n.event == "status_report").await;
    assert_eq!(report.recipient, "github_deployment");
    assert_eq!(s.run("bob", &["approve", &id]).await.code, 0);
    delivered_row(&s, &id, "the approval", |n| {
        n.channel == "release" && n.event == "approved"
    })
    .await;
    let sent = posts(&gh, CALLBACK).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let status: Vec<&Value> = sent.iter().filter(|b| b.get("state").is_none()).collect();
    assert_eq!(status.len(), 1, "{sent:?}");
    let text = status[0]["comment"].as_str().unwrap();
    assert!(
        text.contains("stage `second` is open") && text.chars().count() <= 1024,
        "{text}"
    );
    assert_eq!(status[0]["environment_name"], "production");
    assert!(sent.iter().any(|b| b["state"] == "approved"), "{sent:?}");
}

#[tokio::test]
async fn escalations_are_reported_on_the_deployment_at_most_ten_times_and_the_outcome_always() {
    let key = app_key();
    let gh = github(&key).await;
    let Some(body) = delivery_body(&gh).await else { return };
    // Twelve steps, 100 ms apart; each lets ops approve too (its step is in the report).
    let steps: Vec<String> = (1..=12)
        .map(|i| format!("      - {{ after: {}ms, add_groups: [ops] }}\n", i * 100))
        .collect();
    let rule = format!(
        "    require: [{{ group: sre, count: 1 }}]\n    escalate:\n{}",
        steps.concat()
    );
    let s = start_with(TestApp::builder().rule(rule.trim_end()), &gh, &key, "").await;
    let id = opened(&s, &body).await;
    // Every step taken (long-polling the request, which each step changes).
    let client = s.client(AUDITOR);
    let mut v = view(&s, &id).await;
    loop {
        let taken = client
            .audit(&id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "escalated")
            .count();
        if taken == 12 {
            break;
        }
        v = client.wait(&id, Some(v.version), 30).await.unwrap();
        assert_eq!(v.status, Status::Pending, "{v:?}");
    }
    let rows = outbox_until(&s, &id, "ten delivered status reports", |rows| {
        rows.iter()
            .filter(|n| n.event == "status_report" && n.state == "delivered")
            .count()
            == 10
    })
    .await;
    assert_eq!(
        rows.iter().filter(|n| n.event == "status_report").count(),
        10,
        "{rows:?}"
    );
    // Then the outcome, which is never held back by the limit.
    assert_eq!(s.run("alice", &["approve", &id]).await.code, 0);
    delivered_row(&s, &id, "the approval", |n| {
        n.channel == "release" && n.event == "approved"
    })
    .await;
    let sent = posts(&gh, CALLBACK).await;
    let (reports, outcomes): (Vec<&Value>, Vec<&Value>) = sent.iter().partition(|b| b.get("state").is_none());
    assert_eq!(reports.len(), 10, "{sent:?}");
    let mut steps = std::collections::BTreeSet::new();
    for r in &reports {
        let text = r["comment"].as_str().unwrap();
        // A status report says what changed, with no `state`, within GitHub's limit.
        assert!(text.chars().count() <= 1024, "{text}");
        let step = text.split("escalated (step ").nth(1).and_then(|t| t.split(')').next());
        steps.insert(
            step.and_then(|n| n.parse::<u32>().ok())
                .unwrap_or_else(|| panic!("{text}")),
        );
        assert!(text.contains("ops may now approve"), "{text}");
        assert!(text.contains(&format!("/requests/{id}")), "{text}");
        assert_eq!(r["environment_name"], "production");
    }
    assert_eq!(steps, (1..=10).collect(), "the first ten steps, each once");
    assert_eq!(outcomes.len(), 1, "{sent:?}");
    assert_eq!(outcomes[0]["state"], "approved");
}

/// The fixture as GitHub sends it for a re-run of the same workflow run: the run id is
/// the same, the deployment is new.
fn rerun(body: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    v["deployment"]["id"] = json!(90002);
    v["deployment"]["url"] = json!("https://api.github.com/repos/acme/app/deployments/90002");
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn a_re_run_of_the_same_run_asks_again_once_the_first_attempt_is_decided() {
    for db in backends() {
        let key = app_key();
        let gh = github(&key).await;
        let Some(body) = delivery_body(&gh).await else { return };
        let s = start(db, &gh, &key, "").await;
        let first = opened(&s, &body).await;
        // While the first attempt's request is pending, another deployment of the run
        // answers with it: nothing new opens.
        let (st, v) = deliver(&s, "dlv-rerun-early", &rerun(&body)).await;
        assert_eq!(
            (st, v["result"].as_str(), v["request"].as_str()),
            (200, Some("replayed"), Some(first.as_str())),
            "{v}"
        );
        // Denied; the run is re-run: the new deployment gets a request of its own.
        assert_eq!(s.run("bob", &["deny", &first, "--reason", "not yet"]).await.code, 0);
        let (st, v) = deliver(&s, "dlv-rerun", &rerun(&body)).await;
        assert_eq!((st, v["result"].as_str()), (200, Some("opened")), "{v}");
        let second = v["request"].as_str().unwrap().to_string();
        assert_ne!(second, first);
        let sv = view(&s, &second).await;
        assert_eq!((sv.status, sv.context.run_id.as_str()), (Status::Pending, "4242"));
        assert_eq!(
            sv.context.labels.get("deployment_id").map(String::as_str),
            Some("90002")
        );
        assert_eq!(
            view(&s, &first).await.status,
            Status::Denied,
            "the first stays as it was"
        );
        // The same re-run delivered again, or the first deployment's event again, open nothing.
        let (st, _) = deliver(&s, "dlv-rerun", &rerun(&body)).await;
        assert_eq!(st, 409);
        let (st, v) = deliver(&s, "dlv-first-again", &body).await;
        assert_eq!(
            (st, v["result"].as_str(), v["request"].as_str()),
            (200, Some("replayed"), Some(second.as_str())),
            "{v}"
        );
        assert_eq!(s.client(AUDITOR).list("pending").await.unwrap().len(), 1);
        // Approved, the re-run's request answers its deployment: the deploy job of the run
        // uses this approval, not the denied one.
        assert_eq!(s.run("alice", &["approve", &second]).await.code, 0);
        delivered_row(&s, &second, "the approval", |n| {
            n.channel == "release" && n.event == "approved"
        })
        .await;
        let states: Vec<String> = posts(&gh, CALLBACK)
            .await
            .iter()
            .map(|b| b["state"].to_string())
            .collect();
        assert_eq!(states, ["\"rejected\"", "\"approved\""]);
        assert_eq!(
            s.run(AUDITOR, &["audit", "verify"]).await.code,
            0,
            "moving the key aside is no tampering"
        );
    }
}
