//! The gate inside pipelines: GitHub Actions (OIDC token fetch, masking, step outputs and
//! summary, the composite action's own scripts), GitLab CI (ID token, dotenv and
//! annotations reports, the template run by gitlab-ci-local) and Jenkins (ID token).
//! A real server on port 0 and the real `gate` binary throughout; wiremock stands in for
//! the runner's token endpoint and for a server that would check an OIDC token.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::helpers::*;
use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ART: &str = "sha256:abababababababababababababababababababababababababababababababab";

/// An unsigned JWT-shaped token: the gate only reads its audience; the server checks it.
fn fake_jwt(claims: Value) -> String {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b.encode(r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#),
        b.encode(claims.to_string())
    )
}

/// `$GITHUB_OUTPUT` as the runner reads it: `name=value` and `name<<DELIM` … `DELIM`.
fn parse_github_output(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some((name, delim)) = l.split_once("<<") {
            let mut value = Vec::new();
            for v in lines.by_ref() {
                if v == delim {
                    break;
                }
                value.push(v);
            }
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((name, value)) = l.split_once('=') {
            out.insert(name.to_string(), value.to_string());
        }
    }
    out
}

/// A GitHub-hosted runner's workspace: the files the runner hands a step.
struct Runner {
    dir: tempfile::TempDir,
}

impl Runner {
    fn new() -> Runner {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("temp")).unwrap();
        Runner { dir }
    }
    fn output(&self) -> PathBuf {
        self.dir.path().join("github_output")
    }
    fn summary(&self) -> PathBuf {
        self.dir.path().join("step_summary")
    }
    fn outputs(&self) -> HashMap<String, String> {
        parse_github_output(&std::fs::read_to_string(self.output()).unwrap_or_default())
    }
    fn summary_text(&self) -> String {
        std::fs::read_to_string(self.summary()).unwrap_or_default()
    }
    /// The variables a runner sets for run 77, attempt `attempt`.
    fn vars(&self, attempt: &str) -> Vec<(String, String)> {
        [
            ("GITHUB_ACTIONS", "true"),
            ("CI", "true"),
            ("GITHUB_REPOSITORY", "acme/web"),
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_SHA", COMMIT),
            ("GITHUB_ACTOR", "erin"),
            ("GITHUB_TRIGGERING_ACTOR", "erin"),
            ("GITHUB_RUN_ID", "77"),
            ("GITHUB_RUN_ATTEMPT", attempt),
            ("GITHUB_JOB", "deploy"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_WORKSPACE", self.dir.path().to_str().unwrap()),
            ("GITHUB_OUTPUT", self.output().to_str().unwrap()),
            ("GITHUB_STEP_SUMMARY", self.summary().to_str().unwrap()),
            ("RUNNER_OS", "Linux"),
            ("RUNNER_ARCH", "X64"),
            ("RUNNER_TEMP", self.dir.path().join("temp").to_str().unwrap()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
    /// `s.gate("ci")` (static token tok-ci) as a step of this runner.
    fn gate(&self, s: &TestApp, attempt: &str) -> Command {
        let mut c = s.gate("ci");
        c.envs(self.vars(attempt)).current_dir(self.dir.path());
        c
    }
}

#[tokio::test]
async fn github_oidc_token_is_requested_masked_and_presented() {
    let jwt = fake_jwt(json!({"aud": "jitgate", "repository": "acme/web", "sub": "repo:acme/web:ref:refs/heads/main"}));
    let runner_api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/idtoken"))
        .and(query_param("api-version", "2.0"))
        .and(query_param("audience", "jitgate"))
        .and(header("authorization", "bearer runner-request-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": jwt})))
        .expect(1)
        .mount(&runner_api)
        .await;
    // A server that is handed the JWT as the bearer token; this one refuses it.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/requests"))
        .and(header("authorization", format!("Bearer {jwt}").as_str()))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"code": "unauthorized", "message": "no trusted issuer"}})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let s = TestApp::spawn().await;
    let r = Runner::new();
    let mut c = r.gate(&s, "1");
    c.env("GATE_SERVER", server.uri())
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("{}/idtoken?api-version=2.0", runner_api.uri()),
        )
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-request-token")
        .args(["request", "--environment", "production"]);
    let out = Out::of(c).await;
    assert_eq!(out.code, 2, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    // Every secret is masked before anything else is printed, then the identity is said.
    assert_eq!(
        lines[..3],
        [
            "::add-mask::tok-ci".to_string(),
            format!("::add-mask::{jwt}"),
            "jitgate: identity: GitHub OIDC token (audience jitgate)".to_string()
        ],
        "{out:?}"
    );
    assert!(out.stderr.contains("no trusted issuer"), "{out:?}");
    runner_api.verify().await;
    server.verify().await;
    runner_api.reset().await;
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/requests"))
        .and(header("authorization", format!("Bearer {jwt}").as_str()))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;

    // GATE_AUDIENCE names another audience; without a static token an OIDC token is all there is.
    Mock::given(method("GET"))
        .and(path("/idtoken"))
        .and(query_param("audience", "https://gate.example"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": jwt})))
        .expect(1)
        .mount(&runner_api)
        .await;
    let mut c = r.gate(&s, "1");
    c.env_remove("GATE_TOKEN")
        .env("GATE_SERVER", server.uri())
        .env("GATE_AUDIENCE", "https://gate.example")
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("{}/idtoken?api-version=2.0", runner_api.uri()),
        )
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-request-token")
        .args(["request", "--environment", "production"]);
    let out = Out::of(c).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout.starts_with(&format!(
            "::add-mask::{jwt}\njitgate: identity: GitHub OIDC token (audience https://gate.example)\n"
        )),
        "{out:?}"
    );
    runner_api.verify().await;
    server.verify().await;

    // The token request fails and there is no static token: said, and exit 2.
    let failing = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_string("resource not accessible by integration"))
        .mount(&failing)
        .await;
    let mut c = r.gate(&s, "1");
    c.env_remove("GATE_TOKEN")
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("{}/idtoken?api-version=2.0", failing.uri()),
        )
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-request-token")
        .args(["request", "--environment", "production"]);
    let out = Out::of(c).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("could not get a GitHub OIDC token: the token endpoint answered HTTP 403")
            && out.stderr.contains("no static token"),
        "{out:?}"
    );
    assert!(
        s.client("ci").list("pending").await.unwrap().is_empty(),
        "nothing was opened"
    );
}

