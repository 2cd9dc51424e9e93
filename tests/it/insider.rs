//! The insider with the database: every attack issue 8 names, on SQLite and PostgreSQL,
//! run as the attacker would (straight SQL, triggers dropped or bypassed), and each one
//! found: refused by the server when it acts, and by `gate audit verify`.

use jitgate::core::decide::Status;

use crate::helpers::{Db, TestApp, as_dba, backends};

async fn spawn(db: Db, rule: &str) -> TestApp {
    TestApp::builder().backend(db).rule(rule).spawn().await
}

const TWO_SRE: &str = "    require: [{ group: sre, count: 2 }]";

fn tampered_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("jitgate_tampered_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_status_set_to_approved_in_the_database_is_refused_at_consume() {
    for db in backends() {
        let s = spawn(db, crate::helpers::ONE_SRE).await;
        let r = s.open_via_api("erin").await;
        let far = jitgate::core::duration::now_ms() + 3_600_000;
        as_dba(
            &s,
            db,
            &format!(
                "UPDATE gate_requests SET status = 'approved', approval_expires_at = {far}, version = version + 1 WHERE id = '{}'",
                r.id
            ),
        )
        .await;
        let e = s.client("ci").consume(&r.id).await.unwrap_err();
        assert_eq!(e.status(), Some(409), "{db:?}: {e}");
        assert!(e.to_string().contains("tampered"), "{db:?}: {e}");
        assert!(e.to_string().contains("signed events say pending"), "{db:?}: {e}");
        assert_eq!(s.client("ci").get(&r.id).await.unwrap().status, Status::Approved);
        // No record was signed for it, and the refusal is counted and logged.
        assert_eq!(s.client("ci").record(&r.id).await.ok(), None, "{db:?}");
        let m = s.http().get("/metrics").send().await.text().await;
        assert_eq!(tampered_total(&m), 1, "{db:?}: {m}");
        assert!(s.log().contains("its database row was altered"), "{db:?}");
        // The audit names the request.
        let v = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
        assert_eq!(v.code, 1, "{db:?}: {v:?}");
        assert!(v.stdout.contains(&format!("request {}", r.id)), "{db:?}: {v:?}");
    }
}

#[tokio::test]
async fn a_renamed_voter_cannot_vote_twice() {
    for db in backends() {
        let s = spawn(db, TWO_SRE).await;
        let r = s.open_via_api("erin").await;
        s.client("bob").approve(&r.id, None).await.unwrap();
        // Bob's vote becomes carol's in the votes table; bob votes "again".
        as_dba(
            &s,
            db,
            &format!(
                "UPDATE gate_votes SET voter = 'carol' WHERE request_id = '{}' AND voter = 'bob'",
                r.id
            ),
        )
        .await;
        let e = s.client("bob").approve(&r.id, None).await.unwrap_err();
        assert_eq!(e.status(), Some(409), "{db:?}: {e}");
        assert!(e.to_string().contains("tampered"), "{db:?}: {e}");
        assert_eq!(s.client("ci").get(&r.id).await.unwrap().status, Status::Pending);
        let v = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
        assert_eq!(v.code, 1, "{db:?}: {v:?}");
        assert!(v.stdout.contains("are not the signed ones"), "{db:?}: {v:?}");
    }
}

