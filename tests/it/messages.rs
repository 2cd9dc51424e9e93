//! What a newcomer reads when something is off: each message says what to check next.

use crate::helpers::*;

#[tokio::test]
async fn a_catch_all_deny_says_why_the_earlier_rules_did_not_match() {
    let s = TestApp::spawn().await;
    let w = s.open(&["--environment", "prod", "--actor", "dave"]).await;
    assert_eq!(w.opened["status"], "denied");
    let (code, events, _) = w.finish().await;
    assert_eq!(code, 1);
    let reason = outcome(&events)["reason"].as_str().unwrap().to_string();
    assert!(
        reason.starts_with("policy rule `everything else` decides deny; earlier rules did not match: "),
        "{reason}"
    );
    assert!(
        reason.contains("staging: environment is `prod`, the rule wants `staging`")
            && reason.contains("production: environment is `prod`, the rule wants `production`"),
        "{reason}"
    );
    // An automatic approval has nothing to explain.
    let w = s.open(&["--environment", "staging", "--actor", "dave"]).await;
    let (code, events, _) = w.finish().await;
    assert_eq!(code, 0);
    assert_eq!(outcome(&events)["reason"], "policy rule `staging` decides approve");
}

#[tokio::test]
async fn an_unreachable_server_and_an_unknown_token_say_what_to_check() {
    let s = TestApp::spawn().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cmd = s.gate("ci");
    cmd.env("GATE_SERVER", format!("http://{dead}"));
    let out = Out::of({
        cmd.args(["request", "--environment", "production", "--retry-budget", "2s"]);
        cmd
    })
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    let first = out
        .stderr
        .lines()
        .find(|l| l.contains("retrying"))
        .expect("a retry line");
    assert!(
        first.contains("retrying for up to 1s more (--retry-budget)")
            || first.contains("retrying for up to 2s more (--retry-budget)"),
        "{first}"
    );
    assert!(
        first.contains(&format!(
            "check that GATE_SERVER=http://{dead} is right and the server is up"
        )),
        "{first}"
    );

    let mut cmd = s.gate("ci");
    cmd.env("GATE_TOKEN", "gate_not_a_token_the_server_knows")
        .arg("pending");
    let out = Out::of(cmd).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("unknown token")
            && out
                .stderr
                .contains("check the token with `printf '%s' \"$GATE_TOKEN\" | gate token hash`"),
        "{out:?}"
    );
}

#[tokio::test]
async fn show_says_no_approvals_yet_and_pending_quiet_prints_ids() {
    let s = TestApp::builder()
        .rule("    require: [{ group: sre, count: 1 }, { group: ops, count: 1 }]")
        .spawn()
        .await;
    let w = s.open(&PRODUCTION_BY_DAVE).await;
    let pending = s.run("bob", &["pending", "--quiet"]).await;
    assert_eq!(pending.code, 0, "{pending:?}");
    assert_eq!(pending.stdout, format!("{}\n", w.id));
    let show = s.run("bob", &["show", &w.id]).await;
    assert!(
        show.stdout.contains("· 1 of sre: no approvals yet, may vote:"),
        "{}",
        show.stdout
    );
    assert!(!show.stdout.contains("approved by ["), "{}", show.stdout);
    s.client("bob").approve(&w.id, None).await.unwrap();
    let show = s.run("bob", &["show", &w.id]).await;
    assert!(show.stdout.contains("✓ 1 of sre: approved by bob"), "{}", show.stdout);
    assert!(show.stdout.contains("· 1 of ops: no approvals yet"), "{}", show.stdout);
    // Nothing pending for bob now: -q prints nothing at all.
    let pending = s.run("bob", &["pending", "-q"]).await;
    assert_eq!(pending.stdout, "", "{pending:?}");
    drop(w);
}