#[tokio::test]
async fn github_outputs_and_summary_after_an_approval_and_a_denial() {
    let s = TestApp::spawn().await;
    // The OIDC token request fails: said as a warning, and the static token is used.
    let failing = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_string("no"))
        .mount(&failing)
        .await;

    let r = Runner::new();
    let mut c = r.gate(&s, "1");
    c.env(
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        format!("{}/t?api-version=2.0", failing.uri()),
    )
    .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "x");
    let w = s
        .open_with(
            c,
            &[
                "--environment",
                "production",
                "--artifact",
                ART,
                "--summary",
                "Release 1.2",
            ],
        )
        .await;
    let inbox = s.client("bob").list("pending").await.unwrap();
    assert!(inbox.iter().any(|v| v.id == w.id), "the request is in bob's inbox");
    s.client("bob").approve(&w.id, Some("ship it".into())).await.unwrap();
    let record = w.record_path().to_path_buf();
    let id = w.id.clone();
    let url = w.opened["url"].as_str().unwrap().to_string();
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    assert_eq!(outcome(&events)["decision"], "approved");
    // With --output json, stdout is JSON only: the masks and identity go to stderr.
    assert!(err.starts_with("::add-mask::tok-ci\n"), "{err}");
    assert!(
        err.contains(
            "::warning title=jitgate::could not get a GitHub OIDC token: the token endpoint answered HTTP 403"
        ),
        "{err}"
    );
    assert!(
        err.contains("jitgate: identity: static token (the GitHub OIDC token request failed)"),
        "{err}"
    );

    let o = r.outputs();
    assert_eq!(o["decision"], "approved");
    assert_eq!(o["request-id"], id);
    assert_eq!(o["url"], url);
    assert_eq!(o["approvers"], "bob");
    assert_eq!(o["record-path"], record.to_str().unwrap());
    let sum = r.summary_text();
    for want in [
        format!("[`{id}`]({url})"),
        "rule **production**".into(),
        "| Repository | acme/web |".into(),
        "| Ref | refs/heads/main |".into(),
        format!("| Commit | `{COMMIT}` |"),
        "| Actor | erin |".into(),
        "| Run | [77 (attempt 1)](https://github.com/acme/web/actions/runs/77/attempts/1) |".into(),
        format!("`{ART}`"),
        "> Release 1.2".into(),
        "| bob | approve | ".into(),
        " | token | ship it |".into(),
        "**approved** by bob".into(),
    ] {
        assert!(sum.contains(&want), "summary lacks {want:?}:\n{sum}");
    }
    // The summary says how to check the record; doing just that passes.
    let cmd = sum
        .lines()
        .find(|l| l.starts_with("gate verify "))
        .unwrap_or_else(|| panic!("no verify command in\n{sum}"));
    assert_eq!(
        cmd,
        format!(
            "gate verify {} --key {}/api/v1/keys --commit {COMMIT} --artifact {ART}",
            record.display(),
            s.url
        )
    );
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    let v = s.run("ci", &args).await;
    assert_eq!(v.code, 0, "{v:?}");

    // A denial, with a reason on two lines: the outputs keep it whole.
    let r = Runner::new();
    let w = s.open_with(r.gate(&s, "2"), &["--environment", "production"]).await;
    s.client("carol")
        .deny(&w.id, Some("no change ticket\nsee CHG-7".into()))
        .await
        .unwrap();
    let id = w.id.clone();
    let record = w.record_path().to_path_buf();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 1, "{err}");
    let o = r.outputs();
    assert_eq!(o["decision"], "denied");
    assert_eq!(o["request-id"], id);
    assert_eq!(o["approvers"], "");
    assert_eq!(o["reason"], "no change ticket\nsee CHG-7");
    assert_eq!(o["record-path"], record.to_str().unwrap());
    let sum = r.summary_text();
    assert!(sum.contains("❌ jitgate: deploy to production DENIED"), "{sum}");
    assert!(sum.contains("| carol | deny | "), "{sum}");
    assert!(sum.contains(" | token | no change ticket<br>see CHG-7 |"), "{sum}");
    assert!(sum.contains("**denied** by carol (deny)"), "{sum}");
    // The record of a denial verifies as a record, and `gate verify` says it is no approval.
    let v = s
        .run(
            "ci",
            &[
                "verify",
                record.to_str().unwrap(),
                "--key",
                &format!("{}/api/v1/keys", s.url),
            ],
        )
        .await;
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("`denied`"), "{v:?}");
}

