//! Forge groups and comment approvals end to end: a real server whose GitHub and GitLab
//! APIs are wiremock servers, the real `gate` binary waiting on the outcome.

use crate::helpers::*;
use jitgate::core::decide::Status;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const GH_TOKEN: &str = "ghp_test_token";
const GL_TOKEN: &str = "glpat-test-token";
const GH_SECRET: &str = "gh-webhook-secret";
const GL_SECRET: &str = "gl-webhook-secret";
const TEAM: &str = "/orgs/acme/teams/security/members";
const GROUP: &str = "/groups/acme%2Frelease-managers/members/all";

const POLICY: &str = "version: 1
groups:
  sre: [alice, bob, carol]
  security: { github_team: acme/security }
  release: { gitlab_group: acme/release-managers }
rules:
  - name: production
    match: { environment: production }
    require: [{ group: security, count: 1 }]
  - name: critical
    match: { environment: critical }
    require: [{ group: security, count: 2 }]
  - name: release
    match: { environment: release }
    require: [{ group: release, count: 1 }]
  - name: everything else
    decision: deny
";

fn forge_config(gh: &str, gl: &str) -> String {
    format!(
        "forge:\n  github:\n    api_url: {gh}\n    token: {GH_TOKEN}\n    webhook_secret: {GH_SECRET}\n  gitlab:\n    api_url: {gl}/api/v4\n    token: {GL_TOKEN}\n    webhook_secret: {GL_SECRET}\n  cache_ttl: 5m\n"
    )
}

async fn start(db: Db, gh: &MockServer, gl: &MockServer) -> TestApp {
    TestApp::builder()
        .backend(db)
        .policy(POLICY)
        .config_extra(&forge_config(&gh.uri(), &gl.uri()))
        .spawn()
        .await
}

fn logins(v: &[&str]) -> Value {
    Value::Array(v.iter().map(|l| json!({"login": l, "id": 1, "type": "User"})).collect())
}

