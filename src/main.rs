//! `gate`: parse arguments, run, exit with the command's code.

use std::process::ExitCode;

// jemalloc, not glibc's malloc: memory a burst of long-waits used goes back to the system
// (a background thread purges pages unused for a second), and the 8 KiB buffers each
// connection reserves cost only the pages written. Figures: docs/performance.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`man jemalloc`, "TUNING").
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    jitgate::cli::main()
}
