//! The pure core: wire types, the decision machine, the policy model and its evaluation,
//! audit primitives and time. It imports nothing else of the crate and does no I/O
//! (the clock is read by callers and passed in as `now`).

pub mod api;
pub mod audit;
pub mod backoff;
pub mod break_glass;
pub mod context;
pub mod crypto;
pub mod decide;
pub mod delegation;
pub mod duration;
pub mod identity;
pub mod log;
pub mod policy;
pub mod policy_test;
pub mod release;
pub mod report;
pub mod request;
pub mod scim;
pub mod simulate;
pub mod text;
pub mod throttle;
pub mod url;
pub mod yaml;

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
