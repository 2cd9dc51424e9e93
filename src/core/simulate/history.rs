//! A request's history rebuilt from its audit events, as `gate audit export` prints them:
//! what it asked (the `created` event: its context, fields, break-glass, the change a
//! review is of), the human votes on it, the evidence checks' answers, the cancel or
//! consume that ended it, and what the old policy made of it.

use std::collections::BTreeMap;

use crate::core::api::{AuditEvent, Context};
use crate::core::break_glass::BreakGlassInfo;
use crate::core::decide::checks::CheckResult;
use crate::core::decide::{Requirement, Status};

/// One vote a person cast (automatic votes are the old policy's, not replayed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanVote {
    /// The human who cast it.
    pub by: String,
    /// The person it counted as under a delegation ("bob for alice": alice).
    pub for_whom: Option<String>,
    pub approve: bool,
    pub reason: Option<String>,
    pub at: i64,
    /// The forge, SCIM or IdP groups (the old policy's names) the vote was counted in,
    /// read live when it was cast.
    pub forge_groups: Vec<String>,
}

impl HumanVote {
    /// Who the vote counts as.
    pub fn counted(&self) -> &str {
        self.for_whom.as_deref().unwrap_or(&self.by)
    }
}

/// What a person or the pipeline did to a request, replayed at its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Vote(HumanVote),
    /// A cancel (or a supersede) at this time.
    Cancel(i64),
    /// The approval used at this time.
    Consume(i64),
}

/// One request of the period, as its events tell it.
#[derive(Debug, Clone)]
pub struct History {
    pub id: String,
    /// When it opened (ms).
    pub opened: i64,
    pub context: Context,
    pub fields: BTreeMap<String, String>,
    pub requesters: Vec<String>,
    /// The old rule's name and requirements, as snapshotted at opening.
    pub rule: String,
    pub requirements: Vec<Requirement>,
    /// The old deadline (ms): the rule's timeout or the shorter one the pipeline asked.
    pub expires_at: i64,
    /// Votes, cancels and consumes in the order the log holds them.
    pub steps: Vec<Step>,
    /// Where the old policy left it, and when it got there.
    pub status: Status,
    pub decided_at: Option<i64>,
    /// How the old policy decided it by itself, when it did: the `via` of its automatic
    /// vote (`policy` for a rule's `decision`, `check`, `break_glass`, `scope`).
    pub automatic: Option<String>,
    /// The break-glass it was opened with (`gate request --break-glass`).
    pub break_glass: Option<BreakGlassInfo>,
    /// For the review of a break-glass change: that change's id.
    pub review_of: Option<String>,
    /// The answers the evidence checks gave (the `check` events), and when they were
    /// recorded.
    pub checks: Vec<CheckResult>,
    pub checks_at: Option<i64>,
}

/// An event that cannot be read as part of a request's history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event #{seq} ({kind}): {why}")]
pub struct BadEvent {
    pub seq: i64,
    pub kind: String,
    pub why: String,
}

/// The requests opened at or after `since` (ms), in the order they opened, rebuilt from
/// `events` (any order; only their own events count). Events of requests opened before
/// `since`, and events that belong to no request (delegations, reloads), are skipped.
pub fn histories(events: &[AuditEvent], since: i64) -> Result<Vec<History>, BadEvent> {
    let mut sorted: Vec<&AuditEvent> = events.iter().collect();
    sorted.sort_by_key(|e| e.seq);
    let mut out: Vec<History> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for e in sorted {
        let bad = |why: String| BadEvent {
            seq: e.seq,
            kind: e.kind.clone(),
            why,
        };
        if e.kind == "created" {
            if index.contains_key(e.request_id.as_str()) {
                return Err(bad(format!("request {} is created twice", e.request_id)));
            }
            if e.at_ms < since {
                continue;
            }
            let field = |name: &str| e.data.get(name).cloned().unwrap_or(serde_json::Value::Null);
            let context: Context = serde_json::from_value(field("context"))
                .map_err(|err| bad(format!("`context` does not parse: {err}")))?;
            let requirements: Vec<Requirement> = serde_json::from_value(field("requirements"))
                .map_err(|err| bad(format!("`requirements` does not parse: {err}")))?;
            let requesters: Vec<String> = serde_json::from_value(field("requester"))
                .map_err(|err| bad(format!("`requester` does not parse: {err}")))?;
            let fields: BTreeMap<String, String> = match field("fields") {
                serde_json::Value::Null => BTreeMap::new(),
                v => serde_json::from_value(v).map_err(|err| bad(format!("`fields` does not parse: {err}")))?,
            };
            let rule = e.data["rule"]
                .as_str()
                .ok_or_else(|| bad("no `rule`".into()))?
                .to_string();
            let expires_at = e.data["expires_at"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_millisecond())
                .ok_or_else(|| bad("`expires_at` is not an RFC 3339 time".into()))?;
            let break_glass: Option<BreakGlassInfo> = match field("break_glass") {
                serde_json::Value::Null => None,
                v => {
                    Some(serde_json::from_value(v).map_err(|err| bad(format!("`break_glass` does not parse: {err}")))?)
                }
            };
            index.insert(&e.request_id, out.len());
            out.push(History {
                id: e.request_id.clone(),
                opened: e.at_ms,
                context,
                fields,
                requesters,
                rule,
                requirements,
                expires_at,
                steps: vec![],
                status: Status::Pending,
                decided_at: None,
                automatic: None,
                break_glass,
                review_of: e.data["review_of"].as_str().map(str::to_string),
                checks: vec![],
                checks_at: None,
            });
            continue;
        }
        let Some(&i) = index.get(e.request_id.as_str()) else {
            continue;
        };
        let h = &mut out[i];
        match e.kind.as_str() {
            "vote" => {
                let approve = match e.data["decision"].as_str() {
                    Some("approve") => true,
                    Some("deny") => false,
                    other => return Err(bad(format!("unknown decision {other:?}"))),
                };
                if e.data["automatic"] == serde_json::Value::Bool(true) {
                    h.automatic = Some(e.data["via"].as_str().unwrap_or("policy").to_string());
                    continue;
                }
                let strings = |v: &serde_json::Value| -> Vec<String> {
                    v.as_array()
                        .map(|a| a.iter().filter_map(|g| g.as_str().map(str::to_string)).collect())
                        .unwrap_or_default()
                };
                h.steps.push(Step::Vote(HumanVote {
                    by: e.actor.clone(),
                    for_whom: e.data["on_behalf_of"].as_str().map(str::to_string),
                    approve,
                    reason: e.data["reason"].as_str().map(str::to_string),
                    at: e.at_ms,
                    forge_groups: strings(&e.data["forge_groups"]),
                }));
            }
            "approved" | "denied" | "expired" => {
                h.status = Status::parse(&e.kind).unwrap_or(Status::Pending);
                h.decided_at.get_or_insert(e.at_ms);
            }
            "check" => {
                let r: CheckResult = serde_json::from_value(e.data.clone())
                    .map_err(|err| bad(format!("the check result does not parse: {err}")))?;
                h.checks.push(r);
                h.checks_at.get_or_insert(e.at_ms);
            }
            "canceled" => {
                h.status = Status::Canceled;
                h.steps.push(Step::Cancel(e.at_ms));
            }
            "consumed" => {
                h.status = Status::Consumed;
                h.steps.push(Step::Consume(e.at_ms));
            }
            // Refused attempts do not record the decision tried; escalations and stages
            // opening are the old rule's, and the new rule's own are replayed instead.
            _ => {}
        }
    }
    Ok(out)
}
