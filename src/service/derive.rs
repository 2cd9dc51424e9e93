//! Before the server acts on a request (a vote, a consume, a cancel, an expiry) it
//! checks the row against the request's signed events (`core::decide::derive`): a row
//! edited in the database is refused, loudly, instead of being used or signed.

use std::collections::BTreeMap;

use super::error::{AppError, ErrorCode, Result};
use super::{Doc, Engine};
use crate::core::audit;
use crate::core::decide::State;
use crate::core::decide::derive::{Event, derive};
use crate::core::duration::rfc3339;
use crate::store::{RequestRow, VoteRow};

impl Engine {
    /// The machine's view of a request, taken from its signed events and checked
    /// against the row: status, votes and timeout must agree, or the request is
    /// `tampered` (409). The requester set is widened with today's config as `state` does.
    ///
    /// The row, its votes and its events are read by separate statements, so a writer
    /// (the timer, another replica) may commit between them. A disagreement is therefore
    /// read again: when the row has moved on, the fresh row and events are checked and
    /// the state returned is theirs (the caller's compare-and-set on the old row then
    /// fails and it retries); only a row that still disagrees with its events is tampered.
    pub(super) async fn verified_state(&self, row: &RequestRow, doc: &Doc, votes: &[VoteRow]) -> Result<State> {
        let rows = self.store.audit_for(&row.id).await?;
        let mut checked = self.check_against_events(row, votes, &rows);
        let mut fresh: Option<(RequestRow, Vec<VoteRow>)> = None;
        for _ in 0..3 {
            let seen = fresh.as_ref().map_or(row.version, |(r, _)| r.version);
            if checked.is_ok() {
                break;
            }
            match self.store.get(&row.id).await? {
                Some((r, v)) if r.version != seen => {
                    checked = self.check_against_events(&r, &v, &self.store.audit_for(&row.id).await?);
                    fresh = Some((r, v));
                }
                _ => break,
            }
        }
        let derived = checked.map_err(|why| self.tampered(&row.id, why))?;
        let fresh_doc;
        let (row, doc, votes) = match &fresh {
            Some((r, v)) => {
                fresh_doc = super::doc_of(r)?;
                (r, &fresh_doc, v.as_slice())
            }
            None => (row, doc, votes),
        };
        self.check_covering(&derived.covering)
            .await
            .map_err(|why| self.tampered(&row.id, format!("its scope approval does not hold: {why}")))?;
        let mut state = self.state(row, doc, votes)?;
        for r in derived.requesters {
            if !state.requesters.contains(&r) {
                state.requesters.push(r);
            }
        }
        state.requirements = derived.state.requirements;
        state.votes = derived.state.votes;
        state.extra_voters = derived.state.extra_voters;
        Ok(state)
    }

    /// Every request row checked against its signed events (for `gate audit verify`):
    /// the ids that disagree, each with what is wrong. Rows with no events, and events
    /// whose request row is gone, are found too.
    pub async fn scan_requests(&self) -> Result<(i64, Vec<(String, String)>)> {
        let ids = self.store.request_ids().await?;
        let mut bad = Vec::new();
        for id in &ids {
            let Some((row, votes)) = self.store.get(id).await? else {
                continue;
            };
            let rows = self.store.audit_for(id).await?;
            match self.check_against_events(&row, &votes, &rows) {
                Err(why) => bad.push((id.clone(), why)),
                Ok(d) => {
                    if let Err(why) = self.check_covering(&d.covering).await {
                        bad.push((id.clone(), format!("its scope approval does not hold: {why}")));
                    }
                }
            }
        }
        for id in self.store.audited_request_ids().await? {
            if ids.binary_search(&id).is_err() {
                bad.push((
                    id,
                    "it has signed events but its row is gone (deleted from the database)".into(),
                ));
            }
        }
        Ok((ids.len() as i64, bad))
    }

    /// Checks a row and its votes against the request's audit events: each event as this
    /// server signed it, the events adding up, and the row saying what they say.
    fn check_against_events(
        &self,
        row: &RequestRow,
        votes: &[VoteRow],
        rows: &[audit::Row],
    ) -> std::result::Result<crate::core::decide::derive::Derived, String> {
        let keys = self.event_keys();
        for r in rows {
            if !r.hash_holds() || !r.signed_by_one_of(&keys) {
                return Err(format!(
                    "audit event #{} ({}) is not as this server signed it",
                    r.seq, r.kind
                ));
            }
        }
        let events: Vec<Event<'_>> = rows
            .iter()
            .map(|r| Event {
                seq: r.seq,
                at: r.at,
                kind: &r.kind,
                actor: &r.actor,
                data: serde_json::from_str(&r.data).unwrap_or_default(),
            })
            .collect();
        let derived = derive(&events).map_err(|e| format!("its signed events do not add up: {e}"))?;
        if derived.status != row.status {
            return Err(format!(
                "the row says {} but its signed events say {}",
                row.status, derived.status
            ));
        }
        let mut stored: BTreeMap<&str, bool> = BTreeMap::new();
        for v in votes {
            stored.insert(&v.voter, v.approve);
        }
        let signed: BTreeMap<&str, bool> = derived.votes.iter().map(|(v, a)| (v.as_str(), *a)).collect();
        if stored != signed || votes.len() != derived.votes.len() {
            return Err(format!(
                "its votes ({}) are not the signed ones ({})",
                describe(&stored),
                describe(&signed)
            ));
        }
        if derived.expires_at != rfc3339(row.expires_at) {
            return Err(format!(
                "its timeout is {} but it was opened with {}",
                rfc3339(row.expires_at),
                derived.expires_at
            ));
        }
        Ok(derived)
    }

    fn tampered(&self, id: &str, why: String) -> AppError {
        // Counted and logged at error level once per request and process: the timer
        // meets an altered request again at every tick until someone looks.
        let first = self
            .tampered_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string());
        if first {
            tracing::error!(request = %id, problem = %why, "request refused: its database row was altered");
            self.metrics.tampered();
        } else {
            tracing::debug!(request = %id, problem = %why, "request refused again: its database row was altered");
        }
        AppError::Conflict(
            ErrorCode::Tampered,
            format!("request {id} was altered outside the server ({why}); nothing was done. Run `gate audit verify`"),
        )
    }
}

fn describe(votes: &BTreeMap<&str, bool>) -> String {
    if votes.is_empty() {
        return "none".into();
    }
    votes
        .iter()
        .map(|(v, a)| format!("{v} {}", if *a { "approve" } else { "deny" }))
        .collect::<Vec<_>>()
        .join(", ")
}
