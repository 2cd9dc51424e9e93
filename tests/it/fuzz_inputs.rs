//! Every input kept from fuzzing (`fuzz/regressions/<target>/`: seeds and the inputs of
//! findings, once fixed) still passes its target's checks: no panic in a loader or a
//! verifier, no 500 from the API. The targets themselves are `fuzz/harness.rs`, run
//! under libFuzzer as `docs/fuzzing.md` says.

#[path = "../../fuzz/harness.rs"]
mod harness;

/// A target: whether it accepted the input (it panics when a property fails).
type Target = fn(&[u8]) -> bool;

#[test]
fn every_kept_fuzz_input_still_passes_its_target() {
    let targets: [(&str, Target); 5] = [
        ("policy", harness::policy),
        ("config", harness::config),
        ("record", harness::record),
        ("oidc", harness::oidc),
        ("request_body", harness::request_body),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for (target, check) in targets {
        let mut inputs: Vec<_> = std::fs::read_dir(root.join(target))
            .unwrap_or_else(|e| panic!("fuzz/regressions/{target}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no kept inputs for {target}");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let caught = std::panic::catch_unwind(|| check(&data));
            let name = input.file_name().unwrap().to_string_lossy().into_owned();
            match caught {
                Err(_) => panic!("{target}: {name} fails again"),
                // A seed named `ok-…` must get past every check, so the target is shown
                // to reach the deep end (a signed token's claims, a stored request).
                Ok(accepted) => assert!(accepted || !name.starts_with("ok-"), "{target}: {name} was refused"),
            }
        }
    }
}
