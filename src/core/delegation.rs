//! Delegations: "while I am away, bob votes for me". Pure: whether one is in force is
//! a question about a `now` the caller passes in (the vote's own), and which identity a
//! vote counts as is decided here from the request's state and the delegations given.

use serde::{Deserialize, Serialize};

use super::decide::{Refusal, State};

/// One delegation, as stored and as the API shows it (times in Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    pub id: String,
    /// Who is away.
    pub delegator: String,
    /// Who votes for them meanwhile.
    pub delegate: String,
    pub reason: String,
    pub created_at: i64,
    /// Who created it: the delegator, or an admin (`--from`).
    pub created_by: String,
    pub until: i64,
    #[serde(default)]
    pub revoked_at: Option<i64>,
    #[serde(default)]
    pub revoked_by: Option<String>,
}

impl Delegation {
    /// In force from its creation until `until` (exclusive), unless revoked before `now`.
    pub fn in_force(&self, now: i64) -> bool {
        self.created_at <= now && now < self.until && self.revoked_at.is_none_or(|r| now < r)
    }
}

/// The delegators (sorted, once each) of the delegations in `received` in force at `now`:
/// the people a delegate stands in for, whose requests the delegate may read.
pub fn in_force_for(received: &[Delegation], now: i64) -> Vec<String> {
    let mut out: Vec<String> = received
        .iter()
        .filter(|d| d.in_force(now))
        .map(|d| d.delegator.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Why a new delegation is refused: each message names what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("a delegation to yourself means nothing: name someone else with --to")]
    ToSelf,
    #[error("`{0}` is not a configured user")]
    Unknown(String),
    #[error("--until is not in the future (it must end after now)")]
    Past,
    #[error("a delegation needs a reason (--reason)")]
    NoReason,
}

/// Checks a new delegation from `delegator` to `delegate` until `until` at `now`;
/// `known` says whether a name is a configured person.
pub fn check_new(
    delegator: &str,
    delegate: &str,
    until: i64,
    reason: &str,
    now: i64,
    known: &dyn Fn(&str) -> bool,
) -> Result<(), Invalid> {
    if crate::core::text::is_blank(reason) {
        return Err(Invalid::NoReason);
    }
    for who in [delegator, delegate] {
        if !known(who) {
            return Err(Invalid::Unknown(who.to_string()));
        }
    }
    if delegator == delegate {
        return Err(Invalid::ToSelf);
    }
    if until <= now {
        return Err(Invalid::Past);
    }
    Ok(())
}

/// Who `human`'s vote counts as at `now`, given the delegations they received
/// (`received`, any state). With `asked` (`--for alice`), that person, if a delegation
/// from them is in force. Without it: themselves when they may vote on this request,
/// otherwise the first delegator (by name) in force whose vote would count and has not
/// been cast; `None` means themselves. The machine then checks the vote as usual.
pub fn counts_as(
    state: &State,
    human: &str,
    asked: Option<&str>,
    received: &[Delegation],
    now: i64,
) -> Result<Option<String>, Refusal> {
    let mut from: Vec<&str> = received
        .iter()
        .filter(|d| d.delegate == human && d.in_force(now))
        .map(|d| d.delegator.as_str())
        .collect();
    from.sort_unstable();
    from.dedup();
    if let Some(whom) = asked {
        if whom == human {
            return Ok(None);
        }
        return match from.contains(&whom) {
            true => Ok(Some(whom.to_string())),
            false => Err(Refusal::NotDelegated(whom.to_string())),
        };
    }
    if state.is_eligible(human) || state.is_requester(human) {
        return Ok(None);
    }
    Ok(from
        .into_iter()
        .find(|d| state.is_eligible(d) && !state.votes.iter().any(|v| v.voter == *d))
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decide::{Requirement, Status};

    fn d(from: &str, to: &str, until: i64, revoked: Option<i64>) -> Delegation {
        Delegation {
            id: "dlg_1".into(),
            delegator: from.into(),
            delegate: to.into(),
            reason: "leave".into(),
            created_at: 10,
            created_by: from.into(),
            until,
            revoked_at: revoked,
            revoked_by: revoked.map(|_| from.into()),
        }
    }

    fn state() -> State {
        State {
            status: Status::Pending,
            requesters: vec!["dave".into()],
            requirements: vec![Requirement {
                group: "leads".into(),
                count: 1,
                members: vec!["alice".into(), "carol".into()],
                source: None,
                stage: None,
            }],
            votes: vec![],
            expires_at: 1_000,
            approval_ttl_ms: 100,
            approval_expires_at: None,
            extra_voters: vec![],
            next_escalation: None,
            window_open: true,
        }
    }

    #[test]
    fn in_force_between_creation_and_until_unless_revoked() {
        assert!(!d("alice", "bob", 100, None).in_force(9));
        assert!(d("alice", "bob", 100, None).in_force(10));
        assert!(d("alice", "bob", 100, None).in_force(99));
        assert!(!d("alice", "bob", 100, None).in_force(100));
        assert!(d("alice", "bob", 100, Some(50)).in_force(49));
        assert!(!d("alice", "bob", 100, Some(50)).in_force(50));
    }

    #[test]
    fn new_delegations_are_checked() {
        let known = |n: &str| ["alice", "bob"].contains(&n);
        assert_eq!(check_new("alice", "bob", 20, "leave", 10, &known), Ok(()));
        assert_eq!(
            check_new("alice", "alice", 20, "leave", 10, &known),
            Err(Invalid::ToSelf)
        );
        assert_eq!(
            check_new("alice", "zed", 20, "leave", 10, &known),
            Err(Invalid::Unknown("zed".into()))
        );
        assert_eq!(check_new("alice", "bob", 10, "leave", 10, &known), Err(Invalid::Past));
        assert_eq!(
            check_new("alice", "bob", 20, " \u{200b}", 10, &known),
            Err(Invalid::NoReason)
        );
    }

    #[test]
    fn a_vote_counts_as_the_delegator_only_while_in_force() {
        let s = state();
        let given = [d("alice", "bob", 100, None)];
        assert_eq!(counts_as(&s, "bob", None, &given, 50), Ok(Some("alice".into())));
        assert_eq!(
            counts_as(&s, "bob", Some("alice"), &given, 50),
            Ok(Some("alice".into()))
        );
        // Expired, revoked, or never given: bob is only bob.
        assert_eq!(counts_as(&s, "bob", None, &given, 100), Ok(None));
        assert_eq!(
            counts_as(&s, "bob", Some("alice"), &given, 100),
            Err(Refusal::NotDelegated("alice".into()))
        );
        let revoked = [d("alice", "bob", 100, Some(20))];
        assert_eq!(counts_as(&s, "bob", None, &revoked, 50), Ok(None));
        // carol may vote herself, so without --for her vote is hers.
        assert_eq!(
            counts_as(&s, "carol", None, &[d("alice", "carol", 100, None)], 50),
            Ok(None)
        );
    }
}
