//! Delegations ("bob for alice") and reloading users and policy without a restart, end to
//! end: a real `gate serve`, the real `gate` binary, SQLite and PostgreSQL.

use std::process::Stdio;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::*;
use crate::support::serve::{ServeFiles, listening};

/// Production needs one lead; alice is the only lead, bob is an SRE.
fn lead_policy(count: u32) -> String {
    format!(
        "version: 1
groups:
  leads: [alice]
  sre: [alice, bob, carol]
rules:
  - name: production
    match: {{ environment: production }}
    require: [{{ group: leads, count: 1 }}, {{ group: sre, count: {count} }}]
  - name: everything else
    decision: deny
"
    )
}

fn in_a_day() -> String {
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24))
        .unwrap()
        .to_string()
}

/// `frank` becomes an admin in gate.yaml (the test users have no roles).
fn make_admin(config: &std::path::Path, who: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let entry = format!("  - name: {who}\n");
    assert!(text.contains(&entry), "{text}");
    std::fs::write(
        config,
        text.replacen(&entry, &format!("{entry}    roles: [admin]\n"), 1),
    )
    .unwrap();
}

/// The signed record's predicate of request `id`, as `gate verify` checked it.
async fn verified_predicate(s: &TestApp, id: &str) -> Value {
    let env = s.client("alice").record(id).await.unwrap();
    let rec = s.dir.path().join(format!("{id}.json"));
    std::fs::write(&rec, &env).unwrap();
    let keys = s.http().get("/api/v1/keys").send().await.text().await;
    let keys_file = s.dir.path().join("keys.json");
    std::fs::write(&keys_file, keys).unwrap();
    let out = s
        .run(
            "ci",
            &["verify", rec.to_str().unwrap(), "--key", keys_file.to_str().unwrap()],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("valid: request"), "{out:?}");
    let env: Value = serde_json::from_str(&env).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice::<Value>(&payload).unwrap()["predicate"].clone()
}

/// The delegation's id from `gate delegate --output json`.
async fn delegate(s: &TestApp, who: &str, args: &[&str]) -> Out {
    let mut all = vec!["delegate", "--output", "json"];
    all.extend_from_slice(args);
    s.run(who, &all).await
}

