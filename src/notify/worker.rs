//! The delivery worker: claims due outbox rows, sends them, records the outcome, and
//! sleeps until the next row is due or something new is queued.
//!
//! Every replica runs one. A claim is a lease (a compare-and-set on `claimed_until`), so
//! two workers never send the same row at once; a worker that dies mid-send leaves a
//! lease that runs out and another attempt follows. All state is in the database, so a
//! restart resumes where the last process stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::email::Mailer;
use super::release::{RELEASE, ReleaseSender};
use super::{ChannelError, DeliveryError, EMAIL, HEC, Hub, NotifyConfig, SLACK, SYSLOG, WEBHOOK};
use crate::core::backoff::Backoff;
use crate::core::duration::now_ms;
use crate::store::{NotificationRow, Store};

/// How many rows one round claims.
const BATCH: i64 = 16;
/// Longest sleep between rounds: rows queued by another replica, or whose lease ran
/// out, are picked up at least this often.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// The channels, with their secrets resolved from the environment.
pub struct Channels {
    http: reqwest::Client,
    webhooks: HashMap<String, (String, Vec<u8>)>,
    slack: HashMap<String, String>,
    mailer: Option<Mailer>,
    syslog: HashMap<String, super::syslog::Sender>,
    hec: HashMap<String, super::hec::Sender>,
    retry: Backoff,
    give_up_ms: i64,
    timeout: Duration,
    /// Where `release` rows go (see [`super::release`]); none: they wait, unsent.
    release: Option<Arc<dyn ReleaseSender>>,
}

impl Channels {
    /// Reads the secrets `notify:` names. Fails, naming the variable, when one is unset,
    /// so a misconfigured server does not start rather than silently not notifying.
    pub fn resolve(n: &NotifyConfig) -> Result<Channels, ChannelError> {
        let timeout = n.timeout().as_std();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ChannelError::Client)?;
        let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
        let mut webhooks = HashMap::new();
        for w in &n.webhooks {
            let secret = env(&w.secret_env).ok_or_else(|| ChannelError::WebhookSecretUnset {
                name: w.name.clone(),
                var: w.secret_env.clone(),
            })?;
            webhooks.insert(w.name.clone(), (w.url.clone(), secret.into_bytes()));
        }
        let mut slack = HashMap::new();
        for s in &n.slack {
            let url = match (&s.url, &s.url_env) {
                (Some(u), _) => u.clone(),
                (None, Some(var)) => {
                    let u = env(var).ok_or_else(|| ChannelError::SlackUrlUnset {
                        name: s.name.clone(),
                        var: var.clone(),
                    })?;
                    crate::core::url::check_url(&u).map_err(|m| ChannelError::SlackUrlBad {
                        name: s.name.clone(),
                        var: var.clone(),
                        reason: m.to_string(),
                    })?;
                    u
                }
                (None, None) => return Err(ChannelError::SlackNoUrl { name: s.name.clone() }),
            };
            slack.insert(s.name.clone(), url);
        }
        let mailer = n.email.as_ref().map(|e| Mailer::new(e, timeout)).transpose()?;
        let mut syslog = HashMap::new();
        for s in &n.syslog {
            syslog.insert(s.name.clone(), super::syslog::Sender::new(s, timeout)?);
        }
        let mut hec = HashMap::new();
        for h in &n.hec {
            let token = env(&h.token_env).ok_or_else(|| ChannelError::HecTokenUnset {
                name: h.name.clone(),
                var: h.token_env.clone(),
            })?;
            hec.insert(h.name.clone(), super::hec::Sender::new(h, token));
        }
        Ok(Channels {
            http,
            webhooks,
            slack,
            mailer,
            syslog,
            hec,
            retry: Backoff::new(n.retry_base().as_std(), n.retry_max().as_std()),
            give_up_ms: n.give_up_after().millis(),
            timeout,
            release: None,
        })
    }

    /// Routes the `release` channel's rows to `sender`.
    pub fn with_release(mut self, sender: Arc<dyn ReleaseSender>) -> Channels {
        self.release = Some(sender);
        self
    }

    /// How long a claim lasts: one attempt's time limit with room to record the outcome.
    fn lease_ms(&self) -> i64 {
        (self.timeout.as_millis() as i64).saturating_mul(2) + 5_000
    }

    async fn deliver(&self, row: &NotificationRow) -> Result<(), DeliveryError> {
        let gone = |channel| DeliveryError::Unconfigured {
            channel,
            name: row.recipient.clone(),
        };
        match row.channel.as_str() {
            SYSLOG => {
                let s = self.syslog.get(&row.recipient).ok_or_else(|| gone(SYSLOG))?;
                return s.send(row).await;
            }
            HEC => {
                let h = self.hec.get(&row.recipient).ok_or_else(|| gone(HEC))?;
                return h.send(&self.http, row).await;
            }
            RELEASE => {
                let r = self.release.as_ref().ok_or_else(|| gone(RELEASE))?;
                return r.send(row).await;
            }
            _ => {}
        }
        let doc: Value = serde_json::from_str(&row.payload).map_err(DeliveryError::Payload)?;
        match row.channel.as_str() {
            WEBHOOK => {
                let (url, secret) = self.webhooks.get(&row.recipient).ok_or_else(|| gone(WEBHOOK))?;
                super::webhook::send(&self.http, url, secret, &row.event, &row.key, &row.payload).await
            }
            SLACK => {
                let url = self.slack.get(&row.recipient).ok_or_else(|| gone(SLACK))?;
                super::slack::send(&self.http, url, &doc).await
            }
            EMAIL => {
                let mailer = self.mailer.as_ref().ok_or(DeliveryError::EmailUnconfigured)?;
                mailer.send(&row.recipient, &doc).await
            }
            other => Err(DeliveryError::UnknownChannel(other.into())),
        }
    }
}

