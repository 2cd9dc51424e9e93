//! SCIM 2.0 provisioning at /scim/v2 against a real server, on SQLite and PostgreSQL:
//! users and groups created, filtered, paged, patched and deleted as an identity
//! provider does; a SCIM-deactivated approver's configured token and web session refused
//! on the next call (also on another replica); `{ scim_group: NAME }` requirements met
//! by a member and refused for a removed member; and scim2-tester (PyPI) run against it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const SCIM_TOKEN: &str = "scim-test-token";

fn scim_yaml() -> String {
    format!("scim:\n  token_sha256: {}\n", jitgate::auth::hash_token(SCIM_TOKEN))
}

/// One SCIM call: the status, the headers and the JSON body (Null when empty).
async fn scim(c: &Http, method: &str, path: &str, body: Option<Value>) -> (StatusCode, http::HeaderMap, Value) {
    let mut r = c
        .request(
            http::Method::from_bytes(method.as_bytes()).unwrap(),
            &format!("/scim/v2{path}"),
        )
        .bearer(SCIM_TOKEN);
    if let Some(b) = body {
        r = r.body("application/scim+json", b.to_string());
    }
    let resp = r.send().await;
    let (status, headers) = (resp.status, resp.headers.clone());
    let text = resp.text().await;
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
    };
    (status, headers, v)
}

