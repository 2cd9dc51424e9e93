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
    /// A stage of a rule with `stages` opened (the stages before it are met): the
    /// approvers of the stage are told, as `opened` tells the first stage's.
    #[serde(rename = "stage_opened")]
    StageOpened,
    /// A change was approved by break-glass: every channel is told, whatever its
    /// `events`, and the review group by email.
    #[serde(rename = "break_glass")]
    BreakGlass,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Opened => "opened",
            Event::Decided => "decided",
            Event::Escalated => "escalated",
            Event::Checkpoint => "checkpoint",
            Event::Delegation => "delegation",
            Event::StageOpened => "stage_opened",
            Event::BreakGlass => "break_glass",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Some(match s {
            "opened" => Event::Opened,
            "decided" => Event::Decided,
            "escalated" => Event::Escalated,
            "checkpoint" => Event::Checkpoint,
            "delegation" => Event::Delegation,
            "stage_opened" => Event::StageOpened,
            "break_glass" => Event::BreakGlass,
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
    /// Audit events to syslog collectors (RFC 5424 over TCP or TLS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syslog: Vec<Syslog>,
    /// Audit events to Splunk HTTP Event Collectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hec: Vec<Hec>,
}

/// A syslog collector every audit event (of the kinds in `events`) is sent to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Syslog {
    pub name: String,
    /// `host:port` (`[v6 address]:port`); with `tls`, the certificate must name `host`.
    pub address: String,
    /// TLS (RFC 5425) with the system's roots and `ca_file`.
    #[serde(default)]
    pub tls: bool,
    /// A PEM file of extra CA certificates (a private CA), with `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub framing: Framing,
    /// Default `authpriv` (10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<Facility>,
    /// HOSTNAME of the messages (default: this machine's host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Audit event kinds sent here (`all`, the default, is every kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

/// How syslog messages are delimited on the stream (RFC 6587).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// `LEN SP MSG` (RFC 6587 3.4.1; the one RFC 5425 requires for TLS): a message may
    /// hold newlines.
    #[default]
    OctetCounting,
    /// `MSG LF` (RFC 6587 3.4.2), for collectors that only split lines. The message is
    /// JSON on one line, so it never holds a newline of its own.
    Newline,
}

/// The syslog facilities of RFC 5424 6.2.1.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[rustfmt::skip]
pub enum Facility {
    Kern, User, Mail, Daemon, Auth, Syslog, Lpr, News, Uucp, Cron, Authpriv, Ftp, Ntp,
    Audit, Alert, Clock, Local0, Local1, Local2, Local3, Local4, Local5, Local6, Local7,
}

