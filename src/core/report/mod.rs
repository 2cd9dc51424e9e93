//! The auditor's change report: one row per request decided in a period, computed from
//! the signed records alone (so anyone holding the records can compute it again, which
//! is what `gate verify --bundle` does), and a summary of the rows. Pure: the records,
//! the period and `now` in, the report out. Rendering is in `render.rs`.

pub mod break_glass;
pub mod complete;
mod period;
pub mod render;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use period::{Period, PeriodError};

use crate::core::duration::rfc3339;

/// The JSON shape's version (`format` in the document): bumped when a field changes meaning.
pub const FORMAT: &str = "jitgate-change-report/v1";

/// The report as served (`GET /api/v1/reports/changes?format=json`) and bundled.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub format: String,
    /// The period, `[from, to)`, RFC 3339.
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    pub generated_at: String,
    pub rows: Vec<Row>,
    pub summary: Summary,
}

/// One decided request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub request_id: String,
    pub environment: String,
    pub repository: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    pub artifacts: Vec<String>,
    /// Everyone who may never approve this change, and where the server learned it.
    pub requesters: Vec<Requester>,
    /// The OIDC issuer whose verified token opened the request; `None`: a static token.
    pub verified_by: Option<String>,
    /// The context fields that token vouched for.
    pub verified_fields: Vec<String>,
    pub votes: Vec<Vote>,
    pub separation_of_duties: Separation,
    pub rule: String,
    pub policy_digest: String,
    pub opened_at: String,
    pub decided_at: String,
    pub time_to_decision_ms: i64,
    /// The record's outcome (`approved`, `consumed`, `denied`, `expired`, `canceled`, …):
    /// a string, so outcomes added later slot in.
    pub outcome: String,
    /// `automatic` (the policy decided), `human`, `timer` (expired) or `canceled`.
    pub decided_how: String,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    /// Hex SHA-256 of the stored signed record (the DSSE envelope's bytes).
    pub record_digest: String,
    /// A change approved by break-glass: who, why, and its review's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<break_glass::BreakGlassRow>,
    /// A review request: the break-glass change it reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_of: Option<String>,
}

