//! Who is calling: approvers (users with a bearer token) and pipelines (static tokens, or
//! OIDC tokens from a trusted issuer, see [`oidc`]). Static tokens are compared as SHA-256
//! digests in constant time.

pub mod oidc;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;

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
    pub fn from_config(cfg: &Config) -> Tokens {
        let mut entries = Vec::new();
        for u in &cfg.users {
            if let Some(d) = u.token_sha256.as_deref().and_then(decode) {
                entries.push((d, Principal::Approver(u.name.clone())));
            }
        }
        for p in &cfg.pipelines {
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

/// HMAC-SHA256 of `msg` under `key` (webhook signatures, both ways).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Checks a `sha256=<hex HMAC-SHA256 of msg>` header in constant time.
pub fn verify_sha256_header(key: &[u8], msg: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else {
        return false;
    };
    let want = hmac_sha256(key, msg);
    given.len() == want.len() && bool::from(given.ct_eq(&want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Pipeline, User};

    #[test]
    fn tokens_resolve_to_their_principal() {
        let cfg = Config {
            users: vec![User {
                name: "alice".into(),
                token_sha256: Some(hash_token("a-token")),
                ..Default::default()
            }],
            pipelines: vec![Pipeline {
                name: "ci".into(),
                token_sha256: hash_token("p-token\n"),
            }],
            ..Default::default()
        };
        let t = Tokens::from_config(&cfg);
        assert_eq!(t.authenticate("a-token"), Some(Principal::Approver("alice".into())));
        assert_eq!(t.authenticate("p-token"), Some(Principal::pipeline("ci")));
        assert_eq!(t.authenticate("a-token "), None);
        assert_eq!(t.authenticate(""), None);
    }
}
