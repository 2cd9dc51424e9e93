//! Why channels could not be set up, and why one delivery attempt failed. A delivery
//! error is stored with its outbox row and shown by the notifications API, so its
//! wording is part of the interface.

use super::email::MailerError;

/// A `notify:` channel whose secrets cannot be resolved at start.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("notify: HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("notify webhook `{name}` secret_env: environment variable `{var}` is not set")]
    WebhookSecretUnset { name: String, var: String },
    #[error("notify slack `{name}` url_env: environment variable `{var}` is not set")]
    SlackUrlUnset { name: String, var: String },
    #[error("notify slack `{name}`: ${var} {reason}")]
    SlackUrlBad { name: String, var: String, reason: String },
    #[error("notify slack `{name}`: no url")]
    SlackNoUrl { name: String },
    #[error(transparent)]
    Email(#[from] MailerError),
    #[error("notify syslog `{name}`: address `{address}` is not `host:port`")]
    SyslogAddress { name: String, address: String },
    #[error("notify syslog `{name}` TLS: {reason}")]
    SyslogTls { name: String, reason: String },
    #[error("notify hec `{name}` token_env: environment variable `{var}` is not set")]
    HecTokenUnset { name: String, var: String },
}

/// Why one delivery attempt failed; the row is retried later.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("stored payload: {0}")]
    Payload(#[source] serde_json::Error),
    #[error("{channel} `{name}` is no longer configured")]
    Unconfigured { channel: &'static str, name: String },
    #[error("email is no longer configured")]
    EmailUnconfigured,
    #[error("unknown channel `{0}`")]
    UnknownChannel(String),
    /// Not the error's source on purpose: reqwest's errors name the URL, which may carry a
    /// secret (a Slack webhook URL is one).
    #[error("{}", super::worker::describe(.0))]
    Transport(reqwest::Error),
    /// A non-2xx answer, with the start of its body.
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("`{to}` is not an email address: {source}")]
    Recipient {
        to: String,
        source: lettre::address::AddressError,
    },
    #[error("building the message: {0}")]
    Message(#[source] lettre::error::Error),
    /// A syslog connection or write failed (the connection is dropped; the next attempt
    /// opens a new one).
    #[error("syslog {address}: {what}: {error}")]
    Syslog {
        address: String,
        what: &'static str,
        error: String,
    },
    /// A 2xx answer from a Splunk HEC that is not its `{"code": 0}` success.
    #[error("HEC answered without success: {body}")]
    HecAnswer { body: String },
    /// A platform asked to release a job (GitLab, GitHub, Jenkins) failed or refused; the
    /// message names the platform and the call.
    #[error("{0}")]
    Platform(String),
    #[error("SMTP: {0}")]
    Smtp(#[source] lettre::transport::smtp::Error),
}
