//! The approver web UI in a real browser: headless Debian Chromium driven by Playwright
//! (tests/browser/ui.mjs), a real OpenID provider (tests/browser/provider.mjs, the
//! `oidc-provider` package) and a real `gate serve` with `sso:` pointing at it, while
//! real `gate request` processes wait for the decisions taken in the browser.
//!
//! Needs /usr/bin/chromium, node, and `npm ci --prefix tests/browser`. Without them the
//! test prints why and passes, unless GATE_E2E_REQUIRED=1 makes that a failure.
//! Screenshots land in `$CARGO_TARGET_TMPDIR/screenshots`; with
//! GATE_UPDATE_SCREENSHOTS=1 they are also copied to docs/img/.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::helpers::*;
use jitgate::core::decide::Status;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";
const CLIENT_ID: &str = "jitgate-browser-test";
const CLIENT_SECRET: &str = "browser-test-client-secret";

/// Why the browser test cannot run here, if it cannot.
fn missing_tools(dir: &Path) -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing (apt-get install -y chromium)"));
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Some("node is not on PATH".into());
    }
    for pkg in ["playwright-core", "oidc-provider"] {
        if !dir.join("node_modules").join(pkg).join("package.json").exists() {
            return Some(format!(
                "tests/browser/node_modules/{pkg} is missing (npm ci --prefix tests/browser)"
            ));
        }
    }
    None
}

fn skip_browser(why: &str) {
    skip_or_fail("the browser test", why);
}

/// `gate request` as the `ci` pipeline, in a GitHub Actions environment (pull request 7),
/// so the detail page can link the commit, the pull request and the run.
fn github_gate(s: &TestApp, run_id: &str, actor: &str) -> Command {
    let mut c = s.gate("ci");
    c.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", "acme/web")
        .env("GITHUB_REF", "refs/pull/7/merge")
        .env("GITHUB_SHA", COMMIT)
        .env("GITHUB_ACTOR", actor)
        .env("GITHUB_RUN_ID", run_id)
        .env("GITHUB_RUN_ATTEMPT", "1")
        .env("GITHUB_JOB", "deploy")
        .env("GITHUB_SERVER_URL", "https://github.example");
    c
}

#[tokio::test]
async fn approver_ui_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if let Some(why) = missing_tools(&dir) {
        skip_browser(&why);
        return;
    }

    // The OpenID provider: learn its issuer, start jitgate with `sso:` pointing at it, then
    // tell it the callback (jitgate's port is only known once it listens).
    let mut provider = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the OpenID provider");
    let mut plines = BufReader::new(provider.stdout.take().unwrap()).lines();
    let first = plines.next_line().await.unwrap().expect("provider printed its issuer");
    let issuer = serde_json::from_str::<serde_json::Value>(&first).unwrap()["issuer"]
        .as_str()
        .unwrap()
        .to_string();

    let extra = format!(
        "sso:\n  issuer: {issuer}\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n  scopes: [openid, email, profile]\n  user_claim: email\n  display_name: Test IdP\nsession_ttl: 1h\n"
    );
    let s = TestApp::builder().config_extra(&extra).spawn().await;

    let mut stdin = provider.stdin.take().unwrap();
    let setup = serde_json::json!({
        "redirect_uri": format!("{}/auth/callback", s.url),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    });
    stdin.write_all(format!("{setup}\n").as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let ready = plines.next_line().await.unwrap().expect("provider ready");
    assert!(ready.contains("ready"), "{ready}");

    // Three waiting gates: one alice approves, one she denies, one is bob's own.
    let args = [
        "--environment",
        "production",
        "--summary",
        "deploy web 1.2.3",
        "--label",
        "change=CHG-42",
        "--artifact",
        "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    ];
    let approve = s.open_with(github_gate(&s, "101", "dave-gh"), &args).await;
    let deny = s.open_with(github_gate(&s, "102", "dave-gh"), &args).await;
    let own = s.open_with(github_gate(&s, "103", "bob-gh"), &args).await;

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let input = serde_json::json!({
        "base": s.url,
        "approveId": approve.id,
        "denyId": deny.id,
        "ownId": own.id,
        "commit": COMMIT,
        "bobToken": token("bob"),
        "shots": shots,
        "chromium": CHROMIUM,
    });
    let out = Command::new("node")
        .arg(dir.join("ui.mjs"))
        .current_dir(&dir)
        .env("JITGATE_UI_TEST", input.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the Playwright script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if !(out.status.success() && stdout.contains(r#""step":"done""#)) {
        let state = s.client("ci").get(&approve.id).await.map(|v| v.status);
        panic!(
            "browser script failed\nstdout:\n{stdout}\nstderr:\n{stderr}\napproved request now: {state:?}\nserver log:\n{}",
            s.log()
        );
    }

    // The gates saw the decisions taken in the browser.
    let (approve_id, deny_id, own_id) = (approve.id.clone(), deny.id.clone(), own.id.clone());
    let (code, events, err) = approve.finish().await;
    assert_eq!(code, 0, "approved in the browser: {events:?} {err}");
    let (code, events, err) = deny.finish().await;
    assert_eq!(code, 1, "denied in the browser: {events:?} {err}");

    // Each vote carries how it was cast: single sign-on, when, and how (amr).
    let ci = s.client("ci");
    let v = ci.get(&approve_id).await.unwrap();
    assert_eq!(v.status, Status::Consumed);
    assert_eq!(v.votes.len(), 1, "{:?}", v.votes);
    assert_eq!(v.votes[0].voter, "alice");
    assert_eq!(v.votes[0].via, "sso");
    assert_eq!(v.votes[0].reason.as_deref(), Some("release checklist done"));
    assert!(v.votes[0].auth_time.is_some(), "{:?}", v.votes[0]);
    assert_eq!(v.votes[0].amr, vec!["pwd".to_string()]);
    let v = ci.get(&deny_id).await.unwrap();
    assert_eq!(v.status, Status::Denied);
    assert_eq!(v.votes[0].via, "sso");
    assert_eq!(v.votes[0].reason.as_deref(), Some("not during the freeze"));
    // Refused forms changed nothing: bob's own request is untouched.
    let v = ci.get(&own_id).await.unwrap();
    assert_eq!(v.status, Status::Pending);
    assert!(v.votes.is_empty(), "{:?}", v.votes);
    let audit = ci.audit(&own_id).await.unwrap();
    assert!(
        audit.iter().any(|e| e.kind == "refused" && e.actor == "bob"),
        "the forged self-approval is in the audit log: {audit:?}"
    );
    drop(own);

    for png in ["inbox.png", "request.png", "request-phone.png"] {
        let p = shots.join(png);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", p.display());
        if std::env::var("GATE_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/img");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::copy(&p, docs.join(png)).unwrap();
        }
    }
}
