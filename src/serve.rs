//! The composition root of `gate serve`: builds the store, policy, keys, adapters and
//! the service, then serves HTTP and runs the timers until shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::notify::worker::Channels;
use crate::service::{self as engine, Engine};

use crate::config::Config;
use crate::core::audit::keys::KeyRing;
use crate::core::backoff::Backoff;
use crate::store::Store;
use crate::store::keyfile::{self, KeyFileError};

/// Everything `gate serve` needs, after flags have been merged over the config file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    /// The gate.yaml `config` was read from, if any: a reload reads it again.
    pub config_path: Option<PathBuf>,
    pub policy: PathBuf,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub signing_key: PathBuf,
    pub public_url: String,
}

/// A built server: the engine and the notification channels (their secrets resolved
/// once, at build time, so a missing one stops the start before anything listens).
pub struct Server {
    pub engine: Arc<Engine>,
    channels: Option<Arc<Channels>>,
}

/// Opens the store (migrating it), loads and checks the policy, loads the keys (or, on
/// a brand-new database, makes them).
pub async fn build(s: &Settings) -> anyhow::Result<Server> {
    let policy = crate::config::load_policy(&s.policy)?;
    policy.check_members(&|u| s.config.user(u).is_some())?;
    let forge = crate::forge::Forges::from_config(s.config.forge.as_ref(), &|k| std::env::var(k).ok())
        .map_err(anyhow::Error::msg)?;
    for (name, src) in &policy.forge_groups {
        forge
            .check_source(src)
            .map_err(|e| anyhow::anyhow!("policy group `{name}` is a {}, but {e}", src.describe()))?;
    }
    std::fs::create_dir_all(&s.data_dir).with_context(|| format!("creating data dir {}", s.data_dir.display()))?;
    // Notification secrets come from the environment: a missing one stops the start here.
    // The worker always runs: it also delivers the releases of held jobs (`release`),
    // which need no `notify:` section.
    let releaser = engine::Releaser {
        gitlab: forge.gitlab_api(),
        github_app: forge.github_app(),
        jenkins: jenkins(s.config.jenkins.as_ref())?,
    };
    let notify = s.config.notify.clone().unwrap_or_default();
    let channels = Some(Arc::new(
        Channels::resolve(&notify)
            .map_err(anyhow::Error::msg)?
            .with_release(Arc::new(releaser)),
    ));
    let store = Store::connect(&s.database_url)
        .await
        .with_context(|| format!("opening the database ({})", redact(&s.database_url)))?;
    let ring = signing_keys(&s.signing_key, &store).await?;
    let store = store.with_event_key(ring.current.signing_key().clone());
    let added = store.log_catch_up().await.context("building the transparency log")?;
    if added > 0 {
        tracing::info!(events = added, "added events written before the transparency log to it");
    }
    follow_database_clock(&store).await;
    let mut engine = Engine::new(store, policy, s.config.clone(), ring.current, s.public_url.clone());
    engine.published_keys = ring.published;
    engine.forge = Arc::new(forge);
    let _ = engine.sources.set(engine::Sources {
        config: s.config_path.clone(),
        policy: s.policy.clone(),
    });
    Ok(Server {
        engine: Arc::new(engine),
        channels,
    })
}

/// The key file at `path`. A missing one is made only while the database holds no
/// audit event and no record: later, a new key would be a new identity that no earlier
/// record verifies against, so the start stops and says how to recover.
async fn signing_keys(path: &std::path::Path, store: &Store) -> anyhow::Result<KeyRing> {
    match keyfile::load(path) {
        Ok(ring) => Ok(ring),
        Err(KeyFileError::Missing(_)) => {
            let history = store.events_and_records().await.context("counting the audit events")?;
            if history > 0 {
                anyhow::bail!(
                    "the signing key {p} is missing, but the database is not new (it holds {history} audit events \
                     and records): restore {p} from your backup, or, if the key is lost for good, start a new signing \
                     identity with `gate key init --signing-key {p}` (see \"The signing key\" in docs/operations.md)",
                    p = path.display()
                );
            }
            let ring = match keyfile::create(path, crate::core::duration::now_ms()) {
                // Another replica starting on the same fresh database made it first.
                Err(KeyFileError::Exists(_)) => keyfile::load(path)?,
                made => made?,
            };
            tracing::info!(path = %path.display(), keyid = %ring.current.keyid, "first start: made a new signing key");
            Ok(ring)
        }
        Err(e) => Err(e.into()),
    }
}

