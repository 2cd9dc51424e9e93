//! What a rule's evidence checks decide together. Pure: the server runs the checks and
//! hands their answers here; `derive` asks the same function of the recorded answers.
//!
//! - any `auto_deny_if` check answering deny denies, with its reason;
//! - otherwise, when there are `auto_approve_if` checks and every one answers approve,
//!   and every `auto_deny_if` check answered (approve or abstain, not an error), the
//!   policy approves;
//! - otherwise the people of `require` decide. An error or an abstention never approves,
//!   and a deny-check that could not answer keeps the policy from approving (it might
//!   have denied). An approve-check answering deny only means it does not pass.

use serde::{Deserialize, Serialize};

/// One check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Approve,
    Deny,
    Abstain,
    /// It could not answer: a refused or unreachable service, an unreadable body, a
    /// missing secret. (A timeout or a non-2xx status is an abstention.)
    Error,
}

impl Answer {
    pub const ALL: [Answer; 4] = [Answer::Approve, Answer::Deny, Answer::Abstain, Answer::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Approve => "approve",
            Answer::Deny => "deny",
            Answer::Abstain => "abstain",
            Answer::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Answer> {
        Answer::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Which list a check is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum List {
    #[serde(rename = "auto_approve_if")]
    Approve,
    #[serde(rename = "auto_deny_if")]
    Deny,
}

impl List {
    pub fn as_str(self) -> &'static str {
        match self {
            List::Approve => "auto_approve_if",
            List::Deny => "auto_deny_if",
        }
    }
}

/// What the checks decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combined {
    Approve,
    /// Denied by the deny-check at this index (the first that answered deny).
    Deny(usize),
    /// The people of `require` decide.
    Humans,
}

/// Combines the answers of the approve-checks and the deny-checks, each in list order.
pub fn combine(approve: &[Answer], deny: &[Answer]) -> Combined {
    if let Some(i) = deny.iter().position(|a| *a == Answer::Deny) {
        return Combined::Deny(i);
    }
    let all_pass = !approve.is_empty() && approve.iter().all(|a| *a == Answer::Approve);
    let deny_answered = deny.iter().all(|a| matches!(a, Answer::Approve | Answer::Abstain));
    if all_pass && deny_answered {
        Combined::Approve
    } else {
        Combined::Humans
    }
}

/// One check's recorded result: the data of its `check` audit event, and what the
/// signed record lists under `checks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub list: List,
    /// Its place in the list.
    pub index: usize,
    /// `promotion` or `http`.
    pub kind: String,
    /// What it checked, as `CheckSpec::describe` says.
    pub check: String,
    pub answer: Answer,
    pub reason: String,
    /// What it saw: the requests and records of a promotion, the response of an http check.
    #[serde(default)]
    pub evidence: serde_json::Value,
}

/// The answers of `results` in list order, when there is exactly one per check of lists
/// `approve_n` and `deny_n` long; `None` otherwise.
pub fn answers(results: &[CheckResult], approve_n: usize, deny_n: usize) -> Option<(Vec<Answer>, Vec<Answer>)> {
    let mut approve = vec![None; approve_n];
    let mut deny = vec![None; deny_n];
    for r in results {
        let slot = match r.list {
            List::Approve => approve.get_mut(r.index)?,
            List::Deny => deny.get_mut(r.index)?,
        };
        if slot.replace(r.answer).is_some() {
            return None;
        }
    }
    let approve: Option<Vec<Answer>> = approve.into_iter().collect();
    let deny: Option<Vec<Answer>> = deny.into_iter().collect();
    Some((approve?, deny?))
}

/// What the recorded results decide, with the reason the automatic vote and the record
/// carry: `Some((true, …))` approved, `Some((false, …))` denied by the first deny-check
/// that answered deny, `None` for the people of `require`. Results that are not one per
/// check of lists `approve_n` and `deny_n` long decide nothing.
pub fn decision(results: &[CheckResult], approve_n: usize, deny_n: usize) -> Option<(bool, String)> {
    let (a, d) = answers(results, approve_n, deny_n)?;
    match combine(&a, &d) {
        Combined::Humans => None,
        Combined::Approve => {
            let each: Vec<String> = results
                .iter()
                .filter(|r| r.list == List::Approve)
                .map(|r| format!("{}: {}", r.check, r.reason))
                .collect();
            Some((
                true,
                format!("every auto_approve_if check approved: {}", each.join("; ")),
            ))
        }
        Combined::Deny(i) => {
            let r = results.iter().find(|r| r.list == List::Deny && r.index == i)?;
            Some((false, format!("auto_deny_if[{i}] ({}) denied: {}", r.check, r.reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every list of up to `n` answers.
    fn lists(n: usize) -> Vec<Vec<Answer>> {
        let mut out = vec![vec![]];
        let mut last = vec![vec![]];
        for _ in 0..n {
            let mut next = Vec::new();
            for l in &last {
                for a in Answer::ALL {
                    let mut l = l.clone();
                    l.push(a);
                    next.push(l);
                }
            }
            out.extend(next.iter().cloned());
            last = next;
        }
        out
    }

    #[test]
    fn every_combination_of_up_to_three_answers_each() {
        let all = lists(3);
        assert_eq!(all.len(), 1 + 4 + 16 + 64);
        for a in &all {
            for d in &all {
                let got = combine(a, d);
                let first_deny = d.iter().position(|x| *x == Answer::Deny);
                let want = if let Some(i) = first_deny {
                    Combined::Deny(i)
                } else if !a.is_empty() && a.iter().all(|x| *x == Answer::Approve) && !d.contains(&Answer::Error) {
                    Combined::Approve
                } else {
                    Combined::Humans
                };
                assert_eq!(got, want, "approve {a:?} deny {d:?}");
                // What never bends: an error or an abstention among the approve-checks,
                // or an error among the deny-checks, never approves.
                if a.iter().any(|x| *x != Answer::Approve) || d.contains(&Answer::Error) || a.is_empty() {
                    assert_ne!(got, Combined::Approve, "approve {a:?} deny {d:?}");
                }
                // An approve-check never denies.
                if !d.contains(&Answer::Deny) {
                    assert!(!matches!(got, Combined::Deny(_)), "approve {a:?} deny {d:?}");
                }
            }
        }
    }

    fn result(list: List, index: usize, answer: Answer) -> CheckResult {
        CheckResult {
            list,
            index,
            kind: String::from("http"),
            check: "http https://x".into(),
            answer,
            reason: String::new(),
            evidence: serde_json::Value::Null,
        }
    }

    #[test]
    fn answers_need_one_result_per_check() {
        let r = vec![
            result(List::Deny, 0, Answer::Abstain),
            result(List::Approve, 1, Answer::Error),
            result(List::Approve, 0, Answer::Approve),
        ];
        assert_eq!(
            answers(&r, 2, 1),
            Some((vec![Answer::Approve, Answer::Error], vec![Answer::Abstain]))
        );
        // One missing, one too many, one twice, one out of range.
        assert_eq!(answers(&r[1..], 2, 1), None);
        assert_eq!(answers(&r, 2, 0), None);
        let mut twice = r.clone();
        twice.push(result(List::Approve, 0, Answer::Approve));
        assert_eq!(answers(&twice, 2, 1), None);
        assert_eq!(answers(&r, 1, 1), None);
        let json = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(json["list"], "auto_deny_if");
        assert_eq!(json["answer"], "abstain");
        assert_eq!(serde_json::from_value::<CheckResult>(json).unwrap(), r[0]);
    }
}
