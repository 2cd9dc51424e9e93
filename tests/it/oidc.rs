//! OIDC workload identity: a server trusting issuers whose keys a mock JWKS endpoint
//! serves, tokens signed with the test-only keys in tests/fixtures/oidc. The API tests call
//! the router in process; the gate binary's tests run a real server.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};

use crate::helpers::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW_REF: &str = "acme/web/.github/workflows/deploy.yml@refs/heads/main";

fn fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/oidc/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A JWKS holding the public halves of the named fixture keys.
fn jwks(kids: &[&str]) -> Value {
    let keys: Vec<Value> = kids
        .iter()
        .map(|k| serde_json::from_slice(&fixture(&format!("{k}.jwk.json"))).unwrap())
        .collect();
    json!({ "keys": keys })
}

/// Signs `claims` with fixture key `key` (`rsa-1`, `rsa-2`: RS256; `ec-1`: ES256), naming
/// `kid` in the header.
fn sign_as(key: &str, kid: &str, claims: &Value) -> String {
    let (alg, enc) = if key.starts_with("ec") {
        (
            Algorithm::ES256,
            EncodingKey::from_ec_der(&fixture(&format!("{key}.p8.der"))),
        )
    } else {
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_der(&fixture(&format!("{key}.der"))),
        )
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &enc).unwrap()
}

pub(crate) fn sign(kid: &str, claims: &Value) -> String {
    sign_as(kid, kid, claims)
}

pub(crate) fn now() -> i64 {
    jitgate::core::duration::now_ms() / 1000
}

/// A token as GitHub Actions mints it for a job in acme/web deploying to `environment`.
pub(crate) fn github_claims(environment: &str) -> Value {
    let t = now();
    json!({
        "iss": GITHUB, "aud": "jitgate", "jti": uuid::Uuid::new_v4().to_string(),
        "sub": format!("repo:acme/web:environment:{environment}"),
        "iat": t - 5, "nbf": t - 5, "exp": t + 300,
        "repository": "acme/web", "repository_id": "4242", "repository_owner": "acme", "repository_owner_id": "42",
        "ref": "refs/heads/main", "ref_type": "branch", "sha": COMMIT,
        "actor": "alice-gh", "actor_id": "17", "run_id": "9001", "run_number": "12", "run_attempt": "1",
        "workflow": "deploy", "workflow_ref": WORKFLOW_REF, "event_name": "push", "environment": environment,
        "job_workflow_ref": WORKFLOW_REF, "runner_environment": "github-hosted",
    })
}

pub(crate) fn with(mut claims: Value, patch: Value) -> Value {
    for (k, v) in patch.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

pub(crate) async fn jwks_server(kids: &[&str]) -> MockServer {
    let m = MockServer::start().await;
    serve_jwks(&m, kids).await;
    m
}

async fn serve_jwks(m: &MockServer, kids: &[&str]) {
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(kids)))
        .mount(m)
        .await;
}

async fn jwks_hits(m: &MockServer) -> usize {
    m.received_requests().await.unwrap_or_default().len()
}

pub(crate) fn github_issuer(jwks: &MockServer) -> String {
    format!(
        "oidc:\n  - issuer: {GITHUB}\n    audience: jitgate\n    platform: github\n    jwks_url: {}/jwks\n    repositories: [\"acme/*\"]\n",
        jwks.uri()
    )
}

/// A server trusting GitHub's issuer, whose keys `jwks` serves.
fn github_app(jwks: &MockServer) -> TestAppBuilder {
    TestApp::builder().config_extra(&github_issuer(jwks))
}

/// One API call with `bearer`; the status and the JSON body.
async fn call(s: &Http, verb: &str, route: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
    s.api(verb, route, bearer, body).await
}

async fn open(s: &Http, bearer: &str, context: Value) -> (u16, Value) {
    call(s, "POST", "/requests", bearer, Some(json!({ "context": context }))).await
}

