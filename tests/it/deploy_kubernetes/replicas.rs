//! The chart's Deployment, run: its ConfigMap, environment, Secret references, mounts and
//! probe paths start two real `gate serve` replicas on one PostgreSQL database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{objects, one, render, text, tools_or_skip};
use crate::helpers::GATE;
use crate::support::serve::listening;

/// What the test puts where the Deployment mounts a volume, by volume name.
fn local_mounts(root: &Path, dep: &Value) -> BTreeMap<String, (String, PathBuf)> {
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap().to_string();
            let path = m["mountPath"].as_str().unwrap().to_string();
            (name.clone(), (path, root.join(&name)))
        })
        .collect()
}

/// `path` inside the container, as the local file under the mount that holds it.
fn local(mounts: &BTreeMap<String, (String, PathBuf)>, path: &str) -> PathBuf {
    for (mount, dir) in mounts.values() {
        if let Some(rest) = path.strip_prefix(&format!("{mount}/")) {
            return dir.join(rest);
        }
        if path == mount {
            return dir.clone();
        }
    }
    panic!("{path} is on no volume the Deployment mounts: the read-only root file system would refuse it");
}

#[tokio::test]
async fn the_rendered_deployment_runs_two_replicas_on_postgres() {
    if !tools_or_skip() {
        return;
    }
    if std::env::var("GATE_TEST_DATABASE_URL").is_err() {
        crate::helpers::skip_or_fail(
            "the chart's two replicas on PostgreSQL",
            "GATE_TEST_DATABASE_URL is not set",
        );
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let values = root.path().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            "publicUrl: https://gate.acme.test\n\
             config:\n  users:\n    - {{name: alice, token_sha256: {a}}}\n    - {{name: bob, token_sha256: {b}}}\n\
             \x20 pipelines:\n    - {{name: web-deploy, token_sha256: {p}}}\n\
             \x20 notify:\n    webhooks:\n      - {{name: audit, url: https://hooks.acme.test/jitgate, secret_env: JITGATE_WEBHOOK_SECRET}}\n\
             secretEnv:\n  - {{name: JITGATE_WEBHOOK_SECRET, secretName: jitgate-webhook, key: secret}}\n\
             policy: |\n  version: 1\n  groups:\n    sre: [alice, bob]\n  rules:\n    - name: production\n      \
             match: {{environment: production}}\n      require: [{{group: sre, count: 1}}]\n    - name: else\n      decision: deny\n",
            a = "a".repeat(64),
            b = "b".repeat(64),
            p = "c".repeat(64),
        ),
    )
    .unwrap();
    let rendered = render(&["-f", values.to_str().unwrap()]).expect("render with users and a policy");
    let objs = objects(&rendered);
    let dep = one(&objs, "Deployment");
    let cm = one(&objs, "ConfigMap");
    let mounts = local_mounts(root.path(), dep);

    // The ConfigMap's files, where the config volume is mounted.
    let (_, config_dir) = &mounts["config"];
    std::fs::create_dir_all(config_dir).unwrap();
    for (file, body) in cm["data"].as_object().expect("ConfigMap data") {
        std::fs::write(config_dir.join(file), body.as_str().unwrap()).unwrap();
    }
    let gate_yaml: Value =
        serde_norway::from_str(cm["data"]["gate.yaml"].as_str().unwrap()).expect("the rendered gate.yaml is YAML");
    // The key file the Secret provides, at the path gate.yaml names, made by `gate key init`.
    let key = local(&mounts, gate_yaml["signing_key"].as_str().expect("signing_key"));
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let init = Command::new(GATE)
        .args(["key", "init", "--signing-key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(init.status.success(), "gate key init: {}", text(&init));
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let port = c["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(
        gate_yaml["listen"],
        format!("0.0.0.0:{port}"),
        "the server listens on the container port"
    );
    let policy_check = Command::new(GATE)
        .args(["policy", "check"])
        .arg(config_dir.join("policy.yaml"))
        .arg("--config")
        .arg(config_dir.join("gate.yaml"))
        .output()
        .unwrap();
    assert!(
        policy_check.status.success(),
        "gate policy check: {}",
        text(&policy_check)
    );

    // The Secrets the Deployment references, as this test supplies them.
    let db = crate::helpers::fresh_pg_database().await;
    let secrets: BTreeMap<(&str, &str), &str> = [
        (("jitgate-database", "url"), db.as_str()),
        (("jitgate-webhook", "secret"), "s3cret"),
    ]
    .into();
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            if a.starts_with('/') {
                local(&mounts, a).display().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let mut urls = Vec::new();
    let mut children = Vec::new();
    for replica in 0..2 {
        let data = local(&mounts, gate_yaml["data_dir"].as_str().expect("data_dir")).join(replica.to_string());
        let mut cmd = tokio::process::Command::new(GATE);
        cmd.args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            let value = match (&e["value"], &e["valueFrom"]["secretKeyRef"]) {
                (Value::String(v), _) => v.to_string(),
                (_, r) if r.is_object() => {
                    let k = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                    secrets
                        .get(&k)
                        .unwrap_or_else(|| panic!("no Secret {k:?} for {name}"))
                        .to_string()
                }
                _ => panic!("env {name}: neither a value nor a secretKeyRef"),
            };
            cmd.env(name, value);
        }
        // Where a pod has its own address and an emptyDir, the test has port 0 and a folder.
        cmd.env("GATE_LISTEN", "127.0.0.1:0").env("GATE_DATA_DIR", &data);
        cmd.env("GATE_SIGNING_KEY", &key);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        let log = root.path().join(format!("replica-{replica}.log"));
        cmd.stderr(std::fs::File::create(&log).unwrap()).kill_on_drop(true);
        let mut child = cmd.spawn().expect("start gate serve");
        match listening(&mut child).await {
            Ok(url) => urls.push(url),
            Err(e) => panic!(
                "replica {replica}: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
        children.push((child, data));
    }

    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
            (r.status().as_u16(), r.text().await.unwrap().trim_end().to_string())
        }
    };
    let probe = |p: &str| c[p]["httpGet"]["path"].as_str().unwrap().to_string();
    let mut keys = Vec::new();
    for url in &urls {
        assert_eq!(
            get(format!("{url}{}", probe("livenessProbe"))).await,
            (200, "ok".into())
        );
        assert_eq!(
            get(format!("{url}{}", probe("readinessProbe"))).await,
            (200, "ready".into())
        );
        let (status, metrics) = get(format!("{url}/metrics")).await;
        assert!(status == 200 && metrics.contains("jitgate_"), "{status} {metrics}");
        let (status, body) = get(format!("{url}/api/v1/keys")).await;
        assert_eq!(status, 200, "{body}");
        keys.push(body);
    }
    assert_eq!(
        keys[0], keys[1],
        "both replicas publish the one signing key from the Secret"
    );
    for (mut child, data) in children {
        child.kill().await.ok();
        let left: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "with PostgreSQL nothing lands in the emptyDir data dir: {left:?}"
        );
    }
}