/// Serves on `listener` until `shutdown` resolves, then lets requests in flight finish
/// (long-waits return at once with the current state).
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Server { engine, channels } = server;
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = crate::http::app(engine.clone(), stop_rx.clone())?;
    let timer = tokio::spawn(run_timer(engine.clone(), stop_rx.clone()));
    let listener_task = tokio::spawn(run_listener(engine.clone(), stop_rx.clone()));
    // Evidence checks of requests the timer hands over (see `service::checks`).
    let checker = tokio::spawn(engine.clone().run_check_worker(stop_rx.clone()));
    let reloader = tokio::spawn(reload_on_hangup(engine.clone()));
    let notifier = channels.map(|channels| {
        tokio::spawn(crate::notify::worker::run(
            engine.store.clone(),
            engine.notify.clone(),
            channels,
            stop_rx.clone(),
        ))
    });
    let open_files = crate::http::listen::raise_open_file_limit();
    let limits = crate::http::listen::Limits::for_open_files(
        open_files,
        engine.config().max_connections,
        engine
            .config()
            .header_read_timeout
            .map_or(Duration::from_secs(10), |d| d.as_std()),
    );
    tracing::info!(
        open_files,
        max_connections = limits.max_connections,
        overflow = limits.overflow,
        header_read_timeout = ?limits.header_read_timeout,
        "connection limits"
    );
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    crate::http::listen::run(listener, app, limits, stop_rx.clone()).await;
    timer.abort();
    listener_task.abort();
    checker.abort();
    reloader.abort();
    if let Some(mut n) = notifier {
        // Let deliveries in flight finish and record their outcome; a lease left behind
        // would only delay the next attempt.
        if tokio::time::timeout(Duration::from_secs(5), &mut n).await.is_err() {
            n.abort();
        }
    }
    engine.store.close().await;
    Ok(())
}