/// The in-toto statement inside a DSSE envelope.
fn statement(envelope: &Value) -> Value {
    let payload = B64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[tokio::test]
async fn github_token_claims_become_the_context() {
    let m = jwks_server(&["rsa-1"]).await;
    let app = github_app(&m).in_process().await;
    let s = app.http();
    let jwt = sign("rsa-1", &github_claims("production"));

    // The body agrees with the token where it says anything; the rest comes from the claims.
    let (st, v) = open(
        &s,
        &jwt,
        json!({"environment": "production", "platform": "github", "repository": "acme/web"}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let c = &v["context"];
    assert_eq!(c["platform"], "github");
    assert_eq!(c["repository"], "acme/web");
    assert_eq!(c["ref"], "refs/heads/main");
    assert_eq!(c["commit"], COMMIT);
    assert_eq!(c["actor"], "alice-gh");
    assert_eq!(c["run_id"], "9001");
    assert_eq!(c["run_attempt"], "1");
    assert_eq!(c["labels"]["workflow_ref"], WORKFLOW_REF);
    assert_eq!(c["labels"]["event_name"], "push");
    assert_eq!(v["opened_by"], "oidc:github");
    assert_eq!(v["verified_by"], GITHUB);
    let fields: Vec<&str> = v["verified_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        "repository",
        "ref",
        "commit",
        "actor",
        "run_id",
        "environment",
        "labels.workflow_ref",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    // The verified actor is alice's GitHub login: she is the requester.
    let requester = v["requester"].as_array().unwrap();
    assert!(requester.contains(&json!("alice")), "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    // The same run again (the run identity comes from the verified claims): a replay.
    let (st, again) = open(&s, &jwt, json!({"environment": "production"})).await;
    assert_eq!((st, again["id"].as_str()), (200, Some(id.as_str())), "{again}");

    // An OIDC identity is a pipeline: it cannot vote.
    let (st, e) = call(&s, "POST", &format!("/requests/{id}/approve"), &jwt, None).await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"]["code"], "pipeline_cannot_vote");
    let (st, e) = call(&s, "POST", &format!("/requests/{id}/approve"), &token("alice"), None).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (403, Some("requester_cannot_vote")),
        "{e}"
    );
    let (st, _) = call(&s, "POST", &format!("/requests/{id}/approve"), &token("bob"), None).await;
    assert_eq!(st, 200);

    // Only the identity that opened it may use the approval, not a static pipeline (which
    // may not even read it: unknown to it).
    let (st, e) = call(&s, "POST", &format!("/requests/{id}/consume"), &token("ci"), None).await;
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("not_found")), "{e}");
    let (st, v) = call(&s, "POST", &format!("/requests/{id}/consume"), &jwt, None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("consumed")), "{v}");

    let (st, env) = call(&s, "GET", &format!("/requests/{id}/record"), &jwt, None).await;
    assert_eq!(st, 200, "{env}");
    let rec = statement(&env);
    let vc = &rec["predicate"]["request"]["verified_claims"];
    assert_eq!(vc["issuer"], GITHUB);
    assert_eq!(vc["platform"], "github");
    assert_eq!(vc["subject"], "repo:acme/web:environment:production");
    assert_eq!(vc["audience"], "jitgate");
    assert_eq!(
        (vc["algorithm"].as_str(), vc["key_id"].as_str()),
        (Some("RS256"), Some("rsa-1"))
    );
    assert_eq!(vc["fields"]["repository"], "acme/web");
    assert_eq!(vc["fields"]["commit"], COMMIT);
    assert_eq!(vc["claims"]["sha"], COMMIT);
    assert_eq!(vc["claims"]["repository_id"], "4242");
    assert_eq!(vc["claims"]["workflow_ref"], WORKFLOW_REF);
    assert_eq!(rec["predicate"]["request"]["context"]["actor"], "alice-gh");
    assert_eq!(rec["subject"][0]["digest"]["gitCommit"], COMMIT);

    // The keys were fetched once and cached for every call since.
    assert_eq!(jwks_hits(&m).await, 1);
}

#[tokio::test]
async fn gitlab_token_found_by_discovery() {
    let m = MockServer::start().await;
    let issuer = m.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer, "jwks_uri": format!("{issuer}/oauth/discovery/keys"),
            "id_token_signing_alg_values_supported": ["RS256"],
        })))
        .mount(&m)
        .await;
    Mock::given(method("GET"))
        .and(path("/oauth/discovery/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(&["ec-1"])))
        .mount(&m)
        .await;
    let app = TestApp::builder()
        .config_extra(&format!(
            "oidc:\n  - issuer: {issuer}\n    audience: jitgate\n    platform: gitlab\n    name: gitlab-ci\n    repositories: [\"acme/**\"]\n"
        ))
        .in_process()
        .await;
    let s = app.http();
    let t = now();
    let jwt = sign(
        "ec-1",
        &json!({
            "iss": issuer, "aud": "jitgate", "jti": "gl-1", "iat": t, "nbf": t - 5, "exp": t + 600,
            "sub": "project_path:acme/api:ref_type:branch:ref:main",
            "namespace_id": "3", "namespace_path": "acme", "project_id": "77", "project_path": "acme/api",
            "user_id": "21", "user_login": "dave", "user_email": "dave@acme.test",
            "pipeline_id": "5150", "pipeline_source": "push", "job_id": "8080",
            "ref": "main", "ref_type": "branch", "ref_protected": "true", "sha": COMMIT,
            "environment": "staging", "environment_protected": "false", "runner_id": 9,
        }),
    );
    // The staging rule approves at once, so the record exists straight away.
    let (st, v) = open(&s, &jwt, json!({"environment": "staging", "platform": "generic"})).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["status"], "approved");
    let c = &v["context"];
    assert_eq!(
        [
            &c["platform"],
            &c["repository"],
            &c["ref"],
            &c["commit"],
            &c["actor"],
            &c["run_id"],
            &c["job"]
        ],
        ["gitlab", "acme/api", "refs/heads/main", COMMIT, "dave", "5150", "8080"]
    );
    assert_eq!(v["opened_by"], "gitlab-ci");
    assert_eq!(v["verified_by"], issuer.as_str());

    let id = v["id"].as_str().unwrap();
    let (st, env) = call(&s, "GET", &format!("/requests/{id}/record"), &jwt, None).await;
    assert_eq!(st, 200, "{env}");
    let vc = statement(&env)["predicate"]["request"]["verified_claims"].clone();
    assert_eq!(
        (vc["platform"].as_str(), vc["issuer"].as_str()),
        (Some("gitlab"), Some(issuer.as_str()))
    );
    assert_eq!(
        (vc["algorithm"].as_str(), vc["key_id"].as_str()),
        (Some("ES256"), Some("ec-1"))
    );
    assert_eq!(vc["fields"]["actor"], "dave");
    assert_eq!(vc["fields"]["job"], "8080");
    assert_eq!(vc["claims"]["project_path"], "acme/api");
    assert_eq!(vc["claims"]["project_id"], "77");
    assert_eq!(vc["claims"]["user_login"], "dave");
    assert_eq!(vc["token_id"], "gl-1");
    // The created event in the audit log names the verified claims too.
    let (_, events) = call(&s, "GET", &format!("/requests/{id}/audit"), &jwt, None).await;
    assert_eq!(events[0]["kind"], "created");
    assert_eq!(events[0]["data"]["verified_claims"]["issuer"], issuer.as_str());
}

