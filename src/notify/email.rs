//! Email over SMTP (STARTTLS with rustls): a multipart plain-text and HTML message
//! rendered from the notification document, to one configured user's address.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::DeliveryError;
use super::config::{Email, StartTls};
use super::{field, title};

/// An `email:` channel that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("notify.email.from `{from}`: {source}")]
    Sender {
        from: String,
        source: lettre::address::AddressError,
    },
    #[error("notify.email: TLS for {host}: {source}")]
    Tls {
        host: String,
        source: lettre::transport::smtp::Error,
    },
    #[error("notify.email.password_env: environment variable `{var}` is not set")]
    PasswordUnset { var: String },
}

/// A ready SMTP sender.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// Builds the transport; the password is read from `password_env` now.
    pub fn new(cfg: &Email, timeout: Duration) -> Result<Mailer, MailerError> {
        let from: Mailbox = cfg.from.parse().map_err(|source| MailerError::Sender {
            from: cfg.from.clone(),
            source,
        })?;
        let host = cfg.host.trim();
        let tls = || {
            TlsParameters::new(host.to_string()).map_err(|source| MailerError::Tls {
                host: host.into(),
                source,
            })
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(cfg.port.unwrap_or(587))
            .timeout(Some(timeout));
        b = match cfg.starttls {
            StartTls::Required => b.tls(Tls::Required(tls()?)),
            StartTls::Opportunistic => b.tls(Tls::Opportunistic(tls()?)),
            StartTls::None => b.tls(Tls::None),
        };
        if let Some(user) = &cfg.username {
            let password = match &cfg.password_env {
                Some(var) => std::env::var(var).map_err(|_| MailerError::PasswordUnset { var: var.clone() })?,
                None => String::new(),
            };
            b = b.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer {
            transport: b.build(),
            from,
        })
    }

    pub async fn send(&self, to: &str, doc: &Value) -> Result<(), DeliveryError> {
        let to: Mailbox = to
            .parse()
            .map_err(|source| DeliveryError::Recipient { to: to.into(), source })?;
        let msg = message(self.from.clone(), to, doc)?;
        self.transport.send(msg).await.map(|_| ()).map_err(DeliveryError::Smtp)
    }
}

/// The subject line of a notification.
pub fn subject(doc: &Value) -> String {
    format!("[jitgate] {} ({})", title(doc), field(doc, "request_id"))
}

/// The message: a stable Message-ID derived from the delivery id, so a redelivery after a
/// crash is recognisably the same mail.
pub fn message(from: Mailbox, to: Mailbox, doc: &Value) -> Result<Message, DeliveryError> {
    let delivery = field(doc, "delivery");
    let digest = hex::encode(&Sha256::digest(delivery.as_bytes())[..16]);
    Message::builder()
        .from(from)
        .to(to)
        .subject(subject(doc))
        .message_id(Some(format!("<{digest}.{}@jitgate>", field(doc, "request_id"))))
        .multipart(MultiPart::alternative_plain_html(plain(doc), html(doc)))
        .map_err(DeliveryError::Message)
}

/// `(label, value)` lines shared by both parts.
fn facts(doc: &Value) -> Vec<(&'static str, String)> {
    let ctx = &doc["context"];
    let s = |k: &str| ctx[k].as_str().unwrap_or("").to_string();
    let list = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let mut out = vec![
        ("Request", field(doc, "request_id").to_string()),
        ("Status", field(doc, "status").to_string()),
        ("Environment", field(doc, "environment").to_string()),
        ("Repository", field(doc, "repository").to_string()),
        ("Ref", s("ref")),
        ("Commit", s("commit")),
        ("Action", s("action")),
        ("Requested by", list(&doc["requester"])),
        ("Rule", field(doc, "rule").to_string()),
        ("Pipeline run", s("run_url")),
    ];
    match field(doc, "event") {
        "opened" | "escalated" | "stage_opened" => {
            out.push(("Still needed", field(doc, "needs").to_string()));
            out.push(("Expires", field(doc, "expires_at").to_string()));
        }
        _ => {
            out.push(("Decided by", field(doc, "decided_by").to_string()));
            out.push(("Why", field(doc, "reason").to_string()));
            out.push(("Decided at", field(doc, "decided_at").to_string()));
        }
    }
    out.retain(|(_, v)| !v.is_empty());
    out
}

