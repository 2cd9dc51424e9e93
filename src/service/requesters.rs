//! Who a request's requester is, and how we know: the context's identities (verified by
//! an OIDC token, or asserted by the body), the people the forge says wrote its commit,
//! and the configured users any of them names. Each identity is kept with its source so
//! the record can say which ones were vouched for.
//!
//! Where the forge is configured to be asked (`forge.<forge>.requesters`, default on) and
//! cannot answer, the request is not opened (fail closed): a request whose commit author
//! could approve it is exactly what separation of duties forbids, and the pipeline's gate
//! retries a 503.

use super::Engine;
use super::error::{AppError, ErrorCode, Result};
use super::validate::requester_fields;
use crate::auth::oidc::VerifiedIdentity;
use crate::core::api::{Context, RequesterOrigin, RequesterSource};
use crate::core::identity::Identity;
use crate::forge::{self, Kind};

/// The requester identities of a request being opened, and where each came from.
#[derive(Debug, Default)]
pub(super) struct Requesters {
    pub ids: Vec<String>,
    pub origins: Vec<RequesterOrigin>,
}

impl Requesters {
    fn add(&mut self, identity: &str, source: RequesterSource, from: String, given: Option<String>) {
        if !self.ids.iter().any(|i| i == identity) {
            self.ids.push(identity.to_string());
        }
        let o = RequesterOrigin {
            identity: identity.to_string(),
            source,
            from,
            given,
        };
        if !self.origins.contains(&o) {
            self.origins.push(o);
        }
    }
}

impl Engine {
    /// The requesters of a request with context `ctx` (its requester fields already in
    /// normal form; `given` holds those that normalising changed, as they were sent),
    /// and the identities in `also` (`(identity, where it was read)`).
    pub(super) async fn requesters(
        &self,
        ctx: &Context,
        verified: Option<&VerifiedIdentity>,
        given: &[(&'static str, String)],
        also: &[(String, String)],
    ) -> Result<Requesters> {
        let mut r = Requesters::default();
        for (field, value) in requester_fields(ctx) {
            if value.is_empty() {
                continue;
            }
            let source = if verified.is_some_and(|v| v.fields.contains_key(field)) {
                RequesterSource::VerifiedClaim
            } else {
                RequesterSource::Asserted
            };
            let was = given.iter().find(|(f, _)| *f == field).map(|(_, v)| v.clone());
            r.add(value, source, format!("context.{field}"), was);
        }
        if let Some(kind) = self.requester_forge(ctx) {
            for p in self.commit_people(kind, ctx).await? {
                let id = Identity::parse(&p.identity).map_err(|e| {
                    AppError::Invalid(
                        ErrorCode::InvalidField,
                        format!(
                            "context.commit: the forge's `{}` for this commit {e}; the server cannot tell who wrote it",
                            p.from
                        ),
                    )
                })?;
                let was = (id.as_str() != p.identity).then_some(p.identity);
                r.add(id.as_str(), RequesterSource::ForgeApi, p.from, was);
            }
        }
        // Named by a payload the server checked (a webhook's pull request authors).
        for (identity, from) in also {
            let id = Identity::parse(identity)
                .map_err(|e| AppError::Invalid(ErrorCode::InvalidField, format!("{from}: {e}")))?;
            let was = (id.as_str() != identity).then(|| identity.clone());
            r.add(id.as_str(), RequesterSource::ForgeApi, from.clone(), was);
        }
        // Every identity so far, then the configured users each one names.
        let named: Vec<String> = r.ids.clone();
        for ident in named {
            let Ok(id) = Identity::parse(&ident) else { continue };
            for user in self.config().users_for_identity(&id) {
                if user != ident {
                    r.add(&user, RequesterSource::Config, ident.clone(), None);
                }
            }
        }
        Ok(r)
    }

    /// The forge to ask who wrote the commit: the platform's, else the only one that is
    /// asked at all; none without a repository and commit to ask about.
    fn requester_forge(&self, ctx: &Context) -> Option<Kind> {
        if ctx.repository.is_empty() || ctx.commit.is_empty() {
            return None;
        }
        let asked: Vec<Kind> = [Kind::Github, Kind::Gitlab]
            .into_iter()
            .filter(|k| self.forge.looks_up_requesters(*k))
            .collect();
        match ctx.platform.as_str() {
            "github" => asked.contains(&Kind::Github).then_some(Kind::Github),
            "gitlab" => asked.contains(&Kind::Gitlab).then_some(Kind::Gitlab),
            _ => match asked.as_slice() {
                [one] => Some(*one),
                _ => None,
            },
        }
    }

    async fn commit_people(&self, kind: Kind, ctx: &Context) -> Result<Vec<forge::CommitPerson>> {
        self.forge
            .commit_people(kind, &ctx.repository, &ctx.commit)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, repository = %ctx.repository, commit = %ctx.commit, "who wrote the commit is unknown");
                match e {
                    forge::Error::Api { .. } => AppError::Invalid(
                        ErrorCode::InvalidField,
                        format!(
                            "context.commit: {e}; is `{}` a commit of `{}` that the server's token can read? The request was not opened",
                            ctx.commit, ctx.repository
                        ),
                    ),
                    forge::Error::Usage(m) => {
                        AppError::Invalid(ErrorCode::InvalidField, format!("context.repository: {m}"))
                    }
                    e => AppError::Unavailable(format!(
                        "{e}; the request was not opened (the commit's author and its pull request's author may not approve it, so they must be known); retry"
                    )),
                }
            })
    }
}
