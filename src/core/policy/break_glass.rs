//! `break_glass:` on a rule: who may approve their own change at once in an incident,
//! for how long, and who must review it afterwards (see docs/break-glass.md).

use serde::{Deserialize, Serialize};

use super::model::{Escalate, Require, Rule};
use crate::core::duration::Dur;

/// How long a review request stays open: it is never meant to time out (an unreviewed
/// break-glass change must stay visible), so its timeout is far beyond any `within`.
pub const REVIEW_TIMEOUT: Dur = Dur(3650 * 86_400_000);

/// `break_glass: {groups: [oncall], ttl: 30m, review: {group: sre, count: 1, within: 24h}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlass {
    /// Groups whose members may break the glass (any requester identity in one of them).
    pub groups: Vec<String>,
    /// How long the break-glass approval may be used (instead of `approval_ttl`).
    pub ttl: Dur,
    /// The follow-up review every break-glass approval opens.
    pub review: Review,
}

/// Who reviews a break-glass change, and by when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub group: String,
    #[serde(default = "one")]
    pub count: u32,
    /// Past this (since the break-glass), the review is overdue and escalates.
    pub within: Dur,
}

fn one() -> u32 {
    1
}

/// Why a rule's `break_glass` cannot be used, for the located policy error.
pub(super) fn check(
    rule: &Rule,
    bg: &BreakGlass,
    defined: &dyn Fn(&str) -> Option<Option<usize>>,
) -> Result<(), (&'static str, String)> {
    let name = &rule.name;
    if rule.decision.is_some() {
        return Err((
            "break_glass",
            format!("rule `{name}` decides automatically: `break_glass` is only for rules that wait for people"),
        ));
    }
    if bg.groups.is_empty() {
        return Err((
            "groups",
            format!("rule `{name}`: `break_glass.groups` is empty: nobody could use it"),
        ));
    }
    for g in &bg.groups {
        if defined(g).is_none() {
            return Err((
                "groups",
                format!("rule `{name}`: break_glass group `{g}` is not defined under `groups`"),
            ));
        }
    }
    if bg.ttl.millis() <= 0 {
        return Err(("ttl", format!("rule `{name}`: `break_glass.ttl` must be positive")));
    }
    let r = &bg.review;
    let Some(members) = defined(&r.group) else {
        return Err((
            "review",
            format!(
                "rule `{name}`: break_glass review group `{}` is not defined under `groups`",
                r.group
            ),
        ));
    };
    if r.count == 0 {
        return Err((
            "review",
            format!("rule `{name}`: break_glass review `count` must be at least 1"),
        ));
    }
    if let Some(n) = members
        && r.count as usize > n
    {
        return Err((
            "review",
            format!(
                "rule `{name}`: break_glass review needs {} of group `{}`, which has only {n} members",
                r.count, r.group
            ),
        ));
    }
    if r.within.millis() <= 0 || r.within >= REVIEW_TIMEOUT {
        return Err((
            "within",
            format!("rule `{name}`: break_glass review `within` must be positive and under {REVIEW_TIMEOUT}"),
        ));
    }
    Ok(())
}