fn lead(doc: &Value) -> String {
    match field(doc, "event") {
        "opened" | "stage_opened" => "A deployment is waiting for your approval.".into(),
        "escalated" => "A deployment is still waiting for approval, and you have been asked to help.".into(),
        "delegation" => field(doc, "summary").to_string(),
        "break_glass" => "A change was approved at once by break-glass; it needs your review.".into(),
        _ => format!("Your request was {}.", field(doc, "status")),
    }
}

fn action(doc: &Value) -> &'static str {
    if matches!(field(doc, "event"), "opened" | "escalated" | "stage_opened") {
        "Review and vote"
    } else {
        "View the request"
    }
}

pub fn plain(doc: &Value) -> String {
    let mut t = format!("{}\n\n{}\n\n", title(doc), lead(doc));
    let summary = field(doc, "summary");
    if !summary.is_empty() {
        t.push_str(&format!("{summary}\n\n"));
    }
    for (k, v) in facts(doc) {
        t.push_str(&format!("{k}: {v}\n"));
    }
    t.push_str(&format!("\n{}: {}\n", action(doc), field(doc, "url")));
    if matches!(field(doc, "event"), "opened" | "escalated" | "stage_opened") {
        let id = field(doc, "request_id");
        t.push_str(&format!(
            "\nFrom a terminal:\n  gate approve {id} --reason \"...\"\n  gate deny {id} --reason \"...\"\n"
        ));
    }
    t.push_str(&format!("\n-- \njitgate, delivery {}\n", field(doc, "delivery")));
    t
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub fn html(doc: &Value) -> String {
    let mut rows = String::new();
    for (k, v) in facts(doc) {
        rows.push_str(&format!(
            "<tr><th style=\"text-align:left;padding:2px 12px 2px 0;vertical-align:top\">{}</th><td>{}</td></tr>",
            esc(k),
            esc(&v)
        ));
    }
    let summary = field(doc, "summary");
    let summary = if summary.is_empty() {
        String::new()
    } else {
        format!("<p>{}</p>", esc(summary))
    };
    let url = field(doc, "url");
    format!(
        "<!doctype html><html><body style=\"font-family:system-ui,sans-serif\"><h2>{}</h2><p>{}</p>{summary}<table>{rows}</table><p><a href=\"{}\" style=\"display:inline-block;padding:8px 14px;background:#1f6feb;color:#fff;text-decoration:none;border-radius:6px\">{}</a></p><p style=\"color:#666;font-size:small\">jitgate, delivery {}</p></body></html>",
        esc(&title(doc)),
        esc(&lead(doc)),
        esc(url),
        action(doc),
        esc(field(doc, "delivery"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_starttls_mode_builds_with_rustls() {
        for starttls in [StartTls::Required, StartTls::Opportunistic, StartTls::None] {
            let cfg = Email {
                host: "smtp.example.com".into(),
                from: "jitgate <gate@example.com>".into(),
                starttls,
                ..Default::default()
            };
            assert!(Mailer::new(&cfg, Duration::from_secs(1)).is_ok(), "{starttls:?}");
        }
        let cfg = Email {
            host: "smtp.example.com".into(),
            from: "gate@example.com".into(),
            username: Some("u".into()),
            password_env: Some("JITGATE_UNIT_TEST_SURELY_UNSET".into()),
            ..Default::default()
        };
        let e = Mailer::new(&cfg, Duration::from_secs(1)).err().unwrap().to_string();
        assert!(e.contains("JITGATE_UNIT_TEST_SURELY_UNSET"), "{e}");
    }

    #[test]
    fn opened_mail_has_both_parts_and_escapes_html() {
        let doc = json!({
            "event": "opened", "status": "pending", "request_id": "req_1", "url": "http://g/requests/req_1",
            "environment": "production", "repository": "acme/app", "summary": "<b>ship</b> it",
            "context": {"ref": "refs/heads/main"}, "requester": ["alice"], "needs": "sre 0/1 (may vote: bob)",
            "delivery": "req_1:opened:email:bob@x.io",
        });
        assert_eq!(
            subject(&doc),
            "[jitgate] Approval needed: production of acme/app (req_1)"
        );
        let p = plain(&doc);
        assert!(p.contains("Still needed: sre 0/1 (may vote: bob)"), "{p}");
        assert!(p.contains("gate approve req_1"), "{p}");
        let h = html(&doc);
        assert!(
            h.contains("&lt;b&gt;ship&lt;/b&gt; it") && !h.contains("<b>ship"),
            "{h}"
        );
        let m = message("gate@x.io".parse().unwrap(), "bob@x.io".parse().unwrap(), &doc).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(
            raw.contains("multipart/alternative") && raw.contains("text/html"),
            "{raw}"
        );
    }
}
