//! The read projection: a request as the API shows it, the machine's state of it, and
//! listings.

use super::error::Result;
use super::holder::is_opener;
use super::validate::requester_identities;
use super::{Doc, Engine, doc_of, forge_groups};
use crate::auth::Principal;
use crate::core::api::{RequestView, RequirementView, VoteMeta, VoteView};
use crate::core::decide::{State, Status, Vote};
use crate::core::duration::rfc3339;
use crate::store::{RequestRow, VoteRow};

impl Engine {
    pub fn view(&self, row: &RequestRow, votes: &[VoteRow]) -> Result<RequestView> {
        let doc = doc_of(row)?;
        let state = self.state(row, &doc, votes)?;
        let assigned = state.assign();
        let requirements = doc
            .requirements
            .iter()
            .zip(assigned)
            .map(|(r, approved_by)| RequirementView {
                group: r.group.clone(),
                count: r.count,
                members: r.members.clone(),
                met: approved_by.len() as u32 >= r.count,
                may_vote: if state.status == Status::Pending {
                    let mut may: Vec<String> = r.members.clone();
                    for x in &state.extra_voters {
                        if !may.contains(x) {
                            may.push(x.clone());
                        }
                    }
                    may.iter()
                        .filter(|m| !state.is_requester(m) && !votes.iter().any(|v| &&v.voter == m))
                        .cloned()
                        .collect()
                } else {
                    vec![]
                },
                approved_by,
                source: r.source.clone(),
            })
            .collect();
        Ok(RequestView {
            id: row.id.clone(),
            status: row.status,
            url: self.request_url(&row.id),
            context: doc.context,
            summary: doc.summary,
            artifacts: doc.artifacts,
            requester: doc.requesters,
            requester_sources: doc.requester_sources,
            opened_by: row.opened_by.clone(),
            rule: doc.rule.name,
            policy_digest: doc.policy_digest,
            requirements,
            votes: votes.iter().map(vote_view).collect(),
            created_at: rfc3339(row.created_at),
            expires_at: rfc3339(row.expires_at),
            decided_at: row.decided_at.map(rfc3339),
            decided_by: doc.decided_by,
            reason: doc.reason,
            approval_expires_at: row.approval_expires_at.map(rfc3339),
            consumed_at: row.consumed_at.map(rfc3339),
            version: row.version,
            verified_by: doc.verified.as_ref().map(|v| v.issuer.clone()),
            verified_fields: doc
                .verified
                .as_ref()
                .map(|v| v.fields.keys().cloned().collect())
                .unwrap_or_default(),
            holder_token: None,
        })
    }

    /// The machine's view of a request. The requester set is widened with today's user
    /// mapping too, so a login added to the config later still cannot approve its own run.
    pub(super) fn state(&self, row: &RequestRow, doc: &Doc, votes: &[VoteRow]) -> Result<State> {
        let status = row.status;
        let mut requesters = doc.requesters.clone();
        for ident in requester_identities(doc) {
            for u in self.config.users_for_identity(&ident) {
                if !requesters.contains(&u) {
                    requesters.push(u);
                }
            }
        }
        let mut requirements = doc.requirements.clone();
        forge_groups::counted_forge_members(&mut requirements, votes);
        Ok(State {
            status,
            requesters,
            requirements,
            votes: votes
                .iter()
                .filter(|v| v.via != "policy")
                .map(|v| Vote {
                    voter: v.voter.clone(),
                    approve: v.approve,
                    reason: v.reason.clone(),
                    at: v.at,
                })
                .collect(),
            expires_at: row.expires_at,
            approval_ttl_ms: doc.approval_ttl_ms,
            approval_expires_at: row.approval_expires_at,
            extra_voters: doc.escalated_voters(),
            next_escalation: doc.next_escalation(row),
            window_open: true,
        })
    }

    /// Requests the caller may act on now: for an approver, pending ones where their vote
    /// would count; for a pipeline, the pending ones it opened.
    pub async fn inbox(&self, who: &Principal, status: Status, limit: i64) -> Result<Vec<RequestView>> {
        let all = self.listing(who, status, limit).await?;
        Ok(all.into_iter().filter(|(_, mine)| *mine).map(|(v, _)| v).collect())
    }

    /// Every request in `status` (oldest first, at most `limit`), each with whether it is
    /// in `who`'s inbox. Two queries, whatever the number of requests.
    pub async fn listing(&self, who: &Principal, status: Status, limit: i64) -> Result<Vec<(RequestView, bool)>> {
        let rows = self.store.list(Some(status), limit).await?;
        let mut all_votes = self.store.votes_by_status(status).await?;
        let mut out = Vec::new();
        for row in rows {
            let votes = all_votes.remove(&row.id).unwrap_or_default();
            let doc = doc_of(&row)?;
            let mine = match who {
                Principal::Pipeline { .. } => is_opener(who, &row, &doc),
                Principal::Approver(u) => {
                    status != Status::Pending || {
                        let st = self.state(&row, &doc, &votes)?;
                        st.is_eligible(u) && !votes.iter().any(|v| &v.voter == u)
                    }
                }
            };
            out.push((self.view(&row, &votes)?, mine));
        }
        Ok(out)
    }
}

pub(super) fn vote_view(v: &VoteRow) -> VoteView {
    let meta: VoteMeta = v
        .meta
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    VoteView {
        voter: v.voter.clone(),
        decision: if v.approve { "approve" } else { "deny" }.into(),
        reason: v.reason.clone(),
        at: rfc3339(v.at),
        via: v.via.clone(),
        auth_time: meta.auth_time.map(rfc3339),
        amr: meta.amr,
        source: meta.source,
    }
}