#[tokio::test]
async fn the_gate_binary_runs_on_an_oidc_token() {
    let m = jwks_server(&["rsa-1"]).await;
    let s = github_app(&m).spawn().await;
    let jwt = sign("rsa-1", &github_claims("staging"));
    // No CI variables and no context flags: everything but the environment comes from the token.
    let mut cmd = s.gate("ci");
    cmd.env("GATE_TOKEN", &jwt);
    let w = s.open_with(cmd, &["--environment", "staging"]).await;
    assert_eq!(w.opened["status"], "approved", "{}", w.opened);
    let record = w.record_path().to_path_buf();
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    let env: Value = serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    let req = &statement(&env)["predicate"]["request"];
    assert_eq!(req["opened_by"], "oidc:github");
    assert_eq!(req["context"]["repository"], "acme/web");
    assert_eq!(req["context"]["platform"], "github");
    assert_eq!(req["verified_claims"]["fields"]["environment"], "staging");
    assert_eq!(req["verified_claims"]["issuer"], GITHUB);
}

#[tokio::test]
async fn invalid_tokens_are_refused_with_the_reason() {
    let m = jwks_server(&["rsa-1"]).await;
    let app = github_app(&m).in_process().await;
    let s = app.http();
    let t = now();
    let good = github_claims("production");
    let ctx = json!({"environment": "production"});

    let expired_at = t - 3600;
    let nbf = t + 3600;
    let header_none = B64URL.encode(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
    let alg_none = format!("{header_none}.{}.", B64URL.encode(good.to_string()));
    // The classic key confusion: HMAC keyed with the issuer's public key.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa-1".into());
    let hs256 = jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(&fixture("rsa-1.pub.pem"))).unwrap();
    let valid = sign("rsa-1", &good);
    let parts: Vec<&str> = valid.split('.').collect();
    let forged_payload = format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(with(good.clone(), json!({"actor": "mallory"})).to_string()),
        parts[2]
    );
    let mut sig = parts[2].as_bytes().to_vec();
    sig[40] = if sig[40] == b'A' { b'B' } else { b'A' };
    let forged_sig = format!("{}.{}.{}", parts[0], parts[1], String::from_utf8(sig).unwrap());

    let cases: Vec<(&str, String, String)> = vec![
        (
            "expired",
            sign(
                "rsa-1",
                &with(
                    good.clone(),
                    json!({"exp": expired_at, "iat": t - 4000, "nbf": t - 4000}),
                ),
            ),
            format!(
                "token expired at {}",
                jitgate::core::duration::rfc3339(expired_at * 1000)
            ),
        ),
        (
            "not yet valid",
            sign("rsa-1", &with(good.clone(), json!({"nbf": nbf}))),
            format!(
                "token not valid before {}",
                jitgate::core::duration::rfc3339(nbf * 1000)
            ),
        ),
        (
            "wrong audience",
            sign("rsa-1", &with(good.clone(), json!({"aud": "https://github.com/acme"}))),
            "audience `https://github.com/acme` is not `jitgate`".into(),
        ),
        (
            "unknown issuer",
            sign("rsa-1", &with(good.clone(), json!({"iss": "https://evil.example"}))),
            "issuer `https://evil.example` is not trusted".into(),
        ),
        ("alg none", alg_none, "alg none is refused".into()),
        (
            "HS256 keyed with the public key",
            hs256,
            "HS256 is refused: only RS256 and ES256".into(),
        ),
        (
            "unknown kid",
            sign("rsa-2", &good),
            format!("no key `rsa-2` at {}/jwks", m.uri()),
        ),
        ("altered payload", forged_payload, "signature does not verify".into()),
        ("altered signature", forged_sig, "signature does not verify".into()),
    ];
    for (what, jwt, want) in cases {
        let (st, e) = open(&s, &jwt, ctx.clone()).await;
        assert_eq!(st, 401, "{what}: {e}");
        assert_eq!(e["error"]["code"], "unauthorized", "{what}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert_eq!(msg, format!("OIDC token refused: {want}"), "{what}");
    }

    // A body field that contradicts a verified claim is refused, naming both values.
    let (st, e) = open(&s, &valid, json!({"environment": "production", "repository": "evil/x"})).await;
    assert_eq!(st, 401, "{e}");
    assert_eq!(
        e["error"]["message"],
        format!("context.repository is `evil/x` but the OIDC token from {GITHUB} says `acme/web`")
    );
    let (st, e) = open(&s, &valid, json!({"environment": "staging"})).await;
    assert_eq!(st, 401, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("context.environment is `staging`"),
        "{e}"
    );

    // A valid token from a trusted issuer, for a repository the issuer entry does not allow.
    let other = sign("rsa-1", &with(good.clone(), json!({"repository": "umbrella/app"})));
    let (st, e) = open(&s, &other, ctx.clone()).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (403, Some("oidc_not_allowed")),
        "{e}"
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("`umbrella/app`"),
        "{e}"
    );

    // Nothing above opened a request.
    let (st, list) = call(&s, "GET", "/requests?status=pending", &token("alice"), None).await;
    assert_eq!((st, list.as_array().map(Vec::len)), (200, Some(0)), "{list}");
}