impl Facility {
    /// Its numerical code: the order above.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A Splunk HTTP Event Collector every audit event (of the kinds in `events`) is sent to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hec {
    pub name: String,
    /// The collector's base URL (`/services/collector/event` is added unless it names
    /// `/services/collector…` itself).
    pub url: String,
    /// The environment variable holding the HEC token.
    pub token_env: String,
    /// Default `_json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    /// Default `jitgate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The index (default: the token's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// `host` of the events (default: this machine's host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

/// The audit kinds an `events:` list selects: `None` for every kind (omitted, or `all`).
pub fn audit_kinds(events: &Option<Vec<String>>) -> Option<Vec<String>> {
    events.as_ref().filter(|v| !v.iter().any(|e| e == "all")).cloned()
}

/// `host:port` or `[v6]:port`: the host (without brackets) and the port.
pub fn parse_address(a: &str) -> Option<(String, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'));
    ok.then(|| (host.to_string(), port))
}

fn check_events(events: &Option<Vec<String>>) -> Result<(), ChannelProblem> {
    let Some(v) = events else { return Ok(()) };
    if v.is_empty() {
        return Err(ChannelProblem::NoEvents);
    }
    match v
        .iter()
        .find(|e| *e != "all" && !crate::core::audit::KINDS.contains(&e.as_str()))
    {
        Some(e) => Err(ChannelProblem::UnknownKind(
            e.clone(),
            crate::core::audit::KINDS.join(", "),
        )),
        None => Ok(()),
    }
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
        // Urgent: a change went out without approval; no filter hides it.
        Event::BreakGlass => true,
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
        self.validate_siem(at, &mut names)?;
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

impl NotifyConfig {
    fn validate_siem<E>(
        &self,
        at: &dyn Fn(&str, NotifyConfigError) -> E,
        names: &mut std::collections::HashSet<String>,
    ) -> Result<(), E> {
        use NotifyConfigError as Bad;
        let located = |channel: &'static str, name: &str, needle: &str, problem| {
            at(
                needle,
                Bad::Channel {
                    channel,
                    name: name.into(),
                    problem,
                },
            )
        };
        let events_needle = |events: &Option<Vec<String>>| match events
            .iter()
            .flatten()
            .find(|e| !crate::core::audit::KINDS.contains(&e.as_str()) && *e != "all")
        {
            Some(e) => e.clone(),
            None => "events:".into(),
        };
        for s in &self.syslog {
            let bad = |needle: &str, p| located("syslog", &s.name, needle, p);
            check_name(&s.name).map_err(|p| bad(&s.name, p))?;
            if !names.insert(format!("syslog:{}", s.name)) {
                return Err(at(
                    &s.name,
                    Bad::Twice {
                        channel: "syslog",
                        name: s.name.clone(),
                    },
                ));
            }
            if parse_address(&s.address).is_none() {
                return Err(bad(&s.address, ChannelProblem::Address(s.address.clone())));
            }
            if s.ca_file.is_some() && !s.tls {
                return Err(bad("ca_file:", ChannelProblem::CaFileWithoutTls));
            }
            if s.hostname.as_deref().is_some_and(|h| !is_printusascii(h, 255)) {
                return Err(bad("hostname:", ChannelProblem::Hostname));
            }
            check_events(&s.events).map_err(|p| bad(&events_needle(&s.events), p))?;
        }
        for h in &self.hec {
            let bad = |needle: &str, p| located("hec", &h.name, needle, p);
            check_name(&h.name).map_err(|p| bad(&h.name, p))?;
            if !names.insert(format!("hec:{}", h.name)) {
                return Err(at(
                    &h.name,
                    Bad::Twice {
                        channel: "hec",
                        name: h.name.clone(),
                    },
                ));
            }
            crate::core::url::check_url(&h.url).map_err(|m| bad(&h.url, ChannelProblem::Url(m.to_string())))?;
            check_env(&h.token_env).map_err(|e| bad("token_env:", ChannelProblem::TokenEnv(e)))?;
            check_events(&h.events).map_err(|p| bad(&events_needle(&h.events), p))?;
        }
        Ok(())
    }
}

/// 1 to `max` printable US-ASCII characters (RFC 5424's HOSTNAME).
fn is_printusascii(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
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
    #[error("address `{0}` is not `host:port` (an IPv6 address in brackets: `[::1]:6514`)")]
    Address(String),
    #[error("`ca_file` needs `tls: true`")]
    CaFileWithoutTls,
    #[error("`hostname` must be 1 to 255 printable ASCII characters without spaces")]
    Hostname,
    #[error("token_env {0}")]
    TokenEnv(NotAnEnvName),
    #[error("`events: []` sends nothing: list audit event kinds, `all`, or leave `events` out (every kind)")]
    NoEvents,
    #[error("`{0}` is not an audit event kind (known: all, {1})")]
    UnknownKind(String, String),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_event_lists() {
        assert_eq!(parse_address("siem.example:6514"), Some(("siem.example".into(), 6514)));
        assert_eq!(parse_address("[::1]:514"), Some(("::1".into(), 514)));
        assert_eq!(parse_address("::1:514"), None, "IPv6 needs brackets");
        assert_eq!(parse_address("siem.example"), None);
        assert_eq!(parse_address("siem.example:0"), None);
        assert_eq!(parse_address(":514"), None);
        assert_eq!(parse_address("a b:514"), None);
        let ev = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(audit_kinds(&None), None);
        assert_eq!(audit_kinds(&ev(&["vote", "all"])), None);
        assert_eq!(audit_kinds(&ev(&["vote"])), ev(&["vote"]));
        assert_eq!(check_events(&ev(&["vote", "all"])), Ok(()));
        assert_eq!(check_events(&ev(&[])), Err(ChannelProblem::NoEvents));
        assert!(matches!(check_events(&ev(&["opened"])), Err(ChannelProblem::UnknownKind(k, _)) if k == "opened"));
        assert_eq!(Facility::Authpriv.code(), 10);
        assert_eq!(Facility::Local7.code(), 23);
    }
}
