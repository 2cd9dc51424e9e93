//! Who may read a request, in one place: every route that shows a request, its votes,
//! record, audit events or changes asks [`Engine::may_read`], and a request the caller
//! may not read answers exactly as an unknown id does (404), so its existence is not
//! leaked. Also the scope a pipeline credential may open requests in (`allow:`).

use super::directory::group_key;
use super::error::{AppError, ErrorCode, Result};
use super::holder::is_opener;
use super::{Doc, Engine, Loaded, doc_of};
use crate::auth::Principal;
use crate::auth::config::{Allow, Role};
use crate::core::api::{Context, VoteMeta};
use crate::core::policy::GroupSource;
use crate::store::{RequestRow, VoteRow};

/// What a person reaches beyond their own name when reading: the people they stand in
/// for (delegations in force) and, in a web session, the identity provider's groups the
/// sign-in saw (while fresh, `sso.max_group_age`). Empty for a pipeline.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    pub stands_for: Vec<String>,
    /// Normal forms ([`super::directory::group_key`]).
    pub idp_groups: Vec<String>,
}

/// The answer for an unknown request id, and for one the caller may not read.
pub fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("no request `{id}`"))
}

impl Engine {
    /// Whether `who` may read request `row` (with its `votes`):
    /// - auditors and admins read every request;
    /// - a pipeline reads the requests it opened (same name and, for an OIDC token, the
    ///   same issuer and verified repository or subject, see `holder::is_opener`);
    /// - a person reads the requests they are named on as a member of a requirement
    ///   (forge groups as snapshotted when the request opened), were added to by an
    ///   escalation, voted on, or are a requester of;
    /// - a delegate also reads what each person they stand in for (`reach.stands_for`)
    ///   would read as a member or by escalation;
    /// - in a web session, a member of an `idp_group` requirement's group reads it.
    pub fn may_read(&self, who: &Principal, reach: &Reach, row: &RequestRow, votes: &[VoteRow]) -> Result<bool> {
        self.may_read_doc(who, reach, row, &doc_of(row)?, votes)
    }

    pub(super) fn may_read_doc(
        &self,
        who: &Principal,
        reach: &Reach,
        row: &RequestRow,
        doc: &Doc,
        votes: &[VoteRow],
    ) -> Result<bool> {
        let member =
            |u: &String| doc.requirements.iter().any(|r| r.members.contains(u)) || doc.escalated_voters().contains(u);
        let in_idp_group = || {
            doc.requirements.iter().any(|r| {
                matches!(
                    r.source.as_deref().and_then(GroupSource::parse),
                    Some(GroupSource::IdpGroup { name }) if reach.idp_groups.contains(&group_key(&name))
                )
            })
        };
        Ok(match who {
            Principal::Pipeline { .. } => is_opener(who, row, doc) || super::release::is_job_of_run(who, doc),
            Principal::Approver(u) => {
                self.reads_everything(who)
                    || member(u)
                    || votes.iter().any(|v| &v.voter == u)
                    || self.state(row, doc, votes)?.is_requester(u)
                    || reach.stands_for.iter().any(member)
                    || in_idp_group()
            }
        })
    }

    /// What `who` reaches at `now` by delegation (see [`Reach`]); no groups: a token
    /// carries none.
    pub async fn reach(&self, who: &Principal, now: i64) -> Result<Reach> {
        match who {
            Principal::Approver(u) => Ok(Reach {
                stands_for: crate::core::delegation::in_force_for(&self.store.delegations_to(u, now).await?, now),
                idp_groups: vec![],
            }),
            Principal::Pipeline { .. } => Ok(Reach::default()),
        }
    }

    /// [`Engine::reach`], with the identity provider's groups of the web session whose
    /// votes carry `meta`, while they are fresh.
    pub async fn reach_in(&self, who: &Principal, meta: &VoteMeta, now: i64) -> Result<Reach> {
        let mut reach = self.reach(who, now).await?;
        reach.idp_groups = self.fresh_idp_groups(meta, now);
        Ok(reach)
    }

    /// Request `id` and its votes, if `who` may read it; otherwise the same 404 as an
    /// unknown id.
    pub async fn load_for(&self, who: &Principal, id: &str) -> Result<Loaded> {
        self.load_in(who, &VoteMeta::token(), id).await
    }

    /// [`Engine::load_for`] from a web session whose votes carry `meta` (its groups).
    pub async fn load_in(&self, who: &Principal, meta: &VoteMeta, id: &str) -> Result<Loaded> {
        let (row, votes) = self.load(id).await?;
        let reach = self.reach_in(who, meta, crate::core::duration::now_ms()).await?;
        if self.may_read(who, &reach, &row, &votes)? {
            Ok((row, votes))
        } else {
            Err(not_found(id))
        }
    }

    /// Refuses (403 `role_required`, naming the roles) a caller who is neither auditor
    /// nor admin; `what` names what is guarded.
    pub fn require_reads_everything(&self, who: &Principal, what: &str) -> Result<()> {
        if self.reads_everything(who) {
            return Ok(());
        }
        Err(AppError::Forbidden(
            ErrorCode::RoleRequired,
            format!(
                "{what} is for auditors and admins: `roles: [auditor]` or `roles: [admin]` on a `users:` entry ({} has neither)",
                who.name()
            ),
        ))
    }

    /// Refuses (403 `auditor_cannot_vote`) an auditor's vote, whatever groups name them.
    pub(super) fn refuse_auditor_vote(&self, who: &Principal) -> Result<()> {
        if self.has_role(who, Role::Auditor) {
            return Err(AppError::Forbidden(
                ErrorCode::AuditorCannotVote,
                format!(
                    "{} is an auditor: auditors read every request and never approve or deny one",
                    who.name()
                ),
            ));
        }
        Ok(())
    }

    /// The `allow:` of the credential `who` presented: its static pipeline's, or its OIDC
    /// issuer's.
    fn scope_of(&self, who: &Principal) -> Option<(Allow, String)> {
        let Principal::Pipeline { name, verified } = who else {
            return None;
        };
        let config = self.config();
        match verified {
            None => {
                let p = config.pipelines.iter().find(|p| &p.name == name)?;
                Some((p.allow.clone()?, format!("pipeline `{name}`")))
            }
            Some(v) => {
                let o = config.oidc.iter().find(|o| o.issuer == v.issuer)?;
                Some((o.allow.clone()?, format!("OIDC issuer `{}`", v.issuer)))
            }
        }
    }

    /// Refuses (403 `out_of_scope`) a request outside the credential's `allow:`.
    pub(super) fn check_scope(&self, who: &Principal, ctx: &Context) -> Result<()> {
        let Some((allow, whose)) = self.scope_of(who) else {
            return Ok(());
        };
        match allow.refusal(&ctx.repository, &ctx.environment) {
            None => Ok(()),
            Some(why) => Err(AppError::Forbidden(
                ErrorCode::OutOfScope,
                format!("the request was not opened: {why} (`allow:` of {whose} in gate.yaml)"),
            )),
        }
    }
}