#[tokio::test]
async fn github_outputs_for_expired_and_canceled() {
    let s = TestApp::spawn().await;
    let r = Runner::new();
    let w = s
        .open_with(r.gate(&s, "1"), &["--environment", "production", "--timeout", "1s"])
        .await;
    let (code, _, _) = w.finish().await;
    assert_eq!(code, 1);
    let o = r.outputs();
    assert_eq!(o["decision"], "expired");
    assert!(!o["record-path"].is_empty());
    assert!(
        r.summary_text().contains("**expired** by timer"),
        "{}",
        r.summary_text()
    );

    let r = Runner::new();
    let w = s.open_with(r.gate(&s, "2"), &["--environment", "production"]).await;
    signal(&w.child, libc::SIGTERM);
    let id = w.id.clone();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 1, "{err}");
    let o = r.outputs();
    assert_eq!(o["decision"], "canceled", "{err}");
    assert_eq!(o["request-id"], id);
    assert!(std::path::Path::new(&o["record-path"]).exists(), "{o:?}");
    assert!(r.summary_text().contains("🚫"), "{}", r.summary_text());

    // An approval whose record does not verify against the pinned key is no approval (exit
    // 3); the outputs say `error` and why.
    let other = s.dir.path().join("other.pem");
    std::fs::write(
        &other,
        jitgate::core::audit::record::KeyPair::from_seed([9; 32]).public().pem,
    )
    .unwrap();
    let r = Runner::new();
    let w = s
        .open_with(
            r.gate(&s, "3"),
            &["--environment", "production", "--server-key", other.to_str().unwrap()],
        )
        .await;
    s.client("bob").approve(&w.id, None).await.unwrap();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 3, "{err}");
    let o = r.outputs();
    assert_eq!(o["decision"], "error");
    assert!(o["reason"].contains("does not verify"), "{o:?}");
    assert!(r.summary_text().contains("**error**"), "{}", r.summary_text());
}

