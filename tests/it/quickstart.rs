//! docs/quickstart.md, run: every `sh` block in order, in one directory, against the
//! servers the quickstart itself starts, so the quickstart cannot drift from the binary.
//!
//! The document steers the run with HTML comments (invisible when rendered) just above a
//! fenced block:
//! - `<!-- quickstart-test: background NAME until "TEXT" -->`: the block keeps running
//!   (a server, a waiting gate); the next block starts once its output has a line
//!   containing TEXT;
//! - `<!-- quickstart-test: file PATH -->`: the block is written to PATH;
//! - `<!-- quickstart-test: wait -->`: every background block that is not a server must
//!   have exited 0 first;
//! - `<!-- quickstart-test: output NAME -->`: the next unlabeled block is output NAME
//!   must print (else an unlabeled block is the output of the `sh` block before it).
//!
//! What the reader's machine has and this one must fake is one short table
//! ([`Substitutions`]): install paths under the test directory instead of `/usr/local`
//! and `/var/lib`, the servers on port 0 (`GATE_LISTEN`), the real URL for
//! `https://gate.example.com`, tokens for the `<alice's token>` placeholders and their
//! digests in `gate.yaml`, and a `cargo` on PATH that links the binary under test where
//! `cargo build --release` would put it. Expected output is compared line by line after
//! masking ids, digests, tokens and ports; every expected line must appear.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::GATE;

/// A safety net against a hang, not a synchronisation: every wait ends on output.
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct Block {
    lang: String,
    text: String,
    /// The line of the opening fence, for messages.
    line: usize,
    background: Option<(String, String)>,
    file: Option<String>,
    wait: bool,
    output_of: Option<String>,
}

/// The fenced blocks of a Markdown document with the steering comments above them.
fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut next = Block::default();
    let mut lines = doc.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if let Some(c) = line.trim().strip_prefix("<!-- quickstart-test:") {
            let c = c.trim_end_matches("-->").trim();
            if let Some(rest) = c.strip_prefix("background ") {
                let (name, until) = rest.split_once(" until ").expect("background NAME until \"TEXT\"");
                next.background = Some((name.trim().into(), until.trim().trim_matches('"').into()));
            } else if let Some(path) = c.strip_prefix("file ") {
                next.file = Some(path.trim().into());
            } else if let Some(name) = c.strip_prefix("output ") {
                next.output_of = Some(name.trim().into());
            } else if c == "wait" {
                next.wait = true;
            } else {
                panic!("docs/quickstart.md:{}: unknown quickstart-test comment {c:?}", n + 1);
            }
        } else if let Some(lang) = line.strip_prefix("```") {
            next.lang = lang.trim().into();
            next.line = n + 1;
            for (_, body) in lines.by_ref() {
                if body.starts_with("```") {
                    break;
                }
                next.text.push_str(body);
                next.text.push('\n');
            }
            out.push(std::mem::take(&mut next));
        }
    }
    out
}

/// Ids, digests, tokens and ports differ on every run.
fn mask(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut s = String::new();
        let mut run = String::new();
        let flush = |run: &mut String, s: &mut String| {
            if run.len() >= 16 && run.chars().all(|c| c.is_ascii_hexdigit()) {
                s.push_str("HEX");
            } else {
                s.push_str(run);
            }
            run.clear();
        };
        for c in line.chars() {
            if c.is_ascii_alphanumeric() {
                run.push(c);
            } else {
                flush(&mut run, &mut s);
                s.push(c);
            }
        }
        flush(&mut run, &mut s);
        let mut words: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        for w in &mut words {
            if let Some(i) = w.find("127.0.0.1:") {
                let end = w[i + 10..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(w.len(), |e| i + 10 + e);
                w.replace_range(i + 10..end, "PORT");
            }
        }
        let s = words.join(" ");
        if !s.is_empty() {
            out.push(s);
        }
    }
    out
}

/// What differs between the reader's machine and this test's.
struct Substitutions {
    pairs: Vec<(String, String)>,
}

impl Substitutions {
    fn apply(&self, text: &str, server: Option<&str>) -> String {
        let mut t = text.to_string();
        for (from, to) in &self.pairs {
            t = t.replace(from, to);
        }
        if let Some(url) = server {
            t = t.replace("https://gate.example.com", url);
        }
        t
    }
}

/// A running background block and everything it printed so far.
struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
    /// The task copying its output; it ends at end of file.
    reader: Option<tokio::task::JoinHandle<()>>,
    line: usize,
}