#[tokio::test]
async fn a_correctly_hashed_fake_event_is_found() {
    for db in backends() {
        let s = spawn(db, crate::helpers::ONE_SRE).await;
        let r = s.open_via_api("erin").await;
        let events = s.client("ci").audit(&r.id).await.unwrap();
        let head = events.last().unwrap();
        // The attacker appends "bob approved" with the right sequence and hash.
        let (seq, at, data) = (head.seq + 1, head.at_ms + 1, r#"{"decision":"approve"}"#);
        let hash = jitgate::core::audit::event_hash(seq, at, &r.id, "vote", "bob", data, &head.hash);
        as_dba(
            &s,
            db,
            &format!(
                "INSERT INTO gate_audit (seq, at, request_id, kind, actor, data, prev_hash, hash) VALUES ({seq}, {at}, '{}', 'vote', 'bob', '{data}', '{}', '{hash}')",
                r.id, head.hash
            ),
        )
        .await;
        let v = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
        assert_eq!(v.code, 1, "{db:?}: {v:?} {}", s.log());
        assert!(
            v.stdout.contains(&format!(
                "event #{seq} (vote on {}) is not signed by the server's key",
                r.id
            )),
            "{db:?}: {v:?}"
        );
        // The server will not count it either.
        let e = s.client("alice").approve(&r.id, None).await.unwrap_err();
        assert!(e.to_string().contains("tampered"), "{db:?}: {e}");
    }
}

#[tokio::test]
async fn a_deleted_tail_fails_against_a_kept_checkpoint() {
    for db in backends() {
        let s = spawn(db, crate::helpers::ONE_SRE).await;
        for _ in 0..3 {
            let r = s.open_via_api("erin").await;
            s.client("bob").approve(&r.id, None).await.unwrap();
        }
        let kept = s.dir.path().join("kept-checkpoint");
        let kept_arg = kept.to_str().unwrap();
        let v = s
            .run(
                crate::helpers::AUDITOR,
                &["audit", "verify", "--save-checkpoint", kept_arg],
            )
            .await;
        assert_eq!(v.code, 0, "{db:?}: {v:?}");
        let note = std::fs::read_to_string(&kept).unwrap();
        let size: i64 = note.lines().nth(1).unwrap().parse().unwrap();
        assert!(size >= 9, "{db:?}: {note}");

        // An auditor's copy verifies offline against the kept checkpoint and the key
        // alone; an edited copy does not.
        let export = s.dir.path().join("period.jsonl");
        std::fs::write(
            &export,
            s.run(crate::helpers::AUDITOR, &["audit", "export"]).await.stdout,
        )
        .unwrap();
        let keys = s.dir.path().join("keys.json");
        std::fs::write(&keys, s.http().get("/api/v1/keys").send().await.text().await).unwrap();
        let offline = |file: &std::path::Path| {
            let mut c = std::process::Command::new(crate::helpers::GATE);
            c.env_clear()
                .args(["audit", "verify", "--export"])
                .arg(file)
                .arg("--key")
                .arg(&keys)
                .arg("--checkpoint")
                .arg(&kept);
            c.output().unwrap()
        };
        let out = offline(&export);
        assert!(out.status.success(), "{db:?}: {}", String::from_utf8_lossy(&out.stdout));
        let edited = s.dir.path().join("edited.jsonl");
        std::fs::write(
            &edited,
            std::fs::read_to_string(&export)
                .unwrap()
                .replacen("\"actor\":\"bob\"", "\"actor\":\"carol\"", 1),
        )
        .unwrap();
        let out = offline(&edited);
        assert_eq!(out.status.code(), Some(1), "{db:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("was altered"), "{db:?}");

        // Delete the newest two events, their leaves and every checkpoint that covered
        // them: the database now holds a shorter log that agrees with itself.
        as_dba(
            &s,
            db,
            &format!(
                "DELETE FROM gate_audit WHERE seq > {cut}; DELETE FROM gate_checkpoints WHERE size > {cut}; DELETE FROM gate_log_hashes;",
                cut = size - 2
            ),
        )
        .await;
        let v = s
            .run(crate::helpers::AUDITOR, &["audit", "verify", "--checkpoint", kept_arg])
            .await;
        assert_eq!(v.code, 1, "{db:?}: {v:?}");
        assert!(
            v.stdout
                .contains(&format!("events #{} to #{size} are missing", size - 1)),
            "{db:?}: {v:?}"
        );
    }
}

#[tokio::test]
async fn rewriting_history_from_an_event_onwards_is_found_at_that_event() {
    for db in backends() {
        let s = spawn(db, crate::helpers::ONE_SRE).await;
        let r = s.open_via_api("erin").await;
        s.client("bob").approve(&r.id, Some("looks fine".into())).await.unwrap();
        let r2 = s.open_via_api("erin").await;
        s.client("carol").approve(&r2.id, None).await.unwrap();
        let kept = s.dir.path().join("kept");
        let v = s
            .run(
                crate::helpers::AUDITOR,
                &["audit", "verify", "--save-checkpoint", kept.to_str().unwrap()],
            )
            .await;
        assert_eq!(v.code, 0, "{db:?}: {v:?}");
        // Rewrite bob's vote (its reason) and re-hash every event after it, as someone
        // who knows the hash format (but not the key) would.
        let all = s.run(crate::helpers::AUDITOR, &["audit", "export"]).await.stdout;
        let mut rows: Vec<jitgate::core::api::AuditEvent> =
            all.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let from = rows.iter().position(|e| e.kind == "vote" && e.actor == "bob").unwrap();
        rows[from].data["reason"] = serde_json::json!("rubber stamp");
        let mut sql = String::new();
        let mut prev = rows[from].prev_hash.clone();
        for e in &mut rows[from..] {
            let data = String::from_utf8(jitgate::core::audit::canonical_bytes(&e.data)).unwrap();
            e.prev_hash = prev.clone();
            e.hash = jitgate::core::audit::event_hash(e.seq, e.at_ms, &e.request_id, &e.kind, &e.actor, &data, &prev);
            prev = e.hash.clone();
            sql.push_str(&format!(
                "UPDATE gate_audit SET data = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {};",
                data.replace('\'', "''"),
                e.prev_hash,
                e.hash,
                e.seq
            ));
        }
        as_dba(&s, db, &sql).await;
        let v = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
        assert_eq!(v.code, 1, "{db:?}: {v:?}");
        assert!(
            v.stdout
                .contains(&format!("event #{} (vote on {})", rows[from].seq, r.id)),
            "{db:?}: {v:?}"
        );
        // Against the checkpoint kept before, the rewrite shows as history that no
        // longer verifies from that event on.
        let v = s
            .run(
                crate::helpers::AUDITOR,
                &["audit", "verify", "--checkpoint", kept.to_str().unwrap()],
            )
            .await;
        assert_eq!(v.code, 1, "{db:?}: {v:?}");
        assert!(
            v.stdout.contains(&format!("events #{} to #", rows[from].seq)),
            "{db:?}: {v:?}"
        );
    }
}
