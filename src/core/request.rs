//! The pure parts of a request's document: escalation steps taken, and what follows
//! from them.

use serde::{Deserialize, Serialize};

/// One escalation step taken on a pending request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Escalation {
    /// Index into the rule's `escalate` list.
    pub step: usize,
    pub at: i64,
    pub add_groups: Vec<String>,
    /// Who may vote because of it (members of `add_groups` when it was taken).
    pub added: Vec<String>,
    /// Who was told (members of its `notify` groups, never a requester).
    pub notified: Vec<String>,
}

/// Everyone `escalations` added as voters, each once, in the order they were added.
pub fn escalated_voters(escalations: &[Escalation]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in escalations {
        for m in &e.added {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
    }
    out
}
