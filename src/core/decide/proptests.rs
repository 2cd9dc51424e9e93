//! Property tests of the decision machine: generated policies (1–3 requirements of
//! N of 1–5 members, with or without stages), requester sets, delegations and sequences
//! of actions (votes by anyone, delegated votes, the evidence checks' answers,
//! escalations, clock steps, expiry checks, cancel, consume), each step checked against
//! an independent model of the rules.
//!
//! The model decides "approved" by Hall's condition (every set of requirements has at
//! least as many distinct counted approvers who may fill one of them as it has slots),
//! not by the machine's matching, so the two are computed differently. It opens a stage
//! by the same condition over the requirements of the stages before it.

use std::collections::{BTreeSet, HashSet};

use proptest::prelude::*;

use super::*;
use crate::core::delegation::{Delegation, counts_as};

/// The people of a generated world: eight who may be in groups, and a stranger.
const PEOPLE: [&str; 9] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "stranger"];
const EXPIRES_AT: i64 = 1_000;
const TTL: i64 = 300;

#[derive(Clone, Debug)]
struct World {
    requirements: Vec<Requirement>,
    requesters: Vec<String>,
    /// (delegator, delegate, until)
    delegations: Vec<(usize, usize, i64)>,
}

#[derive(Clone, Debug)]
enum Action {
    /// `human` votes; with `asked`, for that person. `checked`: through `counts_as` with
    /// the world's delegations (as the service does); otherwise straight to `vote_as`.
    Vote {
        human: usize,
        asked: Option<usize>,
        checked: bool,
        approve: bool,
        reason: usize,
    },
    /// The check worker records these answers of the rule's `auto_approve_if` and
    /// `auto_deny_if` checks (once per request, as the service runs them once).
    Checks {
        approve: Vec<checks::Answer>,
        deny: Vec<checks::Answer>,
    },
    Escalate(Vec<usize>),
    Step(i64),
    Tick,
    Cancel,
    Consume,
}

const REASONS: [Option<&str>; 4] = [None, Some("  "), Some("\u{200b}"), Some("rollback risk")];

fn requirement() -> impl Strategy<Value = Requirement> {
    proptest::sample::subsequence((0..8usize).collect::<Vec<_>>(), 1..=5)
        .prop_flat_map(|members| {
            let n = members.len() as u32;
            (Just(members), 1..=n)
        })
        .prop_map(|(members, count)| Requirement {
            group: format!("g{}", members[0]),
            count,
            members: members.iter().map(|i| PEOPLE[*i].to_string()).collect(),
            source: None,
            stage: None,
        })
}

/// Requirements, and for each after the first whether it starts a new stage (only when
/// `staged`): stages are runs of consecutive requirements.
fn requirements() -> impl Strategy<Value = Vec<Requirement>> {
    (
        proptest::collection::vec(requirement(), 1..=3),
        any::<bool>(),
        proptest::collection::vec(any::<bool>(), 2),
    )
        .prop_map(|(mut reqs, staged, starts)| {
            if staged {
                let mut stage = 0;
                for (i, r) in reqs.iter_mut().enumerate() {
                    if i > 0 && starts[i - 1] {
                        stage += 1;
                    }
                    r.stage = Some(format!("s{stage}"));
                }
            }
            reqs
        })
}

fn world() -> impl Strategy<Value = World> {
    (
        requirements(),
        proptest::sample::subsequence((0..8usize).collect::<Vec<_>>(), 0..=2),
        proptest::collection::vec((0..9usize, 0..9usize, 0..1_500i64), 0..4),
    )
        .prop_map(|(requirements, requesters, delegations)| World {
            requirements,
            requesters: requesters.iter().map(|i| PEOPLE[*i].to_string()).collect(),
            delegations,
        })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (0..9usize, proptest::option::weighted(0.3, 0..9usize), any::<bool>(), prop::bool::weighted(0.8), 0..4usize)
            .prop_map(|(human, asked, checked, approve, reason)| Action::Vote { human, asked, checked, approve, reason }),
        2 => (proptest::collection::vec(answer(), 0..3), proptest::collection::vec(answer(), 0..3))
            .prop_map(|(approve, deny)| Action::Checks { approve, deny }),
        1 => proptest::collection::vec(0..9usize, 1..3).prop_map(Action::Escalate),
        2 => (0..400i64).prop_map(Action::Step),
        1 => Just(Action::Tick),
        1 => Just(Action::Cancel),
        1 => Just(Action::Consume),
    ]
}

