//! Records as evidence of one whole decision: `gate verify`'s decision flags and
//! admission policy against real records, a DSSE implementation that is not ours
//! (securesystemslib) verifying them, and the signing keys: no silent new identity,
//! rotation that keeps old records verifiable.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

use crate::helpers::{COMMIT, Db, GATE, Out, TestApp, backends, skip_or_fail};
use crate::support::serve::ServeFiles;

const ART: &str = "sha256:abababababababababababababababababababababababababababababababab";

/// Runs the gate for `env` as the `ci` pipeline with erin as the actor, has bob approve
/// when it waits, and returns the path of the record it wrote.
async fn record_for(s: &TestApp, env: &str) -> PathBuf {
    let w = s
        .open(&[
            "--environment",
            env,
            "--actor",
            "erin",
            "--repository",
            "acme/app",
            "--ref",
            "refs/heads/main",
            "--commit",
            COMMIT,
            "--artifact",
            ART,
        ])
        .await;
    if w.opened["status"] == "pending" {
        s.client("bob").approve(&w.id, Some("ok".into())).await.unwrap();
    }
    let path = w.record_path().to_path_buf();
    let (code, events, stderr) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {stderr}");
    path
}

/// `/api/v1/keys`, as served, in a file.
async fn keys_file(s: &TestApp, name: &str) -> (PathBuf, Value) {
    let resp = s.http().get("/api/v1/keys").send().await;
    assert_eq!(resp.status, 200);
    let text = resp.text().await;
    let path = s.dir.path().join(name);
    std::fs::write(&path, &text).unwrap();
    (path, serde_json::from_str(&text).unwrap())
}

async fn verify(s: &TestApp, record: &Path, keys: &Path, flags: &[&str]) -> Out {
    let mut args = vec!["verify", record.to_str().unwrap(), "--key", keys.to_str().unwrap()];
    args.extend_from_slice(flags);
    s.run("ci", &args).await
}

