//! Wire types of API v1, shared by the server and the client. Serde only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::decide::{Requirement, State, Status};

/// Where a request comes from: what the pipeline is, what it runs and who started it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// `github`, `gitlab`, `jenkins` or `generic`.
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub repository: String,
    #[serde(default, rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub commit: String,
    /// Who started the run.
    #[serde(default)]
    pub actor: String,
    /// Who re-ran it, where that differs from `actor`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub triggering_actor: String,
    /// The commit's author where known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit_author: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_attempt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_url: String,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub action: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `POST /api/v1/requests`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub context: Context,
    #[serde(default)]
    pub summary: String,
    /// `sha256:HEX` digests of what is being released.
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// Asks for a shorter timeout than the policy's; never a longer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Replays with the same key return the same request. Derived from the run identity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Change fields (`ticket`, `rollback`, …): those the matched rule requires must be
    /// here and match its patterns; others are kept as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// Break the glass: approved at once if the rule allows it and the requester is in
    /// its `break_glass.groups` (see docs/break-glass.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<crate::core::break_glass::BreakGlassAsk>,
    /// Wait without a runner: the platform holds the job, the server releases it on the
    /// outcome (see docs/gitlab-ci.md). The server fills in where from what it can trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::core::release::ReleaseAsk>,
}

/// One requirement of the matched rule, with the votes it has so far.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequirementView {
    pub group: String,
    pub count: u32,
    /// Everyone in the group when the request was opened.
    pub members: Vec<String>,
    /// Members whose approval counts towards this requirement.
    pub approved_by: Vec<String>,
    /// Members who may still vote (not the requester, not voted yet).
    pub may_vote: Vec<String>,
    pub met: bool,
    /// For a forge group, where its members come from (`github_team:org/slug`,
    /// `gitlab_group:path`); `members` is then the snapshot taken when the request opened,
    /// and membership is checked again with the forge at every vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The stage this requirement belongs to, for a rule with `stages`. Until its stage
    /// opens, `may_vote` is empty: its members are asked only then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// A vote as stored and shown.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VoteView {
    pub voter: String,
    /// `approve` or `deny`.
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: String,
    /// `token`, `policy` (automatic), `session` (web UI with a token sign-in), `sso`
    /// (web UI after single sign-on), `comment` (a PR/MR comment).
    pub via: String,
    /// When the voter last authenticated (single sign-on), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<String>,
    /// How they authenticated (the OpenID `amr` values), when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Where the vote was cast, e.g. the comment's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The identity provider's groups of the session the vote was cast in (SSO
    /// `groups_claim`), which `idp_group` requirements count by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idp_groups: Vec<String>,
    /// Whom the vote counted for under a delegation: `voter` voted for this person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

impl VoteView {
    /// `bob`, or `bob for alice` under a delegation.
    pub fn who(&self) -> String {
        match &self.on_behalf_of {
            Some(d) => format!("{} for {d}", self.voter),
            None => self.voter.clone(),
        }
    }
}

/// How a vote reached the server; kept with the vote, in its audit event and record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VoteMeta {
    /// `token`, `session`, `sso` or `comment`.
    pub via: String,
    /// Unix milliseconds of the voter's last authentication (SSO `auth_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The person this vote counts for under a delegation ("bob for alice": `alice`).
    /// Asked for by the voter on the way in (`--for`); set by the server to whom it counted as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// The groups the session's sign-in saw (`sso.groups_claim`); `None` outside SSO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_groups: Option<Vec<String>>,
    /// Unix ms of the sign-in that saw `idp_groups` (checked against `sso.max_group_age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_seen_at: Option<i64>,
}

impl VoteMeta {
    /// A vote cast through the API with a bearer token.
    pub fn token() -> VoteMeta {
        VoteMeta {
            via: "token".into(),
            ..Default::default()
        }
    }
}

/// Where a requester identity came from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RequesterSource {
    /// An OIDC token the server verified says so.
    VerifiedClaim,
    /// The forge's API says so (a commit's author or committer, a pull or merge
    /// request's author), asked by the server when the request opened.
    ForgeApi,
    /// The request body says so, unverified (a static pipeline token).
    Asserted,
    /// A `users:` entry of the server config has one of the other identities.
    Config,
}

/// One requester identity and where it came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequesterOrigin {
    /// In its normal form (`core::identity`); for `config`, the user's name.
    pub identity: String,
    pub source: RequesterSource,
    /// What said so: `context.actor`; `github commit author.login`, `github pull request
    /// #12 user.login`, `gitlab merge request !7 author.username`, …; for `config`, the
    /// identity that names the user.
    pub from: String,
    /// The value as given, where normalising changed it (`Alice <alice@example.com>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given: Option<String>,
}