#[tokio::test]
async fn bob_votes_for_alice_while_her_delegation_is_in_force() {
    for db in backends() {
        let s = TestApp::builder().backend(db).policy(lead_policy(1)).spawn().await;
        let until = in_a_day();

        // Refusals say what is wrong.
        for (args, want) in [
            (
                vec!["--to", "alice", "--until", &until, "--reason", "leave"],
                "yourself",
            ),
            (
                vec!["--to", "zed", "--until", &until, "--reason", "leave"],
                "`zed` is not a configured user",
            ),
            (
                vec!["--to", "bob", "--until", "2020-01-01T00:00:00Z", "--reason", "leave"],
                "not in the future",
            ),
            (vec!["--to", "bob", "--until", &until], "needs a reason"),
            (
                vec!["--to", "bob", "--until", "tomorrow", "--reason", "leave"],
                "not an RFC 3339 time",
            ),
            (
                vec!["--to", "bob", "--until", &until, "--reason", "x", "--from", "carol"],
                "only an admin",
            ),
        ] {
            let out = delegate(&s, "alice", &args).await;
            assert_eq!(out.code, 1, "{args:?}: {out:?}");
            assert!(out.stderr.contains(want), "{args:?}: {out:?}");
        }

        let out = delegate(&s, "alice", &["--to", "bob", "--until", &until, "--reason", "leave"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let d: Value = serde_json::from_str(&out.stdout).unwrap();
        let dlg = d["id"].as_str().unwrap().to_string();
        assert_eq!(
            (d["delegator"].as_str(), d["delegate"].as_str()),
            (Some("alice"), Some("bob"))
        );
        assert_eq!(d["in_force"], true);

        // Both see it; carol, who is neither, sees nothing.
        for who in ["alice", "bob"] {
            let out = s.run(who, &["delegations"]).await;
            assert_eq!(out.code, 0, "{out:?}");
            assert!(
                out.stdout.contains(&dlg) && out.stdout.contains("alice -> bob") && out.stdout.contains("in force"),
                "{who}: {out:?}"
            );
        }
        let out = s.run("carol", &["delegations"]).await;
        assert_eq!(out.stdout.trim(), "no delegations", "{out:?}");

        // bob, not a lead, votes for alice: his vote counts for her in `leads`, and as one
        // human it is one vote, so `sre` still needs someone else.
        let r = s.open_via_api("dave").await;
        let out = s.run("bob", &["approve", &r.id, "--for", "alice"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let v = s.client("dave").get(&r.id).await.unwrap();
        assert_eq!(v.status, jitgate::core::decide::Status::Pending, "{v:?}");
        assert_eq!(v.votes[0].voter, "bob");
        assert_eq!(v.votes[0].on_behalf_of.as_deref(), Some("alice"));
        assert_eq!(v.requirements[0].approved_by, vec!["alice"], "{v:?}");
        // alice herself now adds nothing; bob cannot vote again for himself.
        let out = s.run("alice", &["approve", &r.id]).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("already voted"), "{out:?}");
        let out = s.run("bob", &["approve", &r.id]).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("already voted"), "{out:?}");
        let out = s.run("carol", &["approve", &r.id]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let v = s.client("dave").get(&r.id).await.unwrap();
        assert_eq!(v.status, jitgate::core::decide::Status::Approved, "{v:?}");
        assert_eq!(v.decided_by.as_deref(), Some("carol (approve)"), "{v:?}");
        let show = s.run("carol", &["show", &r.id]).await;
        assert!(show.stdout.contains("vote        bob for alice approve"), "{show:?}");

        // The signed record says "bob for alice" and verifies.
        let p = verified_predicate(&s, &r.id).await;
        let bobs = p["votes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["voter"] == "bob")
            .cloned()
            .unwrap();
        assert_eq!(bobs["on_behalf_of"], "alice", "{p}");
        // The vote event names both.
        let (_, events) = s
            .http()
            .api("GET", &format!("/requests/{}/audit", r.id), &token("alice"), None)
            .await;
        let vote = events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "vote" && e["actor"] == "bob")
            .cloned()
            .unwrap();
        assert_eq!(vote["data"]["on_behalf_of"], "alice", "{events}");

        // A request alice opened: bob's vote cannot count for her (the requester never
        // counts), whether asked for or not; a request bob opened: he may not vote at all.
        let mine = s.open_via_api("alice").await;
        let out = s.run("bob", &["approve", &mine.id, "--for", "alice"]).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("separation of duties"), "{out:?}");
        let his = s.open_via_api("bob").await;
        let out = s.run("bob", &["approve", &his.id, "--for", "alice"]).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("separation of duties"), "{out:?}");

        // Without --for: erin, in no group, votes and it counts for alice.
        let out = delegate(&s, "alice", &["--to", "erin", "--until", &until, "--reason", "leave"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let auto = s.open_via_api("dave").await;
        // While the delegation is in force she reads what alice reads, and the request is
        // in her inbox as it is in alice's.
        let (st, v) = s
            .http()
            .api("GET", &format!("/requests/{}", auto.id), &token("erin"), None)
            .await;
        assert_eq!(st, 200, "{v}");
        let out = s.run("erin", &["pending", "-q"]).await;
        assert!(out.stdout.lines().any(|l| l == auto.id), "{out:?}");
        let out = s.run("erin", &["approve", &auto.id]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let v = s.client("dave").get(&auto.id).await.unwrap();
        assert_eq!(
            (v.votes[0].voter.as_str(), v.votes[0].on_behalf_of.as_deref()),
            ("erin", Some("alice")),
            "{v:?}"
        );
        let out = s.run("dave", &["show", &auto.id]).await;
        assert!(out.stdout.contains("erin for alice"), "{out:?}");

        // carol may not revoke alice's delegation; alice may. Then bob is only bob.
        let out = s.run("carol", &["delegations", "revoke", &dlg]).await;
        assert_eq!(out.code, 1, "{out:?}");
        let out = s.run("alice", &["delegations", "revoke", &dlg]).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("revoked by alice"), "{out:?}");
        let out = s.run("alice", &["delegations", "revoke", &dlg]).await;
        assert!(out.code == 1 && out.stderr.contains("already revoked"), "{out:?}");
        let after = s.open_via_api("dave").await;
        let out = s.run("bob", &["approve", &after.id, "--for", "alice"]).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("no delegation to you in force"), "{out:?}");
        let out = s.run("bob", &["approve", &after.id]).await;
        assert_eq!(out.code, 0, "bob still counts for sre: {out:?}");
        let v = s.client("dave").get(&after.id).await.unwrap();
        assert_eq!(v.votes[0].on_behalf_of, None, "{v:?}");
        assert!(v.requirements[0].approved_by.is_empty(), "{v:?}");

        // An expired delegation (written as if made a while ago) does not count either.
        sqlx::any::install_default_drivers();
        let now = jitgate::core::duration::now_ms();
        let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&s.database_url)
            .await
            .unwrap();
        sqlx::query("INSERT INTO gate_delegations (id, delegator, delegate, reason, created_at, created_by, until_at) VALUES ('dlg_old', 'alice', 'frank', 'leave', $1, 'alice', $2)")
            .bind(now - 120_000)
            .bind(now - 60_000)
            .execute(&mut db)
            .await
            .unwrap();
        // frank (ops) stands in for nobody now, so alice's request is not his to read:
        // the unknown id's 404, with `--for` or without.
        for args in [
            &["approve", &after.id, "--for", "alice"][..],
            &["approve", &after.id][..],
        ] {
            let out = s.run("frank", args).await;
            assert_eq!(out.code, 1, "{out:?}");
            assert!(out.stderr.contains("HTTP 404, not_found"), "{out:?}");
        }
        let out = s.run("frank", &["delegations"]).await;
        assert!(
            out.stdout.contains("dlg_old") && out.stdout.contains("ended"),
            "{out:?}"
        );

        // Every creation and revocation is in the signed chain, which still verifies.
        let export = s
            .http()
            .get("/api/v1/audit/export")
            .bearer(&token(AUDITOR))
            .send()
            .await
            .text()
            .await;
        let kinds: Vec<Value> = export
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["kind"].as_str().unwrap_or("").starts_with("delegation_"))
            .collect();
        let kinds_of: Vec<&str> = kinds.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds_of,
            vec!["delegation_created", "delegation_created", "delegation_revoked"],
            "{export}"
        );
        assert_eq!(kinds[2]["data"]["delegation"], json!(dlg));
        assert_eq!(kinds[0]["request_id"], "", "{export}");
        let out = s.run(AUDITOR, &["audit", "verify"]).await;
        assert_eq!(out.code, 0, "{out:?}");
    }
}