fn open(w: &World) -> State {
    State {
        status: Status::Pending,
        requesters: w.requesters.clone(),
        requirements: w.requirements.clone(),
        votes: vec![],
        expires_at: EXPIRES_AT,
        approval_ttl_ms: TTL,
        approval_expires_at: None,
        extra_voters: vec![],
        next_escalation: None,
        window_open: true,
    }
}

fn delegations(w: &World) -> Vec<Delegation> {
    w.delegations
        .iter()
        .enumerate()
        .map(|(i, (from, to, until))| Delegation {
            id: format!("dlg_{i}"),
            delegator: PEOPLE[*from].into(),
            delegate: PEOPLE[*to].into(),
            reason: "leave".into(),
            created_at: 0,
            created_by: PEOPLE[*from].into(),
            until: *until,
            revoked_at: None,
            revoked_by: None,
        })
        .collect()
}

/// May `who` fill a slot of requirement `r` (ignoring the requester rule)?
fn fits(s: &State, r: usize, who: &str) -> bool {
    s.extra_voters.iter().any(|e| e == who) || s.requirements[r].members.iter().any(|m| m == who)
}

/// Hall's condition over the distinct approvers who are eligible and not requesters.
fn model_met(s: &State, approvers: &BTreeSet<String>) -> bool {
    model_met_over(s, approvers, s.requirements.len())
}

/// Hall's condition over the first `n` requirements only.
fn model_met_over(s: &State, approvers: &BTreeSet<String>, n: usize) -> bool {
    let counted: Vec<&String> = approvers
        .iter()
        .filter(|a| !s.requesters.contains(a) && (0..s.requirements.len()).any(|r| fits(s, r, a)))
        .collect();
    (1u32..(1 << n)).all(|mask| {
        let rs: Vec<usize> = (0..n).filter(|r| mask & (1 << r) != 0).collect();
        let need: u32 = rs.iter().map(|r| s.requirements[*r].count).sum();
        let can = counted.iter().filter(|a| rs.iter().any(|r| fits(s, *r, a))).count() as u32;
        can >= need
    })
}

/// How many requirements belong to open stages: a stage opens when Hall's condition
/// holds over every requirement before it.
fn model_open(s: &State, approvers: &BTreeSet<String>) -> usize {
    let n = s.requirements.len();
    let mut open = 0;
    while open < n {
        if open > 0 && !model_met_over(s, approvers, open) {
            break;
        }
        let stage = &s.requirements[open].stage;
        while open < n && &s.requirements[open].stage == stage {
            open += 1;
        }
    }
    open
}

fn approvers(s: &State) -> BTreeSet<String> {
    s.votes.iter().filter(|v| v.approve).map(|v| v.voter.clone()).collect()
}

/// What the rules say a vote does, computed without the machine.
fn model_vote(
    s: &State,
    human: &str,
    for_whom: Option<&str>,
    approve: bool,
    reason: Option<&str>,
    now: i64,
) -> Result<Status, Refusal> {
    if s.status != Status::Pending {
        return Err(Refusal::NotPending(s.status));
    }
    if now >= s.expires_at {
        return Err(Refusal::Expired);
    }
    let voter = for_whom.unwrap_or(human);
    if s.requesters.iter().any(|r| r == human || r == voter) {
        return Err(Refusal::Requester);
    }
    if !(0..s.requirements.len()).any(|r| fits(s, r, voter)) {
        return Err(Refusal::NotEligible);
    }
    let open = model_open(s, &approvers(s));
    if !(0..open).any(|r| fits(s, r, voter)) {
        let theirs = (open..s.requirements.len()).find(|r| fits(s, *r, voter)).unwrap();
        return Err(Refusal::StageNotOpen {
            stage: s.requirements[theirs].stage.clone().unwrap(),
            waiting: s.requirements[open - 1].stage.clone().unwrap(),
        });
    }
    let used: HashSet<&str> = s.votes.iter().flat_map(|v| [v.voter.as_str(), v.cast_by()]).collect();
    if used.contains(voter) || used.contains(human) {
        return Err(Refusal::AlreadyVoted);
    }
    let visible = reason.is_some_and(|r| r.chars().any(|c| c.is_alphanumeric()));
    if !approve {
        return if visible {
            Ok(Status::Denied)
        } else {
            Err(Refusal::ReasonRequired)
        };
    }
    let mut a = approvers(s);
    a.insert(voter.to_string());
    Ok(if model_met(s, &a) {
        Status::Approved
    } else {
        Status::Pending
    })
}

