//! The transparency log as outsiders use it: the routes, a witness cosigning and
//! refusing a fork, and an independent verifier (PyPI's aics-tlog, tests/tlog_check.py)
//! checking our checkpoints, cosignatures, inclusion and consistency proofs and records.

use jitgate::core::log::{WitnessKey, WitnessVkey, verify_checkpoint};

use crate::helpers::{Db, Out, TestApp, backends, skip_or_fail, token};

const WITNESS: &str = "witness.example/security";

fn witness_key() -> WitnessKey {
    WitnessKey::from_seed(WITNESS, [42; 32]).unwrap()
}

async fn spawn(db: Db) -> TestApp {
    TestApp::builder()
        .backend(db)
        .config_extra(&format!(
            "log:\n  origin: gate.test/log\n  checkpoint_every: {{events: 1000, interval: 1h}}\n  witnesses:\n    - name: {WITNESS}\n      vkey: {}\n",
            witness_key().vkey()
        ))
        .spawn()
        .await
}

/// Opens a production request with the real gate, has bob approve it, and returns the
/// record file the gate wrote.
async fn approved_record(s: &TestApp) -> std::path::PathBuf {
    let w = s.open(&["--environment", "production", "--actor", "erin"]).await;
    s.client("bob").approve(&w.id, None).await.unwrap();
    let path = w.record_path().to_path_buf();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 0, "{err}");
    path
}

async fn witness(s: &TestApp, dir: &std::path::Path) -> Out {
    let key = dir.join("witness.key");
    if !key.exists() {
        std::fs::write(&key, witness_key().to_private()).unwrap();
    }
    let state = dir.join("witness.state");
    s.run(
        "ci",
        &[
            "audit",
            "witness",
            "--server",
            &s.url,
            "--key",
            key.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ],
    )
    .await
}

#[tokio::test]
async fn checkpoints_proofs_and_cosignatures_verify_and_a_fork_is_refused() {
    for db in backends() {
        let s = spawn(db).await;
        let first = approved_record(&s).await;
        let w = witness(&s, s.dir.path()).await;
        assert_eq!(w.code, 0, "{db:?}: {w:?}");
        assert!(w.stdout.contains("cosigned checkpoint"), "{w:?}");

        // The checkpoint now carries the witness's cosignature, and verifies with it.
        let key = s.http().get("/api/v1/log/key").send().await.text().await;
        let note = s.http().get("/api/v1/log/checkpoint").send().await.text().await;
        assert!(note.starts_with("gate.test/log\n"), "{note}");
        let wv = WitnessVkey::parse(&witness_key().vkey()).unwrap();
        let v = verify_checkpoint(&note, key.trim(), std::slice::from_ref(&wv)).unwrap();
        assert_eq!(v.cosigned_by, vec![WITNESS.to_string()], "{db:?}: {note}");

        // More events; the witness checks consistency with what it cosigned and cosigns again.
        let second = approved_record(&s).await;
        let w = witness(&s, s.dir.path()).await;
        assert_eq!(w.code, 0, "{db:?}: {w:?}");
        // The auditor can require the witness's cosignature on the log's latest head.
        let v = s
            .run(
                crate::helpers::AUDITOR,
                &[
                    "--output",
                    "json",
                    "audit",
                    "verify",
                    "--witness-key",
                    &witness_key().vkey(),
                ],
            )
            .await;
        assert_eq!(v.code, 0, "{db:?}: {v:?}");
        let report: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
        assert_eq!(report["cosigned_by"], serde_json::json!([WITNESS]), "{db:?}: {report}");

        // Both records are vouched for by the witness. Their own checkpoints were signed
        // before it ran, so gate verify fetches the cosigned one and proves it extends them.
        let keys = format!("{}/api/v1/keys", s.url);
        for rec in [&first, &second] {
            let v = s
                .run(
                    "ci",
                    &[
                        "verify",
                        rec.to_str().unwrap(),
                        "--key",
                        &keys,
                        "--witness-key",
                        &witness_key().vkey(),
                    ],
                )
                .await;
            assert_eq!(v.code, 0, "{db:?}: {v:?}");
        }
        let stranger = WitnessKey::from_seed("stranger.example", [7; 32]).unwrap();
        let v = s
            .run(
                "ci",
                &[
                    "verify",
                    second.to_str().unwrap(),
                    "--key",
                    &keys,
                    "--witness-key",
                    &stranger.vkey(),
                ],
            )
            .await;
        assert_eq!(v.code, 1, "{db:?}: {v:?}");
        assert!(
            v.stderr.contains("not cosigned by witness stranger.example"),
            "{db:?}: {v:?}"
        );

        // An independent verifier agrees with all of it.
        let py = python_with_aics();
        if let Some(py) = &py {
            let out = std::process::Command::new(py)
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tlog_check.py"))
                .args([&s.url, &token(crate::helpers::AUDITOR)])
                .args(["--witness", &witness_key().vkey()])
                .arg("--record")
                .arg(&first)
                .arg("--record")
                .arg(&second)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{db:?}: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.contains("1 witness cosignatures, 2 records"), "{stdout}");
        }

        // A cosignature by a witness the server does not list is refused.
        let body = jitgate::core::log::note_body(&note).unwrap();
        let log_line = jitgate::core::log::note_signature_lines(&note).remove(0);
        let bare = format!("{body}\n{log_line}");
        let forged = jitgate::core::log::with_cosignatures(&bare, &[stranger.cosign(&body, 1)]);
        let r = s
            .http()
            .post("/api/v1/log/cosign")
            .body("text/plain", forged)
            .send()
            .await;
        assert_eq!(r.status, 422, "{db:?}");

        // The witness is shown another history (a fresh server with the same key would
        // be one; here its state claims a root this log never had): it refuses, loudly.
        let state = s.dir.path().join("witness.state");
        let mut st: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        st["root"] = serde_json::json!(jitgate::core::log::tree::b64(&jitgate::core::log::tree::leaf_hash(
            b"other"
        )));
        std::fs::write(&state, st.to_string()).unwrap();
        let _third = approved_record(&s).await;
        let w = witness(&s, s.dir.path()).await;
        assert_eq!(w.code, 1, "{db:?}: {w:?}");
        assert!(w.stderr.contains("FORK"), "{db:?}: {w:?}");
    }
}

