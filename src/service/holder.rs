//! Holder tokens: a token for one request, given to its opener.

use super::error::Result;
use super::{Doc, Engine, doc_of};
use crate::auth::Principal;
use crate::store::RequestRow;

impl Engine {
    /// Gives the opener of request `id` a token for that request alone (see
    /// `RequestView::holder_token`). Only its SHA-256 is stored. Each replay of the
    /// create gets a new one (the gate that lost the answer needs one); only the newest
    /// [`HOLDERS_PER_REQUEST`] work, so replays cannot pile up tokens.
    pub async fn issue_holder(&self, who: &Principal, id: &str, now: i64) -> Result<Option<String>> {
        let (row, _) = self.load(id).await?;
        if !is_opener(who, &row, &doc_of(&row)?) {
            return Ok(None);
        }
        let token = crate::auth::new_token(HOLDER_PREFIX);
        let hash = crate::auth::hash_token(&token);
        self.store.add_holder(id, &hash, now, HOLDERS_PER_REQUEST).await?;
        Ok(Some(token))
    }

    /// The opener of request `id`, if `token` is one of its holder tokens.
    pub async fn holder(&self, id: &str, token: &str) -> Result<Option<Principal>> {
        use subtle::ConstantTimeEq;
        super::check_id(id)?;
        let want = crate::auth::hash_token(token);
        let mut found = false;
        for h in self.store.holders(id).await? {
            found |= bool::from(h.as_bytes().ct_eq(want.as_bytes()));
        }
        if !found {
            return Ok(None);
        }
        let (row, _) = self.load(id).await?;
        let doc = doc_of(&row)?;
        Ok(Some(Principal::Pipeline {
            name: row.opened_by,
            verified: doc.verified.map(std::sync::Arc::new),
        }))
    }
}

/// Holder tokens kept per request: a gate retrying its create that many times in a row
/// still holds a working one.
pub const HOLDERS_PER_REQUEST: i64 = 8;

/// Holder tokens start with this, so the server knows to look them up per request.
pub const HOLDER_PREFIX: &str = "gtr";

/// Whether `who` is the pipeline that opened the request: the same name, and for an OIDC
/// identity the same issuer and repository (or subject) as the token that opened it.
pub(super) fn is_opener(who: &Principal, row: &RequestRow, doc: &Doc) -> bool {
    let Principal::Pipeline { name, verified } = who else {
        return false;
    };
    row.opened_by == *name
        && match (verified.as_deref(), doc.verified.as_ref()) {
            (None, None) => true,
            (Some(a), Some(b)) => a.issuer == b.issuer && a.scope() == b.scope(),
            _ => false,
        }
}