/// The results the check worker records for these answers, in list order.
fn results(approve: &[checks::Answer], deny: &[checks::Answer]) -> Vec<checks::CheckResult> {
    let each = |list, answers: &[checks::Answer]| {
        answers
            .iter()
            .enumerate()
            .map(|(index, answer)| checks::CheckResult {
                list,
                index,
                kind: String::from("http"),
                check: format!("http https://check/{index}"),
                answer: *answer,
                reason: "canned".into(),
                evidence: serde_json::Value::Null,
            })
            .collect::<Vec<_>>()
    };
    let mut out = each(checks::List::Approve, approve);
    out.extend(each(checks::List::Deny, deny));
    out
}

/// Invariants that hold of every state the machine can reach. `by_policy` is what the
/// checks decided (approve or deny), when they did.
fn check_state(s: &State, by_policy: Option<bool>) -> Result<(), TestCaseError> {
    // 2. No vote was cast by, or counts as, a requester; none is assigned.
    for v in &s.votes {
        prop_assert!(
            !s.is_requester(&v.voter) && !s.is_requester(v.cast_by()),
            "requester vote {v:?}"
        );
    }
    // 3. One human is one vote: every voter and every caster appears once in all.
    let mut seen = HashSet::new();
    for v in &s.votes {
        prop_assert!(seen.insert(v.voter.clone()), "{} counted twice", v.voter);
        if let Some(by) = &v.by
            && by != &v.voter
        {
            prop_assert!(seen.insert(by.clone()), "{by} voted twice");
        }
    }
    let assignment = s.assign();
    prop_assert_eq!(assignment.len(), s.requirements.len());
    let flat: Vec<&String> = assignment.iter().flatten().collect();
    let distinct: HashSet<&String> = flat.iter().copied().collect();
    prop_assert_eq!(
        flat.len(),
        distinct.len(),
        "one person filled two slots: {:?}",
        assignment
    );
    let approving = approvers(s);
    for (r, who) in assignment.iter().enumerate() {
        prop_assert!(who.len() as u32 <= s.requirements[r].count);
        for p in who {
            prop_assert!(
                approving.contains(p) && !s.is_requester(p) && fits(s, r, p),
                "{p} in {r}"
            );
        }
    }
    // 5. The threshold is met exactly when Hall's condition says it can be.
    prop_assert_eq!(s.threshold_met(), model_met(s, &approving), "{:?}", s);
    // 6. Stages: no approval counts for a stage before the stages ahead of it are met.
    let open = model_open(s, &approving);
    for (r, who) in assignment.iter().enumerate() {
        prop_assert!(who.is_empty() || r < open, "{who:?} count for closed requirement {r}");
    }
    prop_assert_eq!(
        s.open_stages().len(),
        s.stages()
            .iter()
            .filter(|g| g.requirements.end <= open && g.name.is_some())
            .count()
    );
    let denies = s.votes.iter().filter(|v| !v.approve).count();
    match s.status {
        Status::Approved | Status::Consumed => prop_assert!(s.threshold_met() || by_policy == Some(true)),
        // Met means decided: a vote or an escalation that meets the threshold approves.
        Status::Pending => {
            prop_assert!(!s.threshold_met() && denies == 0 && by_policy.is_none())
        }
        // Denied by one person's deny, or by a deny-check with nobody's.
        Status::Denied => prop_assert!(
            (by_policy.is_none() && denies == 1) || (by_policy == Some(false) && denies == 0),
            "{by_policy:?} {denies}"
        ),
        Status::Expired | Status::Canceled => {}
    }
    Ok(())
}

/// Whether `to` may follow `from`: one outcome, and nothing leaves a terminal state.
fn allowed(from: Status, to: Status) -> bool {
    use Status::*;
    from == to
        || matches!(
            (from, to),
            (Pending, Approved | Denied | Expired | Canceled) | (Approved, Consumed | Expired)
        )
}

