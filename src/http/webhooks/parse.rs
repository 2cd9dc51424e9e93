//! What arrives on `/webhooks/github` and `/webhooks/gitlab`: checking it came from the
//! forge, the parts of the payloads we read, and a `/approve` or `/deny` command in a
//! comment. Pure.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC of the raw body>`, compared in constant time.
pub fn github_signature_ok(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    header.is_some_and(|h| crate::core::crypto::verify_sha256_header(secret.as_bytes(), body, h))
}

/// GitLab: `X-Gitlab-Token` equal to the secret, compared in constant time (as digests,
/// so the length does not leak either).
pub fn gitlab_token_ok(secret: &str, header: Option<&str>) -> bool {
    let Some(given) = header else { return false };
    bool::from(Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(secret.as_bytes())))
}

/// A vote written in a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub approve: bool,
    /// `req_…` when the comment names the request (needed when several are pending).
    pub request: Option<String>,
    pub reason: Option<String>,
}

/// `/approve [req_ID] [reason]` or `/deny [req_ID] reason` at the start of a comment
/// (case-insensitive command word; the reason is the rest of the comment). Anything else
/// is not a command.
pub fn parse_command(body: &str) -> Option<Command> {
    let text = body.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    let approve = match text[..end].to_ascii_lowercase().as_str() {
        "/approve" => true,
        "/deny" => false,
        _ => return None,
    };
    let mut rest = text[end..].trim();
    let mut request = None;
    let first_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let first = &rest[..first_end];
    if first.len() > 4 && first.starts_with("req_") && first[4..].bytes().all(|b| b.is_ascii_alphanumeric()) {
        request = Some(first.to_string());
        rest = rest[first_end..].trim();
    }
    let reason = (!rest.is_empty()).then(|| rest.replace("\r\n", "\n"));
    Some(Command {
        approve,
        request,
        reason,
    })
}

/// The parts of a GitHub `issue_comment` event we use.
#[derive(Debug, Deserialize)]
pub struct GithubIssueComment {
    pub action: String,
    pub issue: GithubIssue,
    pub comment: GithubComment,
    pub repository: GithubRepo,
}

#[derive(Debug, Deserialize)]
pub struct GithubIssue {
    pub number: u64,
    /// Present when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct GithubComment {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub html_url: String,
    pub user: GithubUser,
}

#[derive(Debug, Deserialize)]
pub struct GithubUser {
    pub login: String,
}

#[derive(Debug, Deserialize)]
pub struct GithubRepo {
    pub full_name: String,
}

/// The parts of a GitHub `deployment_protection_rule` event we use (sent to the App).
#[derive(Debug, Deserialize)]
pub struct GithubProtectionRule {
    pub action: String,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub deployment_callback_url: String,
    #[serde(default)]
    pub deployment: Option<GithubDeployment>,
    #[serde(default)]
    pub pull_requests: Vec<GithubPull>,
    pub repository: GithubRepoFull,
    pub sender: GithubUser,
    #[serde(default)]
    pub installation: Option<GithubInstallation>,
}

#[derive(Debug, Deserialize)]
pub struct GithubDeployment {
    pub id: u64,
    pub sha: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub creator: Option<GithubUser>,
}

#[derive(Debug, Deserialize)]
pub struct GithubPull {
    pub number: u64,
    #[serde(default)]
    pub user: Option<GithubUser>,
}

#[derive(Debug, Deserialize)]
pub struct GithubRepoFull {
    pub full_name: String,
    #[serde(default)]
    pub html_url: String,
}

#[derive(Debug, Deserialize)]
pub struct GithubInstallation {
    pub id: u64,
}

/// The parts of a GitLab note event we use.
#[derive(Debug, Deserialize)]
pub struct GitlabNote {
    pub object_kind: String,
    pub user: GitlabUser,
    pub project: GitlabProject,
    pub object_attributes: GitlabNoteAttrs,
    #[serde(default)]
    pub merge_request: Option<GitlabMergeRequest>,
}

#[derive(Debug, Deserialize)]
pub struct GitlabUser {
    pub username: String,
}

#[derive(Debug, Deserialize)]
pub struct GitlabProject {
    pub id: u64,
    pub path_with_namespace: String,
}

#[derive(Debug, Deserialize)]
pub struct GitlabNoteAttrs {
    pub id: u64,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub noteable_type: String,
    #[serde(default)]
    pub url: String,
    /// `create` or `update` on recent GitLab versions; absent on older ones.
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct GitlabMergeRequest {
    pub iid: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::crypto::hmac_sha256;

    #[test]
    fn hmac_rfc4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signatures() {
        let sig = format!("sha256={}", hex::encode(hmac_sha256(b"s3", b"{}")));
        assert!(github_signature_ok("s3", b"{}", Some(&sig)));
        assert!(!github_signature_ok("s3", b"{ }", Some(&sig)));
        assert!(!github_signature_ok("other", b"{}", Some(&sig)));
        assert!(!github_signature_ok("s3", b"{}", None));
        assert!(!github_signature_ok("s3", b"{}", Some("sha1=abc")));
        assert!(!github_signature_ok("s3", b"{}", Some("sha256=zz")));
        assert!(gitlab_token_ok("s3", Some("s3")));
        assert!(!gitlab_token_ok("s3", Some("s4")));
        assert!(!gitlab_token_ok("s3", None));
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse_command("/approve"),
            Some(Command {
                approve: true,
                request: None,
                reason: None
            })
        );
        assert_eq!(
            parse_command("  /APPROVE looks good\r\nthanks")
                .unwrap()
                .reason
                .as_deref(),
            Some("looks good\nthanks")
        );
        let c = parse_command("/deny req_0123456789abcdef0123 breaks prod").unwrap();
        assert!(!c.approve);
        assert_eq!(c.request.as_deref(), Some("req_0123456789abcdef0123"));
        assert_eq!(c.reason.as_deref(), Some("breaks prod"));
        assert_eq!(parse_command("/deny").unwrap().reason, None);
        assert_eq!(parse_command("/approved"), None);
        assert_eq!(parse_command("lgtm /approve"), None);
        assert_eq!(parse_command(""), None);
    }
}