/// Reloads users, pipelines and the policy at every `SIGHUP` (see `service::reload`);
/// a file that does not load is logged with its location and the old one stays.
async fn reload_on_hangup(engine: Arc<Engine>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /api/v1/admin/reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            if let Err(e) = engine.reload("SIGHUP", crate::core::duration::now_ms()).await {
                tracing::error!(error = %e, "reload refused; the configuration in force is unchanged");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = engine;
}

/// On PostgreSQL, takes the database's clock as this replica's (see `now_ms`): measured
/// against this machine's clock at start and once a minute by the timer.
async fn follow_database_clock(store: &Store) {
    use crate::core::duration::{set_clock_offset, system_now_ms};
    let before = system_now_ms();
    match store.clock_ms().await {
        Ok(Some(db)) => {
            let after = system_now_ms();
            let offset = db - (before + after) / 2;
            if offset.abs() > 1000 {
                tracing::warn!(
                    offset_ms = offset,
                    "this machine's clock is off from the database's; following the database's"
                );
            }
            set_clock_offset(offset);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the database's clock; keeping the last offset"),
    }
}

/// Expires requests whose deadline passed, and signs a log checkpoint when one is due
/// (`log.checkpoint_every`). Sleeps until the next deadline (at most a
/// second, so a deadline written by another replica is never missed for long), or until
/// poked by a write that may have brought a deadline closer.
async fn run_timer(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let mut last_checkpoint_look = 0;
    let mut last_clock_look = crate::core::duration::now_ms();
    loop {
        let now = crate::core::duration::now_ms();
        let mut sleep_ms = 1000;
        match engine.store.due(now).await {
            Ok((ids, next)) => {
                for id in ids {
                    match engine.expire(&id, crate::core::duration::now_ms()).await {
                        Ok(_) => {}
                        // Already reported once, at error level, by the engine.
                        Err(crate::service::error::AppError::Conflict(
                            crate::service::error::ErrorCode::Tampered,
                            _,
                        )) => {}
                        Err(e) => tracing::warn!(request = %id, error = %e, "expiring failed; will retry"),
                    }
                }
                if let Some(n) = next {
                    sleep_ms = (n - now).clamp(1, 1000);
                }
            }
            Err(e) => tracing::warn!(error = %e, "timer cannot read the store"),
        }
        // The timer may tick every millisecond when deadlines crowd; the log is looked
        // at once a second at most.
        let now = crate::core::duration::now_ms();
        if now - last_clock_look >= 60_000 {
            last_clock_look = now;
            follow_database_clock(&engine.store).await;
        }
        if now - last_checkpoint_look >= 1000 {
            last_checkpoint_look = now;
            if let Err(e) = engine.checkpoint_if_due(now).await {
                tracing::warn!(error = %e, "signing a log checkpoint failed; will retry");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
            _ = engine.timer_poke.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// On PostgreSQL, hears changes committed by other replicas and wakes the gates waiting
/// here, so a decision taken anywhere releases a gate everywhere within milliseconds.
/// Reconnects with backoff; while disconnected, waiters still wake at their timeout and
/// re-read, so nothing is lost, only slower.
async fn run_listener(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut retry = 0;
    loop {
        match engine.store.listen_changes().await {
            Ok(None) => return,
            Ok(Some(mut l)) => {
                retry = 0;
                loop {
                    tokio::select! {
                        n = l.recv() => match n {
                            Ok(n) => match serde_json::from_str::<engine::Change>(n.payload()) {
                                Ok(c) => engine.publish_change(c),
                                Err(e) => tracing::warn!(error = %e, "ignoring a malformed change notification"),
                            },
                            Err(e) => {
                                tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                                break;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for changes from other replicas"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.pause(retry)) => {}
            _ = stop.changed() => return,
        }
        retry = retry.saturating_add(1);
    }
}

/// A database URL without its password, for logs and errors. A URL with no password
/// is shown as it is; one that does not parse is shown up to its last `@` masked, since
/// it may still hold a password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
            _ => url.to_string(),
        },
    }
}

/// The Jenkins of `jenkins:`, its token read now: an unset `token_env` stops the start.
fn jenkins(cfg: Option<&crate::config::JenkinsConfig>) -> anyhow::Result<Option<crate::forge::jenkins::Jenkins>> {
    let Some(j) = cfg else { return Ok(None) };
    let token = j
        .resolve_token(&|k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("jenkins: {e}"))?;
    let t = crate::forge::Timeouts {
        connect: std::time::Duration::from_secs(5),
        read: std::time::Duration::from_secs(10),
    };
    Ok(Some(
        crate::forge::jenkins::Jenkins::new(&j.url, &j.user, &token, t).map_err(|e| anyhow::anyhow!("jenkins: {e}"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn only_a_password_is_masked() {
        assert_eq!(
            redact("postgres://app:s3cr%40t@db:5432/gate"),
            "postgres://app:***@db:5432/gate"
        );
        assert_eq!(redact("postgres://app@db/gate"), "postgres://app@db/gate");
        assert_eq!(redact("postgres://db/gate?user=a@b"), "postgres://db/gate?user=a@b");
        assert_eq!(redact("sqlite://gate-data/gate.db"), "sqlite://gate-data/gate.db");
        assert_eq!(redact("postgres://a:b@c:notaport/x"), "postgres://***@c:notaport/x");
    }
}