/// A request as the API returns it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestView {
    pub id: String,
    pub status: crate::core::decide::Status,
    pub url: String,
    pub context: Context,
    pub summary: String,
    pub artifacts: Vec<String>,
    /// The change fields the request was opened with (absent when none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// Every identity that can never approve this request.
    pub requester: Vec<String>,
    /// Where each requester identity came from (absent for requests opened before it was kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requester_sources: Vec<RequesterOrigin>,
    pub opened_by: String,
    pub rule: String,
    pub policy_digest: String,
    pub requirements: Vec<RequirementView>,
    /// For a rule with `stages`, while pending: the stage that waits for approvals now
    /// (every stage before it is met; the ones after it are not open yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_stage: Option<String>,
    pub votes: Vec<VoteView>,
    pub created_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// Who or what decided, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_at: Option<String>,
    pub version: i64,
    /// The OIDC issuer whose token verified part of the context, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    /// The context fields that token verified (`repository`, `ref`, `labels.workflow_ref`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified_fields: Vec<String>,
    /// Given only to the pipeline that opened the request, in the answer to opening (or
    /// replaying) it: a bearer token good for this one request's wait, read, cancel,
    /// consume and record, so a gate outlives its short-lived OIDC token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_token: Option<String>,
    /// Under `approval_scope: run`: the request of the same run whose decision this one
    /// follows (approvers vote on that one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_by: Option<String>,
    /// The newer request that canceled this one (`supersede`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// The evidence checks' results, once they ran (absent before, and for a rule
    /// without checks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::core::decide::checks::CheckResult>,
    /// The job the platform holds for this request and releases on its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::core::release::Release>,
    /// Break-glass and review: their keys appear only on those requests.
    #[serde(flatten)]
    pub links: crate::core::break_glass::ReviewLinks,
}

impl RequestView {
    /// Everyone who may still vote, across all requirements, once each.
    pub fn approvers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.requirements {
            for m in &r.may_vote {
                if !out.contains(m) {
                    out.push(m.clone());
                }
            }
        }
        out
    }

    /// What is still needed, in words: "sre 1/2 (may vote: alice, bob)".
    pub fn needs(&self) -> String {
        needs_text(&self.requirements)
    }
}

/// What `requirements` still need, in words, as every client shows it:
/// `sre 1/2 (may vote: alice, bob); security 0/1 (may vote: carol)`; empty when all are met.
/// A staged requirement names its stage, and one whose stage is not open yet says so:
/// `stage security: security 0/1 (may vote: sam); stage release: release 0/1 (not open yet)`.
pub fn needs_text(requirements: &[RequirementView]) -> String {
    let open = open_stages(requirements);
    let parts: Vec<String> = requirements
        .iter()
        .filter(|r| !r.met)
        .map(|r| {
            let stage = r.stage.as_ref().map(|s| format!("stage {s}: ")).unwrap_or_default();
            if let Some(s) = &r.stage
                && !open.contains(&s.as_str())
            {
                return format!("{stage}{} {}/{} (not open yet)", r.group, r.approved_by.len(), r.count);
            }
            format!(
                "{stage}{} {}/{} (may vote: {})",
                r.group,
                r.approved_by.len(),
                r.count,
                if r.may_vote.is_empty() {
                    "nobody".to_string()
                } else {
                    r.may_vote.join(", ")
                }
            )
        })
        .collect();
    parts.join("; ")
}

/// The stages open in `requirements` as shown: the first, and each whose stages before it
/// are all met.
fn open_stages(requirements: &[RequirementView]) -> Vec<&str> {
    let mut open: Vec<&str> = Vec::new();
    let mut all_met = true;
    for (i, r) in requirements.iter().enumerate() {
        let Some(s) = r.stage.as_deref() else { continue };
        let starts = i == 0 || requirements[i - 1].stage.as_deref() != Some(s);
        if starts && !all_met {
            break;
        }
        if starts {
            open.push(s);
        }
        all_met &= r.met;
    }
    open
}

impl RequirementView {
    /// The requirements of a request as shown: `requirements` as snapshotted when it
    /// opened, who counts for each in `state`, and, while it is pending, who may still
    /// vote (members and escalated voters, not a requester, not anyone in `voted`, the
    /// people who cast a vote).
    pub fn of(state: &State, requirements: &[Requirement], voted: &[&str]) -> Vec<RequirementView> {
        let open = state.open_prefix();
        requirements
            .iter()
            .zip(state.assign())
            .enumerate()
            .map(|(i, (r, approved_by))| RequirementView {
                group: r.group.clone(),
                count: r.count,
                members: r.members.clone(),
                met: approved_by.len() as u32 >= r.count,
                stage: r.stage.clone(),
                // A stage not open yet asks nobody: its members are told when it opens.
                may_vote: if state.status == Status::Pending && i < open {
                    let mut may: Vec<String> = r.members.clone();
                    for x in &state.extra_voters {
                        if !may.contains(x) {
                            may.push(x.clone());
                        }
                    }
                    may.into_iter()
                        .filter(|m| !state.is_requester(m) && !voted.contains(&m.as_str()))
                        .collect()
                } else {
                    vec![]
                },
                approved_by,
                source: r.source.clone(),
            })
            .collect()
    }
}

