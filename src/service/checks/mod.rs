//! Evidence checks (`auto_approve_if`, `auto_deny_if`), run once a request is open.
//!
//! When they run: a pending request whose rule has checks and whose document holds no
//! results yet is due for the timer at once (`deadline_of` gives it its creation time),
//! so the timer of whichever replica holds it hands it to the check worker; a restart
//! between opening and the checks loses nothing, the next timer tick hands it over again.
//! The worker runs the checks with no transaction open (an http check may take its
//! timeout), then records every result, and the outcome they make, in one transaction
//! behind the request's compare-and-set: a person's vote that lands first wins, and a
//! request already decided or already checked is left as it is, so nothing is doubled.
//! When recording fails (the store unavailable, too much contention), the request is
//! not handed over again at every timer tick: [`Retries`] holds it back with capped
//! exponential backoff (`core::backoff`, 1s doubling to 5m, jittered), per request, in
//! this process; a success forgets it.

mod http;
mod promotion;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::commit::Failure;
use super::error::{AppError, Result};
use super::open::AutoVote;
use super::{Doc, Engine, MAX_ATTEMPTS, deadline_of, doc_of};
use crate::core::backoff::Backoff;
use crate::core::decide::checks::{Answer, CheckResult, List, decision};
use crate::core::decide::{Refusal, Status};
use crate::core::policy::checks::{Check, CheckSpec};
use crate::store::{AuditDraft, RequestRow, VoteRow};

/// Requests waiting for their checks, each once until its run ends.
pub struct CheckQueue {
    tx: mpsc::UnboundedSender<String>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    running: Mutex<HashSet<String>>,
    retries: Mutex<Retries>,
}

/// The pause after a failed recording: 1s, doubling, at most 5 minutes.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));

/// Requests whose checks failed to be recorded: how often in a row, and not before when
/// they are run again.
#[derive(Default)]
struct Retries(HashMap<String, (u32, Instant)>);

impl Retries {
    /// Whether request `id` may be run at `now`.
    fn due(&self, id: &str, now: Instant) -> bool {
        self.0.get(id).is_none_or(|(_, at)| *at <= now)
    }

    /// Request `id` failed at `now`: held back for the next, longer pause.
    fn failed(&mut self, id: &str, now: Instant, rng: &mut impl rand::Rng) {
        let n = self.0.get(id).map_or(0, |(n, _)| *n);
        self.0
            .insert(id.to_string(), (n.saturating_add(1), now + RETRY.jittered(n, rng)));
    }

    fn succeeded(&mut self, id: &str) {
        self.0.remove(id);
    }
}

impl Default for CheckQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        CheckQueue {
            tx,
            rx: Mutex::new(Some(rx)),
            running: Mutex::default(),
            retries: Mutex::default(),
        }
    }
}

/// Whether a request's checks have yet to be run.
pub(super) fn checks_due(doc: &Doc) -> bool {
    doc.rule.has_checks() && doc.checks.is_empty()
}

