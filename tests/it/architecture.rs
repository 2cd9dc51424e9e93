//! The layer rule of docs/ARCHITECTURE.md, checked mechanically: every top-level module
//! of `src/` imports only modules of lower layers, so no two import each other; and no
//! file under `src/` is over 600 lines unless the architecture page says why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module may name only modules of a lower layer; modules of one layer
/// (the adapters) never name each other. Keep in step with docs/ARCHITECTURE.md.
const LAYERS: &[&[&str]] = &[
    &["core"],
    &["store"],
    &["auth", "forge", "notify", "client"],
    // The gate's side: it reports to the forge (check runs, MR notes) through `forge`.
    &["ci"],
    &["config"],
    &["service"],
    &["http"],
    &["serve"],
    &["cli"],
];

const MAX_LINES: usize = 600;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/http/ui/mod.rs` → `[http, ui]`.
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The top-level modules a file names, through `crate::x`, `crate::{x, y::z}` or a
/// `super::` chain that climbs to the crate root. Comment lines are skipped: a doc link
/// is not a dependency.
fn named_top_modules(file: &Path, text: &str) -> BTreeSet<String> {
    let depth = module_path(file).len();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            // `jitgate_crate::` or `mycrate::` are not the crate root.
            let before = rest[..i].chars().last();
            let after = &rest[i + "crate::".len()..];
            rest = after;
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = after.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    if let Some(id) = ident_at(item.trim()) {
                        out.insert(id.to_string());
                    }
                }
            } else if let Some(id) = ident_at(after) {
                out.insert(id.to_string());
            }
        }
        let mut rest = code;
        while let Some(i) = rest.find("super::") {
            let before = rest[..i].chars().last();
            let mut tail = &rest[i..];
            let mut ups = 0;
            while let Some(t) = tail.strip_prefix("super::") {
                ups += 1;
                tail = t;
            }
            rest = tail;
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            // A file at depth d reaches the crate root after d `super::` (a `mod.rs`
            // file's own module counts as its depth).
            if ups == depth
                && let Some(id) = ident_at(tail)
            {
                out.insert(id.to_string());
            }
        }
    }
    out
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// `top → (named top module → files naming it)` for every file under src/.
fn dependency_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in files {
        let path = module_path(&f);
        let Some(top) = path.first() else { continue };
        let text = std::fs::read_to_string(&f).unwrap();
        for m in named_top_modules(&f, &text) {
            if &m != top {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(m)
                    .or_default()
                    .insert(f.strip_prefix(src()).unwrap().display().to_string());
            }
        }
    }
    graph
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or_else(|| l.trim().strip_prefix("mod "))
        })
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(
        declared.len() >= LAYERS.iter().map(|l| l.len()).sum::<usize>(),
        "{declared:?}"
    );
    for m in declared {
        assert!(
            layer_of(m).is_some(),
            "src/lib.rs declares `{m}`, which has no layer in this test"
        );
    }
}

#[test]
fn dependencies_point_down_the_layers() {
    let graph = dependency_graph();
    let mut wrong = Vec::new();
    for (from, tos) in &graph {
        let Some(lf) = layer_of(from) else {
            wrong.push(format!("`{from}` has no layer"));
            continue;
        };
        for (to, files) in tos {
            // Names that are not modules of the crate (macros, `crate::Result`…) have no layer.
            let Some(lt) = layer_of(to) else { continue };
            if lt >= lf {
                wrong.push(format!(
                    "`{from}` (layer {lf}) imports `{to}` (layer {lt}) in {files:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers:\n{}", wrong.join("\n"));
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let graph = dependency_graph();
    for (from, tos) in &graph {
        for to in tos.keys() {
            let back = graph.get(to).is_some_and(|t| t.contains_key(from));
            assert!(!back, "`{from}` and `{to}` import each other");
        }
    }
}

#[test]
fn the_checker_sees_every_form_of_import() {
    let f = src().join("http/ui/mod.rs");
    let text = "use crate::{core::api, store};\nlet x = crate::service::Engine::new();\n\
                use super::super::config::Config;\n// crate::cli in a comment\nmy_crate::serve();\n";
    let got = named_top_modules(&f, text);
    let want: BTreeSet<String> = ["core", "store", "service", "config"].map(String::from).into();
    assert_eq!(got, want);
}

#[test]
fn no_source_file_is_over_600_lines_without_a_reason() {
    let arch = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md")).unwrap();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long = Vec::new();
    for f in files {
        let n = std::fs::read_to_string(&f).unwrap().lines().count();
        let rel = format!("src/{}", f.strip_prefix(src()).unwrap().display());
        if n > MAX_LINES && !arch.contains(&format!("`{rel}`")) {
            long.push(format!("{rel} ({n} lines)"));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines that docs/ARCHITECTURE.md does not explain: {long:?}"
    );
}
