//! The release files (scripts/dist) as the action and the GitLab template install them:
//! the real archives and checksums served by a local HTTP server, the install scripts
//! taken from action.yml and .gitlab-ci-template.yml and run the way a runner runs
//! them, the installed binary run; a tampered checksum refused. Also the static binary
//! itself, and what `gate --version` says about the commit it was built from.
//!
//! `.ci/run` builds the dist folder and sets `GATE_DIST_DIR`; without it the tests that
//! need it print a skip line, or fail when `GATE_E2E_REQUIRED=1`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use serde_json::Value;
use tokio::process::Command;

use crate::helpers::GATE;

mod info {
    #![allow(dead_code)]
    include!("../../build/info.rs");
}

const TARGET: &str = "x86_64-unknown-linux-gnu";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The folder scripts/dist wrote, or `None` (after a skip line) when there is none.
fn dist_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os("GATE_DIST_DIR").map(PathBuf::from) {
        Some(d) if d.join(format!("gate-{TARGET}.tar.gz")).is_file() => Some(d),
        other => {
            let why = format!("GATE_DIST_DIR ({other:?}) holds no gate-{TARGET}.tar.gz: run scripts/dist and set it");
            if std::env::var("GATE_E2E_REQUIRED").is_ok_and(|v| v == "1") {
                panic!("{test}: {why} (GATE_E2E_REQUIRED=1)");
            }
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// A release server: `GET /<owner>/<repo>/releases/download/<tag>/<file>` answers
/// `<dir>/<owner>/<tag>/<file>`; every path asked for is kept.
struct Releases {
    url: String,
    dir: tempfile::TempDir,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Releases {
    async fn start() -> Releases {
        type St = (PathBuf, Arc<Mutex<Vec<String>>>);
        async fn file(
            State((dir, asked)): State<St>,
            UrlPath((owner, repo, tag, name)): UrlPath<(String, String, String, String)>,
        ) -> Result<Vec<u8>, StatusCode> {
            asked
                .lock()
                .unwrap()
                .push(format!("/{owner}/{repo}/releases/download/{tag}/{name}"));
            if [&owner, &tag, &name].iter().any(|p| p.contains("..")) || repo != "jitgate" {
                return Err(StatusCode::NOT_FOUND);
            }
            std::fs::read(dir.join(owner).join(tag).join(name)).map_err(|_| StatusCode::NOT_FOUND)
        }
        let dir = tempfile::tempdir().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route(
                "/{owner}/{repo}/releases/download/{tag}/{name}",
                axum::routing::get(file),
            )
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state((dir.path().to_path_buf(), asked.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Releases { url, dir, asked }
    }
    /// Publishes the dist files as `<owner>`'s release `v<version>`.
    fn publish(&self, owner: &str, version: &str, dist: &Path) -> PathBuf {
        let rel = self.dir.path().join(owner).join(format!("v{version}"));
        std::fs::create_dir_all(&rel).unwrap();
        for e in std::fs::read_dir(dist).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), rel.join(e.file_name())).unwrap();
        }
        rel
    }
    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// The archive's own line from its .sha256 file.
fn published_sha(rel: &Path) -> String {
    let text = std::fs::read_to_string(rel.join(format!("gate-{TARGET}.tar.gz.sha256"))).unwrap();
    let (hex, name) = text.trim().split_once("  ").expect("<hex>  <name>");
    assert_eq!(name, format!("gate-{TARGET}.tar.gz"));
    assert_eq!(hex.len(), 64, "{text}");
    hex.to_string()
}

/// A copy whose .sha256 names a digest the archive does not have.
fn tamper(rel: &Path) {
    let f = rel.join(format!("gate-{TARGET}.tar.gz.sha256"));
    let hex = published_sha(rel);
    let flipped = if hex.starts_with('0') { "1" } else { "0" };
    std::fs::write(&f, format!("{flipped}{}  gate-{TARGET}.tar.gz\n", &hex[1..])).unwrap();
}

/// What `gate --version` says for the binary this test suite runs.
async fn dev_version() -> String {
    let o = Command::new(GATE).arg("--version").output().await.unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// A PATH with the usual tools and no gate and no cargo on it.
fn plain_path() -> String {
    let path = "/usr/local/bin:/usr/bin:/bin";
    for d in std::env::split_paths(path) {
        assert!(
            !d.join("gate").exists(),
            "{} has a gate: the test needs a PATH without one",
            d.display()
        );
    }
    path.to_string()
}

/// The action's install step, its env evaluated for these inputs and github context.
fn action_install_step(github: &HashMap<&str, String>) -> (String, Vec<(String, String)>) {
    let doc: Value = serde_norway::from_str(&std::fs::read_to_string(root().join("action.yml")).unwrap()).unwrap();
    let step = doc["runs"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "install")
        .expect("action.yml has a step with id install");
    assert_eq!(step["shell"], "bash");
    let mut env = Vec::new();
    for (k, v) in step["env"].as_object().into_iter().flatten() {
        let expr = v.as_str().unwrap().trim();
        let inner = expr
            .strip_prefix("${{")
            .and_then(|e| e.strip_suffix("}}"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("env {k}: {expr} is not one expression"));
        let value = if let Some(name) = inner.strip_prefix("inputs.") {
            doc["inputs"][name]["default"].as_str().unwrap_or("").to_string()
        } else if let Some(name) = inner.strip_prefix("github.") {
            github
                .get(name)
                .cloned()
                .unwrap_or_else(|| panic!("env {k}: no github.{name} here"))
        } else {
            panic!("env {k}: unexpected expression {inner}")
        };
        env.push((k.clone(), value));
    }
    (step["run"].as_str().unwrap().to_string(), env)
}

/// shellcheck finds nothing in `script` (run by `shell`); skipped without shellcheck
/// unless `GATE_E2E_REQUIRED=1`.
fn shellcheck_clean(script: &str, shell: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script.sh");
    std::fs::write(&file, script).unwrap();
    match std::process::Command::new("shellcheck")
        .args(["--shell", shell])
        .arg(&file)
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "shellcheck:\n{}",
            String::from_utf8_lossy(&o.stdout)
        ),
        Err(_) if std::env::var("GATE_E2E_REQUIRED").is_ok_and(|v| v == "1") => {
            panic!("shellcheck is not installed (apt-get install shellcheck) and GATE_E2E_REQUIRED=1")
        }
        Err(_) => eprintln!("SKIPPED shellcheck of a {shell} script: shellcheck is not installed"),
    }
}

#[test]
fn the_install_scripts_pass_shellcheck() {
    let (script, _) = action_install_step(&HashMap::from([
        ("action_repository", String::new()),
        ("action_ref", String::new()),
    ]));
    shellcheck_clean(&script, "bash");
    shellcheck_clean(&gitlab_install().0, "sh");
}

struct Run {
    /// Holds RUNNER_TEMP, where the installed binary lives.
    _dir: tempfile::TempDir,
    ok: bool,
    stdout: String,
    outputs: HashMap<String, String>,
}

/// The install step as the runner runs it (`bash --noprofile --norc -eo pipefail FILE`).
async fn run_action_install(rel_server: &str, repo: &str, git_ref: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let github = HashMap::from([
        ("action_repository", repo.to_string()),
        ("action_ref", git_ref.to_string()),
    ]);
    let (script, env) = action_install_step(&github);
    let file = dir.path().join("install.sh");
    std::fs::write(&file, script).unwrap();
    let output = dir.path().join("github_output");
    std::fs::write(&output, "").unwrap();
    let temp = dir.path().join("runner-temp");
    std::fs::create_dir_all(&temp).unwrap();
    let o = Command::new("bash")
        .env_clear()
        .envs(env)
        .env("PATH", plain_path())
        .env("HOME", dir.path())
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_ARCH", "X64")
        .env("RUNNER_TEMP", &temp)
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_SERVER_URL", rel_server)
        .env("GITHUB_REPOSITORY", "acme/web")
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let text = std::fs::read_to_string(&output).unwrap();
    let outputs = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Run {
        _dir: dir,
        ok: o.status.success(),
        stdout: format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        outputs,
    }
}

#[tokio::test]
async fn the_action_installs_the_released_binary_and_refuses_a_bad_checksum() {
    let Some(dist) = dist_dir("the_action_installs_the_released_binary_and_refuses_a_bad_checksum") else {
        return;
    };
    let rel = Releases::start().await;
    let good = rel.publish("acme", VERSION, &dist);
    let digest = published_sha(&good);
    let want = dev_version().await;

    // `uses: acme/jitgate@v<VERSION>`: that release of that repository.
    let r = run_action_install(&rel.url, "acme/jitgate", &format!("v{VERSION}")).await;
    assert!(r.ok, "{}", r.stdout);
    assert!(r.stdout.contains(&format!("sha256 {digest}")), "{}", r.stdout);
    let bin = r
        .outputs
        .get("bin")
        .unwrap_or_else(|| panic!("no bin= in GITHUB_OUTPUT: {}", r.stdout));
    let o = Command::new(bin).arg("--version").output().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        want,
        "the released binary is this build"
    );
    assert!(
        rel.asked().contains(&format!(
            "/acme/jitgate/releases/download/v{VERSION}/gate-{TARGET}.tar.gz"
        )),
        "{:?}",
        rel.asked()
    );

    // `uses: acme/jitgate@<commit sha>`: the version input's default.
    let r = run_action_install(&rel.url, "acme/jitgate", "4b825dc642cb6eb9a060e54bf8d69288fbee4904").await;
    assert!(r.ok, "{}", r.stdout);
    assert!(r.outputs.contains_key("bin"), "{}", r.stdout);

    // Another repository's release whose .sha256 does not match its archive.
    let bad = rel.publish("mallory", VERSION, &dist);
    tamper(&bad);
    let r = run_action_install(&rel.url, "mallory/jitgate", &format!("v{VERSION}")).await;
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!(
            "::error title=jitgate::checksum mismatch for gate-{TARGET}.tar.gz"
        )),
        "{}",
        r.stdout
    );
    assert!(!r.outputs.contains_key("bin"), "{:?}", r.outputs);

    // No release for that version, and no cargo on PATH: a clear error, no bin=.
    let r = run_action_install(&rel.url, "nobody/jitgate", &format!("v{VERSION}")).await;
    assert!(!r.ok, "{}", r.stdout);
    assert!(r.stdout.contains("no cargo to build one"), "{}", r.stdout);
    assert!(!r.outputs.contains_key("bin"), "{:?}", r.outputs);
}

