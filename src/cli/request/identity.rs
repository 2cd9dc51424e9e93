//! Which credential the gate presents, said in one line, and keeping an OIDC token fresh.

use super::Printer;
use super::args::JobArgs;
use crate::ci;
use crate::cli::{Ctx, Failure};
use crate::client::Client;

/// Chooses the credential to present (`ci::identity`) and says which and why, in one
/// line. On GitHub Actions every secret the gate holds is masked before anything prints.
pub(super) async fn identify(
    ctx: &Ctx,
    a: &JobArgs,
    platform: ci::Platform,
    out: &Printer,
) -> Result<ci::identity::Identity, Failure> {
    let inputs = ci::identity::Inputs {
        audience: a.audience.clone(),
        id_token: a.id_token.clone(),
        static_token: ctx.token.clone(),
    };
    let github = platform == ci::Platform::Github;
    let mut masked: Vec<String> = Vec::new();
    let mut mask = |t: &str, out: &Printer| {
        let t = t.trim();
        if github && !t.is_empty() && !masked.iter().any(|m| m == t) {
            out.note(&format!("::add-mask::{t}"));
            masked.push(t.to_string());
        }
    };
    for t in [&inputs.static_token, &inputs.id_token].into_iter().flatten() {
        mask(t, out);
    }
    let identity = ci::identity::select(platform, &inputs, &|k| std::env::var(k).ok())
        .await
        .map_err(|e| Failure::usage(e.to_string()))?;
    for t in &identity.masks {
        mask(t, out);
    }
    for w in &identity.warnings {
        out.note(&if github {
            format!("::warning title=jitgate::{w}")
        } else {
            format!("jitgate: warning: {w}")
        });
    }
    out.note(&format!("jitgate: identity: {}", identity.line));
    Ok(identity)
}

/// Replaces a short-lived OIDC token (GitHub's live minutes) before it expires, for as
/// long as the gate runs; the task stops when this is dropped.
pub(super) struct Refresher(Option<tokio::task::JoinHandle<()>>);

impl Drop for Refresher {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

pub(super) fn keep_token_fresh(
    identity: &ci::identity::Identity,
    client: &Client,
    platform: ci::Platform,
    out: Printer,
) -> Refresher {
    let (Some(refresh), Some(exp)) = (identity.refresh.clone(), identity.expires()) else {
        return Refresher(None);
    };
    let client = client.clone();
    let on_token = move |token: String| {
        if platform == ci::Platform::Github {
            out.note(&format!("::add-mask::{token}"));
        }
        client.set_token(token);
    };
    let on_error = move |e: ci::identity::FetchError| {
        out.note(&format!("jitgate: warning: could not refresh the OIDC token: {e}"))
    };
    Refresher(Some(tokio::spawn(ci::identity::refresh_loop(
        refresh, exp, on_token, on_error,
    ))))
}