impl Engine {
    /// Hands a request to the check worker, unless its checks are already running or
    /// its last recording failed too recently (see [`Retries`]).
    pub(super) fn want_checks(&self, id: &str) {
        let due = self
            .checks
            .retries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .due(id, Instant::now());
        if !due {
            return;
        }
        let fresh = self
            .checks
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string());
        if fresh {
            let _ = self.checks.tx.send(id.to_string());
        }
    }

    /// Runs the checks of each request handed over, concurrently, until `stop`.
    pub async fn run_check_worker(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(mut rx) = self.checks.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        loop {
            tokio::select! {
                id = rx.recv() => {
                    let Some(id) = id else { return };
                    let engine = self.clone();
                    tokio::spawn(async move {
                        let result = engine.run_checks(&id).await;
                        {
                            let mut retries = engine.checks.retries.lock().unwrap_or_else(|e| e.into_inner());
                            match &result {
                                Ok(()) => retries.succeeded(&id),
                                Err(_) => retries.failed(&id, Instant::now(), &mut rand::thread_rng()),
                            }
                        }
                        if let Err(e) = result {
                            tracing::warn!(request = %id, error = %e, "recording checks failed; the timer will retry after a backoff");
                        }
                        engine.checks.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                    });
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Runs the checks of request `id` if it is still pending and unchecked, and records them.
    pub(super) async fn run_checks(&self, id: &str) -> Result<()> {
        let (row, _) = self.load(id).await?;
        let doc = doc_of(&row)?;
        if row.status != Status::Pending || !checks_due(&doc) {
            return Ok(());
        }
        let now = crate::core::duration::now_ms();
        let mut results = Vec::new();
        for (list, index, spec) in doc.rule.checks() {
            results.push(self.run_check(&row, &doc, list, index, spec, now).await);
        }
        for _ in 0..MAX_ATTEMPTS {
            let now = crate::core::duration::now_ms();
            let (row, votes) = self.load(id).await?;
            let doc = doc_of(&row)?;
            let state = self.verified_state(&row, &doc, &votes).await?;
            // Checked by another replica meanwhile.
            if !checks_due(&doc) {
                return Ok(());
            }
            // Whether the policy may still decide: not once a person or a cancel has, and
            // not past the timeout, which is recorded instead.
            match state.decide_by_policy(true, now) {
                Ok(_) => {}
                Err(Refusal::Expired) => {
                    self.expire(id, now).await?;
                    return Ok(());
                }
                Err(_) => return Ok(()),
            }
            match self.record_checks(row, votes, doc, &results, now).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(
            "too much contention recording checks; retry".into(),
        ))
    }

    async fn run_check(
        &self,
        row: &RequestRow,
        doc: &Doc,
        list: List,
        index: usize,
        spec: &CheckSpec,
        now: i64,
    ) -> CheckResult {
        let (answer, reason, evidence) = match spec.check() {
            Some(Check::Promotion(p)) => self.promotion(doc, p, now).await,
            Some(Check::Http(h)) => self.http_check(row, doc, h, list, index).await,
            None => (Answer::Error, "not a check the server knows".into(), json!({})),
        };
        spec.result(list, index, answer, reason, evidence)
    }

    /// One transaction: a `check` event per result, the results in the document and, when
    /// they decide, the automatic vote, the outcome and the signed record.
    async fn record_checks(
        &self,
        mut row: RequestRow,
        mut votes: Vec<VoteRow>,
        mut doc: Doc,
        results: &[CheckResult],
        now: i64,
    ) -> Result<(), Failure> {
        let mut tx = self.store.begin().await?;
        let voter = format!("policy:{}", doc.rule.name);
        for r in results {
            tx.append_audit(&AuditDraft {
                at: now,
                request_id: row.id.clone(),
                kind: "check".into(),
                actor: voter.clone(),
                data: serde_json::to_value(r)?,
            })
            .await?;
        }
        doc.checks = results.to_vec();
        let reason = decision(results, doc.rule.auto_approve_if.len(), doc.rule.auto_deny_if.len());
        let Some((approve, reason)) = reason else {
            row.version += 1;
            row.doc = serde_json::to_string(&doc)?;
            tx.update_request(&row, deadline_of(Status::Pending, &row, &doc))
                .await?;
            self.commit(tx, &row, &votes, None, now).await?;
            self.timer_poke.notify_one();
            self.publish(&row);
            return Ok(());
        };
        let summary: Vec<_> = results
            .iter()
            .map(|r| json!({"list": r.list, "index": r.index, "kind": r.kind, "answer": r.answer}))
            .collect();
        let auto = AutoVote {
            voter,
            approve,
            reason,
            via: "check",
            vote_data: json!({"checks": summary}),
            decided_by: format!("policy rule `{}` (checks)", doc.rule.name),
            outcome_data: json!({"rule": doc.rule.name, "via": "check"}),
        };
        self.decide_at_open(&mut tx, &mut row, &mut doc, &mut votes, auto, now)
            .await?;
        self.commit(tx, &row, &votes, Some(crate::notify::Event::Decided), now)
            .await?;
        self.metrics.decided(row.status, now - row.created_at);
        self.timer_poke.notify_one();
        self.publish(&row);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn a_failing_request_is_held_back_longer_each_time_up_to_the_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut r = Retries::default();
        let t0 = Instant::now();
        assert!(r.due("req_a", t0));
        let mut now = t0;
        let mut last = Duration::ZERO;
        for n in 0..12u32 {
            r.failed("req_a", now, &mut rng);
            let (count, at) = r.0["req_a"];
            assert_eq!(count, n + 1);
            let pause = at - now;
            // Jittered into the upper half of 1s × 2^n, never over 5 minutes.
            assert!(pause >= RETRY.pause(n) / 2 && pause <= RETRY.pause(n), "{n}: {pause:?}");
            assert!(pause <= Duration::from_secs(300));
            if n < 8 {
                assert!(pause > last / 2, "{n}: {pause:?} after {last:?}");
            }
            assert!(!r.due("req_a", now), "held back right after failing");
            assert!(!r.due("req_a", at - Duration::from_millis(1)));
            assert!(r.due("req_a", at));
            // Another request is not held back.
            assert!(r.due("req_b", now));
            last = pause;
            now = at;
        }
        assert!(last >= Duration::from_secs(150), "capped near 5m: {last:?}");
        r.succeeded("req_a");
        assert!(r.due("req_a", now));
        assert!(!r.0.contains_key("req_a"));
    }
}
