//! The requester is known, or nothing opens: look-alike spellings of a person are that
//! person (or are refused), a request naming nobody is refused unless an OIDC token names
//! someone, and where the forge is asked, the people who wrote the commit are requesters
//! too, each with where we learnt it in the request and its signed record.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const GH_TOKEN: &str = "ghp_identity_test";
const GL_TOKEN: &str = "glpat-identity-test";

/// Opens a production request as the `ci` pipeline (a static token) with `context`.
async fn open(s: &TestApp, context: Value) -> (u16, Value) {
    let mut body = json!({"environment": "production", "repository": "acme/web", "commit": COMMIT});
    for (k, v) in context.as_object().unwrap() {
        body[k] = v.clone();
    }
    s.http()
        .api("POST", "/requests", &token("ci"), Some(json!({ "context": body })))
        .await
}

async fn post(s: &TestApp, body: Value) -> (u16, Value) {
    s.http().api("POST", "/requests", &token("ci"), Some(body)).await
}

async fn approve(s: &TestApp, who: &str, id: &str) -> (u16, Value) {
    s.http()
        .api("POST", &format!("/requests/{id}/approve"), &token(who), None)
        .await
}

/// The signed record's statement for request `id`.
async fn statement(s: &TestApp, id: &str) -> Value {
    let envelope: Value = serde_json::from_str(&s.client("ci").record(id).await.unwrap()).unwrap();
    let payload = B64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

fn sources(v: &Value) -> Vec<(String, String, String)> {
    v.as_array()
        .unwrap_or_else(|| panic!("no requester_sources: {v}"))
        .iter()
        .map(|o| {
            (
                o["identity"].as_str().unwrap().to_string(),
                o["source"].as_str().unwrap().to_string(),
                o["from"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has(list: &[(String, String, String)], identity: &str, source: &str, from: &str) -> bool {
    list.iter().any(|(i, s, f)| i == identity && s == source && f == from)
}

/// Each spelling alice's pipeline might send for her: the request opens with alice as
/// its requester and her own approval is refused, or the open is refused naming the field.
async fn look_alikes_on(db: Db) {
    let s = TestApp::builder().backend(db).spawn().await;
    let as_alice = [
        ("actor", "alice ", "alice"),
        ("actor", "Alice", "alice"),
        ("actor", "ａｌｉｃｅ", "alice"),
        ("triggering_actor", "ALICE-GH", "alice-gh"),
        ("commit_author", "Alice <alice@example.test>", "alice@example.test"),
    ];
    for (field, given, normal) in as_alice {
        let mut ctx = json!({ field: given });
        if field != "actor" {
            ctx["actor"] = json!("dave");
        }
        let (st, v) = open(&s, ctx).await;
        assert_eq!(st, 201, "{given:?}: {v}");
        assert_eq!(v["context"][field], normal, "stored in its normal form: {v}");
        let requester = v["requester"].as_array().unwrap();
        assert!(requester.contains(&json!("alice")), "{given:?}: {v}");
        let from = sources(&v["requester_sources"]);
        assert!(has(&from, normal, "asserted", &format!("context.{field}")), "{from:?}");
        let id = v["id"].as_str().unwrap();
        let given_kept = v["requester_sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["identity"] == normal)
            .and_then(|o| o["given"].as_str());
        assert_eq!(given_kept, (given != normal).then_some(given), "{v}");
        let (st, e) = approve(&s, "alice", id).await;
        assert_eq!(
            (st, e["error"]["code"].as_str()),
            (403, Some("requester_cannot_vote")),
            "{given:?}: {e}"
        );
        // Someone else still may: the refusal is alice's alone.
        let (st, e) = approve(&s, "bob", id).await;
        assert_eq!(st, 200, "{e}");
    }

    let refused = [
        (
            "actor",
            "alice\u{200B}",
            "context.actor: contains U+200B at character 6, an invisible format character",
        ),
        (
            "actor",
            "\u{FEFF}alice",
            "context.actor: contains U+FEFF at character 1",
        ),
        (
            "actor",
            "al\u{200E}ice",
            "context.actor: contains U+200E at character 3",
        ),
        (
            "actor",
            "\u{430}lice",
            "context.actor: `\u{430}lice` mixes scripts (Cyrillic, Latin)",
        ),
        (
            "commit_author",
            "\u{251}lice",
            "context.commit_author: `\u{251}lice` looks like `alice`",
        ),
        (
            "triggering_actor",
            "Alice <>",
            "context.triggering_actor: `alice <>` names no address",
        ),
    ];
    for (field, given, message) in refused {
        let (st, e) = open(
            &s,
            json!({ field: given, "actor": if field == "actor" { given } else { "dave" } }),
        )
        .await;
        assert_eq!(
            (st, e["error"]["code"].as_str()),
            (422, Some("invalid_field")),
            "{given:?}: {e}"
        );
        let got = e["error"]["message"].as_str().unwrap();
        assert!(got.starts_with(message), "{given:?}: {got}");
    }
}

#[tokio::test]
async fn look_alike_identities_cannot_vote_on_their_own_request() {
    for db in backends() {
        look_alikes_on(db).await;
    }
}

/// The real gate: `--actor Ａｌｉｃｅ` is alice, `--actor 'alice<U+200B>'` and `--actor ""`
/// are refused with the reason and exit 2 (no decision could be had).
#[tokio::test]
async fn the_gate_binary_sends_look_alikes_and_the_server_sees_through_them() {
    let s = TestApp::spawn().await;
    let w = s
        .open(&[
            "--environment",
            "production",
            "--actor",
            "Ａｌｉｃｅ",
            "--commit",
            COMMIT,
        ])
        .await;
    let (st, e) = approve(&s, "alice", &w.id).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (403, Some("requester_cannot_vote")),
        "{e}"
    );
    s.client("bob").approve(&w.id, None).await.unwrap();
    let record = w.record_path().to_path_buf();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 0, "{err}");
    let env: Value = serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    let st: Value = serde_json::from_slice(&B64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    let req = &st["predicate"]["request"];
    assert_eq!(req["context"]["actor"], "alice");
    assert_eq!(req["requester_sources"][0]["given"], "Ａｌｉｃｅ", "{req}");

    let out = s
        .run(
            "ci",
            &["request", "--environment", "production", "--actor", "alice\u{200B}"],
        )
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("context.actor: contains U+200B") && out.stderr.contains("invalid_field"),
        "{}",
        out.stderr
    );

    let out = s
        .run("ci", &["request", "--environment", "production", "--actor", ""])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--actor is empty"), "{}", out.stderr);
}

async fn unknown_requester_on(db: Db) {
    let s = TestApp::builder().backend(db).spawn().await;
    for ctx in [
        json!({}),
        json!({"actor": "", "triggering_actor": "", "commit_author": ""}),
    ] {
        let (st, e) = open(&s, ctx).await;
        assert_eq!(
            (st, e["error"]["code"].as_str()),
            (422, Some("requester_unknown")),
            "{e}"
        );
        assert!(e["error"]["message"].as_str().unwrap().contains("--actor"), "{e}");
    }
    // An automatic decision too: a record naming no requester is no evidence.
    let (st, e) = s
        .http()
        .api(
            "POST",
            "/requests",
            &token("ci"),
            Some(json!({"context": {"environment": "staging"}})),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (422, Some("requester_unknown")),
        "{e}"
    );

    // The real gate outside CI with no --actor: refused, with what to pass.
    let out = s.run("ci", &["request", "--environment", "production"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("requester_unknown") && out.stderr.contains("--actor NAME"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_request_without_a_requester_is_refused() {
    for db in backends() {
        unknown_requester_on(db).await;
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/oidc/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A token for the generic issuer `iss`, signed with fixture key rsa-1.
fn oidc_token(iss: &str, sub: Option<&str>) -> String {
    let t = jitgate::core::duration::now_ms() / 1000;
    let mut claims = json!({"iss": iss, "aud": "jitgate", "iat": t - 5, "exp": t + 300});
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa-1".into());
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_der(&fixture("rsa-1.der"))).unwrap()
}

#[tokio::test]
async fn a_verified_claim_names_the_requester_when_the_body_does_not() {
    let jwks = MockServer::start().await;
    let keys: Value = serde_json::from_slice(&fixture("rsa-1.jwk.json")).unwrap();
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [keys]})))
        .mount(&jwks)
        .await;
    let iss = "https://ci.example.test";
    let app = TestApp::builder()
        .config_extra(&format!(
            "oidc:\n  - issuer: {iss}\n    audience: jitgate\n    platform: generic\n    jwks_url: {}/jwks\n",
            jwks.uri()
        ))
        .in_process()
        .await;
    let http = app.http();
    let body = json!({"context": {"environment": "production"}});
    let (st, v) = http
        .api(
            "POST",
            "/requests",
            &oidc_token(iss, Some("Alice-GH")),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["context"]["actor"], "alice-gh", "{v}");
    let from = sources(&v["requester_sources"]);
    assert!(has(&from, "alice-gh", "verified_claim", "context.actor"), "{from:?}");
    assert!(has(&from, "alice", "config", "alice-gh"), "{from:?}");
    let (st, e) = http
        .api(
            "POST",
            &format!("/requests/{}/approve", v["id"].as_str().unwrap()),
            &token("alice"),
            None,
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (403, Some("requester_cannot_vote")),
        "{e}"
    );

    // A static token with the same body names nobody.
    let (st, e) = http.api("POST", "/requests", &token("ci"), Some(body)).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (422, Some("requester_unknown")),
        "{e}"
    );
}

/// GitHub's answers, trimmed from the REST docs' examples: a commit whose author is erin
/// and whose committer is GitHub's web-flow, in pull request #12 by carol.
async fn github_commit(gh: &MockServer) {
    let commit = json!({
        "url": format!("https://api.github.com/repos/acme/web/commits/{COMMIT}"),
        "sha": COMMIT,
        "node_id": "MDY6Q29tbWl0NmRjYjA5YjViNTc4NzVmMzM0ZjYxYWViZWQ2OTVlMmU0MTkzZGI1ZQ==",
        "html_url": format!("https://github.com/acme/web/commit/{COMMIT}"),
        "comments_url": format!("https://api.github.com/repos/acme/web/commits/{COMMIT}/comments"),
        "commit": {
            "url": format!("https://api.github.com/repos/acme/web/git/commits/{COMMIT}"),
            "author": {"name": "Erin", "email": "Erin@Example.test", "date": "2026-01-01T00:00:00Z"},
            "committer": {"name": "GitHub", "email": "noreply@github.com", "date": "2026-01-01T00:00:00Z"},
            "message": "Merge pull request #12 from acme/feature",
            "tree": {"url": "https://api.github.com/repos/acme/web/tree/6dcb09b5", "sha": "6dcb09b5"},
            "comment_count": 0,
            "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null}
        },
        "author": {"login": "erin-gh", "id": 5, "node_id": "MDQ6VXNlcjU=", "type": "User", "site_admin": false},
        "committer": {"login": "web-flow", "id": 19864447, "node_id": "MDQ6VXNlcjE5ODY0NDQ3", "type": "User", "site_admin": false},
        "parents": [{"url": "https://api.github.com/repos/acme/web/commits/6dcb09b5", "sha": "6dcb09b5"}],
        "stats": {"additions": 104, "deletions": 4, "total": 108},
        "files": []
    });
    let pulls = json!([{
        "url": "https://api.github.com/repos/acme/web/pulls/12",
        "id": 1, "node_id": "MDExOlB1bGxSZXF1ZXN0MQ==",
        "html_url": "https://github.com/acme/web/pull/12",
        "number": 12, "state": "closed", "locked": false, "title": "Feature",
        "user": {"login": "carol-gh", "id": 3, "node_id": "MDQ6VXNlcjM=", "type": "User", "site_admin": false},
        "body": "Please pull these awesome changes",
        "labels": [], "milestone": null, "active_lock_reason": null,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "closed_at": "2026-01-01T00:00:00Z", "merged_at": "2026-01-01T00:00:00Z",
        "merge_commit_sha": COMMIT, "assignee": null, "assignees": [], "requested_reviewers": [],
        "head": {"label": "acme:feature", "ref": "feature", "sha": "6dcb09b5"},
        "base": {"label": "acme:main", "ref": "main", "sha": "6dcb09b5"},
        "author_association": "MEMBER", "draft": false
    }]);
    let auth = format!("Bearer {GH_TOKEN}");
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/web/commits/{COMMIT}")))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(commit))
        .mount(gh)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/web/commits/{COMMIT}/pulls")))
        .and(query_param("per_page", "100"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(pulls))
        .mount(gh)
        .await;
}

fn github_forge(gh: &MockServer, extra: &str) -> String {
    format!(
        "forge:\n  github:\n    api_url: {}\n    token: {GH_TOKEN}\n{extra}",
        gh.uri()
    )
}

async fn github_authors_on(db: Db) {
    let gh = MockServer::start().await;
    github_commit(&gh).await;
    let s = TestApp::builder()
        .backend(db)
        .config_extra(&github_forge(&gh, ""))
        .spawn()
        .await;
    let (st, v) = open(&s, json!({"platform": "github", "actor": "dave-gh"})).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let requester = v["requester"].as_array().unwrap();
    for who in [
        "dave",
        "carol",
        "erin",
        "carol-gh",
        "erin-gh",
        "erin@example.test",
        "web-flow",
    ] {
        assert!(requester.contains(&json!(who)), "{who} not in {requester:?}");
    }
    // carol wrote the pull request that bob merged: she may not approve its deploy.
    let (st, e) = approve(&s, "carol", &id).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (403, Some("requester_cannot_vote")),
        "{e}"
    );
    let (st, e) = approve(&s, "bob", &id).await;
    assert_eq!((st, e["status"].as_str()), (200, Some("approved")), "{e}");

    let st = statement(&s, &id).await;
    let from = sources(&st["predicate"]["request"]["requester_sources"]);
    assert!(has(&from, "dave-gh", "asserted", "context.actor"), "{from:?}");
    assert!(
        has(&from, "carol-gh", "forge_api", "github pull request #12 user.login"),
        "{from:?}"
    );
    assert!(has(&from, "carol", "config", "carol-gh"), "{from:?}");
    assert!(
        has(&from, "erin-gh", "forge_api", "github commit author.login"),
        "{from:?}"
    );
    assert!(
        has(
            &from,
            "erin@example.test",
            "forge_api",
            "github commit commit.author.email"
        ),
        "{from:?}"
    );
    assert!(
        has(&from, "web-flow", "forge_api", "github commit committer.login"),
        "{from:?}"
    );
    let email = st["predicate"]["request"]["requester_sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["from"] == "github commit commit.author.email")
        .unwrap()
        .clone();
    assert_eq!(email["given"], "Erin@Example.test", "{email}");
}

#[tokio::test]
async fn the_github_pull_request_author_cannot_approve_its_deploy() {
    for db in backends() {
        github_authors_on(db).await;
    }
}

/// When GitHub cannot say who wrote the commit, nothing opens: a 503 to retry when it
/// failed, a 422 naming the commit when it knows no such commit.
#[tokio::test]
async fn a_forge_that_cannot_answer_opens_nothing() {
    let gh = MockServer::start().await;
    let s = TestApp::builder().config_extra(&github_forge(&gh, "")).spawn().await;
    let ctx = json!({"platform": "github", "actor": "dave-gh"});
    let body = |key: &str| {
        let mut c = json!({"environment": "production", "repository": "acme/web", "commit": COMMIT});
        for (k, v) in ctx.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!({"context": c, "idempotency_key": key})
    };

    let failing = Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .mount_as_scoped(&gh)
        .await;
    let (st, e) = post(&s, body("k1")).await;
    assert_eq!((st, e["error"]["code"].as_str()), (503, Some("unavailable")), "{e}");
    let m = e["error"]["message"].as_str().unwrap();
    assert!(
        m.contains(&format!("who wrote commit {COMMIT} of acme/web"))
            && m.contains("HTTP 502")
            && m.contains("not opened"),
        "{m}"
    );
    drop(failing);

    let missing = Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "message": "No commit found for SHA: 4b825dc", "documentation_url": "https://docs.github.com/rest/commits/commits#get-a-commit"
        })))
        .mount_as_scoped(&gh)
        .await;
    let (st, e) = post(&s, body("k1")).await;
    assert_eq!((st, e["error"]["code"].as_str()), (422, Some("invalid_field")), "{e}");
    let m = e["error"]["message"].as_str().unwrap();
    assert!(
        m.starts_with("context.commit: GitHub answered 404 reading the commit"),
        "{m}"
    );
    drop(missing);

    // Neither attempt opened anything: the same key now opens a new request.
    github_commit(&gh).await;
    let (st, v) = post(&s, body("k1")).await;
    assert_eq!(st, 201, "{v}");

    // With `requesters: false` the forge is not asked.
    let quiet = MockServer::start().await;
    let s2 = TestApp::builder()
        .config_extra(&github_forge(&quiet, "    requesters: false\n"))
        .spawn()
        .await;
    let (st, v) = open(&s2, ctx.clone()).await;
    assert_eq!(st, 201, "{v}");
    assert!(quiet.received_requests().await.unwrap().is_empty());
    assert!(!v["requester"].as_array().unwrap().contains(&json!("carol")), "{v}");
}

async fn gitlab_authors_on(db: Db) {
    let gl = MockServer::start().await;
    let base = format!("/api/v4/projects/acme%2Fweb/repository/commits/{COMMIT}");
    Mock::given(method("GET"))
        .and(path(base.as_str()))
        .and(header("PRIVATE-TOKEN", GL_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": COMMIT, "short_id": "4b825dc6", "title": "Merge branch 'feature' into 'main'",
            "author_name": "Erin", "author_email": "erin@example.test", "authored_date": "2026-01-01T00:00:00.000Z",
            "committer_name": "Frank", "committer_email": "frank@example.test", "committed_date": "2026-01-01T00:00:00.000Z",
            "created_at": "2026-01-01T00:00:00.000Z", "message": "Merge branch 'feature' into 'main'",
            "parent_ids": ["ae1d9fb4"], "last_pipeline": null,
            "stats": {"additions": 15, "deletions": 10, "total": 25}, "status": "running",
            "web_url": format!("https://gitlab.example.com/acme/web/-/commit/{COMMIT}")
        })))
        .mount(&gl)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{base}/merge_requests")))
        .and(query_param("per_page", "100"))
        .and(header("PRIVATE-TOKEN", GL_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "id": 45, "iid": 7, "project_id": 42, "title": "Feature", "description": "",
            "state": "merged", "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
            "target_branch": "main", "source_branch": "feature",
            "author": {"id": 3, "name": "Carol", "username": "carol-gl", "state": "active",
                       "avatar_url": null, "web_url": "https://gitlab.example.com/carol-gl"},
            "merge_commit_sha": COMMIT, "web_url": "https://gitlab.example.com/acme/web/-/merge_requests/7"
        }])))
        .mount(&gl)
        .await;
    let s = TestApp::builder()
        .backend(db)
        .config_extra(&format!(
            "forge:\n  gitlab:\n    api_url: {}/api/v4\n    token: {GL_TOKEN}\n",
            gl.uri()
        ))
        .spawn()
        .await;
    let (st, v) = open(&s, json!({"platform": "gitlab", "actor": "dave-gl"})).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (st, e) = approve(&s, "carol", &id).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (403, Some("requester_cannot_vote")),
        "{e}"
    );
    let (st, e) = approve(&s, "bob", &id).await;
    assert_eq!((st, e["status"].as_str()), (200, Some("approved")), "{e}");
    let st = statement(&s, &id).await;
    let from = sources(&st["predicate"]["request"]["requester_sources"]);
    assert!(
        has(
            &from,
            "carol-gl",
            "forge_api",
            "gitlab merge request !7 author.username"
        ),
        "{from:?}"
    );
    assert!(has(&from, "carol", "config", "carol-gl"), "{from:?}");
    assert!(
        has(&from, "erin@example.test", "forge_api", "gitlab commit author_email"),
        "{from:?}"
    );
    assert!(
        has(
            &from,
            "frank@example.test",
            "forge_api",
            "gitlab commit committer_email"
        ),
        "{from:?}"
    );
    assert!(has(&from, "frank", "config", "frank@example.test"), "{from:?}");
}

#[tokio::test]
async fn the_gitlab_merge_request_author_cannot_approve_its_deploy() {
    for db in backends() {
        gitlab_authors_on(db).await;
    }
}
