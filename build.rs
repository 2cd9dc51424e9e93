//! Sets `GATE_BUILD_SUFFIX` for `gate --version`: ` (<commit> <date>)` from git, the
//! commit alone from a crate tarball, nothing when the source says neither (build/info.rs).

include!("build/info.rs");

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let env = |k: &str| std::env::var(k).ok();
    let info = build_info(&dir, env("GATE_BUILD_COMMIT"), env("GATE_BUILD_DATE"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/info.rs");
    println!("cargo:rerun-if-env-changed=GATE_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=GATE_BUILD_DATE");
    for p in &info.watch {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rustc-env=GATE_BUILD_SUFFIX={}", info.suffix());
}
