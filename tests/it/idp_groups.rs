//! `{ idp_group: NAME }` through a real OpenID provider (tests/browser/provider.mjs, the
//! `oidc-provider` package) and a real `gate serve` with `sso.groups_claim`, signed in over
//! plain HTTP: the groups seen at sign-in go with the session and with each vote (request
//! view and record); a person counts for the group only through such a session; a token
//! vote never does; a session whose groups are older than `sso.max_group_age` is asked to
//! sign in again; and a person known only through SCIM signs in by SSO. SQLite and
//! PostgreSQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::*;

const CLIENT_ID: &str = "jitgate-idp-test";
const CLIENT_SECRET: &str = "idp-test-secret";
const SCIM_TOKEN: &str = "scim-idp-token";

const POLICY: &str = "version: 1
groups:
  release: { idp_group: release-managers }
rules:
  - name: production
    match: { environment: production }
    require: [{ group: release, count: 1 }]
";

/// The provider process with its pipes (held, never read again).
#[allow(dead_code)]
struct Provider(
    Child,
    tokio::process::ChildStdin,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
);

/// The provider, its issuer, and jitgate configured against it.
async fn start(db: Db) -> Option<(Provider, TestApp)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok || !dir.join("node_modules/oidc-provider/package.json").exists() {
        skip_or_fail(
            "idp_groups",
            "node or tests/browser/node_modules/oidc-provider is missing (npm ci --prefix tests/browser)",
        );
        return None;
    }
    let mut provider = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the OpenID provider");
    let mut lines = BufReader::new(provider.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().expect("the provider's issuer");
    let issuer = serde_json::from_str::<Value>(&first).unwrap()["issuer"]
        .as_str()
        .unwrap()
        .to_string();
    let extra = format!(
        "sso:\n  issuer: {issuer}\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n  user_claim: email\n  groups_claim: groups\n  max_group_age: 1h\nsession_ttl: 24h\nscim:\n  token_sha256: {}\n",
        jitgate::auth::hash_token(SCIM_TOKEN)
    );
    let s = TestApp::builder()
        .backend(db)
        .policy(POLICY)
        .config_extra(&extra)
        .spawn()
        .await;
    let mut stdin = provider.stdin.take().unwrap();
    let setup = json!({"redirect_uri": format!("{}/auth/callback", s.url), "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET});
    stdin.write_all(format!("{setup}\n").as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let ready = lines.next_line().await.unwrap().expect("provider ready");
    assert!(ready.contains("ready"), "{ready}");
    // Keep stdin and stdout open with the provider: it exits when stdin closes, and
    // fails writing to a closed stdout.
    Some((Provider(provider, stdin, lines), s))
}

/// Every `name=value` a response sets.
fn set_cookies(r: &reqwest::Response, jar: &mut BTreeMap<String, String>) {
    for v in r.headers().get_all("set-cookie") {
        let v = v.to_str().unwrap();
        let pair = v.split(';').next().unwrap();
        if let Some((k, val)) = pair.split_once('=') {
            jar.insert(k.trim().to_string(), val.trim().to_string());
        }
    }
}

fn cookie_header(jar: &BTreeMap<String, String>) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http") {
        loc.to_string()
    } else {
        let origin: String = base.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        format!("{origin}{loc}")
    }
}

/// Signs in to jitgate by SSO as `login`; the session cookie (`gate_session=…`) and the
/// CSRF token of its pages.
async fn sso_sign_in(s: &TestApp, login: &str) -> (String, String) {
    let gate = s.url.as_str();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut gate_jar = BTreeMap::new();
    let mut idp_jar = BTreeMap::new();
    let r = http.get(format!("{gate}/auth/sso?next=/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    set_cookies(&r, &mut gate_jar);
    let mut url = r.headers()["location"].to_str().unwrap().to_string();
    let mut logged_in = false;
    for _ in 0..10 {
        if url.starts_with(gate) {
            break;
        }
        let r = if url.contains("/interaction/") && !logged_in {
            logged_in = true;
            http.post(format!("{url}/login"))
                .header("cookie", cookie_header(&idp_jar))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("login={login}&password={login}-password"))
                .send()
                .await
                .unwrap()
        } else {
            http.get(&url)
                .header("cookie", cookie_header(&idp_jar))
                .send()
                .await
                .unwrap()
        };
        set_cookies(&r, &mut idp_jar);
        assert!(
            r.status().is_redirection(),
            "{url}: {} {}",
            r.status(),
            r.text().await.unwrap()
        );
        url = absolute(&url, r.headers()["location"].to_str().unwrap());
    }
    assert!(url.starts_with(&format!("{gate}/auth/callback")), "{url}");
    let r = http
        .get(&url)
        .header("cookie", cookie_header(&gate_jar))
        .send()
        .await
        .unwrap();
    let status = r.status();
    set_cookies(&r, &mut gate_jar);
    assert_eq!(status, StatusCode::OK, "{}\n{}", r.text().await.unwrap(), s.log());
    let cookie = format!("gate_session={}", gate_jar["gate_session"]);
    let (csrf, _) = page_csrf(gate, &cookie).await;
    (cookie, csrf)
}

/// The CSRF token of the inbox page, and its status.
async fn page_csrf(gate: &str, cookie: &str) -> (String, StatusCode) {
    let r = Http::url(gate).get("/").header("cookie", cookie).send().await;
    let status = r.status;
    let html = r.text().await;
    let csrf = html
        .find("name=\"csrf\" value=\"")
        .map(|at| {
            let rest = &html[at + 19..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .unwrap_or_default();
    (csrf, status)
}

async fn ui_vote(gate: &str, id: &str, cookie: &str, csrf: &str) -> (StatusCode, String) {
    let r = Http::url(gate)
        .post(&format!("/requests/{id}/approve"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf), ("reason", "")])
        .send()
        .await;
    let status = r.status;
    (status, r.text().await)
}

async fn idp_groups_on(db: Db) {
    let Some((_provider, s)) = start(db).await else { return };
    let c = s.http();

    // alice (a gate.yaml user) signs in; her groups come with the session.
    let (alice, alice_csrf) = sso_sign_in(&s, "alice").await;
    let r1 = s.open_via_api("dave").await;
    assert_eq!(r1.requirements[0].source.as_deref(), Some("idp_group:release-managers"));
    assert!(
        r1.requirements[0].members.is_empty(),
        "nobody is known before they vote"
    );
    // Her token carries no groups: it never counts for an idp_group, and shows her in no
    // requirement of the request, so it reads as an unknown id.
    let (st, v) = c
        .api(
            "POST",
            &format!("/requests/{}/approve", r1.id),
            &token("alice"),
            Some(json!({})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    // Her session's groups show her the request, with the form to approve it.
    let page = Http::url(&s.url)
        .get(&format!("/requests/{}", r1.id))
        .header("cookie", &alice)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let page = page.text().await;
    assert!(
        page.contains(&format!("action=\"/requests/{}/approve\"", r1.id)),
        "{page}"
    );
    let (st, body) = ui_vote(&s.url, &r1.id, &alice, &alice_csrf).await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    let (_, v) = c
        .api("GET", &format!("/requests/{}", r1.id), &token(AUDITOR), None)
        .await;
    assert_eq!(v["status"], "approved", "{v}");
    assert_eq!(v["votes"][0]["idp_groups"], json!(["Release-Managers", "staff"]), "{v}");
    assert_eq!(v["votes"][0]["via"], "sso");
    let record = s.client("ci").record(&r1.id).await.unwrap();
    let envelope: Value = serde_json::from_str(&record).unwrap();
    let statement = {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap();
        serde_json::from_slice::<Value>(&raw).unwrap()
    };
    assert!(
        statement
            .to_string()
            .contains("\"idp_groups\":[\"Release-Managers\",\"staff\"]"),
        "the signed record carries the groups: {statement}"
    );

    // zoe is known only to the identity provider (SCIM); she signs in by SSO but is not
    // in release-managers.
    let (st, _) = {
        let r = c
            .post("/scim/v2/Users")
            .bearer(SCIM_TOKEN)
            .body(
                "application/scim+json",
                json!({"userName": "zoe@example.test"}).to_string(),
            )
            .send()
            .await;
        (r.status, r.text().await)
    };
    assert_eq!(st, StatusCode::CREATED);
    let (zoe, zoe_csrf) = sso_sign_in(&s, "zoe").await;
    let r2 = s.open_via_api("dave").await;
    let (st, body) = ui_vote(&s.url, &r2.id, &zoe, &zoe_csrf).await;
    // Not hers to read either: the unknown id's 404.
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");

    // A session whose groups are older than max_group_age (1h): sign in again.
    let store = jitgate::store::Store::connect(&s.database_url).await.unwrap();
    let now = jitgate::core::duration::now_ms();
    let old_id = "an-old-sso-session-id";
    store
        .insert_session(&jitgate::store::SessionRow {
            id_sha256: jitgate::auth::hash_token(old_id),
            user_name: "alice".into(),
            can_vote: true,
            via: "sso".into(),
            auth_time: now - 2 * 3_600_000,
            amr: vec!["pwd".into()],
            csrf: "old-csrf".into(),
            created_at: now - 2 * 3_600_000,
            expires_at: now + 3_600_000,
            idp_groups: Some(vec!["release-managers".into()]),
        })
        .await
        .unwrap();
    store.close().await;
    let (st, body) = ui_vote(&s.url, &r2.id, &format!("gate_session={old_id}"), "old-csrf").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("sign in again"), "{body}");
    let (_, v) = c
        .api("GET", &format!("/requests/{}", r2.id), &token(AUDITOR), None)
        .await;
    assert_eq!(v["status"], "pending");
    // Her fresh session still counts.
    let (st, body) = ui_vote(&s.url, &r2.id, &alice, &alice_csrf).await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
}

#[tokio::test]
async fn idp_groups_count_through_fresh_sso_sessions() {
    for db in backends() {
        idp_groups_on(db).await;
    }
}
