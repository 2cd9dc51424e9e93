//! Tests of the decision machine, including every order of a set of votes agreeing.

use super::*;

fn req(group: &str, count: u32, members: &[&str]) -> Requirement {
    Requirement {
        group: group.into(),
        count,
        members: members.iter().map(|s| s.to_string()).collect(),
        source: None,
        stage: None,
    }
}

fn state(reqs: Vec<Requirement>, requesters: &[&str]) -> State {
    State {
        status: Status::Pending,
        requesters: requesters.iter().map(|s| s.to_string()).collect(),
        requirements: reqs,
        votes: vec![],
        expires_at: 1_000,
        approval_ttl_ms: 100,
        approval_expires_at: None,
        extra_voters: vec![],
        next_escalation: None,
        window_open: true,
    }
}

fn approve(s: &mut State, who: &str, now: i64) -> Result<Next, Refusal> {
    let next = s.vote(who, true, None, now)?;
    s.votes.push(Vote {
        voter: who.into(),
        approve: true,
        reason: None,
        at: now,
        by: None,
    });
    s.status = next.status;
    s.approval_expires_at = next.approval_expires_at;
    Ok(next)
}

#[test]
fn two_of_three_with_requester_in_group() {
    let mut s = state(vec![req("sre", 2, &["alice", "bob", "carol"])], &["alice"]);
    assert_eq!(approve(&mut s, "alice", 1), Err(Refusal::Requester));
    assert_eq!(approve(&mut s, "bob", 2).unwrap().status, Status::Pending);
    assert_eq!(approve(&mut s, "bob", 3), Err(Refusal::AlreadyVoted));
    let n = approve(&mut s, "carol", 4).unwrap();
    assert_eq!(
        n,
        Next {
            status: Status::Approved,
            approval_expires_at: Some(104)
        }
    );
}

#[test]
fn person_in_two_groups_counts_once() {
    let mut s = state(
        vec![req("sre", 1, &["alice", "bob"]), req("security", 1, &["alice", "dave"])],
        &["zed"],
    );
    assert_eq!(approve(&mut s, "alice", 1).unwrap().status, Status::Pending);
    assert!(!s.threshold_met());
    // bob can only fill sre, so alice must move to security: the matching finds it.
    assert_eq!(approve(&mut s, "bob", 2).unwrap().status, Status::Approved);
    let a = s.assign();
    assert_eq!(a[0], vec!["bob".to_string()]);
    assert_eq!(a[1], vec!["alice".to_string()]);
}

#[test]
fn one_person_cannot_fill_two_slots_of_one_group() {
    let mut s = state(vec![req("sre", 2, &["alice", "bob"])], &[]);
    approve(&mut s, "alice", 1).unwrap();
    assert_eq!(approve(&mut s, "alice", 2), Err(Refusal::AlreadyVoted));
    assert_eq!(s.status, Status::Pending);
}

#[test]
fn deny_needs_reason_and_denies() {
    let s = state(vec![req("sre", 2, &["alice", "bob"])], &[]);
    assert_eq!(s.vote("alice", false, None, 1), Err(Refusal::ReasonRequired));
    assert_eq!(s.vote("alice", false, Some("   "), 1), Err(Refusal::ReasonRequired));
    for invisible in ["\u{200B}", "\0", " \u{200B}\u{FEFF} \0 "] {
        assert_eq!(
            s.vote("alice", false, Some(invisible), 1),
            Err(Refusal::ReasonRequired),
            "{invisible:?}"
        );
    }
    assert_eq!(s.vote("alice", false, Some("no"), 1).unwrap().status, Status::Denied);
}

#[test]
fn requester_refused_even_for_deny_and_ineligible_refused() {
    let s = state(vec![req("sre", 1, &["alice", "bob"])], &["bob"]);
    assert_eq!(s.vote("bob", false, Some("x"), 1), Err(Refusal::Requester));
    assert_eq!(s.vote("mallory", true, None, 1), Err(Refusal::NotEligible));
}

