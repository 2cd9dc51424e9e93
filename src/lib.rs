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
pub mod policy;
pub mod server;
pub mod store;
