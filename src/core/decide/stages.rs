//! Stages (`stages:` in a rule) and what an escalation decides.
//!
//! A stage is a run of consecutive requirements with the same `stage` name; a rule with
//! a plain `require` is one unnamed stage. The first stage is open from the start; each
//! later one opens once every requirement of every stage before it is met, by the same
//! matching as `assign` (each person counted once across all stages). Only open stages
//! take approvals, so nobody ever counts for a stage before the ones ahead of it are met.

use std::ops::Range;

use super::{Next, Refusal, State, Status};

/// One stage of a request: its name and the indices of its requirements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    pub name: Option<String>,
    pub requirements: Range<usize>,
}

impl State {
    /// The stages, in order. Empty when the request has no requirements.
    pub fn stages(&self) -> Vec<Stage> {
        let mut out: Vec<Stage> = Vec::new();
        for (i, r) in self.requirements.iter().enumerate() {
            match out.last_mut() {
                Some(s) if s.name == r.stage => s.requirements.end = i + 1,
                _ => out.push(Stage {
                    name: r.stage.clone(),
                    requirements: i..i + 1,
                }),
            }
        }
        out
    }

    /// How many requirements, from the first, belong to open stages.
    pub fn open_prefix(&self) -> usize {
        let mut open = 0;
        for s in self.stages() {
            let start = s.requirements.start;
            if start > 0 && !self.met_over(start) {
                break;
            }
            open = s.requirements.end;
        }
        open
    }

    /// Whether the first `n` requirements are all met by the matching over them alone.
    fn met_over(&self, n: usize) -> bool {
        let got = self.assign_over(n);
        self.requirements[..n]
            .iter()
            .zip(&got)
            .all(|(r, who)| who.len() as u32 >= r.count)
    }

    /// The names of the stages open now (none for a rule without stages).
    pub fn open_stages(&self) -> Vec<String> {
        let open = self.open_prefix();
        self.stages()
            .into_iter()
            .filter(|s| s.requirements.end <= open)
            .filter_map(|s| s.name)
            .collect()
    }

    /// The stage that waits for approvals now: the last open one, while its
    /// requirements are not all met. `None` for a rule without stages, or when met.
    pub fn waiting_stage(&self) -> Option<String> {
        if self.threshold_met() {
            return None;
        }
        self.open_stages().pop()
    }

    /// Whether `who` may fill a slot of an open stage: a member of one of its
    /// requirements, or someone an escalation added (they fill open stages only).
    pub fn in_open_stage(&self, who: &str) -> bool {
        self.extra_voters.iter().any(|m| m == who)
            || self.requirements[..self.open_prefix()]
                .iter()
                .any(|r| r.members.iter().any(|m| m == who))
    }

    /// Refuses a voter eligible only for stages that are not open yet.
    pub(super) fn check_stage_open(&self, who: &str) -> Result<(), Refusal> {
        if self.in_open_stage(who) {
            return Ok(());
        }
        let open = self.open_prefix();
        let stage = self.requirements[open..]
            .iter()
            .find(|r| r.members.iter().any(|m| m == who))
            .and_then(|r| r.stage.clone())
            .unwrap_or_default();
        Err(Refusal::StageNotOpen {
            stage,
            waiting: self.open_stages().pop().unwrap_or_default(),
        })
    }

    /// What an escalation that adds `added` to the voters does to a pending request:
    /// the approvals already cast may now meet every requirement (someone who counted
    /// for nothing fills a slot), and then it is approved with no new vote.
    pub fn escalate(&self, added: &[String], now: i64) -> Next {
        let mut after = self.clone();
        for a in added {
            if !after.extra_voters.contains(a) {
                after.extra_voters.push(a.clone());
            }
        }
        if self.status == Status::Pending && now < self.expires_at && after.threshold_met() {
            return Next {
                status: Status::Approved,
                approval_expires_at: Some(now.saturating_add(self.approval_ttl_ms)),
            };
        }
        Next {
            status: self.status,
            approval_expires_at: self.approval_expires_at,
        }
    }
}

/// The stages open in `after` that were not open in `before`, in order: the ones whose
/// approvers are to be told now.
pub fn newly_opened(before: &State, after: &State) -> Vec<String> {
    let was = before.open_stages();
    after.open_stages().into_iter().filter(|s| !was.contains(s)).collect()
}
