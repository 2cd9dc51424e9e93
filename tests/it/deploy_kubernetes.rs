//! The Helm chart (`deploy/helm/jitgate`) and the plain manifests beside it
//! (`deploy/kubernetes/jitgate.yaml`), checked with the real tools: `helm template` and
//! `helm lint` render the chart; kubernetes-validate checks every object against the
//! Kubernetes 1.37 schemas, strictly (unknown fields fail); the ServiceMonitor, a CRD that
//! kubernetes-validate has no schema for, is checked against the prometheus-operator
//! schema of `@kubernetes-models/prometheus-operator` (`tests/kubernetes`); check-jsonschema
//! checks `values.yaml` against `values.schema.json`. The committed manifests must be the
//! chart's default render, byte for byte. Last, the rendered ConfigMap, environment, mounts
//! and probes run two real `gate serve` replicas on one PostgreSQL database.
//!
//! `.ci/run` installs the tools (its `kubernetes` block). Without one, a test prints why
//! and passes, unless `GATE_E2E_REQUIRED=1` makes that a failure.
//! `GATE_UPDATE_MANIFESTS=1` rewrites `deploy/kubernetes/jitgate.yaml` from the chart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize as _;
use serde_json::Value;

use crate::helpers::GATE;
use crate::support::serve::listening;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The Kubernetes version the objects are validated against (the newest that
/// kubernetes-validate 1.37.0 bundles).
const KUBERNETES: &str = "1.37.0";
const MANIFESTS_HEADER: &str = "\
# jitgate on Kubernetes without Helm: the chart deploy/helm/jitgate rendered with its
# default values (`helm template jitgate deploy/helm/jitgate`). Do not edit by hand:
# change the chart and run `GATE_UPDATE_MANIFESTS=1 cargo test --test it deploy_kubernetes::`
# (the test fails while this file differs from the render). Before applying it, create
# the Secrets jitgate-database and jitgate-signing-key, set the image, and put your
# public_url, users, pipelines and policy into the ConfigMap (docs/operations.md,
# \"Kubernetes\").
";

fn chart() -> String {
    format!("{ROOT}/deploy/helm/jitgate")
}

fn manifests() -> PathBuf {
    Path::new(ROOT).join("deploy/kubernetes/jitgate.yaml")
}

fn sm_checker() -> PathBuf {
    Path::new(ROOT).join("tests/kubernetes/servicemonitor_check.mjs")
}

/// Whether helm, kubernetes-validate, check-jsonschema and the ServiceMonitor checker
/// run here; if not, skips (prints why) or, with `GATE_E2E_REQUIRED=1`, fails.
fn tools_or_skip() -> bool {
    let runs = |prog: &str, arg: &str| Command::new(prog).arg(arg).output().is_ok_and(|o| o.status.success());
    let mut missing = Vec::new();
    if !runs("helm", "version") {
        missing.push("helm");
    }
    if !runs("kubernetes-validate", "--version") {
        missing.push("kubernetes-validate (pip install kubernetes-validate==1.37.0)");
    }
    if !runs("check-jsonschema", "--version") {
        missing.push("check-jsonschema");
    }
    let models = Path::new(ROOT).join("tests/kubernetes/node_modules/@kubernetes-models/prometheus-operator");
    if !runs("node", "--version") || !models.is_dir() {
        missing.push("node with tests/kubernetes installed (npm ci --prefix tests/kubernetes)");
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("missing: {} (the kubernetes block of .ci/run installs them)", missing.join(", "));
    if std::env::var("GATE_E2E_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("the Kubernetes tests are required (GATE_E2E_REQUIRED=1) but {why}");
    }
    eprintln!("skipped: {why}");
    false
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `helm template jitgate CHART ARGS…`: the rendered YAML, or helm's error.
fn render(args: &[&str]) -> Result<String, String> {
    let out = Command::new("helm")
        .args(["template", "jitgate", &chart()])
        .args(args)
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("helm prints UTF-8"))
    } else {
        Err(text(&out))
    }
}

/// The objects of a multi-document YAML stream, as JSON values.
fn objects(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("the render is YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(objs: &[Value]) -> Vec<&str> {
    let mut k: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().expect("every object has a kind")).collect();
    k.sort_unstable();
    k
}

fn one<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objs.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected, found {}", found.len());
    found[0]
}

