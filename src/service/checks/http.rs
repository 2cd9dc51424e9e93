//! The `http` check: the request POSTed as JSON, signed like outgoing webhooks
//! (`X-Jitgate-Signature: sha256=<hex HMAC-SHA256 of the body>`), and the answer read
//! strictly. No answer within the timeout, or a non-2xx status, is an abstention (the
//! service did not decide); an answer that is not of the documented shape, or a request
//! that could not be made (refused, unreachable, no secret), is an error. Neither approves.

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::{Doc, Engine};
use crate::core::decide::checks::{Answer, List};
use crate::core::policy::checks::HttpCheck;
use crate::store::RequestRow;

/// The most of an answer that is read.
const MAX_BODY: usize = 64 * 1024;
/// The most of an answer's reason that is kept.
const MAX_REASON: usize = 1000;

/// The answer: `decision` is required and one of three; other keys are ignored.
#[derive(Deserialize)]
struct Reply {
    decision: String,
    #[serde(default)]
    reason: Option<String>,
}

impl Engine {
    pub(super) async fn http_check(
        &self,
        row: &RequestRow,
        doc: &Doc,
        h: &HttpCheck,
        list: List,
        index: usize,
    ) -> (Answer, String, Value) {
        let timeout = h.timeout();
        let mut evidence = json!({"url": h.url});
        let Some(secret) = std::env::var(&h.secret_env).ok().filter(|s| !s.is_empty()) else {
            let why = format!(
                "environment variable `{}` (secret_env) is not set on the server",
                h.secret_env
            );
            return (Answer::Error, why, evidence);
        };
        let body = json!({
            "id": row.id,
            "url": self.request_url(&row.id),
            "rule": doc.rule.name,
            "check": {"list": list, "index": index},
            "context": doc.context,
            "artifacts": doc.artifacts,
            "fields": doc.fields,
            "summary": doc.summary,
            "requester": doc.requesters,
        })
        .to_string();
        let sent = async {
            let client = reqwest::Client::builder()
                .timeout(timeout.as_std())
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
                .build()?;
            let mut resp = client
                .post(&h.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    "X-Jitgate-Signature",
                    crate::notify::webhook::signature(secret.as_bytes(), body.as_bytes()),
                )
                .header("X-Jitgate-Event", "check")
                .header("X-Jitgate-Delivery", format!("{}/{}/{index}", row.id, list.as_str()))
                .header(
                    "X-Jitgate-Timestamp",
                    (crate::core::duration::now_ms() / 1000).to_string(),
                )
                .body(body.clone())
                .send()
                .await?;
            let status = resp.status();
            let mut bytes = Vec::new();
            let mut too_big = false;
            while let Some(chunk) = resp.chunk().await? {
                if bytes.len() + chunk.len() > MAX_BODY {
                    too_big = true;
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, bytes, too_big))
        };
        let (status, bytes, too_big) = match sent.await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                evidence["timeout"] = json!(timeout);
                return (Answer::Abstain, format!("timed out after {timeout}"), evidence);
            }
            Err(e) => {
                let why = format!("the request failed: {}", clean(&e.to_string()));
                return (Answer::Error, why, evidence);
            }
        };
        evidence["status"] = json!(status.as_u16());
        if !too_big {
            evidence["response_sha256"] = json!(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))));
        }
        if !status.is_success() {
            // The service is down or refuses to decide: nothing was said either way.
            return (Answer::Abstain, format!("answered HTTP {}", status.as_u16()), evidence);
        }
        if too_big {
            return (Answer::Error, format!("the answer is over {MAX_BODY} bytes"), evidence);
        }
        let reply: Reply = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                let why = format!("the answer is not {{\"decision\": …, \"reason\": …}}: {e}");
                return (Answer::Error, why, evidence);
            }
        };
        let reason = reply.reason.as_deref().map(clean).unwrap_or_default();
        evidence["decision"] = json!(reply.decision);
        evidence["reason"] = json!(reason);
        let answer = match reply.decision.as_str() {
            "approve" => Answer::Approve,
            "deny" => Answer::Deny,
            "abstain" => Answer::Abstain,
            other => {
                let why = format!("`decision` must be approve, deny or abstain, not {:?}", clean(other));
                return (Answer::Error, why, evidence);
            }
        };
        if answer == Answer::Deny && reason.is_empty() {
            // A deny needs a reason, from a service as from a person.
            return (Answer::Error, "answered deny without a reason".into(), evidence);
        }
        let reason = if reason.is_empty() {
            format!("answered {}", answer.as_str())
        } else {
            reason
        };
        (answer, reason, evidence)
    }
}

/// A reason from outside, made safe to show: control characters dropped, length bounded.
fn clean(s: &str) -> String {
    let s: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(MAX_REASON)
        .collect();
    s.trim().to_string()
}