/// One requester identity and its source: `verified_claim` (an OIDC token the server
/// verified), `forge_api`, `asserted` (claimed by the pipeline, unverified), `config`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Requester {
    pub identity: String,
    pub source: String,
    pub from: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Vote {
    pub voter: String,
    /// `approve` or `deny`.
    pub decision: String,
    pub at: String,
    /// How it reached the server: `token`, `session`, `sso`, `comment`, `policy`.
    pub via: String,
    /// The person the voter stood in for (a delegation), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Separation of duties, computed from the record: no requester approved (nor was
/// stood in for), and no person counted twice.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Separation {
    pub held: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub changes: usize,
    pub by_outcome: BTreeMap<String, usize>,
    pub by_environment: BTreeMap<String, usize>,
    /// Decided by the policy without a person.
    pub automatic: usize,
    /// Decided by people's votes.
    pub human: usize,
    /// Expired with no decision, or canceled.
    pub undecided: usize,
    /// Nearest-rank median and 90th percentile of the time to decision, over every row.
    pub median_time_to_decision_ms: Option<i64>,
    pub p90_time_to_decision_ms: Option<i64>,
    pub separation_violations: Vec<String>,
    pub expired: Vec<Exception>,
    pub denied: Vec<Exception>,
    /// Every policy version (digest) that decided a change, in the order it first appeared.
    pub policies: Vec<PolicyVersion>,
    /// Changes approved by break-glass, each with its review's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub break_glass: Vec<break_glass::BreakGlassChange>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Exception {
    pub request_id: String,
    pub environment: String,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyVersion {
    pub digest: String,
    /// When the first request under it opened, and the last.
    pub first_seen: String,
    pub last_seen: String,
    pub changes: usize,
}

/// Why a record cannot become a row.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("record of {0}: not a DSSE envelope with a JSON statement")]
    Malformed(String),
    #[error("record of {id}: {field} is not an RFC 3339 time")]
    Time { id: String, field: &'static str },
}

/// The statement inside an envelope, without checking its signature (callers that need
/// one use `core::audit::record::open`).
pub fn statement_of(envelope: &str) -> Option<Value> {
    let env: Value = serde_json::from_str(envelope).ok()?;
    let payload = B64
        .decode(env["payloadType"].as_str().and(env["payload"].as_str())?)
        .ok()?;
    serde_json::from_slice(&payload).ok()
}

fn string(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn opt(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Milliseconds of an RFC 3339 time (as rows hold them), to compare with event times.
pub fn ms_of(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

/// The normal form identities are compared in (NFKC caseless), or the lowercase text
/// when it is not an identity at all.
fn normal(s: &str) -> String {
    crate::core::identity::Identity::parse(s)
        .map(|i| i.as_str().to_string())
        .unwrap_or_else(|_| s.to_lowercase())
}

/// The row of one stored record (its envelope text, as stored).
pub fn row_of(request_id: &str, envelope: &str) -> Result<Row, ReportError> {
    let st = statement_of(envelope).ok_or_else(|| ReportError::Malformed(request_id.to_string()))?;
    let p = &st["predicate"];
    let req = &p["request"];
    let ctx = &req["context"];
    let id = string(&req["id"]);
    let opened_at = string(&req["created_at"]);
    let decided_at = string(&p["outcome"]["decided_at"]);
    let time = |s: &str, field| ms_of(s).ok_or(ReportError::Time { id: id.clone(), field });
    let time_to_decision_ms = time(&decided_at, "outcome.decided_at")? - time(&opened_at, "request.created_at")?;
    let mut requesters: Vec<Requester> = req["requester_sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| Requester {
                    identity: string(&o["identity"]),
                    source: string(&o["source"]),
                    from: string(&o["from"]),
                })
                .collect()
        })
        .unwrap_or_default();
    for r in strings(&req["requester"]) {
        if !requesters.iter().any(|q| q.identity == r) {
            requesters.push(Requester {
                identity: r,
                source: "unknown".into(),
                from: String::new(),
            });
        }
    }
    let votes: Vec<Vote> = p["votes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| Vote {
                    voter: string(&v["voter"]),
                    decision: string(&v["decision"]),
                    at: string(&v["at"]),
                    via: string(&v["via"]),
                    on_behalf_of: opt(&v["on_behalf_of"]),
                    reason: opt(&v["reason"]),
                })
                .collect()
        })
        .unwrap_or_default();
    let outcome = string(&p["outcome"]["status"]);
    let decided_by = opt(&p["outcome"]["decided_by"]);
    let (bg, review_of) = break_glass::of(p);
    let decided_how = if bg.is_some() {
        "break_glass"
    } else if votes.iter().any(|v| v.via == "policy") {
        "automatic"
    } else if outcome == "expired" && !votes.iter().any(|v| v.decision == "approve") {
        "timer"
    } else if outcome == "canceled" {
        "canceled"
    } else {
        "human"
    };
    let verified = &req["verified_claims"];
    Ok(Row {
        request_id: id.clone(),
        environment: string(&ctx["environment"]),
        repository: string(&ctx["repository"]),
        git_ref: string(&ctx["ref"]),
        commit: string(&ctx["commit"]),
        artifacts: subject_artifacts(&st),
        separation_of_duties: separation(&requesters, &votes),
        requesters,
        verified_by: opt(&verified["issuer"]),
        verified_fields: verified["fields"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        votes,
        rule: string(&p["policy"]["rule"]),
        policy_digest: string(&p["policy"]["digest"]),
        opened_at,
        decided_at,
        time_to_decision_ms,
        outcome,
        decided_how: decided_how.into(),
        decided_by,
        reason: opt(&p["outcome"]["reason"]),
        record_digest: hex::encode(Sha256::digest(envelope.as_bytes())),
        break_glass: bg,
        review_of,
    })
}

/// The artifacts a record names: its `sha256` subjects, as `sha256:HEX`.
fn subject_artifacts(st: &Value) -> Vec<String> {
    st["subject"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["digest"]["sha256"].as_str().map(|h| format!("sha256:{h}")))
                .collect()
        })
        .unwrap_or_default()
}