#[tokio::test]
async fn key_rotation_at_the_endpoint_is_followed() {
    let m = jwks_server(&["rsa-1"]).await;
    let app = github_app(&m).in_process().await;
    let s = app.http();
    let claims = github_claims("production");
    let accepted = |jwt: String| {
        let s = &s;
        async move { call(s, "GET", "/requests?status=pending", &jwt, None).await }
    };
    let (st, e) = accepted(sign("rsa-1", &claims)).await;
    assert_eq!(st, 200, "{e}");
    assert_eq!(jwks_hits(&m).await, 1);

    // The issuer rotates: rsa-1 out, rsa-2 in.
    m.reset().await;
    serve_jwks(&m, &["rsa-2"]).await;
    let (st, e) = accepted(sign("rsa-2", &claims)).await;
    assert_eq!(st, 200, "a token with the new kid is accepted: {e}");
    assert_eq!(jwks_hits(&m).await, 1, "after a single refetch");

    // Refetches are rate-limited: made-up kids right after do not reach the endpoint...
    let (st, e) = accepted(sign_as("rsa-2", "rsa-9", &claims)).await;
    assert_eq!(st, 401, "{e}");
    assert_eq!(
        e["error"]["message"],
        format!("OIDC token refused: no key `rsa-9` at {}/jwks", m.uri())
    );
    // ...and the rotated-out key is no longer trusted.
    let (st, e) = accepted(sign("rsa-1", &claims)).await;
    assert_eq!(st, 401, "{e}");
    assert_eq!(jwks_hits(&m).await, 1, "no refetch within the rate limit");
    // The new key goes on working from the cache.
    let (st, _) = accepted(sign("rsa-2", &claims)).await;
    assert_eq!(st, 200);
    assert_eq!(jwks_hits(&m).await, 1);
}