#[tokio::test]
async fn both_people_are_notified_and_an_admin_sees_and_revokes_any() {
    let mut s = TestApp::builder()
        .config_extra("notify:\n  email:\n    host: 127.0.0.1\n    port: 9\n    from: jitgate <gate@example.test>\n")
        .spawn()
        .await;
    s.kill().await;
    make_admin(&s.config, "frank");
    s.respawn().await;
    let out = delegate(
        &s,
        "frank",
        &[
            "--from",
            "alice",
            "--to",
            "bob",
            "--until",
            &in_a_day(),
            "--reason",
            "leave",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let d: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (d["delegator"].as_str(), d["created_by"].as_str()),
        (Some("alice"), Some("frank"))
    );
    let id = d["id"].as_str().unwrap();
    let (status, list) = s.http().api("GET", "/notifications", &token(AUDITOR), None).await;
    assert_eq!(status, 200, "{list}");
    let mut to: Vec<&str> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["event"] == "delegation")
        .map(|n| n["recipient"].as_str().unwrap())
        .collect();
    to.sort();
    assert_eq!(to, vec!["alice@example.test", "bob@example.test"], "{list}");
    // frank sees everyone's; revokes alice's.
    let out = s.run("frank", &["delegations", "--output", "json"]).await;
    assert!(out.stdout.contains(id), "{out:?}");
    let (status, body) = s
        .http()
        .api("DELETE", &format!("/delegations/{id}"), &token("frank"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_by"], "frank");
    // A pipeline is no one to delegate to or from.
    let (status, body) = s.http().api("GET", "/delegations", &token("ci"), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("approvers_only")),
        "{body}"
    );
}

/// Whether `text` names `file:LINE:COLUMN`.
fn located(text: &str, file: &str) -> bool {
    text.match_indices(&format!("{file}:")).any(|(i, m)| {
        let rest = &text[i + m.len()..];
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().unwrap_or("");
        let col: String = parts
            .next()
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        !line.is_empty() && line.chars().all(|c| c.is_ascii_digit()) && !col.is_empty()
    })
}

/// `POST /api/v1/admin/reload` as `who`.
async fn reload(s: &TestApp, who: &str) -> (u16, Value) {
    s.http().api("POST", "/admin/reload", &token(who), None).await
}

#[tokio::test]
async fn a_reload_changes_new_requests_only_and_a_broken_policy_changes_nothing() {
    for db in backends() {
        let mut s = TestApp::builder().backend(db).spawn().await;
        s.kill().await;
        make_admin(&s.config, "frank");
        s.respawn().await;
        let before = s.open_via_api("dave").await;

        // Not an admin: 403, and nothing changes.
        let (status, body) = reload(&s, "bob").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("admin_only")),
            "{body}"
        );

        // Production now needs two SREs; a new user and a restart-only change come along.
        std::fs::write(&s.policy, policy("    require: [{ group: sre, count: 2 }]")).unwrap();
        let text = std::fs::read_to_string(&s.config).unwrap();
        let gina = jitgate::auth::hash_token(&token("gina"));
        std::fs::write(
            &s.config,
            text.replacen(
                "pipelines:\n",
                &format!("  - name: gina\n    token_sha256: {gina}\npipelines:\n"),
                1,
            ) + "max_wait_secs: 7\n",
        )
        .unwrap();
        let (status, body) = reload(&s, "frank").await;
        assert_eq!(status, 200, "{body}");
        assert_ne!(body["old_policy_digest"], body["policy_digest"], "{body}");
        // USERS, gina, and the auditor and admin of the test config.
        assert_eq!(body["users"], USERS.len() + 3, "{body}");
        assert_eq!(body["not_reloaded"], json!(["max_wait_secs"]), "{body}");
        assert!(s.log().contains("configuration reloaded"), "{}", s.log());

        // gina's token works now; the open request keeps its one-SRE snapshot, a new one
        // needs two.
        let (status, _) = s.http().api("GET", "/requests", &token("gina"), None).await;
        assert_eq!(status, 200);
        let after = s.open_via_api("dave").await;
        assert_eq!(
            s.client("bob").approve(&before.id, None).await.unwrap().status.as_str(),
            "approved"
        );
        assert_eq!(
            s.client("bob").approve(&after.id, None).await.unwrap().status.as_str(),
            "pending"
        );

        // A broken policy: 422 with file:line:column, and the two-SRE rule stays.
        std::fs::write(&s.policy, "version: 1\nrules:\n  - name: x\n    bogus: 1\n").unwrap();
        let (status, body) = reload(&s, "frank").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("invalid_config")),
            "{body}"
        );
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(
            located(msg, "policy.yaml") && msg.contains("nothing was reloaded"),
            "{msg}"
        );
        let third = s.open_via_api("dave").await;
        assert_eq!(
            s.client("bob").approve(&third.id, None).await.unwrap().status.as_str(),
            "pending"
        );
        // So does a broken gate.yaml.
        std::fs::write(&s.policy, policy(ONE_SRE)).unwrap();
        std::fs::write(&s.config, std::fs::read_to_string(&s.config).unwrap() + "nonsense: 1\n").unwrap();
        let out = s.run("frank", &["admin", "reload"]).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            located(&out.stderr, "gate.yaml") && out.stderr.contains("nonsense"),
            "{out:?}"
        );

        // The audit chain holds one reload, with both digests.
        let export = s
            .http()
            .get("/api/v1/audit/export")
            .bearer(&token(AUDITOR))
            .send()
            .await
            .text()
            .await;
        let reloads: Vec<Value> = export
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["kind"] == "config_reloaded")
            .collect();
        assert_eq!(reloads.len(), 1, "{export}");
        assert_eq!(reloads[0]["actor"], "frank");
        assert!(
            reloads[0]["data"]["old_policy_digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"),
            "{export}"
        );
        let out = s.run(AUDITOR, &["audit", "verify"]).await;
        assert_eq!(out.code, 0, "{out:?}");
    }
}