/// The rule a review request is held to: the review group's approval, no timeout to
/// speak of, and at `within` one escalation step that tells the review group and the
/// groups the rule's own escalations tell (that step is what "overdue" is).
pub fn review_rule(rule: &Rule, bg: &BreakGlass) -> Rule {
    let mut notify = vec![bg.review.group.clone()];
    for g in rule.escalate.iter().flat_map(|e| &e.notify) {
        if !notify.contains(g) {
            notify.push(g.clone());
        }
    }
    // Every key written out, none copied with `..`: a key added to `Rule` must be decided
    // here, or this does not compile.
    Rule {
        name: rule.name.clone(),
        matcher: rule.matcher.clone(),
        decision: None,
        require: vec![Require {
            group: bg.review.group.clone(),
            count: bg.review.count,
        }],
        // The review group decides, in one step: no stage, no evidence check of the change's.
        stages: vec![],
        timeout: Some(REVIEW_TIMEOUT),
        // An approved review is a verdict, not something to use: it never lapses.
        approval_ttl: Some(REVIEW_TIMEOUT),
        escalate: vec![Escalate {
            after: bg.review.within,
            notify,
            add_groups: vec![],
        }],
        windows: None,
        fields: Default::default(),
        auto_approve_if: vec![],
        auto_deny_if: vec![],
        break_glass: None,
        // A review is its own request: no approval of a run covers it, and it supersedes nothing.
        approval_scope: Default::default(),
        supersede: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        serde_norway::from_str(
            "name: production\nrequire: [{group: sre, count: 2}]\nescalate: [{after: 1h, notify: [release]}]\nbreak_glass: {groups: [oncall], ttl: 30m, review: {group: sre, within: 24h}}\n",
        )
        .unwrap()
    }

    #[test]
    fn a_review_rule_waits_for_the_review_group_and_escalates_at_within() {
        let r = rule();
        let bg = r.break_glass.clone().unwrap();
        assert_eq!(bg.review.count, 1);
        let rr = review_rule(&r, &bg);
        assert_eq!(rr.name, "production");
        assert_eq!(
            rr.require,
            vec![Require {
                group: "sre".into(),
                count: 1
            }]
        );
        assert_eq!(rr.timeout(), REVIEW_TIMEOUT);
        assert_eq!(rr.escalate.len(), 1);
        assert_eq!(rr.escalate[0].after, Dur(86_400_000));
        assert_eq!(rr.escalate[0].notify, vec!["sre".to_string(), "release".to_string()]);
        assert!(rr.break_glass.is_none() && rr.decision.is_none());
    }

    #[test]
    fn policy_errors_point_at_the_break_glass_key() {
        let policy = |bg: &str, rule: &str| {
            format!(
                "version: 1\ngroups:\n  sre: [alice, bob]\nrules:\n  - name: production\n{rule}    break_glass:\n{bg}"
            )
        };
        let need = "    require: [{ group: sre }]\n";
        let ok = "      groups: [sre]\n      ttl: 30m\n      review: { group: sre, within: 24h }\n";
        assert!(super::super::Policy::parse("p.yaml", &policy(ok, need)).is_ok());
        let e = super::super::Policy::parse("p.yaml", &policy(&ok.replace("[sre]", "[oncal]"), need)).unwrap_err();
        assert_eq!((e.line, e.column), (8, 7), "{e}");
        assert!(e.message.contains("`oncal` is not defined"), "{e}");
        let e = super::super::Policy::parse("p.yaml", &policy(&ok.replace("24h", "0s"), need)).unwrap_err();
        assert_eq!(e.line, 10, "{e}");
        let e = super::super::Policy::parse("p.yaml", &policy(ok, "    decision: deny\n")).unwrap_err();
        assert_eq!((e.line, e.column), (7, 5), "{e}");
        assert!(e.message.contains("decides automatically"), "{e}");
    }

    #[test]
    fn checks_name_what_is_wrong() {
        let r = rule();
        let bg = r.break_glass.clone().unwrap();
        let all = |g: &str| (g != "nope").then_some(Some(2));
        assert_eq!(check(&r, &bg, &all), Ok(()));
        let bad = |f: &dyn Fn(&mut BreakGlass)| {
            let mut b = bg.clone();
            f(&mut b);
            check(&r, &b, &all).unwrap_err()
        };
        assert_eq!(bad(&|b| b.groups.clear()).0, "groups");
        assert!(
            bad(&|b| b.groups = vec!["nope".into()])
                .1
                .contains("`nope` is not defined")
        );
        assert_eq!(bad(&|b| b.ttl = Dur(0)).0, "ttl");
        assert_eq!(bad(&|b| b.review.count = 3).0, "review");
        assert_eq!(bad(&|b| b.review.count = 0).0, "review");
        assert_eq!(bad(&|b| b.review.within = Dur(0)).0, "within");
        assert_eq!(bad(&|b| b.review.group = "nope".into()).0, "review");
        let mut deny = r.clone();
        deny.require.clear();
        deny.decision = Some(super::super::model::AutoDecision::Deny);
        assert!(check(&deny, &bg, &all).unwrap_err().1.contains("decides automatically"));
    }
}