fn envelope(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn predicate(path: &Path) -> Value {
    let payload = envelope(path)["payload"].as_str().unwrap().to_string();
    let bytes = base64::engine::general_purpose::STANDARD.decode(payload).unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["predicate"].clone()
}

#[tokio::test]
async fn a_staging_record_is_no_production_approval() {
    for db in backends() {
        let s = TestApp::builder().backend(db).spawn().await;
        let rec = record_for(&s, "staging").await;
        let (keys, _) = keys_file(&s, "keys.json").await;
        // What the issue found: the commit and artifact checks alone let it through.
        let loose = verify(&s, &rec, &keys, &["--commit", COMMIT, "--artifact", ART]).await;
        assert_eq!(loose.code, 0, "{db:?} {loose:?}");
        let prod = verify(
            &s,
            &rec,
            &keys,
            &["--commit", COMMIT, "--artifact", ART, "--environment", "production"],
        )
        .await;
        assert_eq!(prod.code, 1, "{db:?} {prod:?}");
        assert!(
            prod.stderr
                .contains(r#"refused: environment: the record is for "staging", expected "production""#),
            "{db:?} {prod:?}"
        );
        assert_eq!(prod.stderr.trim().lines().count(), 1, "one line: {prod:?}");
        // The policy approved it, no person did.
        let human = verify(&s, &rec, &keys, &["--min-approvals", "1"]).await;
        assert_eq!(human.code, 1, "{db:?} {human:?}");
        assert!(
            human
                .stderr
                .contains("min_approvals: the record has 0 human approval(s), expected at least 1"),
            "{db:?} {human:?}"
        );
        let json = verify(&s, &rec, &keys, &["--environment", "production", "--output", "json"]).await;
        assert_eq!(json.code, 1);
        let v: Value = serde_json::from_str(json.stdout.trim()).unwrap();
        assert_eq!(
            (v["valid"].clone(), v["field"].clone()),
            (Value::Bool(false), "environment".into()),
            "{v}"
        );
    }
}

#[tokio::test]
async fn each_decision_flag_refuses_a_mismatch_and_accepts_a_match() {
    for db in backends() {
        let s = TestApp::builder().backend(db).spawn().await;
        let rec = record_for(&s, "production").await;
        let (keys, _) = keys_file(&s, "keys.json").await;
        let cases: [(&str, &str, &str, &str); 6] = [
            (
                "--environment",
                "production",
                "staging",
                r#"environment: the record is for "production", expected "staging""#,
            ),
            (
                "--repository",
                "acme/*",
                "other/*",
                r#"repository: the record is for "acme/app", expected "other/*""#,
            ),
            (
                "--ref",
                "refs/heads/*",
                "refs/tags/v*",
                r#"ref: the record is for "refs/heads/main", expected "refs/tags/v*""#,
            ),
            (
                "--rule",
                "production",
                "staging",
                r#"rule: the record was decided by rule "production", expected "staging""#,
            ),
            (
                "--min-approvals",
                "1",
                "2",
                "min_approvals: the record has 1 human approval(s) (bob), expected at least 2",
            ),
            ("--max-age", "1h", "", ""),
        ];
        for (flag, good, bad, message) in cases {
            let ok = verify(&s, &rec, &keys, &[flag, good]).await;
            assert_eq!(ok.code, 0, "{db:?} {flag} {good}: {ok:?}");
            assert!(ok.stdout.starts_with("valid: request"), "{ok:?}");
            if bad.is_empty() {
                continue;
            }
            let no = verify(&s, &rec, &keys, &[flag, bad]).await;
            assert_eq!(no.code, 1, "{db:?} {flag} {bad}: {no:?}");
            assert!(no.stderr.contains(message), "{db:?} {flag} {bad}: {no:?}");
        }
        // All at once, and with the commit and artifact.
        let all = verify(
            &s,
            &rec,
            &keys,
            &[
                "--commit",
                COMMIT,
                "--artifact",
                ART,
                "--environment",
                "production",
                "--repository",
                "acme/app",
                "--ref",
                "refs/heads/main",
                "--rule",
                "production",
                "--min-approvals",
                "1",
                "--max-age",
                "10m",
            ],
        )
        .await;
        assert_eq!(all.code, 0, "{db:?} {all:?}");
        let bad_age = verify(&s, &rec, &keys, &["--max-age", "soon"]).await;
        assert_eq!(bad_age.code, 2, "{bad_age:?}");
        assert!(bad_age.stderr.contains("invalid duration `soon`"), "{bad_age:?}");
    }
}

#[tokio::test]
async fn an_admission_policy_picks_the_records_environment() {
    let s = TestApp::spawn().await;
    let prod = record_for(&s, "production").await;
    let staging = record_for(&s, "staging").await;
    let (keys, _) = keys_file(&s, "keys.json").await;
    let write = |name: &str, text: &str| {
        let p = s.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let admit = write(
        "admit.yaml",
        "environments:
  production:
    repository: acme/*
    ref: refs/heads/main
    rule: production
    min_approvals: 1
    max_age: 1h
",
    );
    let a = admit.to_str().unwrap();
    assert_eq!(verify(&s, &prod, &keys, &["--policy", a]).await.code, 0);
    let unlisted = verify(&s, &staging, &keys, &["--policy", a]).await;
    assert_eq!(unlisted.code, 1, "{unlisted:?}");
    assert!(
        unlisted.stderr.contains(&format!(
            r#"environment: the record is for "staging", which {a} does not list"#
        )),
        "{unlisted:?}"
    );
    let strict = write(
        "strict.yaml",
        "environments:\n  production: {min_approvals: 2}\n  staging: {}\n",
    );
    let st = strict.to_str().unwrap();
    let two = verify(&s, &prod, &keys, &["--policy", st]).await;
    assert_eq!(two.code, 1, "{two:?}");
    assert!(
        two.stderr.contains(&format!(
            r#"min_approvals: the record has 1 human approval(s) (bob), expected at least 2 ({st}, environment "production")"#
        )),
        "{two:?}"
    );
    assert_eq!(verify(&s, &staging, &keys, &["--policy", st]).await.code, 0);
    // Flags and the policy both apply.
    let both = verify(&s, &staging, &keys, &["--policy", st, "--min-approvals", "1"]).await;
    assert_eq!(both.code, 1, "{both:?}");

    let typo = write("typo.yaml", "environments:\n  production:\n    min_aprovals: 2\n");
    let t = typo.to_str().unwrap();
    let bad = verify(&s, &prod, &keys, &["--policy", t]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains(&format!("{t}:3:")), "{bad:?}");
    assert!(bad.stderr.contains("unknown field `min_aprovals`"), "{bad:?}");
}

#[tokio::test]
async fn gate_verify_accepts_what_dsse_allows() {
    let s = TestApp::spawn().await;
    let rec = record_for(&s, "production").await;
    let (keys, listed) = keys_file(&s, "keys.json").await;
    let mut env = envelope(&rec);
    assert_eq!(env["signatures"][0]["keyid"], listed["keys"][0]["keyid"], "{env}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let raw = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    env["payload"] = Value::String(url.encode(raw));
    let sig = b64.decode(env["signatures"][0]["sig"].as_str().unwrap()).unwrap();
    env["signatures"][0] = serde_json::json!({"sig": url.encode(sig)});
    let rewritten = s.dir.path().join("rewritten.json");
    std::fs::write(&rewritten, env.to_string()).unwrap();
    let v = verify(
        &s,
        &rewritten,
        &keys,
        &["--commit", COMMIT, "--environment", "production"],
    )
    .await;
    assert_eq!(v.code, 0, "{v:?}");
    assert!(v.stdout.contains(listed["keys"][0]["keyid"].as_str().unwrap()), "{v:?}");
    // Still the signature that decides: a changed payload fails however it is encoded.
    let mut stmt: Value = serde_json::from_slice(&url.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    stmt["predicate"]["request"]["context"]["environment"] = "staging".into();
    env["payload"] = Value::String(url.encode(serde_json::to_vec(&stmt).unwrap()));
    std::fs::write(&rewritten, env.to_string()).unwrap();
    let v = verify(&s, &rewritten, &keys, &[]).await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("signature does not verify"), "{v:?}");
}

/// securesystemslib with the crypto extra, or `false` (and a printed skip) when it is
/// not installed; with `GATE_E2E_REQUIRED=1` a missing one fails the test.
fn have_securesystemslib() -> bool {
    let have = std::process::Command::new("python3")
        .args(["-c", "import securesystemslib.dsse, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        skip_or_fail(
            "the DSSE interop test",
            "securesystemslib is not installed (pip install 'securesystemslib[crypto]')",
        );
    }
    have
}

async fn dsse_check(record: &Path, keys: &Path) -> Out {
    let mut c = tokio::process::Command::new("python3");
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dsse_check.py"))
        .arg(record)
        .arg(keys);
    Out::of(c).await
}

#[tokio::test]
async fn securesystemslib_verifies_a_real_record() {
    if !have_securesystemslib() {
        return;
    }
    let s = TestApp::spawn().await;
    let rec = record_for(&s, "production").await;
    let (keys, listed) = keys_file(&s, "keys.json").await;
    let ok = dsse_check(&rec, &keys).await;
    assert_eq!(ok.code, 0, "{ok:?}");
    let v: Value = serde_json::from_str(ok.stdout.trim()).unwrap();
    assert_eq!(v["keyids"], serde_json::json!([listed["keys"][0]["keyid"]]), "{v}");
    assert_eq!(v["request"], predicate(&rec)["request"]["id"]);
    // The same verifier refuses an altered record, so its yes means something.
    let mut env = envelope(&rec);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut stmt: Value = serde_json::from_slice(&b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    stmt["predicate"]["policy"]["rule"] = "staging".into();
    env["payload"] = Value::String(b64.encode(serde_json::to_vec(&stmt).unwrap()));
    let altered = s.dir.path().join("altered.json");
    std::fs::write(&altered, env.to_string()).unwrap();
    let no = dsse_check(&altered, &keys).await;
    assert_eq!(no.code, 1, "{no:?}");
}

fn serve_files(s: &TestApp) -> ServeFiles {
    ServeFiles {
        config: s.config.clone(),
        policy: s.policy.clone(),
        data_dir: s.data_dir.clone(),
        listen: "127.0.0.1:0".into(),
        database_url: Some(s.database_url.clone()),
    }
}

async fn key_cmd(s: &TestApp, args: &[&str]) -> Out {
    let mut c = tokio::process::Command::new(GATE);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("key")
        .args(args)
        .arg("--data-dir")
        .arg(&s.data_dir);
    Out::of(c).await
}

#[tokio::test]
async fn a_missing_key_is_made_only_on_a_new_database() {
    for db in backends() {
        let mut s = TestApp::builder().backend(db).spawn().await;
        let (_, listed) = keys_file(&s, "keys.json").await;
        let keyid = listed["keys"][0]["keyid"].as_str().unwrap().to_string();
        assert!(
            s.log().contains("first start: made a new signing key") && s.log().contains(&keyid),
            "{db:?}: {}",
            s.log()
        );
        assert!(listed["keys"][0]["not_before"].is_string(), "{listed}");
        record_for(&s, "staging").await;
        assert_eq!(s.stop().await.code(), Some(0));

        let key = s.data_dir.join("signing-key");
        std::fs::remove_file(&key).unwrap();
        let mut cmd = serve_files(&s).command(Path::new(GATE));
        cmd.env("GATE_LOG", "info");
        let refused = Out::of(cmd).await;
        assert_eq!(refused.code, 2, "{db:?} {refused:?}");
        assert!(
            refused
                .stderr
                .contains(&format!("the signing key {} is missing", key.display())),
            "{db:?} {refused:?}"
        );
        assert!(refused.stderr.contains("restore"), "{refused:?}");
        assert!(refused.stderr.contains("gate key init"), "{refused:?}");
        assert!(!key.exists(), "{db:?}: no key was made");

        // The operator's deliberate choice: a new identity.
        let init = key_cmd(&s, &["init"]).await;
        assert_eq!(init.code, 0, "{init:?}");
        assert!(key.exists());
        s.respawn().await;
        let (_, after) = keys_file(&s, "keys-after.json").await;
        assert_ne!(after["keys"][0]["keyid"].as_str().unwrap(), keyid, "{db:?}");
        assert!(
            init.stdout.contains(after["keys"][0]["keyid"].as_str().unwrap()),
            "{init:?}"
        );
        assert_eq!(key_cmd(&s, &["init"]).await.code, 2, "init never replaces a key");
    }
}

#[tokio::test]
async fn rotation_keeps_old_records_verifiable() {
    for db in backends() {
        let mut s = TestApp::builder().backend(db).spawn().await;
        let old_rec = record_for(&s, "production").await;
        let (_, before) = keys_file(&s, "keys-before.json").await;
        let old = before["keys"][0]["keyid"].as_str().unwrap().to_string();
        s.stop().await;

        let rotated = key_cmd(&s, &["rotate", "--output", "json"]).await;
        assert_eq!(rotated.code, 0, "{db:?} {rotated:?}");
        let r: Value = serde_json::from_str(rotated.stdout.trim()).unwrap();
        let new = r["current"].as_str().unwrap().to_string();
        assert_eq!(r["retired"], Value::String(old.clone()), "{r}");
        assert_ne!(new, old);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(s.data_dir.join("signing-key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        s.respawn().await;
        let (keys, listed) = keys_file(&s, "keys.json").await;
        let ks = listed["keys"].as_array().unwrap();
        assert_eq!(ks.len(), 2, "{listed}");
        assert_eq!(
            (ks[0]["keyid"].as_str(), ks[1]["keyid"].as_str()),
            (Some(&*old), Some(&*new))
        );
        // The old key's window closes where the new one's opens.
        assert!(ks[0]["not_after"].is_string(), "{listed}");
        assert_eq!(ks[0]["not_after"], ks[1]["not_before"], "{listed}");
        assert!(ks[1]["not_after"].is_null(), "{listed}");

        let new_rec = record_for(&s, "production").await;
        assert_eq!(envelope(&new_rec)["signatures"][0]["keyid"], Value::String(new.clone()));
        assert_eq!(predicate(&new_rec)["signed_by"], Value::String(new.clone()));
        assert_eq!(predicate(&old_rec)["signed_by"], Value::String(old.clone()));
        let v_old = verify(&s, &old_rec, &keys, &["--environment", "production"]).await;
        assert_eq!(v_old.code, 0, "{db:?} {v_old:?}");
        assert!(v_old.stdout.contains(&format!("signed by {old}")), "{v_old:?}");
        let v_new = verify(&s, &new_rec, &keys, &[]).await;
        assert_eq!(v_new.code, 0, "{v_new:?}");
        assert!(v_new.stdout.contains(&format!("signed by {new}")), "{v_new:?}");
        // The new key alone does not vouch for what the old one signed.
        let only_new = s.dir.path().join("new.pem");
        std::fs::write(&only_new, ks[1]["pem"].as_str().unwrap()).unwrap();
        assert_eq!(verify(&s, &old_rec, &only_new, &[]).await.code, 1);
        if db == Db::Sqlite && have_securesystemslib() {
            let ok = dsse_check(&old_rec, &keys).await;
            assert_eq!(ok.code, 0, "{ok:?}");
            assert!(ok.stdout.contains(&old), "{ok:?}");
        }
    }
}