async fn new_user(c: &Http, user_name: &str, email: &str) -> String {
    let (st, _, v) = scim(
        c,
        "POST",
        "/Users",
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name,
            "emails": [{"value": email, "type": "work", "primary": true}], "active": true}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

fn patch_op(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

fn assert_scim_error(v: &Value, status: u16, scim_type: Option<&str>) {
    assert_eq!(
        v["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{v}"
    );
    assert_eq!(v["status"], status.to_string(), "{v}");
    if let Some(t) = scim_type {
        assert_eq!(v["scimType"], t, "{v}");
    }
}

async fn provisioning_on(db: Db) {
    let s = TestApp::builder().backend(db).config_extra(&scim_yaml()).spawn().await;
    let c = s.http();

    // The token is the only way in, and a refusal is a SCIM error.
    let r = c.get("/scim/v2/Users").bearer(&token("alice")).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["content-type"], "application/scim+json");
    assert_scim_error(&r.json().await, 401, None);

    let a = new_user(&c, "Alice@Example.test", "alice@example.test").await;
    let z = new_user(&c, "zoe@example.test", "zoe@example.test").await;
    // userName is unique in its normal form.
    let (st, _, v) = scim(&c, "POST", "/Users", Some(json!({"userName": "alice@EXAMPLE.test"}))).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_scim_error(&v, 409, Some("uniqueness"));
    // A look-alike is no identity.
    let (st, _, v) = scim(&c, "POST", "/Users", Some(json!({"userName": "аlice"}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_scim_error(&v, 400, Some("invalidValue"));
    let (st, _, v) = scim(&c, "POST", "/Users", Some(json!({"displayName": "no name"}))).await;
    assert_eq!(
        (st, v["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidValue"))
    );
    let (st, _, v) = scim(&c, "POST", "/Users", None).await;
    assert_eq!(
        (st, v["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidSyntax"))
    );

    // Filters and pages.
    let (st, _, v) = scim(
        &c,
        "GET",
        "/Users?filter=userName%20eq%20%22alice%40example.test%22",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["totalResults"], 1, "{v}");
    assert_eq!(v["Resources"][0]["id"], a.as_str());
    let (_, _, v) = scim(&c, "GET", "/Users?startIndex=2&count=1", None).await;
    assert_eq!(
        (v["totalResults"].as_u64(), v["startIndex"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(v["Resources"][0]["id"], z.as_str());
    let (st, _, v) = scim(&c, "GET", "/Users?filter=userName%20zz%20%22x%22", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_scim_error(&v, 400, Some("invalidFilter"));
    let (st, _, v) = scim(&c, "GET", "/Users?count=many", None).await;
    assert_eq!(
        (st, v["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidValue"))
    );

    // PATCH as Entra ID writes it, with an ETag that must match.
    let (_, h, v) = scim(&c, "GET", &format!("/Users/{a}"), None).await;
    let etag = h["etag"].to_str().unwrap().to_string();
    assert_eq!(v["meta"]["version"], etag.as_str());
    let r = c
        .request(http::Method::PATCH, &format!("/scim/v2/Users/{a}"))
        .bearer(SCIM_TOKEN)
        .header("if-match", "W/\"999\"")
        .body(
            "application/scim+json",
            patch_op(json!([{"op": "Replace", "path": "active", "value": "False"}])).to_string(),
        )
        .send()
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let (st, h, v) = scim(
        &c,
        "PATCH",
        &format!("/Users/{a}"),
        Some(patch_op(json!([{"op": "Replace", "path": "active", "value": "False"},
            {"op": "add", "path": "name.givenName", "value": "Alice"}]))),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["active"].as_bool(), v["name"]["givenName"].as_str()),
        (Some(false), Some("Alice"))
    );
    assert_ne!(h["etag"].to_str().unwrap(), etag);
    let (st, _, v) = scim(
        &c,
        "PATCH",
        &format!("/Users/{a}"),
        Some(patch_op(json!([{"op": "remove"}]))),
    )
    .await;
    assert_eq!(
        (st, v["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("noTarget"))
    );

    // Groups: members by id, filtered by displayName, patched add/remove.
    let (st, _, g) = scim(
        &c,
        "POST",
        "/Groups",
        Some(json!({"displayName": "Release Managers", "members": [{"value": a}]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let (st, _, v) = scim(
        &c,
        "POST",
        "/Groups",
        Some(json!({"displayName": "x", "members": [{"value": "nobody"}]})),
    )
    .await;
    assert_eq!(
        (st, v["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidValue"))
    );
    let (_, _, v) = scim(
        &c,
        "PATCH",
        &format!("/Groups/{gid}"),
        Some(patch_op(
            json!([{"op": "add", "path": "members", "value": [{"value": z}]},
            {"op": "remove", "path": format!("members[value eq \"{a}\"]")}]),
        )),
    )
    .await;
    let members: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, [z.as_str()], "{v}");
    let (_, _, v) = scim(
        &c,
        "GET",
        "/Groups?filter=displayName%20eq%20%22release%20managers%22",
        None,
    )
    .await;
    assert_eq!(v["totalResults"], 1, "{v}");
    let (_, _, v) = scim(&c, "GET", &format!("/Users/{z}"), None).await;
    assert_eq!(v["groups"][0]["display"], "Release Managers", "{v}");

    // Deleting: gone from lists and groups; unknown ids are SCIM 404s.
    let (st, _, _) = scim(&c, "DELETE", &format!("/Users/{z}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, v) = scim(&c, "GET", &format!("/Users/{z}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_scim_error(&v, 404, None);
    let (_, _, v) = scim(&c, "GET", &format!("/Groups/{gid}"), None).await;
    assert_eq!(v["members"], json!([]), "{v}");
    let (st, _, v) = scim(&c, "GET", "/Nothing", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_scim_error(&v, 404, None);

    // Discovery.
    let (_, _, v) = scim(&c, "GET", "/ServiceProviderConfig", None).await;
    assert_eq!(v["patch"]["supported"], true);
    let (_, _, v) = scim(&c, "GET", "/ResourceTypes", None).await;
    assert_eq!(v["totalResults"], 2);
    let (_, _, v) = scim(&c, "GET", "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", None).await;
    assert_eq!(v["attributes"][0]["name"], "userName");
}

#[tokio::test]
async fn without_a_scim_section_there_is_no_scim() {
    let s = TestApp::spawn().await;
    for path in ["/ServiceProviderConfig", "/Schemas", "/Users"] {
        let (st, _, v) = scim(&s.http(), "GET", path, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
        assert_scim_error(&v, 404, None);
    }
}

#[tokio::test]
async fn scim_provisioning_on_every_backend() {
    for db in backends() {
        provisioning_on(db).await;
    }
}

async fn deactivation_on(db: Db) {
    let s = TestApp::builder().backend(db).config_extra(&scim_yaml()).spawn().await;
    let c = s.http();
    let (cookie, _) = crate::ui::sign_in(&c, "alice").await;
    // Bob's identity is not SCIM-managed: he is never affected.
    let (st, _) = c.api("GET", "/requests", &token("alice"), None).await;
    assert_eq!(st, 200);
    // alice's email names her `users:` entry: this SCIM user is her.
    let a = new_user(&c, "alice.liddell", "ALICE@example.test").await;
    let (st, _) = c.api("GET", "/requests", &token("alice"), None).await;
    assert_eq!(st, 200, "an active SCIM user keeps her token");

    let (st, _, _) = scim(
        &c,
        "PATCH",
        &format!("/Users/{a}"),
        Some(patch_op(json!([{"op": "replace", "value": {"active": false}}]))),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // The very next call with her configured token is refused, and so is her session.
    let (st, v) = c.api("GET", "/requests", &token("alice"), None).await;
    assert_eq!(st, 401, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("deactivated"), "{v}");
    let r = c.get("/").header("cookie", &cookie).send().await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the session no longer signs her in");
    assert!(r.headers["location"].to_str().unwrap().starts_with("/login"));
    let (st, _) = c.api("GET", "/requests", &token("bob"), None).await;
    assert_eq!(st, 200);
    // Signing in again with the token is refused too.
    let r = c.get("/login").send().await;
    let (pre, _) = r.cookie("gate_prelogin").unwrap();
    let html = r.text().await;
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &html[at..at + html[at..].find('"').unwrap()];
    let r = c
        .post("/login")
        .header("cookie", format!("gate_prelogin={pre}"))
        .form(&[("csrf", csrf), ("token", &token("alice")), ("next", "/")])
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.cookie("gate_session").is_none());

    if db == Db::Postgres {
        // Another replica on the same database refuses her too: no in-process state.
        let r = s.replica().await;
        let (st, _) = r.http().api("GET", "/requests", &token("alice"), None).await;
        assert_eq!(st, 401);
        let (st, _, _) = scim(
            &r.http(),
            "PATCH",
            &format!("/Users/{a}"),
            Some(patch_op(json!([{"op": "replace", "path": "active", "value": true}]))),
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        let (st, _) = c.api("GET", "/requests", &token("alice"), None).await;
        assert_eq!(st, 200, "reactivated on one replica, let in on the other");
    } else {
        let (st, _, _) = scim(
            &c,
            "PATCH",
            &format!("/Users/{a}"),
            Some(patch_op(json!([{"op": "replace", "path": "active", "value": true}]))),
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        let (st, _) = c.api("GET", "/requests", &token("alice"), None).await;
        assert_eq!(st, 200);
    }

    // A past vote stays in history after the person is deleted.
    let req = s.open_via_api("dave").await;
    let (st, v) = c
        .api(
            "POST",
            &format!("/requests/{}/approve", req.id),
            &token("alice"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _, _) = scim(&c, "DELETE", &format!("/Users/{a}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = c.api("GET", "/requests", &token("alice"), None).await;
    assert_eq!(st, 401, "a deleted person's token is refused");
    let (st, v) = c
        .api("GET", &format!("/requests/{}", req.id), &token("bob"), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["votes"][0]["voter"], "alice", "{v}");
    assert_eq!(v["status"], "approved");
}

#[tokio::test]
async fn a_scim_deactivated_approver_is_refused_on_the_next_call() {
    for db in backends() {
        deactivation_on(db).await;
    }
}

const SCIM_GROUP_POLICY: &str = "version: 1
groups:
  releasers: { scim_group: Release Managers }
rules:
  - name: production
    match: { environment: production }
    require: [{ group: releasers, count: 1 }]
";

async fn scim_group_on(db: Db) {
    let s = TestApp::builder()
        .backend(db)
        .policy(SCIM_GROUP_POLICY)
        .config_extra(&scim_yaml())
        .spawn()
        .await;
    let c = s.http();
    let alice = new_user(&c, "alice", "alice@example.test").await;
    let bob = new_user(&c, "bob", "bob@example.test").await;
    let (st, _, g) = scim(
        &c,
        "POST",
        "/Groups",
        Some(json!({"displayName": "release managers", "members": [{"value": alice}, {"value": bob}]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let gid = g["id"].as_str().unwrap().to_string();

    // The members are snapshotted when the request opens, as people.
    let r1 = s.open_via_api("dave").await;
    let mut members = r1.requirements[0].members.clone();
    members.sort();
    assert_eq!(members, ["alice", "bob"]);
    assert_eq!(
        r1.requirements[0].source.as_deref(),
        Some("scim_group:Release Managers")
    );
    let (st, v) = c
        .api(
            "POST",
            &format!("/requests/{}/approve", r1.id),
            &token("carol"),
            Some(json!({})),
        )
        .await;
    // carol is in no requirement of it, so it is not hers to read: the unknown id's 404.
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (st, v) = c
        .api(
            "POST",
            &format!("/requests/{}/approve", r1.id),
            &token("alice"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "approved");

    // Removed from the group after the request opened: bob's vote is refused.
    let r2 = s.open_via_api("dave").await;
    let (st, _, _) = scim(
        &c,
        "PATCH",
        &format!("/Groups/{gid}"),
        Some(patch_op(
            json!([{"op": "remove", "path": "members", "value": [{"value": bob}]}]),
        )),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = c
        .api(
            "POST",
            &format!("/requests/{}/approve", r2.id),
            &token("bob"),
            Some(json!({})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("not_eligible")), "{v}");
    let (st, v) = c
        .api(
            "POST",
            &format!("/requests/{}/approve", r2.id),
            &token("alice"),
            Some(json!({})),
        )
        .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("approved")), "{v}");
}

#[tokio::test]
async fn scim_group_requirements_follow_the_identity_provider() {
    for db in backends() {
        scim_group_on(db).await;
    }
}

#[tokio::test]
async fn scim2_tester_finds_no_error() {
    // .ci/run installs it in a venv of its own and names its python here.
    let python = std::env::var("GATE_SCIM_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python)
        .args(["-c", "import scim2_tester, httpx2"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip_or_fail(
            "scim2_tester_finds_no_error",
            "scim2-tester is not installed (python3 -m pip install 'scim2-tester[httpx2]==0.5.2', or set GATE_SCIM_PYTHON)",
        );
        return;
    }
    let s = TestApp::builder().config_extra(&scim_yaml()).spawn().await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scim_check.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(format!("{}/scim/v2", s.url))
        .arg(SCIM_TOKEN)
        .output()
        .await
        .expect("run tests/scim_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        results.len() > 20,
        "scim2-tester ran only {} checks: {stdout}",
        results.len()
    );
    let failed: Vec<&Value> = results
        .iter()
        .filter(|r| {
            !matches!(
                r["status"].as_str(),
                Some("SUCCESS" | "COMPLIANT" | "ACCEPTABLE" | "SKIPPED")
            )
        })
        .collect();
    assert!(failed.is_empty(), "scim2-tester checks that failed: {failed:#?}");
}
