//! `gate`: parse arguments, run, exit with the command's code.

use std::process::ExitCode;

// jemalloc, not glibc's malloc: memory a burst of long-waits used goes back to the system,
// and the 8 KiB buffers each connection reserves cost only the pages written to. Figures:
// docs/performance.md ("Cheap waiters").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`man jemalloc`, "TUNING"): unused dirty pages
/// are returned after 10 s (the default), and at once from there on (no "muzzy" stage).
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"dirty_decay_ms:10000,muzzy_decay_ms:0\0";

/// A server purges in a background thread of jemalloc's: an idle one makes no
/// allocations, which is when jemalloc would otherwise purge. CLI commands live too
/// briefly to need one.
fn purge_in_background() {
    #[cfg(not(target_env = "msvc"))]
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
}

fn main() -> ExitCode {
    if std::env::args_os().any(|a| a == "serve") {
        purge_in_background();
    }
    jitgate::cli::main()
}
