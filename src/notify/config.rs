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
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Opened => "opened",
            Event::Decided => "decided",
            Event::Escalated => "escalated",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Some(match s {
            "opened" => Event::Opened,
            "decided" => Event::Decided,
            "escalated" => Event::Escalated,
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
    events.as_ref().is_none_or(|v| v.contains(&e))
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

    /// Checks what serde cannot; `at(needle, message)` locates an error in the file.
    pub fn check<E>(&self, at: &dyn Fn(&str, String) -> E) -> Result<(), E> {
        for (key, d) in [
            ("retry_base", self.retry_base),
            ("retry_max", self.retry_max),
            ("give_up_after", self.give_up_after),
            ("timeout", self.timeout),
        ] {
            if d.is_some_and(|d| d.millis() <= 0) {
                return Err(at(&format!("{key}:"), format!("notify.{key} must be positive")));
            }
        }
        if self.retry_base() > self.retry_max() {
            return Err(at(
                "retry_base:",
                "notify.retry_base is longer than notify.retry_max".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for w in &self.webhooks {
            let here = |m: String| at(&w.name, format!("notify webhook `{}`: {m}", w.name));
            check_name(&w.name).map_err(here)?;
            if !names.insert(format!("webhook:{}", w.name)) {
                return Err(at(&w.name, format!("notify webhook `{}` is listed twice", w.name)));
            }
            crate::core::url::check_url(&w.url)
                .map_err(|m| at(&w.url, format!("notify webhook `{}`: url {m}", w.name)))?;
            check_env(&w.secret_env)
                .map_err(|m| at("secret_env:", format!("notify webhook `{}`: secret_env {m}", w.name)))?;
        }
        for s in &self.slack {
            let here = |m: String| at(&s.name, format!("notify slack `{}`: {m}", s.name));
            check_name(&s.name).map_err(here)?;
            if !names.insert(format!("slack:{}", s.name)) {
                return Err(at(&s.name, format!("notify slack `{}` is listed twice", s.name)));
            }
            match (&s.url, &s.url_env) {
                (Some(u), None) => {
                    crate::core::url::check_url(u).map_err(|m| at(u, format!("notify slack `{}`: url {m}", s.name)))?
                }
                (None, Some(e)) => {
                    check_env(e).map_err(|m| at("url_env:", format!("notify slack `{}`: url_env {m}", s.name)))?
                }
                _ => return Err(here("give exactly one of `url` and `url_env`".into())),
            }
        }
        if let Some(e) = &self.email {
            if e.host.trim().is_empty() {
                return Err(at("host:", "notify.email.host is empty".into()));
            }
            if e.port == Some(0) {
                return Err(at("port:", "notify.email.port must not be 0".into()));
            }
            e.from.parse::<lettre::message::Mailbox>().map_err(|err| {
                at(
                    "from:",
                    format!("notify.email.from `{}` is not an address: {err}", e.from),
                )
            })?;
            if let Some(p) = &e.password_env {
                check_env(p).map_err(|m| at("password_env:", format!("notify.email.password_env {m}")))?;
                if e.username.is_none() {
                    return Err(at(
                        "password_env:",
                        "notify.email.password_env needs a `username`".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err("`name` must be 1 to 64 letters, digits, `-`, `_` or `.`".into())
    }
}

fn check_env(n: &str) -> Result<(), String> {
    let ok = !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{n}` is not an environment variable name"))
    }
}