#[test]
fn terminal_states_never_change() {
    for st in [Status::Denied, Status::Expired, Status::Canceled, Status::Consumed] {
        let mut s = state(vec![req("sre", 1, &["alice"])], &[]);
        s.status = st;
        assert_eq!(s.vote("alice", true, None, 1), Err(Refusal::NotPending(st)));
        assert_eq!(s.vote("alice", false, Some("r"), 1), Err(Refusal::NotPending(st)));
        assert_eq!(s.cancel(1), Err(Refusal::NotPending(st)));
        assert_eq!(s.consume(1), Err(Refusal::NotPending(st)));
        assert_eq!(s.tick(i64::MAX), None);
        assert_eq!(s.deadline(), None);
        assert!(st.is_terminal());
    }
}

#[test]
fn timeout_and_ttl() {
    let mut s = state(vec![req("sre", 1, &["alice"])], &[]);
    assert_eq!(s.tick(999), None);
    assert_eq!(s.tick(1_000).unwrap().status, Status::Expired);
    assert_eq!(s.vote("alice", true, None, 1_000), Err(Refusal::Expired));
    approve(&mut s, "alice", 500).unwrap();
    assert_eq!(s.status, Status::Approved);
    assert_eq!(s.deadline(), Some(600));
    assert_eq!(s.tick(599), None);
    assert_eq!(s.consume(600), Err(Refusal::Expired));
    assert_eq!(s.tick(600).unwrap().status, Status::Expired);
    assert_eq!(s.consume(599).unwrap().status, Status::Consumed);
}

#[test]
fn cancel_only_while_pending() {
    let mut s = state(vec![req("sre", 1, &["alice"])], &[]);
    assert_eq!(s.cancel(1).unwrap().status, Status::Canceled);
    approve(&mut s, "alice", 1).unwrap();
    assert_eq!(s.cancel(2), Err(Refusal::NotPending(Status::Approved)));
}

