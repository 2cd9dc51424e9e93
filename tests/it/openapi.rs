//! The API says what it does: `/api/v1/openapi.json` describes every route the router
//! serves (and nothing else), and schemathesis (PyPI), run with every check against a
//! real server with an approver's and with a pipeline's token, finds no server error and
//! no answer the document does not allow.

use std::collections::BTreeSet;
use std::path::Path;

use http::Method;

use crate::helpers::{Db, TestApp, backends, skip_or_fail, token};

/// The schemathesis release `.ci/run` installs; the flags below are this version's.
const SCHEMATHESIS: &str = "4.32.5";

fn spec() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/openapi.json")).unwrap();
    serde_json::from_str(&text).expect("src/http/openapi.json is JSON")
}

/// `(METHOD, path)` of every operation in the document.
fn described() -> BTreeSet<(String, String)> {
    let spec = spec();
    let paths = spec["paths"].as_object().expect("the document has paths");
    let mut out = BTreeSet::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// The verbs `POST /api/v1/requests/{id}/{action}` takes (`requests::act`).
const ACTIONS: [&str; 4] = ["approve", "deny", "cancel", "consume"];

/// `(METHOD, path)` of every `.route("PATH", get(…).post(…))` in a router's source, with
/// `prefix` before each path (the API router is nested under `/api/v1`).
fn routes_in(file: &str, prefix: &str) -> Vec<(String, String)> {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let mut out = Vec::new();
    for chunk in src.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).expect("a route's path is a string literal");
        // The handler chain ends at the route call's closing parenthesis, on its line.
        let chain = chunk.lines().next().unwrap_or_default();
        for method in ["get", "post", "put", "patch", "delete"] {
            let calls = chain.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0 || !chain.as_bytes()[i - 1].is_ascii_alphanumeric() && chain.as_bytes()[i - 1] != b'_'
            });
            if calls {
                out.push((method.to_uppercase(), format!("{prefix}{path}")));
            }
        }
    }
    assert!(!out.is_empty(), "no routes found in {file}");
    out
}

/// Every route the API, operations and webhook routers serve. The web UI (HTML, a
/// session cookie) is not part of the API and is not described.
fn served() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let all = [
        routes_in("src/http/api/mod.rs", "/api/v1"),
        routes_in("src/http/ops.rs", ""),
        routes_in("src/http/webhooks/mod.rs", ""),
    ];
    for (method, path) in all.into_iter().flatten() {
        match path.strip_suffix("/{action}") {
            Some(base) => out.extend(ACTIONS.iter().map(|a| (method.clone(), format!("{base}/{a}")))),
            None => {
                out.insert((method, path));
            }
        }
    }
    out
}

#[test]
fn the_document_describes_every_route_and_no_other() {
    let described = described();
    let served = served();
    let undescribed: Vec<_> = served.difference(&described).collect();
    let unserved: Vec<_> = described.difference(&served).collect();
    assert!(
        undescribed.is_empty() && unserved.is_empty(),
        "src/http/openapi.json and the routers disagree: served but not described {undescribed:?}; described \
         but not served {unserved:?}"
    );
}

/// Every operation of the document, on the real router: none is the fallback's 404 or a 405.
#[tokio::test]
async fn every_described_operation_is_routed() {
    // Every anonymous call is a 401: room for all of them before the 429s start.
    let app = TestApp::builder()
        .config_extra("throttle:\n  failed_auth: { burst: 1000, per_minute: 60 }\n")
        .in_process()
        .await;
    let http = app.http();
    for (method, path) in described() {
        let path = path.replace("{id}", "req_none").replace("{index}", "0");
        if path == "/api/v1/events" {
            continue; // An endless stream: it is routed if it asks for a token.
        }
        let r = http
            .request(Method::from_bytes(method.as_bytes()).unwrap(), &path)
            .send()
            .await;
        let status = r.status;
        let body = r.json_or_text().await;
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !(status == 404 && body["error"]["message"] == "no such route"),
            "{method} {path} is described but not routed"
        );
    }
    let r = http.get("/api/v1/events").send().await;
    assert_eq!(r.status, 401, "the event stream needs a token");
}

/// `st`, the schemathesis CLI, when it is installed (a printed skip otherwise); with
/// `GATE_E2E_REQUIRED=1` a missing one fails the test.
fn schemathesis() -> Option<&'static str> {
    let version = std::process::Command::new("st").arg("--version").output();
    match version {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).to_string();
            assert!(
                v.contains(SCHEMATHESIS),
                "st --version says {v:?}; the flags here are schemathesis {SCHEMATHESIS}'s (pip install schemathesis=={SCHEMATHESIS})"
            );
            Some("st")
        }
        _ => {
            skip_or_fail(
                "the schemathesis API conformance run",
                &format!("schemathesis is not installed (pip install schemathesis=={SCHEMATHESIS})"),
            );
            None
        }
    }
}

/// Runs `st run` with every check against `url`'s document as `caller`; fails the test on
/// a non-zero exit (any server error, or any answer the document does not allow).
async fn run_schemathesis(st: &str, s: &TestApp, caller: &str, db: Db) {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let out = tokio::process::Command::new(st)
        .args(["--config-file", config, "--no-color", "run"])
        .arg(format!("{}/api/v1/openapi.json", s.url))
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {}", token(caller))])
        // Bounded and reproducible: about 30 s per token and backend on two cores.
        .args(["--max-examples", "20", "--seed", "1"])
        // The timeout is a safety net, not a check: `GET /audit/verify` checks every event's
        // signature, and on a loaded two-core machine that took over 10 s (seen in CI).
        .args(["--generation-database", "none", "--request-timeout", "60"])
        // The only operation left out: `GET /api/v1/events` is a server-sent event stream
        // that never ends while the server runs, so no answer to it is ever complete; it
        // is tested in tests/it (its route above, its events in the UI and CLI tests).
        .args(["--exclude-path", "/api/v1/events"])
        // Schemathesis writes its files where it runs: there, not in the repository.
        .current_dir(s.dir.path())
        .output()
        .await
        .expect("run st");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis as {caller} on {db:?} found problems (exit {:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    // It ran: it says how many cases passed.
    assert!(stdout.contains(" passed"), "{stdout}");
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let Some(st) = schemathesis() else { return };
    for db in backends() {
        // Long-waits end within a second, so fuzzed `timeout`s do not stall the run. The
        // throttles are lifted: schemathesis sends bad credentials and refused votes from
        // one address by design, and would meet 429s instead of the answers it checks
        // (the 429s have their own tests, in throttle.rs).
        let s = TestApp::builder()
            .backend(db)
            .config_extra(
                "max_wait_secs: 1\nthrottle:\n  failed_auth: {burst: 4000000000, per_minute: 60}\n  refused: {burst: 4000000000, per_minute: 60}\n",
            )
            .spawn()
            .await;
        // The pipeline first (it opens requests), then an approver (who sees and votes on them).
        run_schemathesis(st, &s, "ci", db).await;
        run_schemathesis(st, &s, "bob", db).await;
        let log = s.log();
        assert!(
            !log.contains("internal error"),
            "{db:?}: the server logged an internal error:\n{log}"
        );
    }
}
