//! deploy/systemd/jitgate.service: `systemd-analyze verify` finds nothing (on a copy whose
//! ExecStart is the built binary, since /usr/local/bin/gate is not installed here),
//! `systemd-analyze security --offline=true` scores exactly what docs/operations.md says
//! (a threshold one tenth lower fails, so the score cannot regress unnoticed), and the
//! unit's command line and environment serve, as a non-root user, with only the state
//! directory writable, the open-file limit of LimitNOFILE= and the seccomp filter of its
//! SystemCallFilter= lines (tests/seccomp_exec.py; a call outside it kills the server).
//! There is no systemd as PID 1 here, so the unit itself is never started: the other
//! namespacing options (PrivateTmp=, PrivateUsers=, ProtectProc=, ...) are not exercised.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::deploy_container::{Sandbox, answers, have, local, sandboxed, staged};
use crate::helpers::{COMMIT, GATE, Out};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const UNIT: &str = "deploy/systemd/jitgate.service";
/// The first uid of systemd's DynamicUser= range.
const DYNAMIC_UID: u32 = 61184;

/// `KEY=value` settings of the unit, in order (comments and sections left out).
fn settings() -> Vec<(String, String)> {
    std::fs::read_to_string(Path::new(ROOT).join(UNIT))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn all<'a>(s: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    s.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

fn one<'a>(s: &'a [(String, String)], key: &str) -> &'a str {
    match all(s, key)[..] {
        [v] => v,
        ref vs => panic!("{key}= set {} times in {UNIT}", vs.len()),
    }
}

fn analyze(args: &[&str]) -> (i32, String) {
    let o = std::process::Command::new("systemd-analyze")
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

const INSTALL: &str = "apt-get install systemd";

#[test]
fn systemd_analyze_verify_finds_nothing() {
    if !have("systemd-analyze", "--version", INSTALL) {
        return;
    }
    let text = std::fs::read_to_string(Path::new(ROOT).join(UNIT)).unwrap();
    let exec = "ExecStart=/usr/local/bin/gate serve\n";
    assert!(text.contains(exec), "{UNIT} starts /usr/local/bin/gate serve");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("jitgate.service");
    std::fs::write(&copy, text.replace(exec, &format!("ExecStart={GATE} serve\n"))).unwrap();
    let (code, out) = analyze(&["verify", copy.to_str().unwrap()]);
    // verify exits 0 on an unknown key but prints it: no output is the pass.
    assert_eq!((code, out.as_str()), (0, ""), "systemd-analyze verify");
    // It does report a misspelt key.
    std::fs::write(&copy, text.replace("ProtectSystem=", "ProtectSytem=")).unwrap();
    let (_, out) = analyze(&["verify", copy.to_str().unwrap()]);
    assert!(out.contains("Unknown key 'ProtectSytem'"), "{out}");
}

#[test]
fn the_exposure_score_is_the_documented_one() {
    if !have("systemd-analyze", "--version", INSTALL) {
        return;
    }
    let (code, out) = analyze(&["security", "--offline=true", UNIT]);
    assert_eq!(code, 0, "{out}");
    let tool = out
        .split("Overall exposure level for jitgate.service: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no overall exposure level in\n{out}"))
        .to_string();
    let docs = std::fs::read_to_string(Path::new(ROOT).join("docs/operations.md")).unwrap();
    let documented = docs
        .split("exposure level **")
        .nth(1)
        .and_then(|s| s.split("**").next())
        .expect("docs/operations.md gives the unit's `exposure level **N**`");
    assert_eq!(documented, tool, "docs/operations.md's exposure level");
    // --threshold is in tenths: the score passes it, a tenth less does not.
    let tenths: u32 = tool.replace('.', "").parse().unwrap();
    let at = format!("--threshold={tenths}");
    let below = format!("--threshold={}", tenths - 1);
    assert_eq!(analyze(&["security", "--offline=true", &at, UNIT]).0, 0);
    assert_ne!(analyze(&["security", "--offline=true", &below, UNIT]).0, 0);
}

