//! Audit events to a Splunk HTTP Event Collector: one `POST` per event of
//! `{"time", "host", "source", "sourcetype", "event"}` with `Authorization: Splunk <token>`.
//! Delivered means a 2xx answer whose body is Splunk's `{"code": 0}`; anything else is a
//! failed attempt, retried like every other channel's.

use serde_json::{Value, json};

use super::DeliveryError;
use super::config::Hec as Config;
use crate::store::NotificationRow;

/// One configured collector, its token resolved.
pub struct Sender {
    endpoint: String,
    token: String,
    host: String,
    source: String,
    sourcetype: String,
    index: Option<String>,
}

/// `{url}/services/collector/event`, unless `url` already names a collector endpoint.
pub fn endpoint(url: &str) -> String {
    if url.contains("/services/collector") {
        url.to_string()
    } else {
        format!("{}/services/collector/event", url.trim_end_matches('/'))
    }
}

impl Sender {
    pub fn new(c: &Config, token: String) -> Sender {
        Sender {
            endpoint: endpoint(&c.url),
            token,
            host: c.host.clone().unwrap_or_else(super::local_hostname),
            source: c.source.clone().unwrap_or_else(|| "jitgate".into()),
            sourcetype: c.sourcetype.clone().unwrap_or_else(|| "_json".into()),
            index: c.index.clone(),
        }
    }

    /// The HEC event of one queued audit event: its time is when the event happened.
    pub fn body(&self, row: &NotificationRow) -> Result<Value, DeliveryError> {
        let event: Value = serde_json::from_str(&row.payload).map_err(DeliveryError::Payload)?;
        let mut body = json!({
            "time": row.created_at as f64 / 1000.0,
            "host": self.host,
            "source": self.source,
            "sourcetype": self.sourcetype,
            "event": event,
        });
        if let Some(i) = &self.index {
            body["index"] = json!(i);
        }
        Ok(body)
    }

    pub async fn send(&self, http: &reqwest::Client, row: &NotificationRow) -> Result<(), DeliveryError> {
        let body = self.body(row)?;
        let resp = http
            .post(&self.endpoint)
            .header(reqwest::header::AUTHORIZATION, format!("Splunk {}", self.token))
            .json(&body)
            .send()
            .await
            .map_err(DeliveryError::Transport)?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let code = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_i64));
        let body = super::clip(text.trim(), 200);
        if !status.is_success() {
            return Err(DeliveryError::Status {
                status: status.as_u16(),
                body,
            });
        }
        match code {
            Some(0) => Ok(()),
            _ => Err(DeliveryError::HecAnswer { body }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_event_endpoint_unless_named() {
        assert_eq!(endpoint("https://s:8088"), "https://s:8088/services/collector/event");
        assert_eq!(endpoint("https://s:8088/"), "https://s:8088/services/collector/event");
        assert_eq!(
            endpoint("https://s/splunk/services/collector/event/1.0"),
            "https://s/splunk/services/collector/event/1.0"
        );
    }
}