// ---------------------------------------------------------------------------------------
// The composite action (action.yml), its shell steps run the way the runner runs them.

struct Action {
    doc: Value,
}

impl Action {
    fn load() -> Action {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml")).unwrap();
        Action {
            doc: serde_norway::from_str(&text).unwrap(),
        }
    }
    fn step(&self, id_or_uses: &str) -> &Value {
        self.doc["runs"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id_or_uses || s["uses"].as_str().is_some_and(|u| u.starts_with(id_or_uses)))
            .unwrap_or_else(|| panic!("no step {id_or_uses}"))
    }
    /// The inputs with their defaults, overridden by `given`.
    fn inputs(&self, given: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for (k, v) in self.doc["inputs"].as_object().unwrap() {
            m.insert(k.clone(), v["default"].as_str().unwrap_or("").to_string());
        }
        for (k, v) in given {
            assert!(m.contains_key(*k), "action.yml has no input {k}");
            m.insert(k.to_string(), v.to_string());
        }
        m
    }
}

/// Evaluates the `${{ inputs.X }}` and `${{ steps.S.outputs.O }}` expressions a step uses.
fn expand(text: &str, inputs: &BTreeMap<String, String>, steps: &HashMap<String, HashMap<String, String>>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${{") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("}}").expect("closed expression") + i;
        let expr = rest[i + 3..end].trim();
        let value = if let Some(name) = expr.strip_prefix("inputs.") {
            inputs
                .get(name)
                .unwrap_or_else(|| panic!("unknown input {name}"))
                .clone()
        } else if expr == "github.action_repository" {
            // The action as `uses: jitgate/jitgate@<sha>`: a ref that is no vX.Y.Z tag.
            "jitgate/jitgate".to_string()
        } else if expr == "github.action_ref" {
            "0123456789abcdef0123456789abcdef01234567".to_string()
        } else if let Some(p) = expr.strip_prefix("steps.") {
            let (step, output) = p.split_once(".outputs.").expect("steps.S.outputs.O");
            steps.get(step).and_then(|o| o.get(output)).cloned().unwrap_or_default()
        } else {
            panic!("unexpected expression {expr}")
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A `shell: bash` step as the runner runs it: `bash --noprofile --norc -eo pipefail FILE`,
/// with the step's env and a fresh `$GITHUB_OUTPUT`.
fn run_step(
    step: &Value,
    r: &Runner,
    base_env: &[(String, String)],
    inputs: &BTreeMap<String, String>,
    steps: &HashMap<String, HashMap<String, String>>,
) -> (Command, PathBuf) {
    assert_eq!(step["shell"], "bash");
    let id = step["id"].as_str().unwrap();
    let script = r.dir.path().join(format!("step-{id}.sh"));
    std::fs::write(&script, step["run"].as_str().unwrap()).unwrap();
    let output = r.dir.path().join(format!("output-{id}"));
    std::fs::write(&output, "").unwrap();
    let mut c = Command::new("bash");
    c.env_clear()
        .envs(base_env.iter().cloned())
        .env("GITHUB_OUTPUT", &output)
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&script)
        .current_dir(r.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in step["env"].as_object().into_iter().flatten() {
        c.env(k, expand(v.as_str().unwrap(), inputs, steps));
    }
    (c, output)
}

pub(crate) fn gate_dir() -> PathBuf {
    Path::new(GATE).parent().unwrap().to_path_buf()
}

#[tokio::test]
async fn the_composite_action_runs_the_gate_on_path() {
    let s = TestApp::spawn().await;
    let action = Action::load();
    let r = Runner::new();
    let mut base = r.vars("1");
    base.push((
        "PATH".into(),
        format!("{}:{}", gate_dir().display(), std::env::var("PATH").unwrap()),
    ));
    let inputs = action.inputs(&[
        ("server-url", &s.url),
        ("environment", "production"),
        ("summary", "Release 1.2\nwith a second line"),
        ("labels", "team=web\n  ticket=CHG-9  \n\n"),
        ("artifacts", &format!("{ART}\n")),
        ("token", &token("ci")),
    ]);
    let mut steps: HashMap<String, HashMap<String, String>> = HashMap::new();

    let (mut c, output) = run_step(action.step("install"), &r, &base, &inputs, &steps);
    let o = c.output().await.unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("jitgate: using "), "{o:?}");
    let installed = parse_github_output(&std::fs::read_to_string(&output).unwrap());
    assert_eq!(Path::new(&installed["bin"]), Path::new(GATE));
    steps.insert("install".into(), installed);

    let (mut c, output) = run_step(action.step("gate"), &r, &base, &inputs, &steps);
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    let id = loop {
        let l = lines
            .next_line()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the step ended before opening: {log:?}"));
        log.push(l.clone());
        if let Some(rest) = l.strip_prefix("jitgate: request ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert_eq!(log[0], "::add-mask::tok-ci", "{log:?}");
    assert_eq!(
        log[1],
        "jitgate: identity: static token (no id-token permission: add \"permissions: id-token: write\" to the job)"
    );
    let v = s.client("ci").get(&id).await.unwrap();
    assert_eq!(v.summary, "Release 1.2\nwith a second line");
    assert_eq!(v.context.labels["team"], "web");
    assert_eq!(v.context.labels["ticket"], "CHG-9");
    assert_eq!(v.artifacts, [ART]);
    assert_eq!(v.context.repository, "acme/web");
    s.client("bob").approve(&id, None).await.unwrap();
    while let Some(l) = lines.next_line().await.unwrap() {
        log.push(l);
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).await.unwrap();
    let st = child.wait().await.unwrap();
    assert!(st.success(), "{log:?} {err}");
    steps.insert(
        "gate".into(),
        parse_github_output(&std::fs::read_to_string(&output).unwrap()),
    );

    // The action's outputs, as the runner maps them from the step's.
    let outputs: HashMap<String, String> = action.doc["outputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), expand(v["value"].as_str().unwrap(), &inputs, &steps)))
        .collect();
    assert_eq!(outputs["decision"], "approved");
    assert_eq!(outputs["request-id"], id);
    assert_eq!(outputs["url"], v.url);
    assert_eq!(outputs["approvers"], "bob");
    assert_eq!(outputs["record-path"], "gate-record.json");
    assert!(r.dir.path().join("gate-record.json").exists());
    assert!(r.summary_text().contains("**approved** by bob"));

    // The upload step runs whatever happened, and uploads the record the gate wrote.
    let upload = action.step("actions/upload-artifact@");
    assert!(upload["if"].as_str().unwrap().contains("always()"));
    assert_eq!(
        expand(upload["with"]["path"].as_str().unwrap(), &inputs, &steps),
        "gate-record.json"
    );
    assert_eq!(
        expand(upload["with"]["name"].as_str().unwrap(), &inputs, &steps),
        format!("jitgate-record-{id}")
    );
}

/// The fallback when the repository has no release for the version: `cargo install` at
/// that version. (Installing a real release and refusing a bad checksum: tests/it/dist.rs,
/// against the real dist output.)
#[tokio::test]
async fn the_composite_action_builds_with_cargo_when_there_is_no_release() {
    let action = Action::load();
    let r = Runner::new();
    let fake = r.dir.path().join("fake");
    let bin = fake.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = |p: &Path, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(p, body).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // curl for a repository with no releases: every download is a 404.
    exe(&bin.join("curl"), "#!/bin/sh\necho \"curl: (22) 404\" >&2\nexit 22\n");
    // cargo that "builds" a gate and says how it was called.
    exe(
        &bin.join("cargo"),
        "#!/bin/bash\necho \"$@\" > \"$FAKE_DIR/cargo-args\"\nwhile [ $# -gt 0 ]; do [ \"$1\" = --root ] && root=\"$2\"; shift; done\n\
         mkdir -p \"$root/bin\"; printf '#!/bin/sh\\necho gate 0.1.0 built\\n' > \"$root/bin/gate\"; chmod +x \"$root/bin/gate\"\n",
    );
    let mut base = r.vars("1");
    base.push(("PATH".into(), format!("{}:/usr/bin:/bin", bin.display())));
    base.push(("FAKE_DIR".into(), fake.display().to_string()));
    let inputs = action.inputs(&[("server-url", "http://127.0.0.1:9"), ("environment", "production")]);
    let steps = HashMap::new();
    let install = action.step("install");

    let (mut c, output) = run_step(install, &r, &base, &inputs, &steps);
    let o = c.output().await.unwrap();
    assert!(o.status.success(), "{o:?}");
    let args = std::fs::read_to_string(fake.join("cargo-args")).unwrap();
    assert!(
        args.starts_with("install --locked jitgate --version 0.1.0 --root "),
        "{args}"
    );
    let got = parse_github_output(&std::fs::read_to_string(&output).unwrap());
    let o2 = std::process::Command::new(&got["bin"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o2.stdout), "gate 0.1.0 built\n");
}

// ---------------------------------------------------------------------------------------
// GitLab CI and Jenkins.

#[tokio::test]
async fn gitlab_id_token_then_static_fallback_with_dotenv_and_annotations() {
    let s = TestApp::spawn().await;
    let jwt = fake_jwt(json!({"aud": "jitgate", "project_path": "acme/web"}));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/requests"))
        .and(header("authorization", format!("Bearer {jwt}").as_str()))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "unauthorized", "message": "no"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut c = s.gate("ci");
    c.envs(gitlab_vars("1"))
        .env("GATE_SERVER", server.uri())
        .env("GATE_ID_TOKEN", &jwt)
        .args(["request", "--environment", "production"]);
    let out = Out::of(c).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        out.stdout.lines().next(),
        Some("jitgate: identity: GitLab ID token from GATE_ID_TOKEN (audience jitgate)"),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains("add-mask") && !out.stdout.contains(&jwt),
        "{out:?}"
    );
    server.verify().await;

    // No ID token (and empty variables, as GitLab hands them over): the static token, said why.
    let mut c = s.gate("ci");
    c.envs(gitlab_vars("2"))
        .env("GATE_ID_TOKEN", "")
        .env("GATE_TIMEOUT", "")
        .env("GATE_LABEL", "")
        .env("GATE_DOTENV_FILE", "reports/gate.env")
        .env("GATE_ANNOTATIONS_FILE", "reports/annotations.json");
    let w = s.open_with(c, &["--environment", "production"]).await;
    s.client("bob").approve(&w.id, None).await.unwrap();
    let id = w.id.clone();
    let url = w.opened["url"].as_str().unwrap().to_string();
    let record = w.record_path().display().to_string();
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "jitgate: identity: static token (GATE_ID_TOKEN is empty: add id_tokens: GATE_ID_TOKEN: aud: jitgate to the job)"
        ),
        "{err}"
    );
    let dotenv = std::fs::read_to_string(s.dir.path().join("reports/gate.env")).unwrap();
    assert_eq!(
        dotenv,
        format!("GATE_DECISION=approved\nGATE_REQUEST_ID={id}\nGATE_REQUEST_URL={url}\nGATE_RECORD={record}\n")
    );
    let ann: Value =
        serde_json::from_str(&std::fs::read_to_string(s.dir.path().join("reports/annotations.json")).unwrap()).unwrap();
    assert_eq!(
        ann,
        json!({"jitgate": [{"external_link": {"label": format!("jitgate request {id} (approved)"), "url": url}}]})
    );
    let v = s.client("ci").get(&id).await.unwrap();
    assert_eq!(v.context.platform, "gitlab");
    assert_eq!(v.context.run_url, "https://gitlab.example/acme/web/-/jobs/2");
}

#[tokio::test]
async fn jenkins_presents_its_bound_id_token_or_says_how_to_bind_one() {
    let s = TestApp::spawn().await;
    let jwt = fake_jwt(json!({"aud": ["jitgate"], "sub": "job/web"}));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/requests"))
        .and(header("authorization", format!("Bearer {jwt}").as_str()))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "unauthorized", "message": "no"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let jenkins = [
        ("JENKINS_URL", "https://ci.example/"),
        ("JOB_NAME", "acme/web/main"),
        ("JOB_BASE_NAME", "main"),
        ("BRANCH_NAME", "main"),
        ("BUILD_TAG", "jenkins-acme-web-main-12"),
        ("BUILD_NUMBER", "12"),
        ("BUILD_URL", "https://ci.example/job/acme/job/web/job/main/12/"),
        ("GIT_COMMIT", COMMIT),
        ("BUILD_USER_ID", "erin"),
    ];
    let mut c = s.gate("ci");
    c.envs(jenkins)
        .env("GATE_SERVER", server.uri())
        .env("GATE_ID_TOKEN", &jwt)
        .args(["request", "--environment", "production"]);
    let out = Out::of(c).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout
            .starts_with("jitgate: identity: Jenkins OIDC token from GATE_ID_TOKEN (audience jitgate)\n"),
        "{out:?}"
    );
    server.verify().await;

    let mut c = s.gate("ci");
    c.envs(jenkins);
    let w = s.open_with(c, &["--environment", "production", "--no-wait"]).await;
    let (code, _, err) = w.finish().await;
    assert_eq!(code, 0, "--no-wait: open is enough: {err}");
    assert!(
        err.contains("withCredentials([string(credentialsId: 'jitgate-id-token', variable: 'GATE_ID_TOKEN')])"),
        "{err}"
    );
    let v = s.client("ci").list("pending").await.unwrap();
    assert_eq!(v[0].context.repository, "acme/web");
    assert_eq!(v[0].context.run_id, "jenkins-acme-web-main-12");
    // The same build retried replays the same request.
    let mut c = s.gate("ci");
    c.envs(jenkins);
    let again = s.open_with(c, &["--environment", "production", "--no-wait"]).await;
    assert_eq!(again.id, v[0].id);
}