/// `gate serve` with its log on a pipe, so the test reads the lines it waits for.
struct Logged {
    child: tokio::process::Child,
    url: String,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
}

impl Logged {
    async fn spawn(s: &TestApp) -> Logged {
        let files = ServeFiles {
            config: s.config.clone(),
            policy: s.policy.clone(),
            data_dir: s.data_dir.clone(),
            listen: "127.0.0.1:0".into(),
            database_url: Some(s.database_url.clone()),
        };
        let mut cmd = files.command(std::path::Path::new(GATE));
        cmd.env("GATE_LOG", "info").stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let url = listening(&mut child).await.unwrap();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        Logged { child, url, lines }
    }

    /// Reads the log until a line containing `needle`, and returns it.
    async fn until(&mut self, needle: &str) -> String {
        while let Some(l) = self.lines.next_line().await.unwrap() {
            if l.contains(needle) {
                return l;
            }
        }
        panic!("the server exited before logging {needle:?}");
    }
}

#[tokio::test]
async fn sighup_reloads_and_a_broken_file_is_logged_and_ignored() {
    let mut s = TestApp::spawn().await;
    s.kill().await;
    let mut g = Logged::spawn(&s).await;
    s.url = g.url.clone();
    let first = s.open_via_api("dave").await;

    std::fs::write(&s.policy, policy("    require: [{ group: sre, count: 2 }]")).unwrap();
    signal(&g.child, libc::SIGHUP);
    let line = g.until("configuration reloaded").await;
    assert!(line.contains("SIGHUP") && line.contains("policy_digest"), "{line}");
    let second = s.open_via_api("dave").await;
    assert_eq!(
        s.client("bob").approve(&first.id, None).await.unwrap().status.as_str(),
        "approved"
    );
    assert_eq!(
        s.client("bob").approve(&second.id, None).await.unwrap().status.as_str(),
        "pending"
    );

    std::fs::write(&s.policy, "version: 1\nrules: [\n").unwrap();
    signal(&g.child, libc::SIGHUP);
    let line = g.until("reload refused").await;
    assert!(located(&line, "policy.yaml"), "{line}");
    let third = s.open_via_api("dave").await;
    assert_eq!(
        s.client("bob").approve(&third.id, None).await.unwrap().status.as_str(),
        "pending"
    );
    signal(&g.child, libc::SIGTERM);
    assert!(g.child.wait().await.unwrap().success());
}