/// Separation of duties from what the record says: every approving person (and whoever
/// they stood in for) is none of the requesters, and each counts once.
pub fn separation(requesters: &[Requester], votes: &[Vote]) -> Separation {
    let req: Vec<String> = requesters.iter().map(|r| normal(&r.identity)).collect();
    let approvals: Vec<&Vote> = votes
        .iter()
        .filter(|v| v.decision == "approve" && v.via != "policy")
        .collect();
    let mut problems = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for v in &approvals {
        let person = v.on_behalf_of.as_deref().unwrap_or(&v.voter);
        if req.contains(&normal(&v.voter)) {
            problems.push(format!("{} approved but is a requester", v.voter));
        }
        if let Some(o) = &v.on_behalf_of
            && req.contains(&normal(o))
        {
            problems.push(format!("{} approved for {o}, a requester", v.voter));
        }
        let key = normal(person);
        if seen.contains(&key) {
            problems.push(format!("{person} counted twice"));
        }
        seen.push(key);
    }
    if !problems.is_empty() {
        return Separation {
            held: false,
            detail: problems.join("; "),
        };
    }
    let names: Vec<String> = requesters.iter().map(|r| r.identity.clone()).collect();
    let detail = if approvals.is_empty() {
        if votes.iter().any(|v| v.via == "policy") {
            "no person approved: the policy decided".to_string()
        } else {
            "no approvals".to_string()
        }
    } else {
        format!(
            "{} approver(s) ({}), none of the requesters ({})",
            approvals.len(),
            approvals
                .iter()
                .map(|v| match &v.on_behalf_of {
                    Some(o) => format!("{} for {o}", v.voter),
                    None => v.voter.clone(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            if names.is_empty() {
                "none named".to_string()
            } else {
                names.join(", ")
            }
        )
    };
    Separation { held: true, detail }
}

/// The nearest-rank `p`-th percentile (0 < p <= 100) of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The report of the rows decided in `period` (and `environment`, if given): sorted by
/// decision time then id, with their summary. Rows outside are dropped, so a caller may
/// pass more than the period holds.
pub fn build(rows: Vec<Row>, period: &Period, environment: Option<&str>, now: i64) -> Report {
    let mut rows: Vec<(i64, Row)> = rows
        .into_iter()
        .filter_map(|r| ms_of(&r.decided_at).map(|t| (t, r)))
        .filter(|(t, r)| period.contains(*t) && environment.is_none_or(|e| r.environment == e))
        .collect();
    rows.sort_by(|a, b| (a.0, &a.1.request_id).cmp(&(b.0, &b.1.request_id)));
    let mut rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    break_glass::link_reviews(&mut rows);
    Report {
        format: FORMAT.into(),
        from: rfc3339(period.from),
        to: rfc3339(period.to),
        environment: environment.map(str::to_string),
        generated_at: rfc3339(now),
        summary: summarise(&rows),
        rows,
    }
}

/// The summary of `rows`.
pub fn summarise(rows: &[Row]) -> Summary {
    let mut s = Summary {
        changes: rows.len(),
        ..Default::default()
    };
    let mut times: Vec<i64> = Vec::new();
    for r in rows {
        *s.by_outcome.entry(r.outcome.clone()).or_default() += 1;
        *s.by_environment.entry(r.environment.clone()).or_default() += 1;
        match r.decided_how.as_str() {
            "automatic" => s.automatic += 1,
            "human" => s.human += 1,
            // Listed on their own (`break_glass`), with their review.
            "break_glass" => {}
            _ => s.undecided += 1,
        }
        times.push(r.time_to_decision_ms);
        if !r.separation_of_duties.held {
            s.separation_violations.push(r.request_id.clone());
        }
        let exception = || Exception {
            request_id: r.request_id.clone(),
            environment: r.environment.clone(),
            reason: r.reason.clone(),
        };
        match r.outcome.as_str() {
            "expired" => s.expired.push(exception()),
            "denied" => s.denied.push(exception()),
            _ => {}
        }
        let opened = ms_of(&r.opened_at).unwrap_or(0);
        match s.policies.iter_mut().find(|p| p.digest == r.policy_digest) {
            Some(p) => {
                p.changes += 1;
                if opened < ms_of(&p.first_seen).unwrap_or(i64::MAX) {
                    p.first_seen = r.opened_at.clone();
                }
                if opened > ms_of(&p.last_seen).unwrap_or(i64::MIN) {
                    p.last_seen = r.opened_at.clone();
                }
            }
            None => s.policies.push(PolicyVersion {
                digest: r.policy_digest.clone(),
                first_seen: r.opened_at.clone(),
                last_seen: r.opened_at.clone(),
                changes: 1,
            }),
        }
    }
    s.policies
        .sort_by_key(|p| (ms_of(&p.first_seen).unwrap_or(0), p.digest.clone()));
    times.sort_unstable();
    s.median_time_to_decision_ms = percentile(&times, 50);
    s.p90_time_to_decision_ms = percentile(&times, 90);
    s.break_glass = break_glass::changes(rows);
    s
}

#[cfg(test)]
mod tests;