/// kubernetes-validate, strict, against [`KUBERNETES`], on `yaml` written to a file in `dir`.
fn kube_validate(dir: &Path, name: &str, yaml: &str) -> Output {
    let file = dir.join(name);
    std::fs::write(&file, yaml).expect("write the render");
    Command::new("kubernetes-validate")
        .args(["-k", KUBERNETES, "--strict"])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate")
}

/// The ServiceMonitor checker (tests/kubernetes) on `object`, written as JSON into `dir`.
fn sm_check(dir: &Path, name: &str, object: &Value) -> Output {
    let file = dir.join(name);
    std::fs::write(&file, object.to_string()).expect("write the ServiceMonitor");
    Command::new("node")
        .arg(sm_checker())
        .arg(&file)
        .current_dir(Path::new(ROOT).join("tests/kubernetes"))
        .output()
        .expect("run node")
}

fn assert_valid(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} is not valid:\n{}", text(out));
}

#[test]
fn the_committed_manifests_are_the_default_render_and_valid() {
    if !tools_or_skip() {
        return;
    }
    let lint = Command::new("helm").args(["lint", "--strict", &chart()]).output().expect("helm lint");
    assert!(lint.status.success(), "helm lint --strict:\n{}", text(&lint));

    let rendered = render(&[]).expect("the defaults render");
    let expected = format!("{MANIFESTS_HEADER}{rendered}");
    if std::env::var("GATE_UPDATE_MANIFESTS").is_ok_and(|v| v == "1") {
        std::fs::write(manifests(), &expected).expect("write deploy/kubernetes/jitgate.yaml");
    }
    let committed = std::fs::read_to_string(manifests()).expect("read deploy/kubernetes/jitgate.yaml");
    assert!(
        committed == expected,
        "deploy/kubernetes/jitgate.yaml is not the chart's default render: run \
         `GATE_UPDATE_MANIFESTS=1 cargo test --test it deploy_kubernetes::` and commit it"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let out = kube_validate(dir.path(), "default.yaml", &committed);
    assert_valid(&out, "deploy/kubernetes/jitgate.yaml");
    for kind in ["configmap", "service", "deployment", "poddisruptionbudget", "networkpolicy"] {
        assert!(text(&out).contains(&format!("passed for resource {kind}/jitgate against version 1.37")), "{kind}: {}", text(&out));
    }
    // The validator is strict: one unknown field in the Deployment fails it.
    let broken = committed.replacen("  revisionHistoryLimit: 5\n", "  revisionHistoryLimit: 5\n  replica: 3\n", 1);
    assert_ne!(broken, committed);
    let out = kube_validate(dir.path(), "broken.yaml", &broken);
    assert!(!out.status.success() && text(&out).contains("'replica' was unexpected"), "{}", text(&out));

    let objs = objects(&committed);
    assert_eq!(kinds(&objs), ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service"]);
    let dep = one(&objs, "Deployment");
    assert_eq!(dep["spec"]["replicas"], 3);
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());
    let db = c["env"].as_array().unwrap().iter().find(|e| e["name"] == "GATE_DATABASE_URL").expect("GATE_DATABASE_URL");
    assert_eq!(db["valueFrom"]["secretKeyRef"], serde_json::json!({"name": "jitgate-database", "key": "url"}));
    let key = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "signing-key").expect("signing-key volume");
    assert_eq!(key["secret"]["secretName"], "jitgate-signing-key");
    assert_eq!(one(&objs, "PodDisruptionBudget")["spec"]["maxUnavailable"], 1);
    // The Service, the PDB and the NetworkPolicy select the Deployment's pods.
    let labels = &dep["spec"]["template"]["metadata"]["labels"];
    for sel in [
        &one(&objs, "Service")["spec"]["selector"],
        &one(&objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        &one(&objs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    ] {
        for (k, v) in sel.as_object().expect("a selector") {
            assert_eq!(&labels[k], v, "selector {k}");
        }
    }
}

#[test]
fn ingress_service_monitor_and_egress_render_valid() {
    if !tools_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = render(&[
        "--set",
        "ingress.enabled=true,ingress.host=gate.acme.test,ingress.tlsSecretName=gate-tls,ingress.className=nginx",
        "--set",
        "serviceMonitor.enabled=true,serviceMonitor.labels.release=prometheus",
        "--set",
        "networkPolicy.egress.enabled=true,replicaCount=2",
        "--set",
        "secretEnv[0].name=GITHUB_TOKEN,secretEnv[0].secretName=jitgate-forge,secretEnv[0].key=github-token",
    ])
    .expect("render with ingress and ServiceMonitor");
    let out = kube_validate(dir.path(), "all.yaml", &rendered);
    assert_valid(&out, "the render with ingress, ServiceMonitor and egress");
    assert!(text(&out).contains("passed for resource ingress/jitgate"), "{}", text(&out));
    // kubernetes-validate has no schema for the CRD and says so; it is checked below.
    assert!(text(&out).contains("Couldn't find schema for kind ServiceMonitor"), "{}", text(&out));

    let objs = objects(&rendered);
    assert_eq!(
        kinds(&objs),
        ["ConfigMap", "Deployment", "Ingress", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceMonitor"]
    );
    let sm = one(&objs, "ServiceMonitor");
    assert_valid(&sm_check(dir.path(), "sm.json", sm), "the ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let svc = one(&objs, "Service");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v, "ServiceMonitor selects the Service by {k}");
    }
    // The checker rejects a ServiceMonitor the operator would: a port given as a number.
    let mut bad = sm.clone();
    bad["spec"]["endpoints"][0]["port"] = serde_json::json!(8080);
    let out = sm_check(dir.path(), "bad.json", &bad);
    assert!(!out.status.success() && text(&out).contains("port must be string"), "{}", text(&out));

    let ing = one(&objs, "Ingress");
    assert_eq!(ing["spec"]["rules"][0]["host"], "gate.acme.test");
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "gate-tls");
    assert_eq!(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"], svc["metadata"]["name"]);
    let egress = &one(&objs, "NetworkPolicy")["spec"]["egress"];
    assert!(egress.to_string().contains("5432") && egress.to_string().contains("53"), "{egress}");
    let dep = one(&objs, "Deployment");
    assert_eq!(dep["spec"]["replicas"], 2);
    let env = &dep["spec"]["template"]["spec"]["containers"][0]["env"];
    let gh = env.as_array().unwrap().iter().find(|e| e["name"] == "GITHUB_TOKEN").expect("GITHUB_TOKEN");
    assert_eq!(gh["valueFrom"]["secretKeyRef"], serde_json::json!({"name": "jitgate-forge", "key": "github-token"}));
}

#[test]
fn values_schema_accepts_the_defaults_and_rejects_bad_values() {
    if !tools_or_skip() {
        return;
    }
    let schema = format!("{}/values.schema.json", chart());
    let jsonschema = |file: &Path| {
        Command::new("check-jsonschema")
            .args(["--schemafile", &schema])
            .arg(file)
            .output()
            .expect("run check-jsonschema")
    };
    let out = jsonschema(&Path::new(&chart()).join("values.yaml"));
    assert_valid(&out, "values.yaml");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    let defaults = std::fs::read_to_string(Path::new(&chart()).join("values.yaml")).unwrap();
    std::fs::write(&bad, defaults.replacen("replicaCount: 3", "replicaCount: 0", 1)).unwrap();
    let out = jsonschema(&bad);
    assert!(!out.status.success() && text(&out).contains("replicaCount: 0 is less than the minimum of 1"), "{}", text(&out));

    // helm applies the same schema before it renders anything.
    for (set, says) in [
        ("replicaCount=0", "at '/replicaCount': minimum"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("config.database_url=postgres://x", "at '/config/database_url': false schema"),
        ("publicUrl=gate.example.com", "at '/publicUrl'"),
        ("serviceMonitor.interval=often", "at '/serviceMonitor/interval'"),
        ("replica=3", "additional properties 'replica' not allowed"),
    ] {
        let err = render(&["--set", set]).expect_err(set);
        assert!(err.contains(says), "--set {set}: {err}");
    }
    let err = render(&["--set", "ingress.enabled=true,ingress.host="]).expect_err("no host");
    assert!(err.contains("/ingress/host"), "{err}");
}

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
        assert!(std::env::var("GATE_E2E_REQUIRED").is_err(), "GATE_TEST_DATABASE_URL is required");
        eprintln!("skipped: GATE_TEST_DATABASE_URL is not set");
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
    let init = Command::new(GATE).args(["key", "init", "--signing-key"]).arg(&key).output().unwrap();
    assert!(init.status.success(), "gate key init: {}", text(&init));
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let port = c["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(gate_yaml["listen"], format!("0.0.0.0:{port}"), "the server listens on the container port");
    let policy_check = Command::new(GATE)
        .args(["policy", "check"])
        .arg(config_dir.join("policy.yaml"))
        .arg("--config")
        .arg(config_dir.join("gate.yaml"))
        .output()
        .unwrap();
    assert!(policy_check.status.success(), "gate policy check: {}", text(&policy_check));

    // The Secrets the Deployment references, as this test supplies them.
    let db = crate::helpers::fresh_pg_database().await;
    let secrets: BTreeMap<(&str, &str), &str> =
        [(("jitgate-database", "url"), db.as_str()), (("jitgate-webhook", "secret"), "s3cret")].into();
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            if a.starts_with('/') { local(&mounts, a).display().to_string() } else { a.to_string() }
        })
        .collect();
    let mut urls = Vec::new();
    let mut children = Vec::new();
    for replica in 0..2 {
        let data = local(&mounts, gate_yaml["data_dir"].as_str().expect("data_dir")).join(replica.to_string());
        let mut cmd = tokio::process::Command::new(GATE);
        cmd.args(&args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            let value = match (&e["value"], &e["valueFrom"]["secretKeyRef"]) {
                (Value::String(v), _) => v.to_string(),
                (_, r) if r.is_object() => {
                    let k = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                    secrets.get(&k).unwrap_or_else(|| panic!("no Secret {k:?} for {name}")).to_string()
                }
                _ => panic!("env {name}: neither a value nor a secretKeyRef"),
            };
            cmd.env(name, value);
        }
        // Where a pod has its own address and an emptyDir, the test has port 0 and a folder.
        cmd.env("GATE_LISTEN", "127.0.0.1:0").env("GATE_DATA_DIR", &data);
        cmd.env("GATE_SIGNING_KEY", &key);
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
        cmd.stderr(std::process::Stdio::inherit()).kill_on_drop(true);
        let mut child = cmd.spawn().expect("start gate serve");
        urls.push(listening(&mut child).await.expect("the replica listens"));
        children.push((child, data));
    }

    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let probe = |p: &str| c[p]["httpGet"]["path"].as_str().unwrap().to_string();
    let mut keys = Vec::new();
    for url in &urls {
        assert_eq!(get(format!("{url}{}", probe("livenessProbe"))).await, (200, "ok".into()));
        assert_eq!(get(format!("{url}{}", probe("readinessProbe"))).await, (200, "ready".into()));
        let (status, metrics) = get(format!("{url}/metrics")).await;
        assert!(status == 200 && metrics.contains("jitgate_"), "{status} {metrics}");
        let (status, body) = get(format!("{url}/api/v1/keys")).await;
        assert_eq!(status, 200, "{body}");
        keys.push(body);
    }
    assert_eq!(keys[0], keys[1], "both replicas publish the one signing key from the Secret");
    for (mut child, data) in children {
        child.kill().await.ok();
        let left: Vec<_> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "with PostgreSQL nothing lands in the emptyDir data dir: {left:?}");
    }
}