#[tokio::test]
async fn an_unreachable_jwks_is_unavailable_not_unauthorized() {
    let m = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&m)
        .await;
    let app = github_app(&m).in_process().await;
    let s = app.http();
    let (st, e) = open(
        &s,
        &sign("rsa-1", &github_claims("production")),
        json!({"environment": "production"}),
    )
    .await;
    assert_eq!(st, 503, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("cannot fetch the keys of OIDC issuer") && msg.contains("HTTP 500"),
        "{msg}"
    );
    // Static tokens are unaffected.
    let (st, _) = open(&s, &token("ci"), json!({"environment": "staging", "actor": "erin"})).await;
    assert_eq!(st, 201);
}

/// The whole GitHub path with nothing mocked but GitHub itself: the gate asks the runner's
/// token endpoint for an OIDC token, the server verifies it against the issuer's keys, the
/// verified claims become the context, the gate waits on its request token, an approver
/// approves, and the step's outputs and summary say so.
#[tokio::test]
async fn github_runner_end_to_end_on_a_verified_oidc_token() {
    use wiremock::matchers::{header, query_param};
    let m = jwks_server(&["rsa-1"]).await;
    let s = github_app(&m).spawn().await;
    let jwt = sign("rsa-1", &github_claims("production"));
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("audience", "jitgate"))
        .and(header("authorization", "bearer runner-secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "value": jwt })))
        .expect(1..)
        .mount(&m)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (output, summary) = (dir.path().join("out"), dir.path().join("summary"));
    let mut cmd = s.gate("ci");
    cmd.env_remove("GATE_TOKEN")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", "acme/web")
        .env("GITHUB_REF", "refs/heads/main")
        .env("GITHUB_SHA", COMMIT)
        .env("GITHUB_ACTOR", "alice-gh")
        .env("GITHUB_RUN_ID", "9001")
        .env("GITHUB_RUN_ATTEMPT", "1")
        .env("GITHUB_JOB", "deploy")
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("{}/token?api-version=2.0", m.uri()),
        )
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-secret");
    let w = s.open_with(cmd, &["--environment", "production"]).await;
    assert_eq!(w.opened["status"], "pending", "{}", w.opened);
    let view = s.client("bob").get(&w.id).await.unwrap();
    assert_eq!(view.verified_by.as_deref(), Some(GITHUB));
    assert_eq!(view.opened_by, "oidc:github");
    // alice-gh is the verified actor: alice may not approve, bob may.
    assert_eq!(
        s.client("alice").approve(&w.id, None).await.unwrap_err().status(),
        Some(403)
    );
    s.client("bob")
        .approve(&w.id, Some("verified run".into()))
        .await
        .unwrap();
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    assert!(err.contains("::add-mask::"), "tokens are masked: {err}");
    let out = std::fs::read_to_string(&output).unwrap();
    assert!(out.contains("decision=approved"), "{out}");
    let sum = std::fs::read_to_string(&summary).unwrap();
    assert!(sum.contains("bob") && sum.contains("verified run"), "{sum}");
}

