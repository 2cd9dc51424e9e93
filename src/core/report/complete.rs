//! Completeness of a bundled report against the transparency log: the report is the
//! server's word, the signed checkpoint is not. Every audit event is a leaf of the log
//! (leaf `i` is event `seq = i + 1`), so a bundle that holds every leaf hash of the
//! checkpoint's tree, and the events of a contiguous run of leaves covering the period
//! (with a margin either side), shows which requests were decided in the period: each
//! decision event in the run. Then every such request must be a row, and every row
//! such a request. Pure: the bundle's parts in, the problems out.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;

use super::Period;
use crate::core::audit::Row as Event;
use crate::core::log::tree::{self, Hash};

/// The run of events starts before `from - MARGIN` and ends at or after `to + MARGIN`
/// (or at the log's first or last leaf): events are stamped with the clock of the
/// server that wrote them, so a run taken exactly at the period's edges could miss an
/// event whose time is out of order by less than this.
pub const MARGIN_MS: i64 = 60 * 60 * 1000;

/// The event kinds that decide a request: what makes it a row of the report (its
/// record's `outcome.decided_at` is this event's time). `consumed` is not one: using an
/// approval decides nothing.
pub const DECIDING: [&str; 4] = ["approved", "denied", "expired", "canceled"];

/// What the bundle holds for the check.
pub struct Evidence<'a> {
    /// Every leaf hash of the checkpoint's tree, in order.
    pub leaves: &'a [Hash],
    /// The checkpoint's size and root, already verified against the log key.
    pub size: u64,
    pub root: Hash,
    /// The contiguous run of events.
    pub run: &'a [Event],
    /// Single events elsewhere in the log that explain a decision with no row: the
    /// request's `created` event (its environment), or its later decision.
    pub context: &'a [Event],
    pub keys: &'a [VerifyingKey],
    pub period: &'a Period,
    pub environment: Option<&'a str>,
    /// The report's rows: request id and `decided_at` (milliseconds).
    pub rows: &'a [(String, i64)],
}

/// The outcome: problems refuse the bundle, warnings do not.
#[derive(Debug, Default)]
pub struct Verdict {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    /// The decision events of the period found in the run.
    pub decisions: usize,
}

/// Checks an event against the leaf list: its hash, its signature, its leaf.
fn check_event(e: &Evidence, ev: &Event, where_: &str, v: &mut Verdict) -> bool {
    let index = (ev.seq - 1) as u64;
    let problem = if ev.seq < 1 || index >= e.size {
        Some(format!(
            "event #{} is not in the checkpoint's tree of {}",
            ev.seq, e.size
        ))
    } else if !ev.hash_holds() {
        Some(format!(
            "event #{} was altered: its content does not match its hash",
            ev.seq
        ))
    } else if e.leaves[index as usize] != tree::leaf_hash(&ev.leaf_bytes()) {
        Some(format!("event #{} is not leaf {index} of the log", ev.seq))
    } else if ev.sig.is_some() && !ev.signed_by_one_of(e.keys) {
        Some(format!("event #{} is not signed by the server's keys", ev.seq))
    } else {
        None
    };
    if ev.sig.is_none() && problem.is_none() {
        v.warnings.push(format!(
            "{where_}: event #{} has no signature (written before signed events)",
            ev.seq
        ));
    }
    match problem {
        Some(p) => {
            v.problems.push(format!("{where_}: {p}"));
            false
        }
        None => true,
    }
}

fn environment_of(ev: &Event) -> Option<String> {
    let data: serde_json::Value = serde_json::from_str(&ev.data).ok()?;
    data["context"]["environment"].as_str().map(str::to_string)
}

/// The whole check.
pub fn check(e: &Evidence) -> Verdict {
    let mut v = Verdict::default();
    if e.leaves.len() as u64 != e.size {
        v.problems.push(format!(
            "log/leaves: {} leaf hashes, but the checkpoint's tree has {}",
            e.leaves.len(),
            e.size
        ));
        return v;
    }
    if tree::root_of(e.leaves) != e.root {
        v.problems
            .push("log/leaves: their tree's root is not the checkpoint's root hash".into());
        return v;
    }
    let (Some(first), Some(last)) = (e.run.first(), e.run.last()) else {
        if e.size > 0 || !e.rows.is_empty() {
            v.problems.push("log/events.jsonl: no events".into());
        }
        return v;
    };
    // Contiguous, covering the period with its margin.
    for (i, ev) in e.run.iter().enumerate() {
        if ev.seq != first.seq + i as i64 {
            v.problems.push(format!(
                "log/events.jsonl: event #{} follows #{}: the run is not contiguous (an event is missing)",
                ev.seq,
                first.seq + i as i64 - 1
            ));
            return v;
        }
        if !check_event(e, ev, "log/events.jsonl", &mut v) {
            return v;
        }
    }
    if first.seq != 1 && first.at >= e.period.from - MARGIN_MS {
        v.problems.push(format!(
            "log/events.jsonl: starts at event #{}, inside the period's margin: earlier events of the period may be missing",
            first.seq
        ));
    }
    if last.seq as u64 != e.size && last.at < e.period.to + MARGIN_MS {
        v.problems.push(format!(
            "log/events.jsonl: ends at event #{} of {}, inside the period's margin: later events of the period may be missing",
            last.seq, e.size
        ));
    }
    let mut context: Vec<&Event> = Vec::new();
    for ev in e.context {
        if check_event(e, ev, "log/context.jsonl", &mut v) {
            context.push(ev);
        }
    }
    let all = || e.run.iter().chain(context.iter().copied());

    // The requests decided in the period, by their last decision event in the period.
    let mut decided: BTreeMap<&str, &Event> = BTreeMap::new();
    for ev in e.run {
        if DECIDING.contains(&ev.kind.as_str()) && e.period.contains(ev.at) {
            decided.insert(ev.request_id.as_str(), ev);
        }
    }
    v.decisions = decided.len();
    let mut listed = BTreeSet::new();
    for (id, at) in e.rows {
        if !listed.insert(id.as_str()) {
            v.problems.push(format!("report.json: {id} is a row twice"));
            continue;
        }
        match decided.get(id.as_str()) {
            Some(ev) if ev.at == *at => {}
            Some(ev) => v.problems.push(format!(
                "report.json: row {id} was decided at {at}, but its decision in the log (event #{}) is at {}",
                ev.seq, ev.at
            )),
            None => v.problems.push(format!(
                "report.json: row {id} has no decision event in the period in log/events.jsonl"
            )),
        }
    }
    for (id, ev) in &decided {
        if listed.contains(id) {
            continue;
        }
        // Decided again after the period (an approval that expired unused): the row
        // belongs to the later period.
        let later = all().any(|x| {
            x.request_id == *id && x.seq > ev.seq && DECIDING.contains(&x.kind.as_str()) && x.at >= e.period.to
        });
        let other_env = e.environment.is_some_and(|want| {
            all().any(|x| x.request_id == *id && x.kind == "created" && environment_of(x).as_deref() != Some(want))
        });
        if !later && !other_env {
            v.problems.push(format!(
                "log event #{} ({} on {id}) decided a request in the period, but report.json has no row for it",
                ev.seq, ev.kind
            ));
        }
    }
    v
}
