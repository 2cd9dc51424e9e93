//! The integration tests, as one binary: a real `gate serve` on port 0 (or the router in
//! process where the test is about the API alone), the real `gate` binary, real SQLite
//! files and a fresh PostgreSQL database per test when `GATE_TEST_DATABASE_URL` is set;
//! fakes (wiremock, aiosmtpd, oidc-provider) only for outside services.
//!
//! `cargo test --test it` runs them all; `cargo test --test it gate::` one module.

mod helpers;
mod support;

mod admin;
mod architecture;
mod break_glass;
mod browser;
mod checks;
mod connections;
mod deploy_container;
mod deploy_kubernetes;
mod deploy_systemd;
mod dist;
mod docs_match;
mod error_codes;
mod faults;
mod faults_disk;
mod faults_pg;
mod faults_replicas;
mod fields;
mod forge;
mod forge_groups;
mod fuzz_inputs;
mod gate;
mod hostile;
mod identity;
mod idp_groups;
mod insider;
mod json_body;
mod listings;
mod log;
mod messages;
mod migrate_data;
mod notify;
mod oidc;
mod openapi;
mod ops_logs;
mod pipelines;
mod policy_test;
mod policy_time;
mod quickstart;
mod records;
mod release_github;
mod release_gitlab;
mod release_jenkins;
mod reports;
mod request_id;
mod roles;
mod scim;
mod scope;
mod siem;
mod simulate;
mod stages;
mod store;
mod throttle;
mod ui;
