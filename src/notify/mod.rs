//! Notifications: who is told what, through a durable outbox.
//!
//! A change that deserves a notification (a request opens and waits for approvers; a
//! request is decided) queues one outbox row per channel and recipient in the same
//! transaction as the change itself, so a notification exists exactly when the change
//! committed. The delivery [`worker`] claims due rows, sends them (a signed [`webhook`],
//! a [`slack`] message, an [`email`]) and retries failures with capped exponential
//! backoff. Delivery is at least once, with a stable delivery id receivers dedupe on.

pub mod config;
pub mod delegation;
pub mod email;
pub mod error;
pub mod hec;
pub mod release;
pub mod slack;
pub mod syslog;
pub mod webhook;
pub mod worker;

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

pub use config::{Event, NotifyConfig};
pub use error::{ChannelError, DeliveryError};

use crate::core::api::RequestView;
use crate::core::decide::Status;
use crate::core::duration::rfc3339;
use crate::store::NotificationDraft;

/// Channel kinds as stored in the outbox.
pub const WEBHOOK: &str = "webhook";
pub const SLACK: &str = "slack";
pub const EMAIL: &str = "email";
pub const SYSLOG: &str = "syslog";
pub const HEC: &str = "hec";

/// The outbox channels every audit event of the kinds they want is queued to: each
/// `notify.syslog` and `notify.hec` entry (the store queues them as events are appended).
pub fn audit_sinks(n: Option<&NotifyConfig>) -> Vec<crate::store::AuditSink> {
    let Some(n) = n else { return Vec::new() };
    let syslog = n.syslog.iter().map(|s| (SYSLOG, &s.name, &s.events));
    let hec = n.hec.iter().map(|h| (HEC, &h.name, &h.events));
    syslog
        .chain(hec)
        .map(|(channel, name, events)| crate::store::AuditSink {
            channel: channel.into(),
            recipient: name.clone(),
            kinds: config::audit_kinds(events),
        })
        .collect()
}

/// This machine's host name, for syslog's HOSTNAME and HEC's `host` (`-`, syslog's
/// "unknown", when it has none that is text).
pub fn local_hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// Wakes the delivery worker when something is queued, and tells observers (the
/// notifications API's long-poll) when a delivery's state changed on this replica.
pub struct Hub {
    wake: Notify,
    version: watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            wake: Notify::new(),
            version: watch::channel(0).0,
        }
    }
}

impl Hub {
    /// Called after a transaction that queued notifications committed.
    pub fn queued(&self) {
        self.wake.notify_one();
        self.changed();
    }

    /// A delivery attempt finished (delivered, failed, given up).
    pub fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Changes whenever an outbox row changes on this replica.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }
}

/// A configured user a notification is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub name: String,
    pub email: Option<String>,
}

/// The outbox rows an event on a request produces: one per webhook and Slack channel that
/// wants the event, and one per email address of `people` when email is configured.
///
/// `people` are the configured users the event is for, with their email addresses: for
/// `opened`, everyone who may vote (never a requester); for `decided`, the requester. The
/// caller picks them (and drops names that are not configured users); this only drops
/// addresses listed twice.
pub fn drafts(
    n: &NotifyConfig,
    server: &str,
    event: Event,
    view: &RequestView,
    people: &[Recipient],
    now: i64,
) -> Vec<NotificationDraft> {
    let names: Vec<&str> = people.iter().map(|p| p.name.as_str()).collect();
    let mut doc = document(server, event, view, &names, now);
    let mut out = Vec::new();
    let mut push = |channel: &str, recipient: &str, extra: Option<Value>| {
        let key = format!("{}:{}:{channel}:{recipient}", view.id, event.as_str());
        doc["delivery"] = json!(key);
        let mut d = doc.clone();
        if let Some(x) = extra {
            d["to"] = x;
        }
        out.push(NotificationDraft {
            key,
            request_id: view.id.clone(),
            event: event.as_str().into(),
            channel: channel.into(),
            recipient: recipient.into(),
            payload: d.to_string(),
            created_at: now,
        });
    };
    for w in n.webhooks.iter().filter(|w| config::wants(&w.events, event)) {
        push(WEBHOOK, &w.name, None);
    }
    for s in n.slack.iter().filter(|s| config::wants(&s.events, event)) {
        push(SLACK, &s.name, None);
    }
    if n.email.as_ref().is_some_and(|e| config::wants(&e.events, event)) {
        let mut seen = std::collections::HashSet::new();
        for p in people {
            let Some(addr) = p.email.as_deref() else {
                continue;
            };
            let addr = addr.trim();
            if addr.is_empty() || !seen.insert(addr.to_ascii_lowercase()) {
                continue;
            }
            push(EMAIL, addr, Some(json!({"user": p.name, "email": addr})));
        }
    }
    out
}

/// The webhook notifications of a new transparency log checkpoint: to each webhook that
/// lists the `checkpoint` event, the signed note and what it says.
pub fn checkpoint_drafts(
    n: &NotifyConfig,
    server: &str,
    size: u64,
    root: &str,
    note: &str,
    now: i64,
) -> Vec<NotificationDraft> {
    let origin = note.lines().next().unwrap_or_default();
    n.webhooks
        .iter()
        .filter(|w| config::wants(&w.events, Event::Checkpoint))
        .map(|w| {
            let key = format!("log:checkpoint-{size}:{WEBHOOK}:{}", w.name);
            let doc = json!({
                "event": Event::Checkpoint.as_str(),
                "delivery": key,
                "occurred_at": rfc3339(now),
                "server": server,
                "origin": origin,
                "tree_size": size,
                "root": root,
                "checkpoint": note,
            });
            NotificationDraft {
                key,
                request_id: String::new(),
                event: Event::Checkpoint.as_str().into(),
                channel: WEBHOOK.into(),
                recipient: w.name.clone(),
                payload: doc.to_string(),
                created_at: now,
            }
        })
        .collect()
}