/// Runs `actions`, checking each step against the model. Returns the final state and
/// what the checks decided, when they did.
fn run(w: &World, actions: &[Action]) -> Result<(State, Option<bool>), TestCaseError> {
    let mut s = open(w);
    let given = delegations(w);
    let mut now = 0i64;
    let mut checks_ran = false;
    let mut by_policy: Option<bool> = None;
    for a in actions {
        let before = s.clone();
        match a {
            Action::Vote {
                human,
                asked,
                checked,
                approve,
                reason,
            } => {
                let human = PEOPLE[*human];
                let asked = asked.map(|i| PEOPLE[i]);
                let reason = REASONS[*reason];
                let for_whom = if *checked {
                    match counts_as(&s, human, asked, &given, now) {
                        Ok(f) => f,
                        Err(r) => {
                            // Only an asked-for delegation that is not in force is refused.
                            let whom = asked.unwrap_or_default();
                            prop_assert_eq!(r, Refusal::NotDelegated(whom.to_string()));
                            prop_assert!(
                                !given
                                    .iter()
                                    .any(|d| d.delegator == whom && d.delegate == human && d.in_force(now))
                            );
                            continue;
                        }
                    }
                } else {
                    asked.map(str::to_string)
                };
                let got = s.vote_as(human, for_whom.as_deref(), *approve, reason, now);
                let want = model_vote(&s, human, for_whom.as_deref(), *approve, reason, now);
                prop_assert_eq!(got.clone().map(|n| n.status), want.clone(), "vote {:?} on {:?}", a, s);
                if before.status.is_terminal() {
                    prop_assert_eq!(&got, &Err(Refusal::NotPending(before.status)));
                }
                if let Ok(next) = got {
                    s.votes.push(Vote {
                        voter: for_whom.clone().unwrap_or_else(|| human.to_string()),
                        approve: *approve,
                        reason: reason.map(str::to_string),
                        at: now,
                        by: for_whom.map(|_| human.to_string()),
                    });
                    prop_assert_eq!(
                        next.approval_expires_at,
                        (next.status == Status::Approved).then_some(now + TTL)
                    );
                    s.status = next.status;
                    s.approval_expires_at = next.approval_expires_at;
                }
            }
            Action::Checks { approve, deny } if !checks_ran && s.status == Status::Pending => {
                let decided = checks::decision(&results(approve, deny), approve.len(), deny.len());
                // What the rules say, computed without `combine`: any deny-check denying
                // denies; every approve-check approving, with no deny-check in error,
                // approves; anything else leaves it to people.
                use checks::Answer::{Approve, Deny, Error};
                let passes = !approve.is_empty() && approve.iter().all(|a| *a == Approve) && !deny.contains(&Error);
                let want = if deny.contains(&Deny) {
                    Some(false)
                } else {
                    passes.then_some(true)
                };
                prop_assert_eq!(decided.as_ref().map(|d| d.0), want);
                // As the worker does: results are recorded only on a request still open
                // to them; one past its timeout is expired instead.
                match s.decide_by_policy(decided.as_ref().is_none_or(|d| d.0), now) {
                    Ok(next) => {
                        checks_ran = true;
                        prop_assert!(now < s.expires_at);
                        if let Some((yes, _)) = decided {
                            prop_assert_eq!(next.status, if yes { Status::Approved } else { Status::Denied });
                            prop_assert_eq!(next.approval_expires_at, yes.then_some(now + TTL));
                            s.status = next.status;
                            s.approval_expires_at = next.approval_expires_at;
                            by_policy = Some(yes);
                        }
                    }
                    Err(r) => {
                        prop_assert_eq!(r, Refusal::Expired);
                        prop_assert!(now >= s.expires_at);
                        s.status = Status::Expired;
                    }
                }
            }
            // The worker never runs a request's checks twice, nor on a decided request.
            Action::Checks { .. } => {}
            Action::Escalate(added) => {
                // The engine escalates only a pending request before its timeout.
                if s.status == Status::Pending && now < s.expires_at {
                    let added: Vec<String> = added.iter().map(|i| PEOPLE[*i].to_string()).collect();
                    let next = s.escalate(&added, now);
                    for a in added {
                        if !s.extra_voters.contains(&a) {
                            s.extra_voters.push(a);
                        }
                    }
                    // It approves exactly when the approvals already cast now meet the
                    // threshold, and never counts a vote that was not cast.
                    let met = model_met(&s, &approvers(&s));
                    let want = if met { Status::Approved } else { Status::Pending };
                    prop_assert_eq!(next.status, want);
                    prop_assert_eq!(next.approval_expires_at, met.then_some(now + TTL));
                    prop_assert_eq!(&s.votes, &before.votes);
                    s.status = next.status;
                    s.approval_expires_at = next.approval_expires_at;
                } else {
                    let next = s.escalate(&[PEOPLE[0].to_string()], now);
                    prop_assert_eq!(next.status, s.status, "only a pending request escalates");
                }
            }
            Action::Step(dt) => now += dt,
            Action::Tick => {
                let due = match s.status {
                    Status::Pending => now >= s.expires_at,
                    Status::Approved => s.approval_expires_at.is_some_and(|t| now >= t),
                    _ => false,
                };
                let got = s.tick(now);
                prop_assert_eq!(got.is_some(), due);
                if let Some(next) = got {
                    prop_assert_eq!(next.status, Status::Expired);
                    s.status = Status::Expired;
                }
            }
            Action::Cancel => match s.cancel(now) {
                Ok(next) => {
                    prop_assert!(s.status == Status::Pending && now < s.expires_at);
                    s.status = next.status;
                }
                Err(r) => prop_assert!(
                    r == Refusal::NotPending(s.status) || (s.status == Status::Pending && r == Refusal::Expired)
                ),
            },
            Action::Consume => match s.consume(now) {
                Ok(next) => {
                    prop_assert!(s.status == Status::Approved && s.approval_expires_at.is_some_and(|t| now < t));
                    s.status = next.status;
                }
                Err(r) => prop_assert!(
                    r == Refusal::NotPending(s.status) || (s.status == Status::Approved && r == Refusal::Expired)
                ),
            },
        }
        // 1. One outcome; a terminal state never changes, nor do its votes.
        prop_assert!(allowed(before.status, s.status), "{} -> {}", before.status, s.status);
        if before.status.is_terminal() {
            prop_assert_eq!(s.status, before.status);
            prop_assert_eq!(&s.votes, &before.votes);
            prop_assert_eq!(s.tick(i64::MAX), None);
            prop_assert_eq!(s.deadline(), None);
        }
        check_state(&s, by_policy)?;
    }
    Ok((s, by_policy))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Properties 1, 2, 3 and 5 over any sequence of actions.
    #[test]
    fn every_sequence_follows_the_rules(w in world(), actions in proptest::collection::vec(action(), 0..40)) {
        let (s, by_policy) = run(&w, &actions)?;
        // 5. Denied only by one eligible deny, cast while pending and before approval,
        // or by a deny-check with no person's deny.
        if s.status == Status::Denied && by_policy.is_none() {
            let deny = s.votes.last().unwrap();
            prop_assert!(!deny.approve && deny.at < EXPIRES_AT && !s.is_requester(&deny.voter));
            prop_assert!(s.votes.iter().rev().skip(1).all(|v| v.approve));
        }
    }

    /// 4. Any order of the same approvals by eligible people (repeats included), all
    /// before the timeout, reaches the same outcome; with every vote recorded, the
    /// threshold and the number of filled slots do not depend on the order.
    #[test]
    fn the_order_of_approvals_does_not_matter(
        w in world(),
        picks in proptest::collection::vec(0..8usize, 1..12),
        seeds in proptest::collection::vec(any::<u64>(), 3),
    ) {
        let base = open(&w);
        let eligible: Vec<&str> = PEOPLE[..8].iter().copied().filter(|p| base.is_eligible(p)).collect();
        prop_assume!(!eligible.is_empty());
        let votes: Vec<&str> = picks.iter().map(|i| eligible[i % eligible.len()]).collect();
        let mut orders = vec![votes.clone()];
        for seed in seeds {
            // A Fisher–Yates shuffle driven by the seed (no clock, no global RNG).
            let mut v = votes.clone();
            let mut x = seed | 1;
            for i in (1..v.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                v.swap(i, (x % (i as u64 + 1)) as usize);
            }
            orders.push(v);
        }
        let distinct: BTreeSet<String> = votes.iter().map(|p| p.to_string()).collect();
        let expect = if model_met(&base, &distinct) { Status::Approved } else { Status::Pending };
        let mut seen = BTreeSet::new();
        for order in &orders {
            // A vote for a stage not open yet is refused: the voter tries again later.
            // With at most three stages, three passes reach every stage that can open.
            let actions: Vec<Action> = order
                .repeat(3)
                .iter()
                .map(|p| Action::Vote {
                    human: PEOPLE.iter().position(|q| q == p).unwrap(),
                    asked: None,
                    checked: false,
                    approve: true,
                    reason: 0,
                })
                .collect();
            let (s, _) = run(&w, &actions)?;
            prop_assert_eq!(s.status, expect, "order {:?}", order);
            // Every vote recorded (a person once), in this order.
            let mut all = base.clone();
            for p in order {
                if !all.votes.iter().any(|v| v.voter == *p) {
                    all.votes.push(Vote { voter: p.to_string(), approve: true, reason: None, at: 1, by: None });
                }
            }
            // Who fills a slot depends on who came first (1 of {a, b}: the first), so
            // `approved_by` may differ; whether all are met and how many slots are
            // filled (a maximum matching's size) do not.
            let filled: usize = all.assign().iter().map(Vec::len).sum();
            seen.insert((all.threshold_met(), filled));
        }
        prop_assert_eq!(seen.len(), 1, "{:?}", seen);
    }
}

pub(super) fn answer() -> impl Strategy<Value = checks::Answer> {
    prop::sample::select(checks::Answer::ALL.to_vec())
}