/// A one-page GitHub team.
async fn team(gh: &MockServer, members: &[&str]) {
    Mock::given(method("GET"))
        .and(path(TEAM))
        .and(header("authorization", format!("Bearer {GH_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(logins(members)))
        .mount(gh)
        .await;
}

async fn replies(m: &MockServer) -> Vec<Request> {
    m.received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect()
}

fn members_of(v: &jitgate::core::api::RequestView, group: &str) -> Vec<String> {
    v.requirements
        .iter()
        .find(|r| r.group == group)
        .unwrap()
        .members
        .clone()
}

#[tokio::test]
async fn github_team_of_more_than_100_members_across_pages() {
    let gh = MockServer::start().await;
    let gl = MockServer::start().await;
    let mut page1: Vec<String> = (0..99).map(|i| format!("outsider-{i}")).collect();
    page1.insert(40, "Alice-GH".into());
    let mut page2: Vec<String> = (0..60).map(|i| format!("other-{i}")).collect();
    page2.push("bob-gh".into());
    page2.push("dave-gh".into());
    let p1: Vec<&str> = page1.iter().map(String::as_str).collect();
    let p2: Vec<&str> = page2.iter().map(String::as_str).collect();
    // Page 2 is reached through the Link header only.
    let next = format!(
        "<{}/organizations/9/team/7/members?per_page=100&page=2>; rel=\"next\"",
        gh.uri()
    );
    Mock::given(method("GET"))
        .and(path(TEAM))
        .and(query_param("per_page", "100"))
        .and(query_param("page", "1"))
        .and(header("authorization", format!("Bearer {GH_TOKEN}").as_str()))
        .and(header("x-github-api-version", "2022-11-28"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(logins(&p1))
                .insert_header("link", next.as_str()),
        )
        .expect(1)
        .mount(&gh)
        .await;
    Mock::given(method("GET"))
        .and(path("/organizations/9/team/7/members"))
        .and(query_param("page", "2"))
        .and(header("authorization", format!("Bearer {GH_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(logins(&p2)).insert_header(
            "link",
            format!("<{}{TEAM}?per_page=100&page=1>; rel=\"prev\"", gh.uri()).as_str(),
        ))
        .expect(1)
        .mount(&gh)
        .await;
    let s = start(Db::Sqlite, &gh, &gl).await;
    let w = s.open(&["--environment", "production", "--actor", "erin"]).await;
    assert_eq!(w.opened["status"], "pending");
    let v = s.client("ci").get(&w.id).await.unwrap();
    // Logins map to configured users; the 160 others are not users and cannot vote.
    assert_eq!(members_of(&v, "security"), ["alice", "bob", "dave"]);
    assert_eq!(v.requirements[0].source.as_deref(), Some("github_team:acme/security"));
    // A second request within cache_ttl reuses the list (the mocks expect one call each)…
    let w2 = s.open(&["--environment", "production", "--actor", "frank"]).await;
    let v2 = s.client("ci").get(&w2.id).await.unwrap();
    assert_eq!(members_of(&v2, "security"), ["alice", "bob", "dave"]);
    gh.verify().await;
    gh.reset().await;
    // …but a vote reads the team again.
    team(&gh, &["bob-gh"]).await;
    s.client("bob").approve(&w.id, Some("ok".into())).await.unwrap();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 0, "{err}");
    let reads = gh.received_requests().await.unwrap();
    assert_eq!(reads.len(), 1, "one live read for the vote");
    s.client("ci").cancel(&w2.id, None).await.unwrap();
}

#[tokio::test]
async fn removed_member_refused_at_vote_time_and_added_member_counts() {
    let gh = MockServer::start().await;
    let gl = MockServer::start().await;
    team(&gh, &["alice-gh", "bob-gh", "dave-gh"]).await;
    let s = start(Db::Sqlite, &gh, &gl).await;
    let w = s.open(&["--environment", "critical", "--actor", "erin"]).await;
    let v = s.client("ci").get(&w.id).await.unwrap();
    assert_eq!(members_of(&v, "security"), ["alice", "bob", "dave"]);
    s.client("bob").approve(&w.id, None).await.unwrap();

    // Alice and bob leave the team, carol joins.
    gh.reset().await;
    team(&gh, &["dave-gh", "carol-gh"]).await;
    let e = s.client("alice").approve(&w.id, None).await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert!(e.to_string().contains("not in any group"), "{e}");
    // Frank was never in it: he may not even read it, so it is unknown to him.
    let e = s.client("frank").approve(&w.id, None).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    // Bob's approval was cast while he was a member: it still counts. Carol's completes it.
    let mid = s.client("ci").get(&w.id).await.unwrap();
    assert_eq!(mid.requirements[0].approved_by, ["bob"]);
    s.client("carol").approve(&w.id, None).await.unwrap();
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{err}");
    let out = events.iter().rev().find(|e| e["event"] == "outcome").unwrap();
    assert_eq!(out["approved_by"], json!(["bob", "carol"]));
    // The vote's audit event names the forge group it was counted for.
    let audit = s.client("ci").audit(&v.id).await.unwrap();
    let carol = audit.iter().find(|e| e.kind == "vote" && e.actor == "carol").unwrap();
    assert_eq!(carol.data["forge_groups"], json!(["security"]));
}

#[tokio::test]
async fn forge_down_refuses_votes_and_opens() {
    let gh = MockServer::start().await;
    let gl = MockServer::start().await;
    team(&gh, &["alice-gh", "bob-gh"]).await;
    let s = start(Db::Sqlite, &gh, &gl).await;
    let w = s.open(&["--environment", "production", "--actor", "erin"]).await;
    // The API answers 502: not reachable in any useful way.
    gh.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&gh)
        .await;
    let e = s.client("bob").approve(&w.id, None).await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    assert!(
        e.to_string().contains("could not reach GitHub team acme/security"),
        "{e}"
    );
    assert!(e.to_string().contains("not counted"), "{e}");
    // The API gone altogether: the same.
    drop(gh);
    let e = s.client("bob").approve(&w.id, None).await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    let v = s.client("ci").get(&w.id).await.unwrap();
    assert_eq!(v.status, Status::Pending);
    assert!(v.votes.is_empty());
    // A GitLab group that cannot be read: the open is refused (503), so the gate retries.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&gl)
        .await;
    let out = s
        .run(
            "ci",
            &[
                "request",
                "--environment",
                "release",
                "--actor",
                "erin",
                "--retry-budget",
                "1s",
            ],
        )
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("could not reach GitLab group acme/release-managers"),
        "{out:?}"
    );
    s.client("ci").cancel(&w.id, None).await.unwrap();
}

fn sign(body: &[u8]) -> String {
    github_signature(GH_SECRET, body)
}

fn pr_comment(login: &str, comment_id: u64, text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "created",
        "issue": {"number": 7, "title": "Deploy", "pull_request": {"url": "https://api.github.com/repos/acme/web/pulls/7"}},
        "comment": {
            "id": comment_id, "body": text, "user": {"login": login, "id": 5},
            "html_url": format!("https://github.com/acme/web/pull/7#issuecomment-{comment_id}"),
        },
        "repository": {"full_name": "acme/web", "name": "web", "owner": {"login": "acme"}},
        "sender": {"login": login},
    }))
    .unwrap()
}

