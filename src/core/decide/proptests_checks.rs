//! Property tests of the evidence checks as the signed events replay them: whatever the
//! answers and the order they are recorded in, a decision by checks replays only when the
//! checks make it.

use proptest::prelude::*;

use super::proptests::answer;
use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Evidence checks: whatever the answers, in whatever order they are recorded, a
    /// decision by checks replays only when they make it; an error or an abstention
    /// among the approve-checks, or an error among the deny-checks, never approves.
    #[test]
    fn a_check_error_or_abstention_never_approves(
        approve in proptest::collection::vec(answer(), 0..4),
        deny in proptest::collection::vec(answer(), 0..4),
        order in any::<prop::sample::Index>(),
        decides_approve in any::<bool>(),
    ) {
        use checks::{Answer, Combined, List, combine};
        use serde_json::json;
        let mut results: Vec<(List, usize, Answer)> = approve.iter().enumerate().map(|(i, a)| (List::Approve, i, *a))
            .chain(deny.iter().enumerate().map(|(i, a)| (List::Deny, i, *a)))
            .collect();
        if !results.is_empty() {
            let k = order.index(results.len());
            results.rotate_left(k);
        }
        let mut events = vec![derive::Event { seq: 1, at: 0, kind: "created", actor: "ci", data: json!({
            "requirements": [{"group": "g", "count": 1, "members": ["p0"]}], "requester": ["p1"],
            "expires_at": "x", "checks": {"approve": approve.len(), "deny": deny.len()},
        })}];
        for (list, index, a) in &results {
            let seq = events.len() as i64 + 1;
            events.push(derive::Event { seq, at: seq, kind: "check", actor: "policy:r", data: json!({
                "list": list, "index": index, "kind": "http", "check": "c", "answer": a, "reason": "", "evidence": {},
            })});
        }
        let seq = events.len() as i64 + 1;
        let decision = if decides_approve { "approve" } else { "deny" };
        events.push(derive::Event { seq, at: seq, kind: "vote", actor: "policy:r",
            data: json!({"decision": decision, "automatic": true, "via": "check"}) });
        let combined = combine(&approve, &deny);
        let accepted = derive::derive(&events).is_ok();
        let made = matches!((combined, decides_approve), (Combined::Approve, true) | (Combined::Deny(_), false));
        prop_assert_eq!(accepted, made, "{:?} {:?} {:?}", approve, deny, combined);
        let unsure = approve.is_empty()
            || approve.iter().any(|a| *a != Answer::Approve)
            || deny.iter().any(|a| matches!(a, Answer::Error | Answer::Deny));
        if unsure {
            prop_assert_ne!(combined, Combined::Approve);
        }
    }
}
