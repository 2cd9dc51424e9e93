//! Slack incoming webhooks: a Block Kit message rendered from the notification document.

use serde_json::{Value, json};

use super::{clip, field, title};

/// Escapes text for Slack `mrkdwn` (only `&`, `<` and `>` are special).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The Slack message for a notification document.
pub fn message(doc: &Value) -> Value {
    let event = field(doc, "event");
    let status = field(doc, "status");
    let url = field(doc, "url");
    let id = field(doc, "request_id");
    let ctx = &doc["context"];
    let icon = match (event, status) {
        ("opened" | "stage_opened", _) => ":raised_hand:",
        ("escalated", _) => ":rotating_light:",
        ("break_glass", _) => ":fire_extinguisher:",
        (_, "approved") => ":white_check_mark:",
        (_, "denied") => ":no_entry:",
        (_, "expired") => ":hourglass:",
        _ => ":heavy_minus_sign:",
    };
    let title = title(doc);
    let mut fields = Vec::new();
    let mut add = |name: &str, value: &str| {
        if !value.is_empty() {
            fields.push(json!({"type": "mrkdwn", "text": clip(&format!("*{name}*\n{}", esc(value)), 2000)}));
        }
    };
    add("Environment", field(doc, "environment"));
    add("Repository", field(doc, "repository"));
    add("Ref", ctx["ref"].as_str().unwrap_or(""));
    let commit = ctx["commit"].as_str().unwrap_or("");
    add("Commit", &commit.chars().take(12).collect::<String>());
    add("Requested by", &str_list(&doc["requester"]));
    add("Rule", field(doc, "rule"));
    add("Action", ctx["action"].as_str().unwrap_or(""));
    add("Status", status);
    let summary = field(doc, "summary");
    let mut lead = format!("<{}|{}>", esc(url), esc(id));
    if !summary.is_empty() {
        lead = format!("{}\n{lead}", esc(&clip(summary, 1500)));
    }
    if let Some(run) = ctx["run_url"].as_str().filter(|s| !s.is_empty()) {
        lead.push_str(&format!(" · <{}|pipeline run>", esc(run)));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&title, 150), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": lead}, "fields": fields.into_iter().take(10).collect::<Vec<_>>()}),
    ];
    let detail = match event {
        "opened" | "escalated" | "stage_opened" => {
            let needs = field(doc, "needs");
            format!(
                "*Still needed:* {}\n*Expires:* {}",
                esc(if needs.is_empty() { "nothing" } else { needs }),
                esc(field(doc, "expires_at"))
            )
        }
        _ => {
            let by = field(doc, "decided_by");
            let reason = field(doc, "reason");
            let mut t = format!("*Decided by:* {}", esc(if by.is_empty() { "unknown" } else { by }));
            if !reason.is_empty() {
                t.push_str(&format!("\n*Why:* {}", esc(&clip(reason, 1500))));
            }
            t
        }
    };
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": detail}}));
    let button = if matches!(event, "opened" | "escalated" | "stage_opened") {
        "Review and vote"
    } else {
        "View request"
    };
    let mut btn = json!({"type": "button", "text": {"type": "plain_text", "text": button}, "url": url, "action_id": "jitgate_open"});
    if matches!(event, "opened" | "escalated" | "stage_opened") {
        btn["style"] = json!("primary");
    }
    blocks.push(json!({"type": "actions", "elements": [btn]}));
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("jitgate · {} · delivery `{}`", esc(id), esc(field(doc, "delivery")))}]}));
    json!({
        "text": format!("{icon} {title} ({id}): {url}"),
        "blocks": blocks,
    })
}

fn str_list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// POSTs the message; Slack answers 200 `ok` on success.
pub async fn send(http: &reqwest::Client, url: &str, doc: &Value) -> Result<(), super::DeliveryError> {
    super::worker::deliver(http.post(url).json(&message(doc))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decided_message_says_who_and_why() {
        let doc = json!({
            "event": "decided", "status": "denied", "request_id": "req_1", "url": "http://g/requests/req_1",
            "environment": "production", "repository": "acme/app", "context": {"ref": "refs/heads/main", "commit": "4b825dc642cb6eb9a060e54bf8d69288fbee4904"},
            "requester": ["alice"], "rule": "production", "decided_by": "bob (deny)", "reason": "no <ticket> & no plan",
            "delivery": "req_1:decided:slack:rel",
        });
        let m = message(&doc);
        assert_eq!(m["blocks"][0]["type"], "header");
        assert_eq!(m["blocks"][0]["text"]["text"], "Denied: production of acme/app");
        let fields = m["blocks"][1]["fields"].as_array().unwrap();
        assert!(fields.iter().any(|f| f["text"] == "*Commit*\n4b825dc642cb"));
        let detail = m["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(detail.contains("*Decided by:* bob (deny)"), "{detail}");
        assert!(detail.contains("no &lt;ticket&gt; &amp; no plan"), "{detail}");
        assert_eq!(m["blocks"][3]["elements"][0]["url"], "http://g/requests/req_1");
        assert!(m["text"].as_str().unwrap().contains(":no_entry:"));
    }
}
