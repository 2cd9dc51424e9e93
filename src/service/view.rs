//! The read projection: a request as the API shows it, the machine's state of it, and
//! listings.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

use super::error::{AppError, Result};
use super::holder::is_opener;
use super::read::Reach;
use super::validate::requester_identities;
use super::{Doc, Engine, doc_of, forge_groups};
use crate::auth::Principal;
use crate::auth::config::Role;
use crate::core::api::{RequestView, RequirementView, VoteMeta, VoteView};
use crate::core::decide::{State, Status, Vote};
use crate::core::duration::rfc3339;
use crate::store::{HistoryFilter, Position, RequestRow, VoteRow};

impl Engine {
    pub fn view(&self, row: &RequestRow, votes: &[VoteRow]) -> Result<RequestView> {
        let doc = doc_of(row)?;
        let state = self.state(row, &doc, votes)?;
        let voted: Vec<&str> = votes.iter().map(|v| v.voter.as_str()).collect();
        let requirements = RequirementView::of(&state, &doc.requirements, &voted);
        Ok(RequestView {
            id: row.id.clone(),
            status: row.status,
            url: self.request_url(&row.id),
            context: doc.context,
            summary: doc.summary,
            artifacts: doc.artifacts,
            fields: doc.fields,
            requester: doc.requesters,
            requester_sources: doc.requester_sources,
            opened_by: row.opened_by.clone(),
            rule: doc.rule.name,
            policy_digest: doc.policy_digest,
            requirements,
            open_stage: (row.status == Status::Pending).then(|| state.waiting_stage()).flatten(),
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
            release: doc.release,
            links: super::break_glass::links(
                row,
                doc.kind,
                doc.break_glass,
                doc.review_of,
                doc.rule.escalate.first().map(|e| e.after.millis()),
                !doc.escalations.is_empty(),
            ),
            covered_by: doc.covered_by,
            superseded_by: doc.superseded_by,
            checks: doc.checks,
        })
    }