// ---------------------------------------------------------------------------------------
// The GitLab template, run by gitlab-ci-local with the shell executor.

pub(crate) fn have(cmd: &str) -> bool {
    std::process::Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs one job of `repo` with gitlab-ci-local; returns once the gate has opened its
/// request (its id), with the process still running.
pub(crate) struct GclJob {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    log: Vec<String>,
}

impl GclJob {
    /// gitlab-ci-local running `job` of `repo` against `s`, with the `ci` pipeline's token
    /// and the built `gate` first on PATH.
    pub(crate) fn command(repo: &Path, home: &Path, s: &TestApp, job: &str) -> Command {
        let mut c = Command::new("gitlab-ci-local");
        c.current_dir(repo)
            .arg("--home")
            .arg(home)
            .args(["--variable", &format!("GATE_SERVER={}", s.url)])
            .args(["--variable", &format!("GATE_TOKEN={}", token("ci"))])
            .arg(job)
            .env(
                "PATH",
                format!("{}:{}", gate_dir().display(), std::env::var("PATH").unwrap_or_default()),
            )
            .env("NO_COLOR", "1")
            .env_remove("GATE_SERVER")
            .env_remove("GATE_TOKEN")
            .stdin(Stdio::null());
        c
    }

    pub(crate) async fn start(repo: &Path, home: &Path, s: &TestApp, job: &str) -> (GclJob, String) {
        let mut child = GclJob::command(repo, home, s, job)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn gitlab-ci-local");
        let mut job = GclJob {
            lines: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
            log: Vec::new(),
        };
        let id = loop {
            let l = job.lines.next_line().await.unwrap();
            let Some(l) = l else {
                let mut err = String::new();
                job.child.stderr.take().unwrap().read_to_string(&mut err).await.unwrap();
                panic!(
                    "gitlab-ci-local ended before the gate opened a request:\n{}\n{err}",
                    job.log.join("\n")
                );
            };
            job.log.push(l.clone());
            if let Some((_, rest)) = l.split_once("jitgate: request ")
                && rest.contains(" opened")
            {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        (job, id)
    }

    pub(crate) async fn finish(mut self) -> (bool, String) {
        while let Some(l) = self.lines.next_line().await.unwrap() {
            self.log.push(l);
        }
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        let st = self.child.wait().await.unwrap();
        (st.success(), format!("{}\n{err}", self.log.join("\n")))
    }
}

/// A git repository `web` under `dir` (and a gitlab-ci-local home beside it) whose
/// `.gitlab-ci.yml` is `ci`, with the template beside it, committed on `main` with
/// GitLab's remote: `(repo, home, commit)`.
pub(crate) fn gitlab_repo(dir: &Path, ci: &str) -> (PathBuf, PathBuf, String) {
    let (repo, home) = (dir.join("web"), dir.join("home"));
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".gitlab-ci-template.yml"),
        repo.join(".gitlab-ci-template.yml"),
    )
    .unwrap();
    std::fs::write(repo.join(".gitlab-ci.yml"), ci).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.email", "dev@example.com"]);
    git(&repo, &["config", "user.name", "Dev"]);
    git(
        &repo,
        &["remote", "add", "origin", "https://gitlab.example.com/acme/web.git"],
    );
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "pipeline"]);
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    (repo, home, sha)
}