/// `allow:` on an issuer narrows what its tokens may open; and under one issuer (one
/// pipeline name, `oidc:github`) a token of one repository does not read another's.
#[tokio::test]
async fn an_issuer_allow_scopes_its_tokens_and_repositories_read_only_their_own() {
    let m = jwks_server(&["rsa-1"]).await;
    let extra = format!("{}    allow: {{environments: [\"prod*\"]}}\n", github_issuer(&m));
    let app = TestApp::builder().config_extra(&extra).in_process().await;
    let s = app.http();
    let staging = sign("rsa-1", &github_claims("staging"));
    let (st, v) = open(&s, &staging, json!({"environment": "staging"})).await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("out_of_scope")), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    for want in ["environment `staging`", "prod*", GITHUB] {
        assert!(msg.contains(want), "{want} not in {msg}");
    }
    let web = sign("rsa-1", &github_claims("production"));
    let (st, v) = open(&s, &web, json!({"environment": "production"})).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let api = sign(
        "rsa-1",
        &with(
            github_claims("production"),
            json!({"repository": "acme/api", "repository_id": "4343", "sub": "repo:acme/api:environment:production"}),
        ),
    );
    for route in ["", "/record", "/audit", "/wait?timeout=0"] {
        let (st, other) = call(&s, "GET", &format!("/requests/{id}{route}"), &api, None).await;
        assert_eq!(st, 404, "{route}: {other}");
        assert_eq!(other["error"]["message"], format!("no request `{id}`"), "{route}");
    }
    let (st, v) = call(&s, "POST", &format!("/requests/{id}/cancel"), &api, None).await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = call(&s, "GET", &format!("/requests/{id}"), &web, None).await;
    assert_eq!((st, v["opened_by"].as_str()), (200, Some("oidc:github")), "{v}");
}
