//! jitgate: a just-in-time approval gate for CI/CD pipelines.
//!
//! The `gate` binary is a thin shell over this library: [`cli`] parses and runs commands,
//! [`server`] is `gate serve`, [`client`] talks to it, [`decide`] is the pure decision
//! state machine, [`policy`] the approval policy, [`store`] persistence over SQLite or
//! PostgreSQL, [`audit`] the hash chain and signed records.

pub mod api;
pub mod audit;
pub mod auth;
pub mod ci;
pub mod cli;
pub mod client;
pub mod config;
pub mod decide;
pub mod duration;
pub mod forge;
pub mod notify;
pub mod policy;
pub mod server;
pub mod store;

/// An error's message followed by each cause it does not already say, `: `-separated
/// (reqwest and octocrab put the useful part in the causes).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}
