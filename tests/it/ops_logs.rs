//! What operators see: `GATE_LOG_FORMAT=json` logs, one access-log line per request (id,
//! route, status, latency, caller; never a token), and refused credentials logged with the
//! client's address, at most one line per address per minute.

use crate::helpers::*;
use serde_json::Value;

/// Every line of the server's log, each parsed as JSON (a line that is not fails the test).
fn json_lines(s: &TestApp) -> Vec<Value> {
    s.log()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn of_target<'a>(lines: &'a [Value], target: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["target"] == target).collect()
}

async fn json_app() -> TestApp {
    TestApp::builder().env("GATE_LOG_FORMAT", "json").spawn().await
}

#[tokio::test]
async fn json_logs_carry_one_access_line_per_request() {
    let s = json_app().await;
    let v = s.open_via_api("dave").await;
    let r = s
        .http()
        .get(&format!("/api/v1/requests/{}", v.id))
        .bearer(&token("alice"))
        .header("x-request-id", "probe-7f3a")
        .send()
        .await;
    assert_eq!(r.status, 200);
    // A web UI page names its signed-in user too.
    let (cookie, _) = crate::ui::sign_in(&s.http(), "bob").await;
    let page = s
        .http()
        .get("/")
        .header("cookie", &cookie)
        .header("x-request-id", "probe-ui")
        .send()
        .await;
    assert_eq!(page.status, 200);
    let lines = json_lines(&s);
    let access = of_target(&lines, "jitgate::access");
    let ui: Vec<_> = access
        .iter()
        .filter(|l| l["fields"]["request_id"] == "probe-ui")
        .collect();
    assert_eq!(
        (ui.len(), &ui[0]["fields"]["caller"]),
        (1, &Value::from("bob")),
        "{ui:?}"
    );
    let mine: Vec<_> = access
        .iter()
        .filter(|l| l["fields"]["request_id"] == "probe-7f3a")
        .collect();
    assert_eq!(mine.len(), 1, "{access:?}");
    let f = &mine[0]["fields"];
    assert_eq!(f["route"], "/api/v1/requests/{id}", "{f}");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["status"], 200);
    assert_eq!(f["caller"], "alice");
    assert!(f["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{f}");
    assert_eq!(mine[0]["level"], "INFO");
    // The request's span rides along, with the same id.
    assert_eq!(mine[0]["span"]["id"], "probe-7f3a", "{}", mine[0]);
    // The create before it was logged too, as the pipeline, under its route.
    assert!(
        access.iter().any(|l| l["fields"]["route"] == "/api/v1/requests"
            && l["fields"]["caller"] == "ci"
            && l["fields"]["status"] == 201),
        "{access:?}"
    );
    let log = s.log();
    for who in ["alice", "ci"] {
        assert!(!log.contains(&token(who)), "a token is in the log");
    }
}

#[tokio::test]
async fn a_refused_token_is_logged_with_the_client_address_not_the_token() {
    let s = json_app().await;
    let bad = "not-a-real-token-3b9c1d";
    let r = s.http().get("/api/v1/requests").bearer(bad).send().await;
    assert_eq!(r.status, 401);
    let lines = json_lines(&s);
    let auth = of_target(&lines, "jitgate::auth");
    assert_eq!(auth.len(), 1, "{auth:?}");
    let f = &auth[0]["fields"];
    assert_eq!(f["client"], "127.0.0.1", "{f}");
    assert_eq!(f["reason"], "unknown token");
    assert_eq!(f["path"], "/api/v1/requests");
    assert_eq!(auth[0]["level"], "WARN");
    assert!(!s.log().contains(bad), "the token is in the log");
    let access = of_target(&lines, "jitgate::access");
    assert!(
        access
            .iter()
            .any(|l| l["fields"]["status"] == 401 && l["fields"]["caller"] == "-"),
        "{access:?}"
    );
}

#[tokio::test]
async fn a_flood_of_bad_tokens_gives_a_bounded_number_of_lines() {
    // Past its burst of 20 failures the address gets 429s (one token back a minute here,
    // so at most one more 401 should the run take that long).
    let s = TestApp::builder()
        .env("GATE_LOG_FORMAT", "json")
        .config_extra("throttle:\n  failed_auth: {burst: 20, per_minute: 1}\n")
        .spawn()
        .await;
    let http = s.http();
    let mut statuses = Vec::new();
    for n in 0..60 {
        let r = http.get("/api/v1/requests").bearer(&format!("guess-{n}")).send().await;
        statuses.push(r.status.as_u16());
    }
    assert!(statuses[..20].iter().all(|&s| s == 401), "{statuses:?}");
    let unauthorized = statuses.iter().filter(|&&s| s == 401).count();
    assert!((20..=21).contains(&unauthorized), "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 401 || s == 429), "{statuses:?}");
    let lines = json_lines(&s);
    let auth = of_target(&lines, "jitgate::auth");
    // One line per address per minute: the first, and at most one more should the run
    // straddle a window, which says how many it left out.
    assert!((1..=2).contains(&auth.len()), "{auth:?}");
    let logged: u64 = auth.len() as u64
        + auth
            .iter()
            .map(|l| l["fields"]["suppressed"].as_u64().unwrap())
            .sum::<u64>();
    assert!(logged <= unauthorized as u64, "{auth:?}");
    // Every request still has its access line.
    let access = of_target(&lines, "jitgate::access");
    let count = |status: u16| access.iter().filter(|l| l["fields"]["status"] == status).count();
    assert_eq!((count(401), count(429)), (unauthorized, 60 - unauthorized));
}

#[tokio::test]
async fn text_logs_stay_the_default() {
    let s = TestApp::spawn().await;
    let r = s.http().get("/api/v1/requests").bearer(&token("alice")).send().await;
    assert_eq!(r.status, 200);
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("jitgate::access"))
        .unwrap_or_else(|| panic!("no access line: {log}"));
    assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
    assert!(
        line.contains("route=\"/api/v1/requests\"") && line.contains("caller=\"alice\"") && line.contains("status=200"),
        "{line}"
    );
}
