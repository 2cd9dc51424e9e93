//! The request service: opens, votes, cancels, consumes and expires requests. It reads
//! a request, asks the pure state machine (`decide`) what follows, and writes the result
//! with a compare-and-set, retrying when another writer got there first. Every change is
//! an audit event in the same transaction; every outcome gets its signed record there too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::sync::atomic::AtomicI64;

use tokio::sync::{Notify, broadcast, watch};

mod break_glass;
mod cancel;
mod checks;
mod commit;
mod consume;
mod delegate;
mod derive;
pub mod directory;
pub mod error;
mod escalate;
mod expire;
mod forge_groups;
mod holder;
mod log;
pub mod metrics;
mod notify;
mod open;
mod read;
mod record;
mod refusal;
mod release;
mod reload;
mod reports;
mod request;
mod requesters;
mod roles;
mod stages;
mod validate;
mod view;
mod vote;
mod wait;

pub use self::delegate::delegation_view;
pub use self::holder::HOLDER_PREFIX;
pub use self::read::{Reach, not_found};
pub use self::release::Releaser;
pub use self::reload::Sources;
use self::request::deadline_of;
pub use self::request::{Doc, doc_of};
pub use self::view::{decode_cursor, encode_cursor};
pub use self::wait::Change;
pub use crate::core::request::Escalation;

use self::error::{AppError, Result};
use self::metrics::Metrics;
use crate::config::Config;
use crate::core::audit::keys::Published;
use crate::core::audit::record::KeyPair;
use crate::core::policy::Policy;
use crate::store::{RequestRow, Store, VoteRow};

/// How often a write is retried after losing a compare-and-set.
const MAX_ATTEMPTS: usize = 50;

pub struct Engine {
    pub store: Store,
    /// The policy, gate.yaml and its token digests in force: swapped whole by a reload
    /// (`reload.rs`), read through `policy()`, `config()` and `tokens()`. `ArcSwap`
    /// rather than a `RwLock`: every request reads them and a reload is rare, so reads
    /// never wait on a lock and never see half a reload.
    policy: ArcSwap<Policy>,
    config: ArcSwap<Config>,
    /// The key that signs now.
    pub keys: KeyPair,
    /// Every key `/api/v1/keys` lists, with its validity window (the current one too).
    pub published_keys: Vec<Published>,
    pub public_url: String,
    pub metrics: Metrics,
    waiters: Mutex<HashMap<String, watch::Sender<i64>>>,
    pub changes: broadcast::Sender<Change>,
    /// Poked when a new deadline may be earlier than the timer's current sleep.
    pub timer_poke: Notify,
    pub waiting: AtomicI64,
    /// Token digests from the config, decoded once per load.
    tokens: ArcSwap<crate::auth::Tokens>,
    /// Wakes the notification worker when a transaction queued notifications.
    pub notify: std::sync::Arc<crate::notify::Hub>,
    /// GitHub/GitLab access for forge groups and comment votes (see `forge_groups`).
    pub forge: std::sync::Arc<dyn crate::forge::Forge>,
    /// Signs the transparency log's checkpoints (the server's key, under the log's origin).
    pub log: crate::core::log::LogKey,
    /// The witnesses whose cosignatures `POST /api/v1/log/cosign` accepts.
    pub witnesses: Vec<crate::core::log::WitnessVkey>,
    /// The files a reload reads again (set once by `serve`).
    pub sources: std::sync::OnceLock<reload::Sources>,
    reload_lock: tokio::sync::Mutex<()>,
    /// Requests already reported as altered in the database (see `derive.rs`).
    tampered_seen: Mutex<std::collections::HashSet<String>>,
    /// Requests whose evidence checks are to run (see `checks.rs`).
    checks: checks::CheckQueue,
}

type Loaded = (RequestRow, Vec<VoteRow>);

