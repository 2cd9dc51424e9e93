//! `gate policy test`, the real binary: the repository's example fixtures pass, a failing
//! expectation exits 1 with its diff, a malformed fixture exits 2 with its place.

use std::path::Path;
use std::process::Command;

use crate::helpers::GATE;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn gate(args: &[&str]) -> Run {
    let out = Command::new(GATE)
        .args(args)
        .env_remove("GATE_OUTPUT")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("gate runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const POLICY: &str = "version: 1
groups:
  sre: [alice, bob]
rules:
  - name: production
    match: { environment: production }
    require: [{ group: sre, count: 1 }]
";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn the_example_fixtures_pass() {
    let r = gate(&["policy", "test", "examples/policy-tests"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("ok    examples/policy-tests/quickstart.yaml: the requester cannot approve their own deploy"),
        "{}",
        r.stdout
    );
    let last = r.stdout.lines().last().unwrap_or_default();
    let passed: u32 = last.split(' ').next().unwrap_or_default().parse().unwrap_or(0);
    assert!(passed >= 15 && last.ends_with(" passed, 0 failed"), "{last}");
}

#[test]
fn the_example_policy_is_the_quickstarts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let quickstart = std::fs::read_to_string(root.join("docs/quickstart.md")).unwrap();
    let block = quickstart
        .split("<!-- quickstart-test: file policy.yaml -->\n```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("the quickstart's policy.yaml");
    let example = std::fs::read_to_string(root.join("examples/policy.yaml")).unwrap();
    assert!(
        example.ends_with(block),
        "examples/policy.yaml is not docs/quickstart.md's policy"
    );
    // The demo's (examples/demo-policy.yaml) is checked against `gate serve --demo`'s by a
    // unit test in src/cli/policy_test.rs.
}

#[test]
fn a_failing_expectation_exits_1_with_a_diff_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.yaml", POLICY);
    let sub = dir.path().join("tests");
    std::fs::create_dir(&sub).unwrap();
    write(
        &sub,
        "a.yaml",
        "policy: ../policy.yaml
tests:
  - name: passes
    context: {environment: production, actor: dave}
    votes: [{who: alice, approve: true}]
    expect: {rule: production, outcome: approved}
  - name: fails
    context: {environment: production, actor: alice}
    votes: [{who: alice, approve: true}]
    expect:
      rule: staging
      outcome: approved
      still_needed: ''
",
    );
    let r = gate(&["policy", "test", sub.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let file = sub.join("a.yaml").display().to_string();
    assert!(r.stdout.contains(&format!("ok    {file}: passes")), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("FAIL  {file}: fails")), "{}", r.stdout);
    for line in [
        "rule          expected staging",
        "              got      production",
        "outcome       expected approved",
        "              got      pending",
        "still_needed  expected \"\"",
        "              got      \"sre 0/1 (may vote: bob)\"",
        "refused       expected []",
        "              got      [alice: requester_cannot_vote]",
    ] {
        assert!(r.stdout.contains(line), "no `{line}` in:\n{}", r.stdout);
    }
    assert!(r.stdout.ends_with("1 passed, 1 failed\n"), "{}", r.stdout);
    // The same as JSON: one line per test, then the counts.
    let j = gate(&["--output", "json", "policy", "test", sub.to_str().unwrap()]);
    assert_eq!(j.code, 1);
    let lines: Vec<serde_json::Value> = j.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{}", j.stdout);
    assert_eq!(lines[1]["passed"], false);
    assert_eq!(lines[1]["diff"][1]["field"], "outcome");
    assert_eq!(lines[1]["got"]["refused"][0]["code"], "requester_cannot_vote");
    assert_eq!(lines[2], serde_json::json!({"passed": 1, "failed": 1}));
}

#[test]
fn a_malformed_fixture_exits_2_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.yaml", POLICY);
    let bad = write(
        dir.path(),
        "bad.yml",
        "tests:
  - name: typo
    context: {environment: production, actor: dave}
    expect:
      outcome: approved
      rulle: production
",
    );
    let r = gate(&["policy", "test", &bad, "--policy", &policy]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("{bad}:6:")), "{}", r.stderr);
    assert!(r.stderr.contains("unknown field `rulle`"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "nothing runs: {}", r.stdout);
    // Without --policy and without `policy:`, the fixture cannot run.
    let r = gate(&["policy", "test", &bad]);
    assert_eq!(r.code, 2);
    // A group the policy lists users for cannot be given members.
    let members = write(
        dir.path(),
        "members.yaml",
        "policy: policy.yaml
tests:
  - name: members
    context: {environment: production, actor: dave}
    members: {sre: [zed]}
    expect: {outcome: approved}
",
    );
    let r = gate(&["policy", "test", &members]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("{members}:3:")), "{}", r.stderr);
    assert!(r.stderr.contains("`sre` is a group of users"), "{}", r.stderr);
}
