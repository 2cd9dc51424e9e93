//! The approval policy (`policy.yaml`): who must approve what. Loaded with errors
//! that name file, line, column and key; evaluated without I/O.
//!
//! - `model`: the policy, its rules and groups;
//! - `file`: the file as written, before validation;
//! - `parse`: loading and validating it, section by section;
//! - `error`: errors located in the file;
//! - `checks`: the evidence checks of `auto_approve_if` and `auto_deny_if`;
//! - `break_glass`: a rule's break-glass and the rule its review request is held to;
//! - `fields`: the change fields a rule requires, and a request's checked against them;
//! - `eval`: which rule a request falls under, and why not the others;
//! - `glob`, `window`: repository/ref patterns and change windows.

pub mod break_glass;
pub mod checks;
mod error;
mod eval;
mod fields;
mod file;
mod glob;
mod model;
mod parse;
pub mod window;

pub use error::PolicyError;
pub use eval::RuleVerdict;
pub use fields::{FieldRefusal, FieldSpec, MAX_FIELDS, MAX_NAME_BYTES, MAX_VALUE_BYTES, name_message, value_message};
pub use glob::glob_match;
pub use model::{
    ApprovalScope, AutoDecision, DEFAULT_APPROVAL_TTL, DEFAULT_TIMEOUT, Escalate, GroupSource, Match, Policy, Require,
    Rule, Stage, Windows,
};
pub use parse::digest;

#[cfg(test)]
mod tests;