#[tokio::test]
async fn the_log_routes_answer_bad_input_with_4xx() {
    let s = spawn(Db::Sqlite).await;
    approved_record(&s).await;
    for path in [
        "/api/v1/log/proof/inclusion?index=5&size=2",
        "/api/v1/log/proof/inclusion?index=0&size=99999",
        "/api/v1/log/proof/consistency?from=0&to=1",
        "/api/v1/log/proof/consistency?from=3&to=2",
        "/api/v1/log/proof/inclusion",
    ] {
        let r = s.http().get(path).send().await;
        assert_eq!(r.status, 400, "{path}");
    }
    let r = s.http().get("/api/v1/log/leaves/0").send().await;
    assert_eq!(r.status, 401, "a leaf is an audit event: it needs a token");
    let r = s
        .http()
        .get("/api/v1/log/leaves/99999")
        .bearer(&token(crate::helpers::AUDITOR))
        .send()
        .await;
    assert_eq!(r.status, 404);
    let r = s
        .http()
        .post("/api/v1/log/cosign")
        .body("text/plain", "nonsense")
        .send()
        .await;
    assert_eq!(r.status, 422);
}

/// A Python with aics-tlog, or `None` (a printed skip) when there is none; with
/// `GATE_E2E_REQUIRED=1` a missing one fails the test.
fn python_with_aics() -> Option<String> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import aics_tlog"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("python3".into());
    }
    skip_or_fail(
        "the independent transparency-log verifier check",
        "aics-tlog is not installed (pip install --ignore-requires-python aics-tlog)",
    );
    None
}

#[tokio::test]
async fn a_witness_key_is_made_once_and_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("w.key");
    let run = || {
        std::process::Command::new(crate::helpers::GATE)
            .env_clear()
            .args(["audit", "witness", "--generate-key"])
            .arg(&key)
            .args(["--name", "witness.example/ops"])
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{out:?}");
    let vkey = String::from_utf8(out.stdout).unwrap();
    let parsed = WitnessVkey::parse(vkey.trim()).unwrap();
    assert_eq!(parsed.name, "witness.example/ops");
    let private = WitnessKey::parse(&std::fs::read_to_string(&key).unwrap()).unwrap();
    assert_eq!(private.vkey(), vkey.trim());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // A second run never overwrites the key.
    let again = run();
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not overwriting"));
}
