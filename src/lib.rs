//! jitgate: a just-in-time approval gate for CI/CD pipelines.
//!
//! The `gate` binary is a thin shell over this library. Layers, lowest first (each may
//! import only those before it; `tests/it/architecture.rs` checks it): [`core`] (pure
//! types, decisions, policy, audit primitives), [`store`] (SQLite or PostgreSQL),
//! adapters ([`auth`], [`forge`], [`notify`], [`ci`], [`client`]), [`config`] (gate.yaml,
//! composed of the adapters' sections), [`service`] (the engine), [`http`] (API, UI,
//! webhooks), [`serve`] (the composition root of `gate serve`) and [`cli`].
//! See docs/ARCHITECTURE.md.

pub mod auth;
pub mod ci;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod forge;
pub mod http;
pub mod notify;
pub mod serve;
pub mod service;
pub mod store;