/// The template's first script item (the install) and its variables' defaults.
fn gitlab_install() -> (String, Vec<(String, String)>) {
    let doc: Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join(".gitlab-ci-template.yml")).unwrap()).unwrap();
    let job = &doc[".jitgate"];
    let script = job["script"][0]
        .as_str()
        .expect(".jitgate.script[0] is the install")
        .to_string();
    assert!(script.contains("command -v gate"), "{script}");
    let vars = job["variables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    (script, vars)
}

async fn run_gitlab_install(releases_url: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (script, vars) = gitlab_install();
    assert!(
        vars.iter()
            .any(|(k, v)| k == "GATE_RELEASES_URL" && v.starts_with("https://")),
        "{vars:?}"
    );
    // The job's later script lines run in the same shell: gate is on its PATH.
    let file = dir.path().join("job.sh");
    std::fs::write(&file, format!("{script}\necho \"version: $(gate --version)\"\n")).unwrap();
    let o = Command::new("sh")
        .env_clear()
        .envs(vars)
        .env("GATE_RELEASES_URL", releases_url)
        .env("PATH", plain_path())
        .env("HOME", dir.path())
        .env("TMPDIR", dir.path())
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[tokio::test]
async fn the_gitlab_template_installs_the_released_binary_and_refuses_a_bad_checksum() {
    let Some(dist) = dist_dir("the_gitlab_template_installs_the_released_binary_and_refuses_a_bad_checksum") else {
        return;
    };
    let rel = Releases::start().await;
    rel.publish("acme", VERSION, &dist);
    let want = dev_version().await;

    let (ok, out) = run_gitlab_install(&format!("{}/acme/jitgate/releases/download", rel.url)).await;
    assert!(ok, "{out}");
    assert!(out.contains(&format!("version: {want}\n")), "{out}");

    let bad = rel.publish("mallory", VERSION, &dist);
    tamper(&bad);
    let (ok, out) = run_gitlab_install(&format!("{}/mallory/jitgate/releases/download/", rel.url)).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("jitgate: checksum mismatch for gate-{TARGET}.tar.gz")),
        "{out}"
    );
    assert!(!out.contains("version: "), "{out}");
}