#[tokio::test]
async fn the_unit_command_serves_under_its_syscall_filter() {
    let seccomp = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import seccomp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !seccomp {
        crate::helpers::skip_or_fail(
            "the systemd unit under its syscall filter",
            "python3-seccomp is not installed (apt-get install python3-seccomp)",
        );
        return;
    }
    if !have("unshare", "--version", "util-linux") || !have("systemd-analyze", "--version", INSTALL) {
        return;
    }
    let s = settings();
    assert_eq!(one(&s, "DynamicUser"), "yes");
    assert_eq!(one(&s, "ProtectSystem"), "strict");
    assert_eq!(one(&s, "NoNewPrivileges"), "yes");
    let state = format!("/var/lib/{}", one(&s, "StateDirectory"));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let vol = root.join("state");
    std::fs::create_dir(&vol).unwrap();
    // The state directory is the temp dir; /etc/jitgate holds the compose example's files.
    let compose = Path::new(ROOT).join("deploy/compose");
    // Copies the sandbox's user can read, wherever the checkout is.
    let compose = staged(root, &compose.join("gate.yaml")).parent().unwrap().to_path_buf();
    staged(root, &Path::new(ROOT).join("deploy/compose/policy.yaml"));
    let map = |v: &str| {
        v.replace(&state, vol.to_str().unwrap())
            .replace("/etc/jitgate/", &format!("{}/", compose.display()))
    };
    let mut env: Vec<(String, String)> = all(&s, "Environment")
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), map(v))
        })
        .collect();
    assert_eq!(
        env.iter().find(|(k, _)| k == "GATE_DATA_DIR").map(|(_, v)| v.as_str()),
        vol.to_str()
    );
    // The optional EnvironmentFile= (none here) is where a deployment sets the rest: here,
    // a free port on every address.
    assert_eq!(one(&s, "EnvironmentFile"), "-/etc/jitgate/jitgate.env");
    env.push(("GATE_LISTEN".into(), "0.0.0.0:0".into()));
    let exec: Vec<String> = one(&s, "ExecStart").split_whitespace().map(String::from).collect();
    assert_eq!(exec[0], "/usr/local/bin/gate");
    let mut argv: Vec<String> = vec![
        "/usr/bin/python3".into(),
        staged(
            root,
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seccomp_exec.py")),
        )
        .display()
        .to_string(),
        "--nofile".into(),
        one(&s, "LimitNOFILE").into(),
    ];
    for f in all(&s, "SystemCallFilter") {
        argv.extend(["--filter".into(), f.to_string()]);
    }
    argv.push("--".into());
    argv.push(staged(root, Path::new(GATE)).display().to_string());
    argv.extend(exec[1..].iter().cloned());
    let cwd = map(one(&s, "WorkingDirectory"));
    let log = root.join("server.log");
    let (child, url) = sandboxed(
        Sandbox {
            argv,
            env,
            writable: &vol,
            cwd: Path::new(&cwd),
            uid: DYNAMIC_UID,
            probes: vec![root.to_path_buf(), "/tmp".into(), "/var/tmp".into()],
        },
        &log,
    )
    .await;
    let base = local(&url);
    answers(&base, Some("alice_try-compose-token")).await;
    // A whole gate run: open a staging request (the policy approves it), consume it and
    // verify its signed record, all through the server under the filter.
    let mut gate = tokio::process::Command::new(GATE);
    gate.args([
        "request",
        "--environment",
        "staging",
        "--commit",
        COMMIT,
        "--actor",
        "dave",
    ])
    .arg("--record-file")
    .arg(root.join("record.json"))
    .env("GATE_SERVER", &base)
    .env("GATE_TOKEN", "ci_try-compose-token");
    let out = Out::of(gate).await;
    assert_eq!(out.code, 0, "{out:?}\n{}", std::fs::read_to_string(&log).unwrap());
    let mut child = child;
    crate::helpers::signal(&child, libc::SIGTERM);
    let status = child.wait().await.unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "{status} (SIGSYS is a call outside the filter)\n{log_text}"
    );
    assert!(log_text.contains("system calls allowed"), "{log_text}");
}
