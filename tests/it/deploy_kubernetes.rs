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

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize as _;
use serde_json::Value;

mod replicas; // the Deployment run as two replicas on PostgreSQL

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
    let why = format!(
        "missing: {} (the kubernetes block of .ci/run installs them)",
        missing.join(", ")
    );
    crate::helpers::skip_or_fail("the Kubernetes tests", &why);
    false
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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
    let mut k: Vec<&str> = objs
        .iter()
        .map(|o| o["kind"].as_str().expect("every object has a kind"))
        .collect();
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
    let lint = Command::new("helm")
        .args(["lint", "--strict", &chart()])
        .output()
        .expect("helm lint");
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
    for kind in [
        "configmap",
        "service",
        "deployment",
        "poddisruptionbudget",
        "networkpolicy",
    ] {
        assert!(
            text(&out).contains(&format!("passed for resource {kind}/jitgate against version 1.37")),
            "{kind}: {}",
            text(&out)
        );
    }
    // The validator is strict: one unknown field in the Deployment fails it.
    let broken = committed.replacen(
        "  revisionHistoryLimit: 5\n",
        "  revisionHistoryLimit: 5\n  replica: 3\n",
        1,
    );
    assert_ne!(broken, committed);
    let out = kube_validate(dir.path(), "broken.yaml", &broken);
    assert!(
        !out.status.success() && text(&out).contains("'replica' was unexpected"),
        "{}",
        text(&out)
    );

    let objs = objects(&committed);
    assert_eq!(
        kinds(&objs),
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service"
        ]
    );
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
    let db = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "GATE_DATABASE_URL")
        .expect("GATE_DATABASE_URL");
    assert_eq!(
        db["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "jitgate-database", "key": "url"})
    );
    let key = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "signing-key")
        .expect("signing-key volume");
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
    assert!(
        text(&out).contains("passed for resource ingress/jitgate"),
        "{}",
        text(&out)
    );
    // kubernetes-validate has no schema for the CRD and says so; it is checked below.
    assert!(
        text(&out).contains("Couldn't find schema for kind ServiceMonitor"),
        "{}",
        text(&out)
    );

    let objs = objects(&rendered);
    assert_eq!(
        kinds(&objs),
        [
            "ConfigMap",
            "Deployment",
            "Ingress",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceMonitor"
        ]
    );
    let sm = one(&objs, "ServiceMonitor");
    assert_valid(&sm_check(dir.path(), "sm.json", sm), "the ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let svc = one(&objs, "Service");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects the Service by {k}"
        );
    }
    // The checker rejects a ServiceMonitor the operator would: a port given as a number.
    let mut bad = sm.clone();
    bad["spec"]["endpoints"][0]["port"] = serde_json::json!(8080);
    let out = sm_check(dir.path(), "bad.json", &bad);
    assert!(
        !out.status.success() && text(&out).contains("port must be string"),
        "{}",
        text(&out)
    );

    let ing = one(&objs, "Ingress");
    assert_eq!(ing["spec"]["rules"][0]["host"], "gate.acme.test");
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "gate-tls");
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        svc["metadata"]["name"]
    );
    let egress = &one(&objs, "NetworkPolicy")["spec"]["egress"];
    assert!(
        egress.to_string().contains("5432") && egress.to_string().contains("53"),
        "{egress}"
    );
    let dep = one(&objs, "Deployment");
    assert_eq!(dep["spec"]["replicas"], 2);
    let env = &dep["spec"]["template"]["spec"]["containers"][0]["env"];
    let gh = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "GITHUB_TOKEN")
        .expect("GITHUB_TOKEN");
    assert_eq!(
        gh["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "jitgate-forge", "key": "github-token"})
    );
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
    assert!(
        !out.status.success() && text(&out).contains("replicaCount: 0 is less than the minimum of 1"),
        "{}",
        text(&out)
    );

    // helm applies the same schema before it renders anything.
    for (set, says) in [
        ("replicaCount=0", "at '/replicaCount': minimum"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        (
            "config.database_url=postgres://x",
            "at '/config/database_url': false schema",
        ),
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