/// The JSON document of one notification: the webhook body as sent, and what Slack and
/// email messages are rendered from. See docs/notifications.md.
pub fn document(server: &str, event: Event, v: &RequestView, people: &[&str], now: i64) -> Value {
    let mut doc = request_document(server, event, v, people, now);
    // Break-glass keys only where they apply: other documents stay as they were.
    if let (Some(o), Value::Object(links)) = (doc.as_object_mut(), json!(v.links)) {
        o.extend(links);
    }
    doc
}

fn request_document(server: &str, event: Event, v: &RequestView, people: &[&str], now: i64) -> Value {
    json!({
        "event": event.as_str(),
        "delivery": "",
        "occurred_at": rfc3339(now),
        "server": server,
        "request_id": v.id,
        "url": v.url,
        "status": v.status,
        "environment": v.context.environment,
        "repository": v.context.repository,
        "context": v.context,
        "summary": v.summary,
        "rule": v.rule,
        "requester": v.requester,
        "opened_by": v.opened_by,
        "approvers": v.approvers(),
        "needs": if v.status == Status::Pending { v.needs() } else { String::new() },
        "requirements": v.requirements,
        "votes": v.votes,
        "decided_by": v.decided_by,
        "reason": v.reason,
        "decided_at": v.decided_at,
        "created_at": v.created_at,
        "expires_at": v.expires_at,
        "audience": people,
    })
}

/// A string field of a notification document ("" when absent).
pub(crate) fn field<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A one-line title: what happened to which request.
pub(crate) fn title(doc: &Value) -> String {
    let env = field(doc, "environment");
    let repo = field(doc, "repository");
    let what = match (field(doc, "event"), field(doc, "status")) {
        ("opened", _) => "Approval needed".to_string(),
        ("escalated", _) if field(doc, "kind") == "review" => "Overdue: break-glass review still needed".to_string(),
        ("escalated", _) => "Escalated: approval still needed".to_string(),
        ("stage_opened", _) => format!("Approval needed (stage {})", field(doc, "stage")),
        ("break_glass", _) => format!(
            "BREAK-GLASS by {} (incident {})",
            field(&doc["break_glass"], "by"),
            field(&doc["break_glass"], "incident")
        ),
        ("delegation", s) => {
            return format!(
                "Delegation {s}: {} votes for {}",
                field(doc, "delegate"),
                field(doc, "delegator")
            );
        }
        (_, "approved") => "Approved".into(),
        (_, "denied") => "Denied".into(),
        (_, "expired") => "Expired".into(),
        (_, "canceled") => "Canceled".into(),
        (_, s) => capitalize(s),
    };
    let mut t = format!("{what}: {env}");
    if !repo.is_empty() {
        t.push_str(&format!(" of {repo}"));
    }
    t
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> RequestView {
        serde_json::from_value(json!({
            "id": "req_1", "status": "pending", "url": "http://g/requests/req_1",
            "context": {"repository": "acme/app", "ref": "refs/heads/main", "environment": "production", "actor": "alice-gh"},
            "summary": "deploy", "artifacts": [], "requester": ["alice-gh", "alice"], "opened_by": "ci",
            "rule": "production", "policy_digest": "x",
            "requirements": [{"group": "sre", "count": 2, "members": ["alice", "bob", "carol"], "approved_by": [], "may_vote": ["bob", "carol"], "met": false}],
            "votes": [], "created_at": "t", "expires_at": "t", "version": 1
        }))
        .unwrap()
    }

    #[test]
    fn one_row_per_channel_and_address() {
        let cfg: NotifyConfig = serde_norway::from_str(
            "webhooks:\n  - { name: audit, url: https://h.example/x, secret_env: S }\n  - { name: only-decided, url: https://h.example/y, secret_env: S, events: [decided] }\nslack:\n  - { name: rel, url: https://hooks.slack.com/services/x }\nemail:\n  host: smtp.example\n  from: gate@x.io\n",
        )
        .unwrap();
        let person = |name: &str, email: Option<&str>| Recipient {
            name: name.into(),
            email: email.map(Into::into),
        };
        let people = [
            person("bob", Some("b@x.io")),
            person("carol", Some("B@x.io")),
            person("dave", None),
        ];
        let d = drafts(&cfg, "http://g", Event::Opened, &view(), &people, 0);
        let keys: Vec<&str> = d.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "req_1:opened:webhook:audit",
                "req_1:opened:slack:rel",
                "req_1:opened:email:b@x.io"
            ]
        );
        let doc: Value = serde_json::from_str(&d[0].payload).unwrap();
        assert_eq!(doc["delivery"], "req_1:opened:webhook:audit");
        assert_eq!(doc["audience"], json!(["bob", "carol", "dave"]));
        assert_eq!(doc["needs"], "sre 0/2 (may vote: bob, carol)");
        assert!(doc.get("to").is_none());
        let mail: Value = serde_json::from_str(&d[2].payload).unwrap();
        assert_eq!(mail["to"]["user"], "bob");
        assert_eq!(title(&doc), "Approval needed: production of acme/app");
        assert!(drafts(&NotifyConfig::default(), "", Event::Opened, &view(), &people, 0).is_empty());
    }
}