/// `POST /api/v1/requests/{id}/approve|deny|cancel|consume`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// Consume only: the CI run consuming (GitLab's `CI_PIPELINE_ID`). A request whose
    /// `release` names a run is consumed only from it; with an OIDC token the token's
    /// verified run counts instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Vote for this person under their delegation to you (`gate approve --for alice`).
    /// Without it, a vote counts for you, or, when you may not vote on the request
    /// yourself, for someone whose delegation to you is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

/// The error shape of every failed call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// A public key records are signed with. Each entry is also a securesystemslib key
/// (`keyid`, `keytype`, `scheme`, `keyval`), so `SSlibKey.from_dict(k["keyid"], k)`
/// builds a verifier for our DSSE envelopes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublicKey {
    /// securesystemslib's keyid: hex SHA-256 of the canonical JSON of `keytype`,
    /// `scheme` and `keyval`; the `keyid` of the envelopes this key signs.
    pub keyid: String,
    pub algorithm: String,
    /// Raw 32-byte Ed25519 public key, base64.
    pub public_key: String,
    /// The same key as SubjectPublicKeyInfo PEM.
    pub pem: String,
    /// `ed25519`.
    #[serde(default)]
    pub keytype: String,
    /// `ed25519`.
    #[serde(default)]
    pub scheme: String,
    #[serde(default)]
    pub keyval: KeyVal,
    /// From when the key signs (RFC 3339); `null` for a key made before its creation
    /// time was recorded.
    #[serde(default)]
    pub not_before: Option<String>,
    /// When the key was rotated out and stopped signing (RFC 3339); `null` while it
    /// is the current key.
    #[serde(default)]
    pub not_after: Option<String>,
}

/// securesystemslib's `keyval` of an Ed25519 key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyVal {
    /// The raw 32-byte public key, hex.
    pub public: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Keys {
    pub keys: Vec<PublicKey>,
}

/// Result of checking the audit hash chain.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditVerify {
    pub ok: bool,
    pub events: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Request rows checked against their signed events.
    #[serde(default)]
    pub requests: i64,
    /// Requests whose row disagrees with their signed events (edited in the database).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tampered: Vec<TamperedRequest>,
}

/// A request whose stored row is not what its signed events say.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TamperedRequest {
    pub id: String,
    pub problem: String,
}

/// One audit event as exported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: String,
    pub request_id: String,
    pub kind: String,
    pub actor: String,
    pub data: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
    /// `at` in milliseconds since the epoch, as the hash covers it.
    #[serde(default)]
    pub at_ms: i64,
    /// The server's Ed25519 signature over `hash` (base64).
    #[serde(default)]
    pub sig: Option<String>,
}

/// One queued notification and where its delivery stands (`GET /api/v1/notifications`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NotificationView {
    pub id: String,
    /// The delivery id (`<request>:<event>:<channel>:<recipient>`), the same on every retry.
    pub delivery: String,
    pub request_id: String,
    pub event: String,
    pub channel: String,
    pub recipient: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    pub attempts: i64,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gave_up_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The document delivered (the webhook body as sent).
    pub payload: serde_json::Value,
}

/// `GET /api/v1/notifications`: the outbox, and a version to long-poll on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NotificationList {
    /// Changes whenever a notification is queued or attempted on the answering server;
    /// pass it back as `version` with `wait` to be answered at the next change.
    pub version: u64,
    pub notifications: Vec<NotificationView>,
}

/// `POST /api/v1/delegations`: while `delegator` is away, `to` votes for them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDelegation {
    /// The delegate: a configured user other than the delegator.
    pub to: String,
    /// The delegator; only an admin may name someone other than themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// When it ends, RFC 3339 (in the future).
    pub until: String,
    pub reason: String,
}

/// A delegation as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DelegationView {
    pub id: String,
    pub delegator: String,
    pub delegate: String,
    pub reason: String,
    pub created_at: String,
    pub created_by: String,
    pub until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// Whether votes count under it now.
    pub in_force: bool,
}

/// `GET /api/v1/delegations`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DelegationList {
    pub delegations: Vec<DelegationView>,
}

/// `POST /api/v1/admin/reload`: what the reload changed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadView {
    /// The policy digest before and after (equal when the policy did not change).
    pub old_policy_digest: String,
    pub policy_digest: String,
    /// How many users and pipelines are configured now.
    pub users: usize,
    pub pipelines: usize,
    /// Sections of gate.yaml that changed but only take effect at a restart.
    pub not_reloaded: Vec<String>,
}
