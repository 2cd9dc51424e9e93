//! Who is calling: approvers (users with a bearer token) and pipelines (static tokens, or
//! OIDC tokens from a trusted issuer, see [`oidc`]). Static tokens are compared as SHA-256
//! digests in constant time.

pub mod config;
pub mod oidc;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use self::config::{Pipeline, User};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A person who may vote.
    Approver(String),
    /// A pipeline that may open, wait on, cancel and consume requests, never vote. `name`
    /// is the static pipeline's, or the OIDC issuer's pipeline name; `verified` is what an
    /// OIDC token vouched for (`None` for a static token).
    Pipeline {
        name: String,
        verified: Option<Arc<oidc::VerifiedIdentity>>,
    },
}

impl Principal {
    /// A pipeline with a static token.
    pub fn pipeline(name: impl Into<String>) -> Principal {
        Principal::Pipeline {
            name: name.into(),
            verified: None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Principal::Approver(n) | Principal::Pipeline { name: n, .. } => n,
        }
    }

    /// What an OIDC token vouched for, if the caller presented one.
    pub fn verified(&self) -> Option<&oidc::VerifiedIdentity> {
        match self {
            Principal::Pipeline { verified, .. } => verified.as_deref(),
            Principal::Approver(_) => None,
        }
    }
}

/// Checks bearer tokens against the digests in the config.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Principal)>,
}

impl Tokens {
    /// The tokens of the configured `users` (approvers) and `pipelines`.
    pub fn new(users: &[User], pipelines: &[Pipeline]) -> Tokens {
        let mut entries = Vec::new();
        for u in users {
            if let Some(d) = u.token_sha256.as_deref().and_then(decode) {
                entries.push((d, Principal::Approver(u.name.clone())));
            }
        }
        for p in pipelines {
            if let Some(d) = decode(&p.token_sha256) {
                entries.push((d, Principal::pipeline(p.name.clone())));
            }
        }
        Tokens { entries }
    }

    /// The principal a token belongs to. Every entry is compared, so the time taken does
    /// not tell which entry (or how much of one) matched.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let d: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (want, who) in &self.entries {
            if bool::from(want.ct_eq(&d)) && found.is_none() {
                found = Some(who.clone());
            }
        }
        found
    }
}

fn decode(h: &str) -> Option<[u8; 32]> {
    hex::decode(h).ok()?.try_into().ok()
}

/// The value to put in `token_sha256` for a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim_end_matches(['\r', '\n']).as_bytes()))
}

/// A fresh random token, for `gate serve --demo` and `gate token new`.
pub fn new_token(prefix: &str) -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_resolve_to_their_principal() {
        let users = [User {
            name: "alice".into(),
            token_sha256: Some(hash_token("a-token")),
            ..Default::default()
        }];
        let pipelines = [Pipeline {
            name: "ci".into(),
            token_sha256: hash_token("p-token\n"),
            allow: None,
        }];
        let t = Tokens::new(&users, &pipelines);
        assert_eq!(t.authenticate("a-token"), Some(Principal::Approver("alice".into())));
        assert_eq!(t.authenticate("p-token"), Some(Principal::pipeline("ci")));
        assert_eq!(t.authenticate("a-token "), None);
        assert_eq!(t.authenticate(""), None);
    }
}
