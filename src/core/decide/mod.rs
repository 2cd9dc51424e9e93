//! The decision state machine. Pure: no I/O and no clock; `now` is passed in,
//! so every rule that never bends is tested here exhaustively.
//!
//! ```text
//! pending ──approve threshold met──▶ approved ──consume──▶ consumed
//!    │  ├──an eligible deny───────▶ denied
//!    │  ├──timeout─────────────────▶ expired   (approved, not consumed in time: expired too)
//!    │  └──requester or job stops──▶ canceled
//!    └──escalation due──▶ pending (more people may vote; the engine records it), or
//!                          approved when those it adds make the approvals cast enough
//! ```
//!
//! Stages (`stages.rs`): a rule's requirements may come in stages, each opening once
//! the stages before it are met; only open stages take votes.
//!
//! Change windows: an approval is used (`consume`) only while the rule's window is
//! open; the caller computes `window_open` for `now`. Outside it, `consume` is refused
//! and the request stays approved until its approval lapses.

pub mod checks;
pub mod derive;
mod stages;

pub use self::stages::{Stage, newly_opened};

use std::fmt;

/// Where a request is in its life. Everything but `Pending` and `Approved` is terminal.
/// On the wire and in the database it is the lowercase name (`as_str`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
    Canceled,
    Consumed,
}

impl Status {
    /// Every status, in the order of a request's life.
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Approved,
        Status::Denied,
        Status::Expired,
        Status::Canceled,
        Status::Consumed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Canceled => "canceled",
            Status::Consumed => "consumed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "expired" => Status::Expired,
            "canceled" => Status::Canceled,
            "consumed" => Status::Consumed,
            _ => return None,
        })
    }

    /// Terminal states never change.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Pending | Status::Approved)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// N of the members of one group, as snapshotted when the request opened.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requirement {
    pub group: String,
    pub count: u32,
    pub members: Vec<String>,
    /// Where a forge group's members come from (`github_team:org/slug`,
    /// `gitlab_group:path`); `None` for a list of users. The caller resolves it and puts
    /// the members in `members` before asking the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The stage this requirement belongs to (`stages:` in the rule); `None` for a rule
    /// with a plain `require`. Stages run in the order of the requirements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// A counted vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// Who the vote counts as: the voter, or the person they voted for under a delegation.
    pub voter: String,
    pub approve: bool,
    pub reason: Option<String>,
    pub at: i64,
    /// The person who cast it when that is not `voter` ("bob for alice": `by` is bob).
    pub by: Option<String>,
}

impl Vote {
    /// The human who cast the vote.
    pub fn cast_by(&self) -> &str {
        self.by.as_deref().unwrap_or(&self.voter)
    }
}

/// What the machine needs to know about one request.
#[derive(Clone, Debug)]
pub struct State {
    pub status: Status,
    /// Every identity that is the requester: actor, triggering actor, commit author, and the
    /// configured users they map to. None of them ever counts.
    pub requesters: Vec<String>,
    pub requirements: Vec<Requirement>,
    pub votes: Vec<Vote>,
    pub expires_at: i64,
    pub approval_ttl_ms: i64,
    pub approval_expires_at: Option<i64>,
    /// People added by escalations: each may fill a slot of any requirement.
    pub extra_voters: Vec<String>,
    /// When the next escalation step is due, if one is left (see `next_escalation`).
    pub next_escalation: Option<i64>,
    /// Whether the rule's change windows are open now (`true` when it has none).
    pub window_open: bool,
}

/// Why a vote or an action is refused. Each maps to one HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request is no longer open (409).
    NotPending(Status),
    /// The requester may not vote on their own request (403).
    Requester,
    /// A vote for someone who has not delegated to the voter at the vote's time (403).
    NotDelegated(String),
    /// One person counts once (409).
    AlreadyVoted,
    /// Not in any group this request needs (403).
    NotEligible,
    /// A deny needs a reason (422).
    ReasonRequired,
    /// The request timed out; the caller should record the expiry (409).
    Expired,
    /// The approval may only be used inside the rule's change windows (409).
    OutsideWindow,
    /// The voter may only vote for a stage that has not opened yet (409): `stage` is
    /// theirs, `waiting` the open stage it waits for.
    StageNotOpen { stage: String, waiting: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotPending(s) => write!(f, "the request is {s}, not pending"),
            Refusal::Requester => {
                f.write_str("the requester of a request can never approve or deny it (separation of duties)")
            }
            Refusal::NotDelegated(whom) => {
                write!(
                    f,
                    "`{whom}` has no delegation to you in force now, so you cannot vote for them"
                )
            }
            Refusal::AlreadyVoted => f.write_str("you have already voted on this request"),
            Refusal::NotEligible => f.write_str("you are not in any group whose approval this request needs"),
            Refusal::ReasonRequired => f.write_str("a deny needs a reason"),
            Refusal::Expired => f.write_str("the request has expired"),
            Refusal::OutsideWindow => f.write_str("the rule's change window is closed"),
            Refusal::StageNotOpen { stage, waiting } => write!(
                f,
                "stage `{stage}` is not open yet: it opens once stage `{waiting}` is approved"
            ),
        }
    }
}