async fn post_github(s: &TestApp, delivery: &str, body: &[u8], signature: Option<String>) -> (u16, Value) {
    github_delivery(s, "issue_comment", delivery, body, signature).await
}

/// The reply comments posted so far, checked for method, path and auth; their bodies.
async fn github_replies(gh: &MockServer) -> Vec<String> {
    replies(gh)
        .await
        .iter()
        .map(|r| {
            assert_eq!(r.url.path(), "/repos/acme/web/issues/7/comments");
            assert_eq!(
                r.headers.get("authorization").unwrap().to_str().unwrap(),
                format!("Bearer {GH_TOKEN}")
            );
            let b: Value = serde_json::from_slice(&r.body).unwrap();
            b["body"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn github_comment_approvals() {
    for db in backends() {
        let gh = MockServer::start().await;
        let gl = MockServer::start().await;
        team(&gh, &["alice-gh", "bob-gh", "carol-gh"]).await;
        Mock::given(method("POST"))
            .and(path("/repos/acme/web/issues/7/comments"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
            .mount(&gh)
            .await;
        let s = start(db, &gh, &gl).await;
        // Alice opened PR 7's deploy: she is the requester.
        let w = s
            .open(&[
                "--environment",
                "production",
                "--repository",
                "acme/web",
                "--actor",
                "alice-gh",
                "--label",
                "pull_request=7",
            ])
            .await;
        // Another repository's request with the same PR number is not this PR's.
        let other = s
            .open(&[
                "--environment",
                "production",
                "--repository",
                "acme/api",
                "--actor",
                "erin",
                "--label",
                "pull_request=7",
            ])
            .await;

        // Unsigned, and signed with another secret: 401, nothing done, no reply.
        let body = pr_comment("bob-gh", 100, "/approve");
        let (st, _) = post_github(&s, "d-0", &body, None).await;
        assert_eq!(st, 401);
        let wrong = format!(
            "sha256={}",
            hex::encode(jitgate::core::crypto::hmac_sha256(b"guess", &body))
        );
        let (st, v) = post_github(&s, "d-0", &body, Some(wrong)).await;
        assert_eq!(st, 401, "{v}");
        // A valid signature over another body does not pass either.
        let (st, _) = post_github(&s, "d-0", &pr_comment("bob-gh", 100, "/approve!"), Some(sign(&body))).await;
        assert_eq!(st, 401);
        assert!(github_replies(&gh).await.is_empty());
        assert_eq!(s.client("ci").get(&w.id).await.unwrap().status, Status::Pending);

        // The requester.
        let body = pr_comment("alice-gh", 101, "/approve my own");
        let (st, v) = post_github(&s, "d-1", &body, Some(sign(&body))).await;
        assert_eq!((st, v["result"].as_str()), (200, Some("refused")), "{v}");
        let r = github_replies(&gh).await;
        assert_eq!(r.len(), 1);
        assert!(
            r[0].contains("separation of duties") && r[0].contains("@alice-gh"),
            "{}",
            r[0]
        );
        assert!(r[0].contains(&w.id), "{}", r[0]);

        // Not in the team (and in no other required group): he may not read the request,
        // so for him the pull request has none.
        let body = pr_comment("frank-gh", 102, "/approve");
        let (_, v) = post_github(&s, "d-2", &body, Some(sign(&body))).await;
        assert_eq!(v["result"], "refused", "{v}");
        let r = github_replies(&gh).await;
        assert!(
            r[1].contains("no pending jitgate request belongs to this pull request #7"),
            "{}",
            r[1]
        );

        // Not a jitgate user at all.
        let body = pr_comment("mallory", 103, "/approve");
        let (_, v) = post_github(&s, "d-3", &body, Some(sign(&body))).await;
        assert_eq!(v["result"], "refused", "{v}");
        assert!(github_replies(&gh).await[2].contains("not a jitgate approver"));

        // Not a command: ignored, no reply.
        let body = pr_comment("bob-gh", 104, "looks good to me");
        let (_, v) = post_github(&s, "d-4", &body, Some(sign(&body))).await;
        assert_eq!(v["result"], "ignored", "{v}");
        assert_eq!(github_replies(&gh).await.len(), 3);

        // An eligible member approves; the waiting gate exits 0.
        let body = pr_comment("bob-gh", 105, "/approve ship it");
        let (st, v) = post_github(&s, "d-5", &body, Some(sign(&body))).await;
        assert_eq!((st, v["result"].as_str()), (200, Some("counted")), "{v}");
        assert_eq!(v["request"], w.id.as_str());
        let id = w.id.clone();
        let (code, _, err) = w.finish().await;
        assert_eq!(code, 0, "{err}");
        let r = github_replies(&gh).await;
        assert_eq!(r.len(), 4);
        assert!(
            r[3].contains("bob's approval counted") && r[3].contains("**approved**"),
            "{}",
            r[3]
        );
        assert!(r[3].contains(&format!("/requests/{id}")), "{}", r[3]);
        let view = s.client("ci").get(&id).await.unwrap();
        let vote = &view.votes[0];
        assert_eq!(
            (vote.voter.as_str(), vote.via.as_str(), vote.reason.as_deref()),
            ("bob", "comment", Some("ship it"))
        );
        assert_eq!(
            vote.source.as_deref(),
            Some("https://github.com/acme/web/pull/7#issuecomment-105")
        );
        assert_eq!(s.client("ci").get(&other.id).await.unwrap().status, Status::Pending);

        // Replays: the same delivery, and the same comment in another delivery.
        let (st, v) = post_github(&s, "d-5", &body, Some(sign(&body))).await;
        assert_eq!(st, 409, "{v}");
        assert_eq!(v["error"]["code"], "replayed_delivery");
        let (st, _) = post_github(&s, "d-6", &body, Some(sign(&body))).await;
        assert_eq!(st, 409);
        assert_eq!(github_replies(&gh).await.len(), 4, "no reply to a replay");
        // Nothing else pending on PR 7 of acme/web now.
        let body = pr_comment("carol-gh", 106, "/approve");
        let (_, v) = post_github(&s, "d-7", &body, Some(sign(&body))).await;
        assert!(
            v["message"].as_str().unwrap().contains("no pending jitgate request"),
            "{v}"
        );
        s.client("ci").cancel(&other.id, None).await.unwrap();
        let _ = other.finish().await;
    }
}

async fn post_gitlab(s: &TestApp, token: &str, note_id: u64, login: &str, text: &str) -> (u16, Value) {
    let body = json!({
        "object_kind": "note",
        "event_type": "note",
        "user": {"username": login, "name": login},
        "project": {"id": 42, "path_with_namespace": "acme/api"},
        "object_attributes": {
            "id": note_id, "note": text, "noteable_type": "MergeRequest", "action": "create",
            "url": format!("https://gitlab.example/acme/api/-/merge_requests/3#note_{note_id}"),
        },
        "merge_request": {"iid": 3, "id": 900},
    });
    let resp = s
        .http()
        .post("/webhooks/gitlab")
        .header("x-gitlab-event", "Note Hook")
        .header("x-gitlab-token", token)
        .header("x-gitlab-event-uuid", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await;
    (resp.status.as_u16(), resp.json_or_text().await)
}

#[tokio::test]
async fn gitlab_note_approvals_with_a_paginated_group() {
    let gh = MockServer::start().await;
    let gl = MockServer::start().await;
    // Two pages, linked by x-next-page.
    Mock::given(method("GET"))
        .and(path(format!("/api/v4{GROUP}")))
        .and(query_param("page", "1"))
        .and(header("private-token", GL_TOKEN))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"username": "carol-gl", "state": "active"}]))
                .insert_header("x-next-page", "2"),
        )
        .mount(&gl)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api/v4{GROUP}")))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!([{"username": "bob-gl", "state": "active"}, {"username": "dave-gl", "state": "blocked"}]),
                )
                .insert_header("x-next-page", ""),
        )
        .mount(&gl)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/projects/42/merge_requests/3/notes"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .mount(&gl)
        .await;
    let s = start(Db::Sqlite, &gh, &gl).await;
    let w = s
        .open(&[
            "--environment",
            "release",
            "--repository",
            "acme/api",
            "--actor",
            "erin-gl",
            "--label",
            "merge_request=3",
        ])
        .await;
    let v = s.client("ci").get(&w.id).await.unwrap();
    assert_eq!(members_of(&v, "release"), ["carol", "bob"]);

    let notes = || async {
        replies(&gl)
            .await
            .iter()
            .map(|r| {
                assert_eq!(r.url.path(), "/api/v4/projects/42/merge_requests/3/notes");
                assert_eq!(r.headers.get("private-token").unwrap().to_str().unwrap(), GL_TOKEN);
                // The same note writer as `gate request --gitlab-note`: a form, as the gitlab crate sends it.
                url::form_urlencoded::parse(&r.body)
                    .find(|(k, _)| k == "body")
                    .map(|(_, v)| v.into_owned())
                    .expect("a body field")
            })
            .collect::<Vec<_>>()
    };
    let (st, _) = post_gitlab(&s, "wrong", 1, "bob-gl", "/approve").await;
    assert_eq!(st, 401);
    assert!(notes().await.is_empty());
    // The requester (erin's GitLab login opened it).
    let (_, v) = post_gitlab(&s, GL_SECRET, 2, "erin-gl", "/approve").await;
    assert_eq!(v["result"], "refused", "{v}");
    assert!(notes().await[0].contains("separation of duties"));
    // Blocked in the group: not a member, so not one who may read the request.
    let (_, v) = post_gitlab(&s, GL_SECRET, 3, "dave-gl", "/approve").await;
    assert_eq!(v["result"], "refused", "{v}");
    assert!(notes().await[1].contains("no pending jitgate request belongs to this merge request"));
    // A deny needs a reason.
    let (_, v) = post_gitlab(&s, GL_SECRET, 4, "bob-gl", "/deny").await;
    assert_eq!(v["result"], "refused", "{v}");
    assert!(notes().await[2].contains("a deny needs a reason"));
    let (st, v) = post_gitlab(&s, GL_SECRET, 5, "bob-gl", "/approve").await;
    assert_eq!((st, v["result"].as_str()), (200, Some("counted")), "{v}");
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 0, "{err}");
    assert!(notes().await[3].contains("**approved**"));
    // The same note again (a retry, a resend): refused without acting.
    let (st, v) = post_gitlab(&s, GL_SECRET, 5, "bob-gl", "/approve").await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(notes().await.len(), 4);
}

