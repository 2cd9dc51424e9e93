//! Helpers shared with `gate-load` (benches/load.rs includes these files with `#[path]`):
//! no test-only dependencies, nothing from the rest of the harness.

pub mod pg;
pub mod proxy;
pub mod serve;
pub mod tokens;