impl Engine {
    pub fn new(store: Store, policy: Policy, config: Config, keys: KeyPair, public_url: String) -> Engine {
        let tokens = crate::auth::Tokens::new(&config.users, &config.pipelines);
        let public_url = public_url.trim_end_matches('/').to_string();
        let log_config = config.log.clone().unwrap_or_default();
        // `Config::parse` checked the origin and the witness keys; a default origin that
        // is not a valid key name (it cannot hold a space or `+`) falls back to `jitgate`.
        let origin = log_config.origin.clone().unwrap_or_else(|| default_origin(&public_url));
        let log = crate::core::log::LogKey::new(&origin, keys.signing_key())
            .or_else(|_| crate::core::log::LogKey::new("jitgate", keys.signing_key()))
            .expect("`jitgate` is a valid log origin");
        let witnesses = log_config
            .witnesses
            .iter()
            .filter_map(|w| crate::core::log::WitnessVkey::parse(&w.vkey).ok())
            .collect();
        // Every audit event the store appends is queued to the SIEM channels that want
        // its kind, and the commit that queued one wakes the delivery worker.
        let notify: std::sync::Arc<crate::notify::Hub> = Default::default();
        let hub = notify.clone();
        let store = store.with_audit_out(crate::store::AuditOut {
            sinks: crate::notify::audit_sinks(config.notify.as_ref()),
            wake: Some(Box::new(move || hub.queued())),
        });
        Engine {
            log,
            witnesses,
            tampered_seen: Mutex::new(Default::default()),
            checks: Default::default(),
            sources: Default::default(),
            reload_lock: Default::default(),
            tokens: ArcSwap::from_pointee(tokens),
            store,
            policy: ArcSwap::from_pointee(policy),
            config: ArcSwap::from_pointee(config),
            published_keys: vec![Published {
                key: keys.verifying_key(),
                not_before: None,
                not_after: None,
            }],
            keys,
            public_url,
            metrics: Metrics::default(),
            waiters: Mutex::new(HashMap::new()),
            changes: broadcast::channel(1024).0,
            timer_poke: Notify::new(),
            waiting: AtomicI64::new(0),
            notify,
            forge: std::sync::Arc::new(crate::forge::Forges::default()),
        }
    }

    /// The policy in force (a reload swaps it; a request keeps the rules it opened with).
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// gate.yaml in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The static token digests of `users` and `pipelines` in force.
    pub fn tokens(&self) -> Arc<crate::auth::Tokens> {
        self.tokens.load_full()
    }

    /// The public keys audit events may be signed with: every published key, since
    /// events before a rotation were signed with a key now retired.
    pub fn event_keys(&self) -> Vec<ed25519_dalek::VerifyingKey> {
        self.published_keys.iter().map(|p| p.key).collect()
    }

    /// The log's settings (`log:` in gate.yaml, or the defaults).
    pub fn log_config(&self) -> crate::config::LogConfig {
        self.config().log.clone().unwrap_or_default()
    }

    pub fn request_url(&self, id: &str) -> String {
        format!("{}/requests/{id}", self.public_url)
    }

    /// Request `id` and its votes; an id with a control character (which PostgreSQL's text
    /// columns refuse) is a 422 naming it, an unknown one a 404.
    pub async fn load(&self, id: &str) -> Result<Loaded> {
        check_id(id)?;
        self.store.get(id).await?.ok_or_else(|| not_found(id))
    }
}

/// Refuses a request id no request could have, before it reaches the database.
pub(crate) fn check_id(id: &str) -> Result<()> {
    match crate::core::text::control_message(id, false) {
        Some(m) => Err(AppError::Invalid(error::ErrorCode::InvalidField, format!("id: {m}"))),
        None => Ok(()),
    }
}

/// The public URL without its scheme: `https://gate.example.com/` is `gate.example.com`.
fn default_origin(public_url: &str) -> String {
    let rest = public_url.split_once("://").map(|(_, r)| r).unwrap_or(public_url);
    rest.trim_end_matches('/').to_string()
}