/// Runs until `stop` turns true, then finishes the round in flight and returns.
pub async fn run(store: Store, hub: Arc<Hub>, channels: Arc<Channels>, mut stop: watch::Receiver<bool>) {
    let claimer = format!("w_{}", uuid::Uuid::new_v4().simple());
    let mut pause = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let now = now_ms();
        let sleep = match round(&store, &hub, &channels, &claimer, now).await {
            Ok(more) => {
                pause = Duration::from_millis(100);
                if more {
                    Duration::ZERO
                } else {
                    match store.next_notification_due().await {
                        Ok(Some(due)) => {
                            Duration::from_millis((due - now_ms()).clamp(0, IDLE_POLL.as_millis() as i64) as u64)
                        }
                        Ok(None) => IDLE_POLL,
                        Err(e) => {
                            tracing::warn!(error = %e, "notification worker cannot read the outbox");
                            IDLE_POLL
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "notification worker cannot claim deliveries; retrying");
                pause = (pause * 2).min(IDLE_POLL);
                pause
            }
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = hub.woken() => {}
            _ = stop.changed() => {}
        }
    }
}

/// Claims one batch and delivers it, concurrently. `Ok(true)` when the batch was full
/// (more may be due at once).
async fn round(
    store: &Store,
    hub: &Arc<Hub>,
    channels: &Arc<Channels>,
    claimer: &str,
    now: i64,
) -> Result<bool, crate::store::StoreError> {
    let rows = store
        .claim_notifications(claimer, now, now + channels.lease_ms(), BATCH)
        .await?;
    if rows.is_empty() {
        return Ok(false);
    }
    let full = rows.len() as i64 == BATCH;
    let mut set = tokio::task::JoinSet::new();
    for row in rows {
        let (store, hub) = (store.clone(), hub.clone());
        let channels = channels.clone();
        let claimer = claimer.to_string();
        set.spawn(async move {
            let result = channels.deliver(&row).await;
            settle(&store, &hub, &channels, &claimer, &row, result).await;
        });
    }
    while set.join_next().await.is_some() {}
    Ok(full)
}

async fn settle(
    store: &Store,
    hub: &Hub,
    ch: &Channels,
    claimer: &str,
    row: &NotificationRow,
    result: Result<(), DeliveryError>,
) {
    let now = now_ms();
    let written = match &result {
        Ok(()) => {
            tracing::info!(delivery = %row.key, attempts = row.attempts, "notification delivered");
            store.notification_delivered(&row.id, claimer, now).await
        }
        Err(err) => {
            let err = super::clip(&err.to_string(), 1000);
            // The delay before attempt `attempts + 1`, after `attempts` failed: `retry_base`
            // doubling each time, capped at `retry_max`, jittered.
            let retry = (row.attempts.clamp(1, 40) - 1) as u32;
            let delay = ch.retry.jittered(retry, &mut rand::thread_rng()).as_millis() as i64;
            let next = now + delay;
            let give_up = (next - row.created_at > ch.give_up_ms).then_some(now);
            if give_up.is_some() {
                tracing::error!(delivery = %row.key, attempts = row.attempts, error = %err, "notification given up");
            } else {
                tracing::warn!(delivery = %row.key, attempts = row.attempts, error = %err, retry_in_ms = delay, "notification failed; will retry");
            }
            store.notification_failed(&row.id, claimer, &err, next, give_up).await
        }
    };
    match written {
        Ok(true) => {}
        Ok(false) => tracing::warn!(delivery = %row.key, "notification lease ran out before the outcome was recorded"),
        Err(e) => {
            tracing::warn!(delivery = %row.key, error = %e, "cannot record a delivery outcome; the lease will run out and it will be retried")
        }
    }
    hub.changed();
}

/// A transport error with its causes, without the URL (it may carry a secret).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    if let Some(cause) = std::error::Error::source(e) {
        msg.push_str(": ");
        msg.push_str(&crate::core::error_chain(cause));
    }
    msg
}

/// Sends one delivery attempt: a transport error or a non-2xx answer is an error.
pub(crate) async fn deliver(req: reqwest::RequestBuilder) -> Result<(), DeliveryError> {
    let resp = req.send().await.map_err(DeliveryError::Transport)?;
    check_status(resp).await
}

/// Any 2xx is a delivery; anything else an error naming the status and the start of the body.
pub(crate) async fn check_status(resp: reqwest::Response) -> Result<(), DeliveryError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    Err(DeliveryError::Status {
        status: status.as_u16(),
        body: super::clip(body.trim(), 200),
    })
}