/// A transition the caller must persist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Next {
    pub status: Status,
    pub approval_expires_at: Option<i64>,
}

impl State {
    /// True when `who` is one of the requester's identities.
    pub fn is_requester(&self, who: &str) -> bool {
        self.requesters.iter().any(|r| r == who)
    }

    /// True when `who` is in some required group and is not the requester.
    pub fn is_eligible(&self, who: &str) -> bool {
        !self.is_requester(who)
            && (self.extra_voters.iter().any(|m| m == who)
                || self.requirements.iter().any(|r| r.members.iter().any(|m| m == who)))
    }

    /// Whether `who` already counts, or already cast a vote (for themselves or for
    /// someone else): one human is one vote on a request.
    fn has_voted(&self, who: &str) -> bool {
        self.votes.iter().any(|v| v.voter == who || v.cast_by() == who)
    }

    /// Applies one vote. On success the vote counts and `Next` is the state to store.
    pub fn vote(&self, voter: &str, approve: bool, reason: Option<&str>, now: i64) -> Result<Next, Refusal> {
        self.vote_as(voter, None, approve, reason, now)
    }

    /// Applies one vote cast by `human`, counted as `for_whom` when given (a delegation
    /// the caller found in force at `now`). Neither may be a requester; the one it counts
    /// as must be eligible; and neither may have voted or been voted for already.
    pub fn vote_as(
        &self,
        human: &str,
        for_whom: Option<&str>,
        approve: bool,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Next, Refusal> {
        self.check_open(now)?;
        let voter = for_whom.unwrap_or(human);
        if self.is_requester(human) || self.is_requester(voter) {
            return Err(Refusal::Requester);
        }
        if !self.is_eligible(voter) {
            return Err(Refusal::NotEligible);
        }
        self.check_stage_open(voter)?;
        if self.has_voted(voter) || self.has_voted(human) {
            return Err(Refusal::AlreadyVoted);
        }
        // A reason nobody can see (only whitespace, U+200B, NUL...) is no reason.
        let reason = reason.map(str::trim).filter(|r| !crate::core::text::is_blank(r));
        if !approve && reason.is_none() {
            return Err(Refusal::ReasonRequired);
        }
        if !approve {
            return Ok(Next {
                status: Status::Denied,
                approval_expires_at: None,
            });
        }
        let mut after = self.clone();
        after.votes.push(Vote {
            voter: voter.to_string(),
            approve: true,
            reason: reason.map(str::to_string),
            at: now,
            by: for_whom.map(|_| human.to_string()),
        });
        if after.threshold_met() {
            Ok(Next {
                status: Status::Approved,
                approval_expires_at: Some(now.saturating_add(self.approval_ttl_ms)),
            })
        } else {
            Ok(Next {
                status: Status::Pending,
                approval_expires_at: None,
            })
        }
    }

    fn check_open(&self, now: i64) -> Result<(), Refusal> {
        if self.status != Status::Pending {
            return Err(Refusal::NotPending(self.status));
        }
        if now >= self.expires_at {
            return Err(Refusal::Expired);
        }
        Ok(())
    }

    /// Withdraws a pending request.
    pub fn cancel(&self, now: i64) -> Result<Next, Refusal> {
        self.check_open(now)?;
        Ok(Next {
            status: Status::Canceled,
            approval_expires_at: None,
        })
    }

    /// The policy decides by itself (its evidence checks, as the check worker records
    /// them): only a pending request before its timeout, and an approval's validity
    /// starts now, as a vote's does.
    pub fn decide_by_policy(&self, approve: bool, now: i64) -> Result<Next, Refusal> {
        self.check_open(now)?;
        Ok(if approve {
            Next {
                status: Status::Approved,
                approval_expires_at: Some(now.saturating_add(self.approval_ttl_ms)),
            }
        } else {
            Next {
                status: Status::Denied,
                approval_expires_at: None,
            }
        })
    }

    /// Uses an approval: once, and only inside its validity window.
    pub fn consume(&self, now: i64) -> Result<Next, Refusal> {
        if self.status != Status::Approved {
            return Err(Refusal::NotPending(self.status));
        }
        if self.approval_expires_at.is_some_and(|t| now >= t) {
            return Err(Refusal::Expired);
        }
        if !self.window_open {
            return Err(Refusal::OutsideWindow);
        }
        Ok(Next {
            status: Status::Consumed,
            approval_expires_at: self.approval_expires_at,
        })
    }

    /// What time alone does: a pending request past its timeout, or an approval past its
    /// validity window, expires.
    pub fn tick(&self, now: i64) -> Option<Next> {
        let due = match self.status {
            Status::Pending => now >= self.expires_at,
            Status::Approved => self.approval_expires_at.is_some_and(|t| now >= t),
            _ => false,
        };
        due.then_some(Next {
            status: Status::Expired,
            approval_expires_at: self.approval_expires_at,
        })
    }

    /// The next instant at which time may change something: `tick`, or an escalation.
    pub fn deadline(&self) -> Option<i64> {
        match self.status {
            Status::Pending => Some(self.next_escalation.map_or(self.expires_at, |e| e.min(self.expires_at))),
            Status::Approved => self.approval_expires_at,
            _ => None,
        }
    }

    /// Whether the approvals so far meet every requirement, each person counted once.
    pub fn threshold_met(&self) -> bool {
        let assignment = self.assign();
        self.requirements
            .iter()
            .zip(&assignment)
            .all(|(r, got)| got.len() as u32 >= r.count)
    }

    /// Assigns each counted approver to at most one requirement of an open stage so that
    /// as many of them as possible are met (a maximum bipartite matching over their
    /// slots). Returns, per requirement, who counts for it (nobody for a closed stage).
    pub fn assign(&self) -> Vec<Vec<String>> {
        self.assign_over(self.open_prefix())
    }

    /// The matching of `assign` over the first `n` requirements only.
    fn assign_over(&self, n: usize) -> Vec<Vec<String>> {
        let approvers: Vec<&str> = self
            .votes
            .iter()
            .filter(|v| v.approve && self.is_eligible(&v.voter))
            .map(|v| v.voter.as_str())
            .collect();
        // One slot per needed approval.
        let slots: Vec<usize> = self.requirements[..n]
            .iter()
            .enumerate()
            .flat_map(|(i, r)| std::iter::repeat_n(i, r.count as usize))
            .collect();
        let mut slot_owner: Vec<Option<usize>> = vec![None; slots.len()];
        for a in 0..approvers.len() {
            let mut seen = vec![false; slots.len()];
            augment(a, &approvers, &slots, self, &mut slot_owner, &mut seen);
        }
        let mut out = vec![Vec::new(); self.requirements.len()];
        for (slot, owner) in slot_owner.iter().enumerate() {
            if let Some(a) = owner {
                out[slots[slot]].push(approvers[*a].to_string());
            }
        }
        out
    }
}

fn augment(
    a: usize,
    approvers: &[&str],
    slots: &[usize],
    st: &State,
    owner: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    let extra = st.extra_voters.iter().any(|m| m == approvers[a]);
    for s in 0..slots.len() {
        if seen[s] || !(extra || st.requirements[slots[s]].members.iter().any(|m| m == approvers[a])) {
            continue;
        }
        seen[s] = true;
        let free = match owner[s] {
            None => true,
            Some(other) => augment(other, approvers, slots, st, owner, seen),
        };
        if free {
            owner[s] = Some(a);
            return true;
        }
    }
    false
}

/// The escalation steps due at `now`: those whose `after` (ms since `opened`) has passed
/// and that are not in `done`, in order. Only a pending request escalates, and never at
/// or after its timeout.
pub fn due_escalations(afters: &[i64], done: &[usize], opened: i64, expires_at: i64, now: i64) -> Vec<usize> {
    if now >= expires_at {
        return vec![];
    }
    (0..afters.len())
        .filter(|i| !done.contains(i) && now >= opened.saturating_add(afters[*i]))
        .collect()
}

/// When the next escalation step not in `done` is due, if any is left before the timeout.
pub fn next_escalation(afters: &[i64], done: &[usize], opened: i64, expires_at: i64) -> Option<i64> {
    (0..afters.len())
        .filter(|i| !done.contains(i))
        .map(|i| opened.saturating_add(afters[i]))
        .filter(|t| *t < expires_at)
        .min()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod proptests_checks;