/// Unpacks the dist archive and returns the binary in it.
fn unpack(dist: &Path, into: &Path) -> PathBuf {
    let st = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(dist.join(format!("gate-{TARGET}.tar.gz")))
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(st.success());
    let dir = into.join(format!("gate-{TARGET}"));
    assert!(dir.join("README.md").is_file(), "the archive carries the README");
    dir.join("gate")
}

#[tokio::test]
async fn the_linux_binary_is_static_and_resolves_localhost() {
    let Some(dist) = dist_dir("the_linux_binary_is_static_and_resolves_localhost") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let gate = unpack(&dist, tmp.path());
    let o = std::process::Command::new("ldd").arg(&gate).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "ldd {}: {said}",
        gate.display()
    );
    assert_eq!(
        String::from_utf8_lossy(&Command::new(&gate).arg("--version").output().await.unwrap().stdout).trim(),
        dev_version().await
    );

    // The static binary as a client, by name: `localhost` goes through glibc's
    // getaddrinfo, which in a static binary loads the NSS modules at run time.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let seen = s2.clone();
        async move {
            seen.lock().unwrap().push(req.uri().path().to_string());
            (
                StatusCode::UNAUTHORIZED,
                "{\"error\":\"unauthorized\",\"message\":\"no\"}",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let o = Command::new(&gate)
        .args([
            "pending",
            "--server",
            &format!("http://localhost:{port}"),
            "--token",
            "t",
        ])
        .env_remove("GATE_TOKEN")
        .env("NO_PROXY", "*")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("dns error") && !err.contains("failed to lookup"), "{err}");
    assert!(
        !seen.lock().unwrap().is_empty(),
        "the server was never reached by name: {err}"
    );
}

