//! Extractors of the API: [`Caller`], who is calling, and [`Json`], [`Query`] and
//! [`Path`], whose rejections answer in our error shape (see `super::error`). A refused credential is logged with the client's
//! address, at most once a minute per address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, OriginalUri};

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{AppError, Result};
use crate::auth::Principal;

/// `axum::Json`, rejected with an [`AppError`] (see its `From<JsonRejection>`), and
/// answered as `axum::Json` is.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query`, rejected with an [`AppError`]: a query string that does not
/// parse is a 400 `bad_request` in the error shape, naming the parameter.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path`, rejected with an [`AppError`] (400 `bad_request`).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct Path<T>(pub T);

/// The raw body, rejected with an [`AppError`]: 413 `payload_too_large` past the body
/// limit, in the error shape like every other refusal.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self> {
        Ok(RawBody(axum::body::Bytes::from_request(req, state).await?))
    }
}

/// A JSON body read by hand (one that may be empty): syntax errors are 400
/// `bad_request`, a body of the wrong shape (an unknown or mistyped field) 422
/// `invalid_body`, as [`Json`] answers.
pub fn json_from_slice<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => AppError::Invalid(
            crate::service::error::ErrorCode::InvalidBody,
            format!("invalid JSON body: {e}"),
        ),
        _ => AppError::BadRequest(format!("malformed JSON body: {e}")),
    })
}

/// The authenticated caller, from `Authorization: Bearer …`: a static token (approver or
/// pipeline), else a request's holder token (on that request's routes only), else, if it
/// has the shape of a JWT and OIDC issuers are configured, an OIDC token verified against
/// them (a pipeline carrying its verified claims).
pub struct Caller(pub Principal);

/// The caller's name for the access log: set once per request by whoever
/// authenticated it ([`Caller`], a web UI session), read by `layers::count_responses`,
/// which scopes one around every request.
#[derive(Clone, Default)]
pub(super) struct CallerSlot(Arc<OnceLock<String>>);

tokio::task_local! {
    static CALLER: CallerSlot;
}

impl CallerSlot {
    pub(super) fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    /// Runs `f` (a request's handling) with this slot as the one [`note_caller`] fills.
    pub(super) async fn scope<F: Future>(self, f: F) -> F::Output {
        CALLER.scope(self, f).await
    }
}

/// Names the authenticated caller of the request being handled, for the access log.
pub(crate) fn note_caller(name: &str) {
    let _ = CALLER.try_with(|slot| slot.0.set(name.to_owned()));
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self> {
        let client = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let got = authenticate(parts, s, client).await;
        match &got {
            Ok(Caller(p)) => note_caller(p.name()),
            Err(AppError::Unauthorized(why)) => {
                s.throttle.failed_auth.spend(client);
                // Nested routers see the path without their prefix; the log names it whole.
                let path = parts
                    .extensions
                    .get::<OriginalUri>()
                    .map_or(parts.uri.path(), |u| u.0.path());
                log_refused(client, path, why);
            }
            Err(_) => {}
        }
        got
    }
}

/// One line per client address per this long; the ones in between are counted.
const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it, the ones whose window ended are forgotten.
const REFUSAL_LOG_ADDRESSES: usize = 10_000;

/// Per client address: when its window began, and the refusals not logged since.
type Refusals = HashMap<Option<IpAddr>, (Instant, u64)>;

/// Process-wide, as the log is: one server per process.
static REFUSALS: LazyLock<Mutex<Refusals>> = LazyLock::new(Default::default);

/// Logs a refused credential with the client's address and the reason (which never
/// contains the token), unless this address was logged less than a window ago; then the
/// next line says how many were left out.
fn log_refused(client: Option<IpAddr>, path: &str, why: &str) {
    let now = Instant::now();
    let suppressed = {
        let Ok(mut seen) = REFUSALS.lock() else { return };
        if seen.len() >= REFUSAL_LOG_ADDRESSES {
            seen.retain(|_, (at, _)| now.duration_since(*at) < REFUSAL_LOG_WINDOW);
        }
        let full = seen.len() >= REFUSAL_LOG_ADDRESSES;
        match seen.get_mut(&client) {
            Some((at, n)) if now.duration_since(*at) < REFUSAL_LOG_WINDOW => {
                *n += 1;
                return;
            }
            Some((at, n)) => {
                *at = now;
                std::mem::take(n)
            }
            None if full => return,
            None => {
                seen.insert(client, (now, 0));
                0
            }
        }
    };
    let client = client.map_or_else(|| "unknown".to_string(), |c| c.to_string());
    tracing::warn!(
        target: "jitgate::auth",
        client,
        path,
        reason = why,
        suppressed,
        "API authentication failed"
    );
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(parts: &Parts) -> Result<&str> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| AppError::Unauthorized("missing `Authorization: Bearer <token>`".into()))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::Unauthorized("the Authorization header is not `Bearer <token>`".into()))
}

/// Who the `Authorization` header says is calling.
async fn authenticate(parts: &Parts, s: &AppState, client: Option<IpAddr>) -> Result<Caller> {
    let limited = s.throttle.failed_auth.check(&client);
    let token = match bearer(parts) {
        Ok(t) => t,
        Err(e) => return Err(limited.err().unwrap_or(e)),
    };
    if let Some(p) = s.engine.tokens().authenticate(token) {
        s.engine.check_active(&p).await?;
        return Ok(Caller(p));
    }
    // An address that keeps failing gets 429, but a static token (checked in memory,
    // above) still works from it: a pipeline behind the same NAT as a flood keeps
    // deploying. Holder tokens and OIDC tokens, which cost a lookup or a signature
    // check, wait until the address has a token again.
    limited?;
    if token.starts_with(&format!("{}_", crate::service::HOLDER_PREFIX)) {
        // A holder token is good for its own request's routes only.
        // Nested under /api/v1, the router sees the path without that prefix.
        let path = parts.uri.path();
        let id = path
            .strip_prefix("/api/v1/requests/")
            .or_else(|| path.strip_prefix("/requests/"))
            .and_then(|rest| rest.split('/').next())
            .filter(|id| !id.is_empty());
        let Some(id) = id else {
            return Err(AppError::Unauthorized(
                "a request token only works on its own request".into(),
            ));
        };
        return match s.engine.holder(id, token).await {
            Ok(Some(p)) => Ok(Caller(p)),
            Ok(None) | Err(AppError::NotFound(_)) => Err(AppError::Unauthorized(
                "this request token is not valid for this request".into(),
            )),
            Err(e) => Err(e),
        };
    }
    if !crate::auth::oidc::looks_like_jwt(token) {
        return Err(AppError::Unauthorized("unknown token".into()));
    }
    let Some(verifier) = &s.oidc else {
        return Err(AppError::Unauthorized(
            "unknown token: it looks like an OIDC token, but this server trusts no OIDC issuer (`oidc:` in gate.yaml)"
                .into(),
        ));
    };
    match verifier.verify(token).await {
        Ok((name, identity)) => Ok(Caller(Principal::Pipeline {
            name,
            verified: Some(Arc::new(identity)),
        })),
        Err(e) => {
            tracing::info!(error = %e, "OIDC token not accepted");
            Err(e.into())
        }
    }
}
