//! `gate policy test DIR`: every fixture file under DIR run offline against its policy
//! (`core::policy_test`), one line per test, a diff for each failure, a summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Ctx, Exit, Failure, Outcome, print_json};
use crate::core::policy::Policy;
use crate::core::policy_test::{self, Fixture};

/// Runs the fixtures under `dir` (or the one file `dir`). `policy` is used by fixtures
/// that name none.
pub fn run(ctx: &Ctx, dir: &Path, policy: Option<&Path>) -> Outcome {
    let files = fixture_files(dir)?;
    if files.is_empty() {
        return Err(Failure::usage(format!(
            "{}: no fixture files (*.yaml, *.yml) there",
            dir.display()
        )));
    }
    // Every file is read and checked before any test runs: a broken fixture is exit 2,
    // never a partial run.
    let mut loaded: Vec<(PathBuf, String, Fixture)> = Vec::new();
    let mut policies: BTreeMap<PathBuf, Policy> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    for file in files {
        let shown = file.display().to_string();
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{shown}: {e}"));
                continue;
            }
        };
        let fixture = match policy_test::parse(&text) {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("{shown}:{e}"));
                continue;
            }
        };
        let path = match (&fixture.policy, policy) {
            (Some(p), _) => file.parent().unwrap_or(Path::new("")).join(p),
            (None, Some(p)) => p.to_path_buf(),
            (None, None) => {
                errors.push(format!(
                    "{shown}:1:1: the fixture names no `policy:` and no --policy was given"
                ));
                continue;
            }
        };
        if !policies.contains_key(&path) {
            match crate::config::load_policy(&path) {
                Ok(p) => {
                    policies.insert(path.clone(), p);
                }
                Err(e) => {
                    let (line, column) = policy_test::locate(&text, "policy", 1);
                    let e = if e.line == 0 {
                        format!("{}: {}", e.file, e.message)
                    } else {
                        e.to_string()
                    };
                    errors.push(format!("{shown}:{line}:{column}: policy: {e}"));
                    continue;
                }
            }
        }
        loaded.push((path, shown, fixture));
    }
    // Then each test, whose setup may still be wrong for its policy (exit 2 too).
    let mut results = Vec::new();
    for (path, shown, fixture) in &loaded {
        let policy = &policies[path];
        for t in &fixture.tests {
            match policy_test::run(policy, t) {
                Ok(got) => results.push((shown, t, got)),
                Err(why) => errors.push(format!("{shown}:{}:1: test `{}`: {why}", t.line, t.name)),
            }
        }
    }
    if !errors.is_empty() {
        return Err(Failure::usage(errors.join("\ngate: ")));
    }
    let (mut passed, mut failed) = (0, 0);
    for (shown, t, got) in &results {
        let diffs = policy_test::diff(&t.expect, got);
        if diffs.is_empty() {
            passed += 1;
        } else {
            failed += 1;
        }
        if ctx.json() {
            print_json(&serde_json::json!({
                "file": shown, "test": t.name, "passed": diffs.is_empty(), "diff": diffs, "got": got,
            }));
            continue;
        }
        if diffs.is_empty() {
            outln!("ok    {shown}: {}", t.name);
            continue;
        }
        outln!("FAIL  {shown}: {}", t.name);
        let width = diffs.iter().map(|d| d.field.len()).max().unwrap_or(0);
        for d in &diffs {
            outln!("      {:width$}  expected {}", d.field, d.expected);
            outln!("      {:width$}  got      {}", "", d.got);
        }
    }
    if ctx.json() {
        print_json(&serde_json::json!({"passed": passed, "failed": failed}));
    } else {
        outln!("{passed} passed, {failed} failed");
    }
    Ok(Exit::yes_or_no(failed == 0))
}

/// `dir` itself when it is a file, else every `*.yaml` and `*.yml` under it, recursively,
/// sorted by path.
fn fixture_files(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let meta = std::fs::metadata(dir).map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
    if meta.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Failure::usage(format!("{}: {e}", d.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| Failure::usage(format!("{}: {e}", d.display())))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
            if kind.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::core::policy_test::RefusalCode;
    use crate::service::error::ErrorCode;

    #[test]
    fn the_example_demo_policy_is_the_demos() {
        // Read at test time, not included: the binary's build never reads examples/.
        let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo-policy.yaml")).unwrap();
        assert_eq!(
            file,
            super::super::serve::DEMO_POLICY,
            "examples/demo-policy.yaml must be what `gate serve --demo` writes"
        );
    }

    #[test]
    fn refusal_codes_are_the_apis() {
        for c in RefusalCode::ALL {
            assert!(
                ErrorCode::ALL.iter().any(|e| e.as_str() == c.as_str()),
                "{} is not an API error code",
                c.as_str()
            );
        }
    }
}
