//! `notify:` in gate.yaml: the channels notifications go to and how deliveries are retried.

use serde::{Deserialize, Serialize};

use crate::core::duration::Dur;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A request opened and waits for approvers: everyone who may vote is told.
    Opened,
    /// A request left `pending` (approved, denied, expired, canceled): the requester is told.
    Decided,
    /// Reserved for escalation (a request waited too long and more approvers are asked).
    Escalated,
    /// The transparency log signed a checkpoint. Only webhooks that list it get it (a
    /// SIEM keeping its own copy of the log's heads), never Slack or email.
    Checkpoint,
    /// A delegation was created or revoked: its delegator and delegate are told.
    Delegation,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Opened => "opened",
            Event::Decided => "decided",
            Event::Escalated => "escalated",
            Event::Checkpoint => "checkpoint",
            Event::Delegation => "delegation",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Some(match s {
            "opened" => Event::Opened,
            "decided" => Event::Decided,
            "escalated" => Event::Escalated,
            "checkpoint" => Event::Checkpoint,
            "delegation" => Event::Delegation,
            _ => return None,
        })
    }
}

/// `notify:`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// First retry delay after a failed delivery; it doubles on each failure (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_base: Option<Dur>,
    /// Longest delay between two attempts (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max: Option<Dur>,
    /// A notification still undelivered this long after it was queued is given up (default 3d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub give_up_after: Option<Dur>,
    /// Longest one delivery attempt may take (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slack: Vec<Slack>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
}

/// A generic webhook: signed JSON POSTs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Names the channel in deliveries (`webhook:<name>`); unique among webhooks.
    pub name: String,
    pub url: String,
    /// The environment variable holding the HMAC secret deliveries are signed with.
    pub secret_env: String,
    /// Events sent here (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
}

/// A Slack incoming webhook.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    pub name: String,
    /// The incoming-webhook URL; it is a secret, so prefer `url_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The environment variable holding the incoming-webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    /// STARTTLS or nothing is sent (the default).
    #[default]
    Required,
    /// STARTTLS when the server offers it, else plain text.
    Opportunistic,
    /// Plain text: only for a relay on the same host or network you trust.
    None,
}

/// Email over SMTP, to the `email:` of configured users.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub host: String,
    /// Default 587.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The environment variable holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The sender, e.g. `jitgate <gate@example.com>`.
    pub from: String,
    #[serde(default)]
    pub starttls: StartTls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
}

pub fn wants(events: &Option<Vec<Event>>, e: Event) -> bool {
    match e {
        // Not a request's event: only where asked for by name.
        Event::Checkpoint => events.as_ref().is_some_and(|v| v.contains(&e)),
        _ => events.as_ref().is_none_or(|v| v.contains(&e)),
    }
}

impl NotifyConfig {
    pub fn retry_base(&self) -> Dur {
        self.retry_base.unwrap_or(Dur::from_secs(1))
    }
    pub fn retry_max(&self) -> Dur {
        self.retry_max.unwrap_or(Dur::from_secs(300))
    }
    pub fn give_up_after(&self) -> Dur {
        self.give_up_after.unwrap_or(Dur::from_secs(3 * 86_400))
    }
    pub fn timeout(&self) -> Dur {
        self.timeout.unwrap_or(Dur::from_secs(10))
    }