pub(crate) fn git(repo: &Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[tokio::test]
async fn the_gitlab_template_in_gitlab_ci_local() {
    if !have("gitlab-ci-local") || !have("rsync") {
        skip_or_fail(
            "the_gitlab_template_in_gitlab_ci_local",
            "gitlab-ci-local or rsync is not installed (npm install -g gitlab-ci-local@4.62.0; apt install rsync)",
        );
        return;
    }
    let s = TestApp::spawn().await;
    let tmp = tempfile::tempdir().unwrap();
    let (repo, home, sha) = gitlab_repo(
        tmp.path(),
        &format!(
            "include:
  - local: .gitlab-ci-template.yml

stages: [approve]

.common:
  extends: .jitgate
  stage: approve
  variables:
    GITLAB_CI: \"true\"   # gitlab-ci-local says false; GitLab says true
    GATE_ENVIRONMENT: production
    GATE_SUMMARY: Deploy $CI_COMMIT_SHORT_SHA
    GATE_ARTIFACT: {ART}
    GATE_LABEL: team=web

approve-me:
  extends: .common

deny-me:
  extends: .common
",
        ),
    );

    // Approved while the job waits: the job passes and keeps the record and reports.
    let (job, id) = GclJob::start(&repo, &home, &s, "approve-me").await;
    let inbox = s.client("bob").list("pending").await.unwrap();
    let req = inbox
        .iter()
        .find(|v| v.id == id)
        .expect("the request is in bob's inbox");
    assert_eq!(req.context.platform, "gitlab");
    assert_eq!(req.context.repository, "acme/web");
    assert_eq!(req.context.commit, sha);
    assert_eq!(req.artifacts, [ART]);
    s.client("bob").approve(&id, Some("go".into())).await.unwrap();
    let (ok, log) = job.finish().await;
    eprintln!("{log}");
    assert!(ok, "{log}");
    assert!(
        log.contains("jitgate: identity: static token (GATE_ID_TOKEN is empty"),
        "{log}"
    );
    let arts = repo.join(".gitlab-ci-local/artifacts/approve-me");
    let record = arts.join("gate-record.json");
    assert!(record.exists(), "{log}");
    let dotenv = std::fs::read_to_string(arts.join(".gitlab-ci-reports/dotenv/gate.env")).unwrap();
    assert!(dotenv.contains("GATE_DECISION=approved\n"), "{dotenv}");
    assert!(dotenv.contains(&format!("GATE_REQUEST_ID={id}\n")), "{dotenv}");
    assert!(dotenv.contains("GATE_RECORD=gate-record.json\n"), "{dotenv}");
    assert_eq!(std::fs::read_to_string(arts.join("gate.env")).unwrap(), dotenv);
    let ann: Value =
        serde_json::from_str(&std::fs::read_to_string(arts.join("gate-annotations.json")).unwrap()).unwrap();
    assert_eq!(
        ann["jitgate"][0]["external_link"]["label"],
        format!("jitgate request {id} (approved)")
    );
    let keys = format!("{}/api/v1/keys", s.url);
    let v = s
        .run(
            "ci",
            &[
                "verify",
                record.to_str().unwrap(),
                "--key",
                &keys,
                "--commit",
                &sha,
                "--artifact",
                ART,
            ],
        )
        .await;
    assert_eq!(v.code, 0, "{v:?}");

    // Denied while the job waits: the job fails, and still keeps the record and reports.
    let (job, id) = GclJob::start(&repo, &home, &s, "deny-me").await;
    s.client("bob").deny(&id, Some("not today".into())).await.unwrap();
    let (ok, log) = job.finish().await;
    assert!(!ok, "the job must fail on a denial:\n{log}");
    let arts = repo.join(".gitlab-ci-local/artifacts/deny-me");
    let dotenv = std::fs::read_to_string(arts.join(".gitlab-ci-reports/dotenv/gate.env")).unwrap();
    assert!(dotenv.contains("GATE_DECISION=denied\n"), "{dotenv}");
    assert!(arts.join("gate-record.json").exists(), "{log}");
    let v = s
        .run(
            "ci",
            &[
                "verify",
                arts.join("gate-record.json").to_str().unwrap(),
                "--key",
                &keys,
            ],
        )
        .await;
    assert_eq!(v.code, 1, "{v:?}");
}
