//! The roles a caller holds beyond what the policy gives them: `auditor` and `admin`
//! (`roles:` on a `users:` entry). Every role check of the API, the web UI and the
//! commands goes through these, so where the people come from can change in one place.

use super::Engine;
use crate::auth::Principal;
use crate::auth::config::Role;

impl Engine {
    /// The roles of a caller: a person's from their `users:` entry; a pipeline has none.
    pub fn roles_of(&self, who: &Principal) -> Vec<Role> {
        match who {
            Principal::Approver(name) => self.config().user(name).map(|u| u.roles.clone()).unwrap_or_default(),
            Principal::Pipeline { .. } => Vec::new(),
        }
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, who: &Principal, role: Role) -> bool {
        self.roles_of(who).contains(&role)
    }

    /// Auditors and admins read every request, record, audit event and report.
    pub fn reads_everything(&self, who: &Principal) -> bool {
        self.roles_of(who)
            .iter()
            .any(|r| matches!(r, Role::Auditor | Role::Admin))
    }
}