    /// Checks what serde cannot; `at(needle, error)` locates an error in the file.
    pub fn validate<E>(&self, at: &dyn Fn(&str, NotifyConfigError) -> E) -> Result<(), E> {
        use NotifyConfigError as Bad;
        for (key, d) in [
            ("retry_base", self.retry_base),
            ("retry_max", self.retry_max),
            ("give_up_after", self.give_up_after),
            ("timeout", self.timeout),
        ] {
            if d.is_some_and(|d| d.millis() <= 0) {
                return Err(at(&format!("{key}:"), Bad::NotPositive { key }));
            }
        }
        if self.retry_base() > self.retry_max() {
            return Err(at("retry_base:", Bad::RetryBaseOverMax));
        }
        let mut names = std::collections::HashSet::new();
        for w in &self.webhooks {
            let bad = |problem| Bad::Channel {
                channel: "webhook",
                name: w.name.clone(),
                problem,
            };
            check_name(&w.name).map_err(|p| at(&w.name, bad(p)))?;
            if !names.insert(format!("webhook:{}", w.name)) {
                return Err(at(
                    &w.name,
                    Bad::Twice {
                        channel: "webhook",
                        name: w.name.clone(),
                    },
                ));
            }
            crate::core::url::check_url(&w.url).map_err(|m| at(&w.url, bad(ChannelProblem::Url(m.to_string()))))?;
            check_env(&w.secret_env).map_err(|e| at("secret_env:", bad(ChannelProblem::SecretEnv(e))))?;
        }
        for s in &self.slack {
            let bad = |problem| Bad::Channel {
                channel: "slack",
                name: s.name.clone(),
                problem,
            };
            check_name(&s.name).map_err(|p| at(&s.name, bad(p)))?;
            if !names.insert(format!("slack:{}", s.name)) {
                return Err(at(
                    &s.name,
                    Bad::Twice {
                        channel: "slack",
                        name: s.name.clone(),
                    },
                ));
            }
            if s.events.as_ref().is_some_and(|v| v.contains(&Event::Checkpoint)) {
                return Err(at("checkpoint", bad(ChannelProblem::CheckpointToWebhooks)));
            }
            match (&s.url, &s.url_env) {
                (Some(u), None) => {
                    crate::core::url::check_url(u).map_err(|m| at(u, bad(ChannelProblem::Url(m.to_string()))))?
                }
                (None, Some(e)) => check_env(e).map_err(|e| at("url_env:", bad(ChannelProblem::UrlEnv(e))))?,
                _ => return Err(at(&s.name, bad(ChannelProblem::UrlOrUrlEnv))),
            }
        }
        if let Some(e) = &self.email {
            if e.host.trim().is_empty() {
                return Err(at("host:", Bad::EmailHostEmpty));
            }
            if e.events.as_ref().is_some_and(|v| v.contains(&Event::Checkpoint)) {
                return Err(at("checkpoint", Bad::EmailCheckpoint));
            }
            if e.port == Some(0) {
                return Err(at("port:", Bad::EmailPortZero));
            }
            e.from.parse::<lettre::message::Mailbox>().map_err(|source| {
                at(
                    "from:",
                    Bad::EmailFrom {
                        from: e.from.clone(),
                        source,
                    },
                )
            })?;
            if let Some(p) = &e.password_env {
                check_env(p).map_err(|e| at("password_env:", Bad::EmailPasswordEnv(e)))?;
                if e.username.is_none() {
                    return Err(at("password_env:", Bad::EmailPasswordNeedsUsername));
                }
            }
        }
        Ok(())
    }
}

/// What is wrong with `notify:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyConfigError {
    #[error("notify.{key} must be positive")]
    NotPositive { key: &'static str },
    #[error("notify.retry_base is longer than notify.retry_max")]
    RetryBaseOverMax,
    #[error("notify {channel} `{name}`: {problem}")]
    Channel {
        channel: &'static str,
        name: String,
        problem: ChannelProblem,
    },
    #[error("notify {channel} `{name}` is listed twice")]
    Twice { channel: &'static str, name: String },
    #[error("notify.email.host is empty")]
    EmailHostEmpty,
    #[error("notify.email.port must not be 0")]
    EmailPortZero,
    #[error("notify.email.from `{from}` is not an address: {source}")]
    EmailFrom {
        from: String,
        source: lettre::address::AddressError,
    },
    #[error("notify.email.password_env {0}")]
    EmailPasswordEnv(NotAnEnvName),
    #[error("notify.email.password_env needs a `username`")]
    EmailPasswordNeedsUsername,
    #[error("notify.email: `checkpoint` events go to webhooks only (a log's heads are not a message for people)")]
    EmailCheckpoint,
}

/// What is wrong with one webhook or Slack channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelProblem {
    #[error("`name` must be 1 to 64 letters, digits, `-`, `_` or `.`")]
    Name,
    #[error("url {0}")]
    Url(String),
    #[error("secret_env {0}")]
    SecretEnv(NotAnEnvName),
    #[error("url_env {0}")]
    UrlEnv(NotAnEnvName),
    #[error("give exactly one of `url` and `url_env`")]
    UrlOrUrlEnv,
    #[error("`checkpoint` events go to webhooks only (a log's heads are not a message for people)")]
    CheckpointToWebhooks,
}

/// A `*_env` value that cannot name an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an environment variable name")]
pub struct NotAnEnvName(pub String);

fn check_name(n: &str) -> Result<(), ChannelProblem> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(ChannelProblem::Name) }
}

fn check_env(n: &str) -> Result<(), NotAnEnvName> {
    let ok = !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { Ok(()) } else { Err(NotAnEnvName(n.into())) }
}