/// A `/approve` comment naming a request the commenter may not read gets the reply an
/// unknown request gets; one naming none does not count it among the PR's requests.
#[tokio::test]
async fn a_comment_on_a_request_the_commenter_cannot_read_is_answered_as_unknown() {
    let gh = MockServer::start().await;
    let gl = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/web/issues/7/comments"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .mount(&gh)
        .await;
    let s = TestApp::builder()
        .config_extra(&forge_config(&gh.uri(), &gl.uri()))
        .spawn()
        .await;
    // One of sre (alice, bob, carol); erin is in ops only.
    let w = s
        .open(&[
            "--environment",
            "production",
            "--repository",
            "acme/web",
            "--actor",
            "dave",
            "--label",
            "pull_request=7",
        ])
        .await;
    let mut seen = Vec::new();
    for (n, text) in [
        (201, format!("/approve {}", w.id)),
        (202, "/approve req_nosuchrequest".to_string()),
        (203, "/approve".to_string()),
    ] {
        let body = pr_comment("erin-gh", n, &text);
        let (st, v) = post_github(&s, &format!("d-{n}"), &body, Some(sign(&body))).await;
        assert_eq!((st, v["result"].as_str()), (200, Some("refused")), "{v}");
        assert!(v["request"].is_null(), "{v}");
        seen.push(v["message"].as_str().unwrap().to_string());
    }
    assert_eq!(
        seen[0].replace(&w.id, "ID"),
        seen[1].replace("req_nosuchrequest", "ID"),
        "{seen:?}"
    );
    assert_eq!(seen[2], "no pending jitgate request belongs to this pull request #7");
    let replies = github_replies(&gh).await;
    assert_eq!(replies.len(), 3);
    assert_eq!(
        replies[0].replace(&w.id, "ID"),
        replies[1].replace("req_nosuchrequest", "ID"),
        "the replies on the forge are the same too"
    );
    // Bob, named, is counted.
    let body = pr_comment("bob-gh", 204, &format!("/approve {}", w.id));
    let (_, v) = post_github(&s, "d-204", &body, Some(sign(&body))).await;
    assert_eq!(v["result"], "counted", "{v}");
}
