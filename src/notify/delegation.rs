//! The notifications of a delegation created or revoked: to the delegator and the
//! delegate by email, and to every webhook and Slack channel that wants `delegation`.

use serde_json::json;

use super::config::{self, Event, NotifyConfig};
use super::{EMAIL, Recipient, SLACK, WEBHOOK};
use crate::core::delegation::Delegation;
use crate::core::duration::rfc3339;
use crate::store::NotificationDraft;

/// The outbox rows of `what` (`created` or `revoked`) happening to `d` at `now`.
pub fn drafts(
    n: &NotifyConfig,
    server: &str,
    d: &Delegation,
    what: &str,
    people: &[Recipient],
    now: i64,
) -> Vec<NotificationDraft> {
    let summary = format!(
        "{} delegated their votes to {} until {} ({}){}",
        d.delegator,
        d.delegate,
        rfc3339(d.until),
        d.reason,
        match (what, &d.revoked_by) {
            ("revoked", Some(by)) => format!("; revoked by {by}"),
            _ => String::new(),
        }
    );
    let doc = json!({
        "event": Event::Delegation.as_str(),
        "delivery": "",
        "occurred_at": rfc3339(now),
        "server": server,
        "request_id": d.id,
        "url": format!("{server}/delegations"),
        "status": what,
        "summary": summary,
        "delegation": d,
        "delegator": d.delegator,
        "delegate": d.delegate,
        "until": rfc3339(d.until),
        "reason": d.reason,
        "audience": people.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
    });
    let mut out = Vec::new();
    let mut push = |channel: &str, recipient: &str, to: Option<serde_json::Value>| {
        let key = format!("{}:delegation-{what}:{channel}:{recipient}", d.id);
        let mut doc = doc.clone();
        doc["delivery"] = json!(key);
        if let Some(to) = to {
            doc["to"] = to;
        }
        out.push(NotificationDraft {
            key,
            request_id: String::new(),
            event: Event::Delegation.as_str().into(),
            channel: channel.into(),
            recipient: recipient.into(),
            payload: doc.to_string(),
            created_at: now,
        });
    };
    for w in n
        .webhooks
        .iter()
        .filter(|w| config::wants(&w.events, Event::Delegation))
    {
        push(WEBHOOK, &w.name, None);
    }
    for s in n.slack.iter().filter(|s| config::wants(&s.events, Event::Delegation)) {
        push(SLACK, &s.name, None);
    }
    if n.email
        .as_ref()
        .is_some_and(|e| config::wants(&e.events, Event::Delegation))
    {
        let mut seen = std::collections::HashSet::new();
        for p in people {
            let Some(addr) = p.email.as_deref().map(str::trim).filter(|a| !a.is_empty()) else {
                continue;
            };
            if seen.insert(addr.to_ascii_lowercase()) {
                push(EMAIL, addr, Some(json!({"user": p.name, "email": addr})));
            }
        }
    }
    out
}