    /// The machine's view of a request. The requester set is widened with today's user
    /// mapping too, so a login added to the config later still cannot approve its own run.
    pub(super) fn state(&self, row: &RequestRow, doc: &Doc, votes: &[VoteRow]) -> Result<State> {
        let status = row.status;
        let mut requesters = doc.requesters.clone();
        for ident in requester_identities(doc) {
            for u in self.config().users_for_identity(&ident) {
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
                .filter(|v| v.via != "policy" && v.via != "break_glass" && v.via != crate::core::scope::VIA)
                .map(|v| {
                    let by = forge_groups::on_behalf_of(v);
                    Vote {
                        voter: by.clone().unwrap_or_else(|| v.voter.clone()),
                        approve: v.approve,
                        reason: v.reason.clone(),
                        at: v.at,
                        by: by.map(|_| v.voter.clone()),
                    }
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
    /// would count; for a pipeline, the pending ones it opened. Oldest first, at most
    /// `limit`, resuming after `after`; with the position of the last one when more follow.
    ///
    /// The caller's filter applies before the limit: the store is read in batches, in
    /// order, until `limit` requests of the caller's are found (and one more, so a next
    /// page is announced only when it has something on it).
    pub async fn inbox(
        &self,
        who: &Principal,
        status: Status,
        after: Option<Position>,
        limit: i64,
    ) -> Result<(Vec<RequestView>, Option<Position>)> {
        const BATCH: i64 = 200;
        let reach = self.reach(who, crate::core::duration::now_ms()).await?;
        let mut out = Vec::new();
        let mut last: Option<Position> = None;
        let mut scanned = after;
        loop {
            let rows = self.store.list_after(Some(status), scanned.as_ref(), BATCH).await?;
            let exhausted = (rows.len() as i64) < BATCH;
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let mut all_votes = self.store.votes_for(&ids).await?;
            for row in rows {
                let pos = Position {
                    created_at: row.created_at,
                    id: row.id.clone(),
                };
                let votes = all_votes.remove(&row.id).unwrap_or_default();
                if self.is_mine(who, &reach, status, &row, &votes)? {
                    if out.len() as i64 >= limit {
                        return Ok((out, last));
                    }
                    out.push(self.view(&row, &votes)?);
                    last = Some(pos.clone());
                }
                scanned = Some(pos);
            }
            if exhausted {
                return Ok((out, None));
            }
        }
    }

    /// Whether `row` is in `who`'s inbox: one they may read (see `read.rs`) and, when
    /// pending, may vote on now, themselves or for someone they stand in for (an auditor,
    /// who votes on none, sees every one).
    fn is_mine(
        &self,
        who: &Principal,
        reach: &Reach,
        status: Status,
        row: &RequestRow,
        votes: &[VoteRow],
    ) -> Result<bool> {
        let doc = doc_of(row)?;
        if !self.may_read_doc(who, reach, row, &doc, votes)? {
            return Ok(false);
        }
        Ok(match who {
            Principal::Pipeline { .. } => is_opener(who, row, &doc),
            // A covered request is decided with the one covering it, never on its own.
            Principal::Approver(_) if status == Status::Pending && doc.covered_by.is_some() => false,
            Principal::Approver(u) => {
                status != Status::Pending || self.has_role(who, Role::Auditor) || {
                    let st = self.state(row, &doc, votes)?;
                    // A staged request is in the inbox of its open stages' approvers only.
                    let open_to = |p: &String| {
                        st.is_eligible(p) && st.in_open_stage(p) && !st.votes.iter().any(|v| &v.voter == p)
                    };
                    (open_to(u) && !votes.iter().any(|v| &v.voter == u))
                        || (!st.is_requester(u) && reach.stands_for.iter().any(open_to))
                }
            }
        })
    }

    /// Every request in `status` that `who` may read (oldest first, of the first `limit`),
    /// each with whether it is in `who`'s inbox. Two queries, whatever the number of requests.
    pub async fn listing(&self, who: &Principal, status: Status, limit: i64) -> Result<Vec<(RequestView, bool)>> {
        let rows = self.store.list(Some(status), limit).await?;
        let mut all_votes = self.store.votes_by_status(status).await?;
        let reach = self.reach(who, crate::core::duration::now_ms()).await?;
        let mut out = Vec::new();
        for row in rows {
            let votes = all_votes.remove(&row.id).unwrap_or_default();
            if !self.may_read(who, &reach, &row, &votes)? {
                continue;
            }
            let mine = self.is_mine(who, &reach, status, &row, &votes)?;
            out.push((self.view(&row, &votes)?, mine));
        }
        Ok(out)
    }
}

impl Engine {
    /// The history page's requests that `who` may read: newest first, at most `f.limit`.
    /// Like [`Engine::inbox`], the filter applies before the limit (the store is read in
    /// batches from `f.after` until enough are found), so a page is full whenever more
    /// readable requests follow, and its last row is where the next one starts.
    pub async fn history_for(&self, who: &Principal, f: &HistoryFilter) -> Result<Vec<RequestRow>> {
        if self.reads_everything(who) {
            return Ok(self.store.history(f).await?);
        }
        const BATCH: i64 = 500;
        let reach = self.reach(who, crate::core::duration::now_ms()).await?;
        let mut out = Vec::new();
        let mut batch = HistoryFilter {
            limit: BATCH,
            ..f.clone()
        };
        loop {
            let rows = self.store.history(&batch).await?;
            let exhausted = (rows.len() as i64) < BATCH;
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let mut all_votes = self.store.votes_for(&ids).await?;
            for row in rows {
                batch.after = Some(Position {
                    created_at: row.created_at,
                    id: row.id.clone(),
                });
                let votes = all_votes.remove(&row.id).unwrap_or_default();
                if self.may_read(who, &reach, &row, &votes)? {
                    out.push(row);
                    if out.len() as i64 >= f.limit {
                        return Ok(out);
                    }
                }
            }
            if exhausted {
                return Ok(out);
            }
        }
    }
}

/// The opaque token a listing's `next` link carries: where the page ended.
pub fn encode_cursor(p: &Position) -> String {
    B64URL.encode(format!("{}.{}", p.created_at, p.id))
}

/// Reads a token [`encode_cursor`] made; anything else is a 400 naming the parameter.
pub fn decode_cursor(param: &str, token: &str) -> Result<Position> {
    let bad = || AppError::BadRequest(format!("{param}: `{token}` is not a cursor this server issued"));
    let text = B64URL
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (at, id) = text.split_once('.').ok_or_else(bad)?;
    let created_at = at.parse().map_err(|_| bad())?;
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(Position {
        created_at,
        id: id.to_string(),
    })
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
        idp_groups: meta.idp_groups.unwrap_or_default(),
        on_behalf_of: meta.on_behalf_of,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_forgeries() {
        let p = Position {
            created_at: 1_700_000_000_123,
            id: "01HX.y".into(),
        };
        assert_eq!(decode_cursor("cursor", &encode_cursor(&p)).unwrap(), p);
        for bad in ["", "!!", "bm9kb3Q", "eC55", "MTIz"] {
            let e = decode_cursor("cursor", bad).unwrap_err().to_string();
            assert!(e.contains("cursor: `"), "{bad}: {e}");
        }
    }
}
