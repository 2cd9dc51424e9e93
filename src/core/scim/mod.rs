//! SCIM 2.0 (RFC 7643, RFC 7644) without the network: filters (`filter.rs`), PATCH
//! operations (`patch.rs`), and the error every refusal answers with. The resources are
//! kept as JSON; `http::scim` checks their attributes and stores them.
//!
//! No crate was a fit: `scim_v2` models resources for clients and has no PATCH or filter
//! evaluation; `scim-filter` (one maintainer, undocumented) filters serde collections
//! through chrono and rust_decimal and would still leave PATCH paths to us. Both parts
//! are small grammars, tested here against the RFC's examples.

pub mod filter;
pub mod patch;

use serde_json::{Value, json};

/// The schema URN of an error body.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A refusal as RFC 7644 §3.12 writes it: an HTTP status, a `scimType` for 400s and 409s,
/// and a sentence for the person reading the provider's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    /// A 400 with its `scimType` (`invalidFilter`, `invalidPath`, `invalidValue`,
    /// `invalidSyntax`, `noTarget`, `mutability`, `tooMany`).
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> ScimError {
        ScimError {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    pub fn status(status: u16, detail: impl Into<String>) -> ScimError {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// 409 `uniqueness`.
    pub fn taken(detail: impl Into<String>) -> ScimError {
        ScimError {
            status: 409,
            scim_type: Some("uniqueness"),
            detail: detail.into(),
        }
    }

    /// The error body.
    pub fn body(&self) -> Value {
        let mut v = json!({"schemas": [ERROR_SCHEMA], "status": self.status.to_string(), "detail": self.detail});
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t);
        }
        v
    }
}