/// Every order of every subset of votes over a small universe: the outcome
/// depends only on who approved, never on the order, and the requester never counts.
#[test]
fn exhaustive_orders_agree() {
    let people = ["alice", "bob", "carol", "dave"];
    let reqs = vec![req("a", 1, &["alice", "bob"]), req("b", 2, &["bob", "carol", "dave"])];
    fn perms(v: &[&'static str]) -> Vec<Vec<&'static str>> {
        if v.len() <= 1 {
            return vec![v.to_vec()];
        }
        let mut out = vec![];
        for i in 0..v.len() {
            let mut rest = v.to_vec();
            let x = rest.remove(i);
            for mut p in perms(&rest) {
                p.insert(0, x);
                out.push(p);
            }
        }
        out
    }
    for requester in people {
        for mask in 0u32..16 {
            let chosen: Vec<&'static str> = (0..4).filter(|i| mask & (1 << i) != 0).map(|i| people[i]).collect();
            let mut outcomes = std::collections::HashSet::new();
            for order in perms(&chosen) {
                let mut s = state(reqs.clone(), &[requester]);
                for who in &order {
                    if s.status != Status::Pending {
                        break;
                    }
                    let r = approve(&mut s, who, 1);
                    if *who == requester {
                        assert_eq!(r, Err(Refusal::Requester));
                    }
                }
                outcomes.insert(s.status);
            }
            assert_eq!(outcomes.len(), 1, "order changed the outcome for {chosen:?}");
            let counted: Vec<&str> = chosen.iter().copied().filter(|p| *p != requester).collect();
            // Brute force: a needs one of {alice,bob}; b needs two of {bob,carol,dave}; distinct people.
            let expect = counted.iter().any(|x| {
                ["alice", "bob"].contains(x)
                    && counted
                        .iter()
                        .filter(|y| *y != x && ["bob", "carol", "dave"].contains(y))
                        .count()
                        >= 2
            });
            let got = *outcomes.iter().next().unwrap() == Status::Approved;
            assert_eq!(got, expect, "requester {requester}, votes {chosen:?}");
        }
    }
}

#[test]
fn escalation_adds_voters_for_any_slot() {
    let mut s = state(
        vec![req("sre", 2, &["alice", "bob"]), req("security", 1, &["dave"])],
        &["alice"],
    );
    assert_eq!(s.vote("rel", true, None, 1), Err(Refusal::NotEligible));
    s.extra_voters = vec!["rel".into(), "alice".into(), "rita".into()];
    // The requester stays the requester, escalation or not.
    assert_eq!(s.vote("alice", true, None, 1), Err(Refusal::Requester));
    assert!(s.is_eligible("rel") && !s.is_eligible("alice"));
    approve(&mut s, "bob", 1).unwrap();
    approve(&mut s, "rel", 2).unwrap();
    assert_eq!(s.status, Status::Pending, "security still needs someone");
    // rita fills whichever slot is left; the matching moves rel as needed.
    assert_eq!(approve(&mut s, "rita", 3).unwrap().status, Status::Approved);
    let a = s.assign();
    assert_eq!(a[0].len(), 2);
    assert_eq!(a[1].len(), 1);
    // An added voter still counts once.
    let mut s = state(vec![req("sre", 2, &["bob"])], &[]);
    s.extra_voters = vec!["rel".into()];
    approve(&mut s, "rel", 1).unwrap();
    assert_eq!(s.vote("rel", true, None, 2), Err(Refusal::AlreadyVoted));
    assert_eq!(approve(&mut s, "bob", 2).unwrap().status, Status::Approved);
}

#[test]
fn escalation_steps_due_and_next() {
    let afters = [30, 60, 90];
    assert_eq!(due_escalations(&afters, &[], 100, 1_000, 129), Vec::<usize>::new());
    assert_eq!(due_escalations(&afters, &[], 100, 1_000, 130), vec![0]);
    assert_eq!(due_escalations(&afters, &[0], 100, 1_000, 130), Vec::<usize>::new());
    // A restart that missed two steps applies both, once.
    assert_eq!(due_escalations(&afters, &[0], 100, 1_000, 500), vec![1, 2]);
    assert_eq!(
        due_escalations(&afters, &[0, 1, 2], 100, 1_000, 500),
        Vec::<usize>::new()
    );
    // Never at or after the timeout: then the request expires instead.
    assert_eq!(due_escalations(&afters, &[], 100, 150, 150), Vec::<usize>::new());
    assert_eq!(next_escalation(&afters, &[], 100, 1_000), Some(130));
    assert_eq!(next_escalation(&afters, &[0], 100, 1_000), Some(160));
    assert_eq!(next_escalation(&afters, &[0, 1, 2], 100, 1_000), None);
    assert_eq!(next_escalation(&afters, &[0], 100, 160), None);
    // The deadline is the earlier of the timeout and the next step, while pending.
    let mut s = state(vec![req("sre", 1, &["alice"])], &[]);
    s.next_escalation = Some(400);
    assert_eq!(s.deadline(), Some(400));
    assert_eq!(s.tick(400), None, "an escalation is not an expiry");
    s.next_escalation = Some(4_000);
    assert_eq!(s.deadline(), Some(1_000));
    approve(&mut s, "alice", 1).unwrap();
    assert_eq!(s.deadline(), Some(101));
}

#[test]
fn closed_window_refuses_consume_and_keeps_the_approval() {
    let mut s = state(vec![req("sre", 1, &["alice"])], &[]);
    s.window_open = false;
    // Votes are taken while the window is closed.
    assert_eq!(approve(&mut s, "alice", 10).unwrap().status, Status::Approved);
    assert_eq!(s.consume(20), Err(Refusal::OutsideWindow));
    assert_eq!(s.status, Status::Approved);
    assert_eq!(s.tick(20), None);
    // The approval's own validity still wins: lapsed is lapsed.
    assert_eq!(s.consume(110), Err(Refusal::Expired));
    s.window_open = true;
    assert_eq!(s.consume(20).unwrap().status, Status::Consumed);
}

#[test]
fn a_delegate_counts_for_the_delegator_once_and_one_human_is_one_vote() {
    let mut s = state(
        vec![req("leads", 1, &["alice"]), req("ops", 1, &["bob", "carol"])],
        &["dave"],
    );
    // bob is not a lead, but votes for alice, who is.
    let next = s.vote_as("bob", Some("alice"), true, None, 1).unwrap();
    assert_eq!(next.status, Status::Pending);
    s.votes.push(Vote {
        voter: "alice".into(),
        approve: true,
        reason: None,
        at: 1,
        by: Some("bob".into()),
    });
    assert_eq!(s.assign()[0], vec!["alice".to_string()]);
    // alice herself now adds nothing, and bob cannot vote again for himself.
    assert_eq!(s.vote("alice", true, None, 2), Err(Refusal::AlreadyVoted));
    assert_eq!(s.vote("bob", true, None, 2), Err(Refusal::AlreadyVoted));
    assert_eq!(approve(&mut s, "carol", 3).unwrap().status, Status::Approved);
}

#[test]
fn neither_a_requester_delegate_nor_a_requester_delegator_counts() {
    let s = state(vec![req("leads", 1, &["alice", "bob"])], &["bob"]);
    assert_eq!(s.vote_as("bob", Some("alice"), true, None, 1), Err(Refusal::Requester));
    let s = state(vec![req("leads", 1, &["alice", "bob"])], &["alice"]);
    assert_eq!(s.vote_as("bob", Some("alice"), true, None, 1), Err(Refusal::Requester));
    let s = state(vec![req("leads", 1, &["alice"])], &[]);
    assert_eq!(
        s.vote_as("bob", Some("carol"), true, None, 1),
        Err(Refusal::NotEligible)
    );
}

fn staged(group: &str, count: u32, members: &[&str], stage: &str) -> Requirement {
    Requirement {
        stage: Some(stage.into()),
        ..req(group, count, members)
    }
}

fn deny(s: &mut State, who: &str, now: i64) -> Result<Next, Refusal> {
    let next = s.vote(who, false, Some("no"), now)?;
    s.votes.push(Vote {
        voter: who.into(),
        approve: false,
        reason: Some("no".into()),
        at: now,
        by: None,
    });
    s.status = next.status;
    Ok(next)
}

fn release_after_security() -> State {
    state(
        vec![
            staged("security", 1, &["sam", "alice"], "security"),
            staged("release", 1, &["rita", "alice"], "release"),
        ],
        &["dave"],
    )
}

#[test]
fn stages_open_in_order() {
    let mut s = release_after_security();
    assert_eq!(s.open_stages(), vec!["security".to_string()]);
    assert_eq!(s.waiting_stage().as_deref(), Some("security"));
    let closed = Refusal::StageNotOpen {
        stage: "release".into(),
        waiting: "security".into(),
    };
    assert_eq!(s.vote("rita", true, None, 1), Err(closed.clone()));
    assert_eq!(
        closed.to_string(),
        "stage `release` is not open yet: it opens once stage `security` is approved"
    );
    // A deny from a closed stage is refused too: only open stages decide.
    assert_eq!(s.vote("rita", false, Some("no"), 1), Err(closed));
    assert!(!s.in_open_stage("rita") && s.is_eligible("rita"));
    let before = s.clone();
    assert_eq!(approve(&mut s, "sam", 2).unwrap().status, Status::Pending);
    assert_eq!(newly_opened(&before, &s), vec!["release".to_string()]);
    assert_eq!(s.waiting_stage().as_deref(), Some("release"));
    assert!(s.in_open_stage("rita"));
    assert_eq!(approve(&mut s, "rita", 3).unwrap().status, Status::Approved);
    assert_eq!(s.waiting_stage(), None);
    assert_eq!(s.assign(), vec![vec!["sam".to_string()], vec!["rita".to_string()]]);
}

#[test]
fn one_person_in_two_stages_counts_once() {
    let mut s = release_after_security();
    assert_eq!(approve(&mut s, "alice", 1).unwrap().status, Status::Pending);
    assert_eq!(s.open_stages().len(), 2, "alice met security");
    assert_eq!(s.vote("alice", true, None, 2), Err(Refusal::AlreadyVoted));
    // sam could only fill security, so alice moves to release: both are met.
    assert_eq!(approve(&mut s, "sam", 3).unwrap().status, Status::Approved);
    assert_eq!(s.assign(), vec![vec!["sam".to_string()], vec!["alice".to_string()]]);
}

#[test]
fn a_deny_in_any_open_stage_denies() {
    let mut s = release_after_security();
    assert_eq!(deny(&mut s, "sam", 1).unwrap().status, Status::Denied);
    let mut s = release_after_security();
    approve(&mut s, "sam", 1).unwrap();
    assert_eq!(deny(&mut s, "rita", 2).unwrap().status, Status::Denied);
    // The requester is refused before any stage is considered.
    let s = state(
        vec![staged("a", 1, &["sam"], "a"), staged("b", 1, &["dave"], "b")],
        &["dave"],
    );
    assert_eq!(s.vote("dave", true, None, 1), Err(Refusal::Requester));
}

#[test]
fn a_stage_waits_for_every_requirement_of_every_stage_before_it() {
    let mut s = state(
        vec![
            staged("sre", 2, &["a", "b", "c"], "one"),
            staged("sec", 1, &["c", "d"], "one"),
            staged("rel", 1, &["e"], "two"),
            staged("vp", 1, &["f"], "three"),
        ],
        &[],
    );
    assert_eq!(s.stages().len(), 3);
    assert_eq!(s.stages()[0].requirements, 0..2);
    approve(&mut s, "a", 1).unwrap();
    approve(&mut s, "c", 2).unwrap();
    // a and c: sre has a, c goes to sre or sec but not both.
    assert_eq!(s.open_stages(), vec!["one".to_string()]);
    assert!(matches!(s.vote("e", true, None, 3), Err(Refusal::StageNotOpen { .. })));
    approve(&mut s, "d", 3).unwrap();
    assert_eq!(s.open_stages(), vec!["one".to_string(), "two".to_string()]);
    assert_eq!(
        s.vote("f", true, None, 4),
        Err(Refusal::StageNotOpen {
            stage: "three".into(),
            waiting: "two".into()
        })
    );
    approve(&mut s, "e", 4).unwrap();
    assert_eq!(approve(&mut s, "f", 5).unwrap().status, Status::Approved);
}

#[test]
fn escalated_voters_fill_open_stages_only() {
    let mut s = release_after_security();
    s.extra_voters = vec!["erin".into()];
    // erin may vote now (the first stage is always open) and fills security.
    assert_eq!(approve(&mut s, "erin", 1).unwrap().status, Status::Pending);
    assert_eq!(s.assign(), vec![vec!["erin".to_string()], vec![]]);
    assert_eq!(approve(&mut s, "rita", 2).unwrap().status, Status::Approved);
}

#[test]
fn an_escalation_that_meets_the_threshold_approves() {
    // bob's approval counts for nothing (alice fills sre) until he is added.
    let mut s = state(
        vec![req("sre", 1, &["alice", "bob"]), req("sec", 1, &["carol"])],
        &["dave"],
    );
    approve(&mut s, "alice", 1).unwrap();
    approve(&mut s, "bob", 2).unwrap();
    assert_eq!(s.status, Status::Pending);
    let none = s.escalate(&["erin".into()], 10);
    assert_eq!(none.status, Status::Pending);
    assert_eq!(
        s.escalate(&["bob".into()], 10),
        Next {
            status: Status::Approved,
            approval_expires_at: Some(110)
        }
    );
    // The requester added by an escalation still never counts.
    let mut r = state(
        vec![req("sre", 1, &["alice", "dave"]), req("sec", 1, &["carol"])],
        &["dave"],
    );
    approve(&mut r, "alice", 1).unwrap();
    assert_eq!(r.escalate(&["dave".into()], 10).status, Status::Pending);
    // Not at or after the timeout, and never on a request that is not pending.
    assert_eq!(s.escalate(&["bob".into()], 1_000).status, Status::Pending);
    s.status = Status::Canceled;
    assert_eq!(s.escalate(&["bob".into()], 10).status, Status::Canceled);
}

#[test]
fn requirements_without_a_stage_parse_from_old_rows() {
    let r: Requirement = serde_json::from_str(r#"{"group":"sre","count":1,"members":["a"]}"#).unwrap();
    assert_eq!(r.stage, None);
    assert!(!serde_json::to_string(&r).unwrap().contains("stage"));
    let s = state(vec![r], &[]);
    assert!(s.open_stages().is_empty() && s.waiting_stage().is_none());
}