#[tokio::test]
async fn gate_version_names_the_commit_it_was_built_from() {
    let v = dev_version().await;
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let toplevel = git(&["rev-parse", "--show-toplevel"]);
    let is_checkout = toplevel.is_some_and(|t| Path::new(&t).canonicalize().ok() == root().canonicalize().ok());
    if is_checkout && std::env::var_os("GATE_BUILD_COMMIT").is_none() {
        let sha = git(&["rev-parse", "--short=7", "HEAD"]).unwrap();
        let date = git(&["log", "-1", "--format=%cs", "HEAD"]).unwrap();
        assert_eq!(v, format!("gate {VERSION} ({sha} {date})"));
    } else {
        assert!(v.starts_with(&format!("gate {VERSION}")), "{v}");
    }

    // A crate tarball (no .git, a .cargo_vcs_info.json): the commit, no date.
    let crate_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        crate_dir.path().join(".cargo_vcs_info.json"),
        "{\n  \"git\": {\n    \"sha1\": \"4B825DC642CB6EB9A060E54BF8D69288FBEE4904\"\n  },\n  \"path_in_vcs\": \"\"\n}",
    )
    .unwrap();
    let i = info::build_info(crate_dir.path(), None, None);
    assert_eq!(i.suffix(), " (4b825dc)");
    assert_eq!(i.watch, vec![crate_dir.path().join(".cargo_vcs_info.json")]);
    // Neither: the version alone, and the build still succeeds.
    let bare = tempfile::tempdir().unwrap();
    assert_eq!(info::build_info(bare.path(), None, None).suffix(), "");
    // A container build passes the commit in; a malformed one is ignored.
    let i = info::build_info(bare.path(), Some("4b825dc642cb6eb9".into()), Some("2026-12-01".into()));
    assert_eq!(i.suffix(), " (4b825dc 2026-12-01)");
    assert_eq!(info::build_info(bare.path(), Some("main".into()), None).suffix(), "");
}