impl Running {
    fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

fn shell(script: &str, dir: &Path, path: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(format!("exec 2>&1\nset -euo pipefail\n{script}"))
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("GATE_") {
            c.env_remove(k);
        }
    }
    // The reader's servers listen on 8080; here they share the machine with other tests.
    c.env("GATE_LISTEN", "127.0.0.1:0");
    c
}

fn check_output(expected: &str, actual: &str, line: usize) {
    let have = mask(actual);
    for want in mask(expected) {
        if want == "…" {
            continue;
        }
        assert!(
            have.iter().any(|h| h == &want),
            "docs/quickstart.md: the block at line {line} should print\n  {want}\nbut printed:\n{actual}"
        );
    }
}

/// Sets up what a reader's checkout has: a git repository with a commit and `./deploy.sh`,
/// and a `cargo` that builds by linking the binary under test.
fn prepare(dir: &Path) -> String {
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git");
        assert!(
            ok.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    };
    std::fs::write(dir.join("deploy.sh"), "#!/bin/sh\necho deployed\n").unwrap();
    run(&["init", "-q"]);
    run(&[
        "-c",
        "user.name=q",
        "-c",
        "user.email=q@example.com",
        "add",
        "deploy.sh",
    ]);
    run(&[
        "-c",
        "user.name=q",
        "-c",
        "user.email=q@example.com",
        "commit",
        "-q",
        "-m",
        "deploy script",
    ]);
    let executable = |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    executable(&dir.join("deploy.sh"));
    let shims = dir.join(".shims");
    std::fs::create_dir_all(&shims).unwrap();
    let cargo = format!(
        "#!/bin/sh\n# The quickstart test's cargo: `cargo build --release` and `cargo run --release -- ARGS` only.\n\
         mkdir -p target/release && ln -sf {GATE} target/release/gate\n\
         case \"$*\" in\n  'build --release') exit 0 ;;\n  'run --release -- '*) shift 3; exec target/release/gate \"$@\" ;;\n\
         esac\necho \"quickstart test: unexpected cargo $*\" >&2; exit 97\n"
    );
    std::fs::write(shims.join("cargo"), cargo).unwrap();
    executable(&shims.join("cargo"));
    let bin = dir.join("usr-local-bin");
    std::fs::create_dir_all(&bin).unwrap();
    format!(
        "{}:{}:{}",
        shims.display(),
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test]
async fn every_shell_block_of_the_quickstart_runs_as_written() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/quickstart.md")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = prepare(dir);
    let tokens: HashMap<&str, String> = ["alice", "bob", "carol", "web-deploy"]
        .into_iter()
        .map(|n| (n, jitgate::auth::new_token("gate")))
        .collect();
    let subs = Substitutions {
        pairs: vec![
            ("/usr/local/bin".into(), dir.join("usr-local-bin").display().to_string()),
            (
                "/var/lib/jitgate".into(),
                dir.join("var-lib-jitgate").display().to_string(),
            ),
            ("<alice's token>".into(), tokens["alice"].clone()),
            ("<carol's token>".into(), tokens["carol"].clone()),
            ("<the pipeline's token>".into(), tokens["web-deploy"].clone()),
        ],
    };

    let blocks = blocks(&doc);
    let mut running: Vec<(String, Running)> = Vec::new();
    let mut server: Option<String> = None;
    // The `sh` block an unlabeled output block belongs to: its line and output, or the
    // name of a background block (checked once it has finished, or at the end).
    let mut last_sh: Option<(usize, String)> = None;
    let mut last_background: Option<String> = None;
    let mut pending_checks: Vec<(String, String, usize)> = Vec::new();
    let mut finished: HashMap<String, String> = HashMap::new();
    let mut shell_blocks = 0;
    for b in &blocks {
        if b.wait {
            for (name, r) in running.iter_mut().filter(|(n, _)| n != "demo" && n != "server") {
                if finished.contains_key(name) {
                    continue;
                }
                let status = tokio::time::timeout(DEADLINE, r.child.wait())
                    .await
                    .expect("a waiting gate to finish")
                    .unwrap();
                // The rest of what it printed, up to end of file.
                if let Some(reader) = r.reader.take() {
                    reader.await.unwrap();
                }
                let out = r.output();
                assert!(
                    status.success(),
                    "docs/quickstart.md: the block at line {} ({name}) exited {status}:\n{out}",
                    r.line
                );
                finished.insert(name.clone(), out);
            }
            pending_checks.retain(|(name, want, line)| match finished.get(name) {
                Some(out) => {
                    check_output(want, out, *line);
                    false
                }
                None => true,
            });
        }
        if let Some(file) = &b.file {
            let mut text = subs.apply(&b.text, None);
            if file == "gate.yaml" {
                text = with_test_digests(&text, &tokens);
            }
            std::fs::write(dir.join(file), text).unwrap();
            continue;
        }
        match b.lang.as_str() {
            "sh" => {}
            "" => {
                match &b.output_of {
                    Some(name) => match finished.get(name) {
                        Some(out) => check_output(&b.text, out, b.line),
                        None => pending_checks.push((name.clone(), b.text.clone(), b.line)),
                    },
                    None => match (&last_sh, &last_background) {
                        (Some((line, out)), _) => check_output(&b.text, out, *line),
                        (None, Some(name)) => pending_checks.push((name.clone(), b.text.clone(), b.line)),
                        (None, None) => panic!("docs/quickstart.md:{}: an output block before any shell block", b.line),
                    },
                }
                continue;
            }
            _ => continue,
        }
        shell_blocks += 1;
        let script = subs.apply(&b.text, server.as_deref());
        let mut cmd = shell(&script, dir, &path);
        if let Some((name, until)) = &b.background {
            let mut child = cmd.spawn().unwrap();
            let output = Arc::new(Mutex::new(String::new()));
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let sink = output.clone();
            let reader = tokio::spawn(async move {
                while let Ok(Some(l)) = lines.next_line().await {
                    if let Ok(mut o) = sink.lock() {
                        o.push_str(&l);
                        o.push('\n');
                    }
                    let _ = tx.send(l);
                }
            });
            let ready = tokio::time::timeout(DEADLINE, async {
                while let Some(l) = rx.recv().await {
                    if l.contains(until.as_str()) {
                        return Some(l);
                    }
                }
                None
            })
            .await
            .expect("the background block to print its ready line");
            let Some(ready) = ready else {
                panic!(
                    "docs/quickstart.md: the block at line {} ended before printing {until:?}:\n{}",
                    b.line,
                    output.lock().unwrap()
                );
            };
            if name == "server" {
                let url = ready.split_whitespace().last().expect("jitgate listening on URL");
                server = Some(url.to_string());
            }
            // The rest of its lines keep arriving in the buffer; the channel is not needed.
            drop(rx);
            running.push((
                name.clone(),
                Running {
                    child,
                    output,
                    reader: Some(reader),
                    line: b.line,
                },
            ));
            last_sh = None;
            last_background = Some(name.clone());
        } else {
            let out = tokio::time::timeout(DEADLINE, cmd.output())
                .await
                .expect("a foreground block to finish")
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "docs/quickstart.md: the block at line {} exited {}:\n{}\n--- its output:\n{text}",
                b.line,
                out.status,
                b.text
            );
            last_sh = Some((b.line, text));
            last_background = None;
        }
    }
    // The servers' own lines are checked last: they print until they stop.
    for (name, want, line) in &pending_checks {
        let r = &running
            .iter()
            .find(|(n, _)| n == name)
            .expect("output of a block that ran")
            .1;
        check_output(want, &r.output(), *line);
    }
    assert!(
        shell_blocks >= 10,
        "only {shell_blocks} shell blocks ran: the parser missed some"
    );
    assert!(server.is_some(), "part 2 started no server");
    // The pipeline's record verified above; the deploy ran after the approval.
    let shell_gate = finished.get("shell-gate").expect("the shell gate ran to the end");
    assert!(
        shell_gate.contains("deployed"),
        "./deploy.sh did not run after approval:\n{shell_gate}"
    );
}

/// gate.yaml as the quickstart shows it, with each `token_sha256` replaced by the digest
/// of the token this test holds for that user or pipeline.
fn with_test_digests(yaml: &str, tokens: &HashMap<&str, String>) -> String {
    let mut name = String::new();
    let mut out = String::new();
    for line in yaml.lines() {
        let t = line.trim_start();
        if let Some(n) = t.strip_prefix("- name:") {
            name = n.trim().to_string();
        }
        if let Some(old) = t.strip_prefix("token_sha256:") {
            let token = tokens.get(name.as_str()).unwrap_or_else(|| {
                panic!("the quickstart's gate.yaml names {name:?}, which this test has no token for")
            });
            out.push_str(&line.replace(old.trim(), &jitgate::auth::hash_token(token)));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}
