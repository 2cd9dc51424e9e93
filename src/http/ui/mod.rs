//! The approver web UI: server-rendered pages (askama templates in `templates/`), one
//! stylesheet and one small script (no inline script or style, so the Content-Security-
//! Policy forbids both), sign-in with an approver token or single sign-on ([`sso`]),
//! server-side sessions ([`session`]) and an anti-forgery token on every form.
//!
//! Routes: `/` inbox, `/requests/{id}` detail, `POST /requests/{id}/approve|deny`,
//! `/history`, `/audit`, `/login` (GET form, POST token), `POST /logout`, `/auth/sso`,
//! `/auth/callback`, `/ui/events` (the change stream, by session cookie), `/static/…`.

pub mod session;
pub mod sso;

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, response::Html};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use crate::core::api::RequestView;
use crate::core::duration::{now_ms, rfc3339};
use crate::http::error::AppError;
use crate::store::{HistoryFilter, SessionRow, SsoLogin};
use session::{PRELOGIN_COOKIE, SESSION_COOKIE, SSO_COOKIE, Session, cookie, digest, random_token, set_cookie};

/// The policy every UI response carries.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

const APP_CSS: &str = include_str!("../../../templates/static/app.css");
const APP_JS: &str = include_str!("../../../templates/static/app.js");

/// What the UI needs beyond the engine.
pub struct UiState {
    pub sso: Option<sso::Client>,
    /// Cookies get `Secure` when the public URL is https.
    pub secure: bool,
}

impl UiState {
    pub fn new(config: &crate::config::Config, public_url: &str) -> Result<UiState, String> {
        let sso = match &config.sso {
            Some(c) => {
                if c.secret().is_none() {
                    tracing::warn!(
                        "sso: no client secret configured (client_secret or client_secret_env); signing in as a public client"
                    );
                }
                Some(sso::Client::new(c.clone(), public_url)?)
            }
            None => None,
        };
        Ok(UiState {
            sso,
            secure: public_url.starts_with("https://"),
        })
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(inbox))
        .route("/requests/{id}", get(detail))
        .route("/requests/{id}/{verb}", post(vote).get(record))
        .route("/history", get(history))
        .route("/audit", get(audit))
        .route("/login", get(login_page).post(login_token))
        .route("/logout", post(logout))
        .route("/auth/sso", get(sso_start))
        .route("/auth/callback", get(sso_callback))
        .route("/ui/events", get(events))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .layer(middleware::from_fn(security_headers))
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

// ----- errors -------------------------------------------------------------------------

/// An error shown as a page.
pub struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError {
            status,
            message: message.into(),
        }
    }

    fn forbidden(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<AppError> for UiError {
    fn from(e: AppError) -> Self {
        let status = e.status();
        let message = match e {
            AppError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        UiError { status, message }
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        AppError::from(e).into()
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: Nav,
    watch: &'a str,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            nav: Nav::default(),
            watch: "",
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or(""),
            message: &self.message,
        };
        (self.status, render(&page)).into_response()
    }
}

type UiResult<T> = Result<T, UiError>;

fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

// ----- sessions -----------------------------------------------------------------------

/// The header bar: who is signed in, and the token its sign-out form needs.
#[derive(Default)]
pub struct Nav {
    pub user: String,
    pub csrf: String,
    pub via: String,
    pub read_only: bool,
}

impl Nav {
    fn of(s: &Session) -> Nav {
        Nav {
            user: s.user().to_string(),
            csrf: s.csrf().to_string(),
            via: if s.row.via == "sso" {
                "single sign-on".into()
            } else {
                "token".into()
            },
            read_only: !s.row.can_vote,
        }
    }
}

async fn current(s: &AppState, headers: &HeaderMap) -> UiResult<Option<Session>> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(s.engine
        .store
        .session(&digest(&id), now_ms())
        .await?
        .map(|row| Session { row }))
}

/// The session, or a redirect to the sign-in page that comes back to `here`.
async fn signed_in(s: &AppState, headers: &HeaderMap, here: &str) -> Result<Session, Response> {
    match current(s, headers).await {
        Ok(Some(sess)) => Ok(sess),
        Ok(None) => Err(Redirect::to(&format!("/login?next={}", sso::url_encode(here))).into_response()),
        Err(e) => Err(e.into_response()),
    }
}

/// Starts a session for `user` and answers with its cookie and a way on to `next`.
async fn start_session(
    s: &AppState,
    user: String,
    can_vote: bool,
    via: &str,
    auth_time: i64,
    amr: Vec<String>,
) -> UiResult<HeaderValue> {
    let now = now_ms();
    let ttl = s.engine.config.session_ttl_ms();
    let id = random_token();
    let row = SessionRow {
        id_sha256: digest(&id),
        user_name: user,
        can_vote,
        via: via.into(),
        auth_time,
        amr,
        csrf: random_token(),
        created_at: now,
        expires_at: now + ttl,
    };
    if let Err(e) = s.engine.store.purge_sessions(now).await {
        tracing::warn!(error = %e, "cannot purge expired sessions");
    }
    s.engine.store.insert_session(&row).await?;
    tracing::info!(user = %row.user_name, via, "signed in to the web UI");
    Ok(set_cookie(SESSION_COOKIE, &id, "/", "Strict", s.ui.secure, ttl / 1000))
}

/// A local path to return to after signing in; anything else becomes `/`.
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.starts_with("/login") => {
            n.to_string()
        }
        _ => "/".into(),
    }
}

// ----- pages --------------------------------------------------------------------------

struct InboxItem {
    id: String,
    environment: String,
    repository: String,
    requester: String,
    age: String,
    needs: String,
    summary: String,
    created_at: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage<'a> {
    nav: Nav,
    watch: &'a str,
    items: Vec<InboxItem>,
    others: Vec<InboxItem>,
}

fn parse_time(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

/// "4 min", "2 h 5 min", "3 d 4 h".
pub fn human_age(ms: i64) -> String {
    let m = (ms.max(0) / 60_000) as u64;
    match m {
        0 => "under a minute".into(),
        1..60 => format!("{m} min"),
        60..1440 => format!("{} h {} min", m / 60, m % 60),
        _ => format!("{} d {} h", m / 1440, (m % 1440) / 60),
    }
}

fn item(v: &RequestView, now: i64) -> InboxItem {
    InboxItem {
        id: v.id.clone(),
        environment: v.context.environment.clone(),
        repository: v.context.repository.clone(),
        requester: if v.context.actor.is_empty() {
            v.opened_by.clone()
        } else {
            v.context.actor.clone()
        },
        age: parse_time(&v.created_at)
            .map(|t| human_age(now - t))
            .unwrap_or_default(),
        needs: v.needs(),
        summary: v.summary.clone(),
        created_at: v.created_at.clone(),
    }
}

async fn inbox(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let sess = match signed_in(&s, &headers, "/").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = now_ms();
    let (mine, others): (Vec<_>, Vec<_>) = match s.engine.listing(&sess.principal(), "pending", 500).await {
        Ok(v) => v.into_iter().partition(|(_, mine)| *mine),
        Err(e) => return UiError::from(e).into_response(),
    };
    // Everything else pending is shown too, for context (read-only here).
    let others: Vec<_> = others.iter().map(|(v, _)| item(v, now)).collect();
    render(&InboxPage {
        watch: "all",
        items: mine.iter().map(|(v, _)| item(v, now)).collect(),
        others,
        nav: Nav::of(&sess),
    })
}

struct Link {
    text: String,
    href: String,
}

struct Req {
    group: String,
    count: u32,
    approved_by: String,
    may_vote: String,
    met: bool,
}

struct VoteLine {
    voter: String,
    decision: String,
    reason: String,
    at: String,
    how: String,
}

struct TimelineLine {
    at: String,
    kind: String,
    actor: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "detail.html")]
struct DetailPage<'a> {
    nav: Nav,
    watch: &'a str,
    v: RequestView,
    pending: bool,
    links: Vec<Link>,
    labels: Vec<(String, String)>,
    requirements: Vec<Req>,
    votes: Vec<VoteLine>,
    timeline: Vec<TimelineLine>,
    can_vote: bool,
    /// Why there are no buttons, when there are none on a pending request.
    no_vote_reason: String,
    requester: String,
}

/// `https://host[:port]` of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

fn safe_path(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
}

/// Links to the commit, the change (PR/MR) and the run, where the context allows.
pub fn context_links(c: &crate::core::api::Context) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let server = origin(&c.run_url).unwrap_or_else(|| match c.platform.as_str() {
        "gitlab" => "https://gitlab.com".into(),
        _ => "https://github.com".into(),
    });
    let repo_ok = safe_path(&c.repository);
    let sha_ok = !c.commit.is_empty() && c.commit.bytes().all(|b| b.is_ascii_hexdigit());
    let num = |prefix: &str| {
        c.git_ref
            .strip_prefix(prefix)
            .and_then(|r| r.split('/').next())
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
    };
    match c.platform.as_str() {
        "github" if repo_ok => {
            if sha_ok {
                out.push((
                    format!("Commit {}", &c.commit[..c.commit.len().min(12)]),
                    format!("{server}/{}/commit/{}", c.repository, c.commit),
                ));
            }
            if let Some(n) = num("refs/pull/") {
                out.push((
                    format!("Pull request #{n}"),
                    format!("{server}/{}/pull/{n}", c.repository),
                ));
            }
        }
        "gitlab" if repo_ok => {
            if sha_ok {
                out.push((
                    format!("Commit {}", &c.commit[..c.commit.len().min(12)]),
                    format!("{server}/{}/-/commit/{}", c.repository, c.commit),
                ));
            }
            if let Some(n) = num("refs/merge-requests/") {
                out.push((
                    format!("Merge request !{n}"),
                    format!("{server}/{}/-/merge_requests/{n}", c.repository),
                ));
            }
        }
        _ => {}
    }
    if origin(&c.run_url).is_some() {
        out.push(("Pipeline run".into(), c.run_url.clone()));
    }
    out
}

/// The interesting fields of an audit event's data, in words.
fn describe_event(data: &str) -> String {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(data) else {
        return String::new();
    };
    m.iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::Null => return None,
                Value::String(s) if s.is_empty() => return None,
                Value::Array(a) if a.is_empty() => return None,
                // Nested objects and lists (context, requirements, artifacts) and the
                // digest are on the page already.
                Value::Object(_) => return None,
                Value::Array(_) if k != "amr" => return None,
                _ if k == "policy_digest" => return None,
                Value::String(s) => s.clone(),
                Value::Array(_) => {
                    let t = v.to_string();
                    if t.len() > 200 {
                        format!("{}…", &t[..t.floor_char_boundary(200)])
                    } else {
                        t
                    }
                }
                other => other.to_string(),
            };
            Some(format!("{k}: {text}"))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

async fn detail(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let sess = match signed_in(&s, &headers, &format!("/requests/{}", sso::url_encode(&id))).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match detail_page(&s, &sess, &id).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn detail_page(s: &AppState, sess: &Session, id: &str) -> UiResult<Response> {
    let (row, votes) = s.engine.load(id).await?;
    let v = s.engine.view(&row, &votes)?;
    let audit = s.engine.store.audit_for(id).await?;
    let user = sess.user();
    let pending = v.status == "pending";
    let eligible = v.approvers().iter().any(|a| a == user);
    let is_requester = v.requester.iter().any(|r| r == user);
    let voted = v.votes.iter().any(|x| x.voter == user);
    let can_vote = pending && sess.row.can_vote && eligible;
    let no_vote_reason = if !pending || can_vote {
        String::new()
    } else if !sess.row.can_vote {
        "You are signed in read-only: your sign-in matches no approver in the server config.".into()
    } else if is_requester {
        "You are a requester of this request: you cannot approve or deny it.".into()
    } else if voted {
        "You have voted on this request.".into()
    } else {
        "You are not among the approvers this request still needs.".into()
    };
    let page = DetailPage {
        nav: Nav::of(sess),
        watch: id,
        pending,
        links: context_links(&v.context)
            .into_iter()
            .map(|(text, href)| Link { text, href })
            .collect(),
        labels: v.context.labels.iter().map(|(k, x)| (k.clone(), x.clone())).collect(),
        requirements: v
            .requirements
            .iter()
            .map(|r| Req {
                group: r.group.clone(),
                count: r.count,
                approved_by: r.approved_by.join(", "),
                may_vote: r
                    .may_vote
                    .iter()
                    .filter(|m| *m != user)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                met: r.met,
            })
            .collect(),
        votes: v
            .votes
            .iter()
            .map(|x| VoteLine {
                voter: x.voter.clone(),
                decision: x.decision.clone(),
                reason: x.reason.clone().unwrap_or_default(),
                at: x.at.clone(),
                how: match &x.auth_time {
                    Some(t) if !x.amr.is_empty() => format!("{} (signed in {t}, {})", x.via, x.amr.join("+")),
                    Some(t) => format!("{} (signed in {t})", x.via),
                    None => x.via.clone(),
                },
            })
            .collect(),
        timeline: audit
            .iter()
            .map(|r| TimelineLine {
                at: rfc3339(r.at),
                kind: r.kind.clone(),
                actor: r.actor.clone(),
                detail: describe_event(&r.data),
            })
            .collect(),
        can_vote,
        no_vote_reason,
        requester: v.requester.join(", "),
        v,
    };
    Ok(render(&page))
}

/// `GET /requests/{id}/record`: the signed record, for a signed-in browser.
async fn record(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, what)): Path<(String, String)>,
) -> UiResult<Response> {
    if what != "record" {
        return Err(UiError::new(StatusCode::NOT_FOUND, "no such page"));
    }
    if current(&s, &headers).await?.is_none() {
        return Ok(Redirect::to(&format!(
            "/login?next={}",
            sso::url_encode(&format!("/requests/{id}/record"))
        ))
        .into_response());
    }
    s.engine.load(&id).await?;
    let env = s.engine.store.record(&id).await?.ok_or_else(|| {
        UiError::new(
            StatusCode::CONFLICT,
            format!("request {id} is still pending: records are issued on the outcome"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], env).into_response())
}

#[derive(Deserialize)]
pub struct VoteForm {
    csrf: Option<String>,
    reason: Option<String>,
}

/// `POST /requests/{id}/approve|deny`: the session's person votes. The engine enforces
/// who may (separation of duties included); this checks the session and the form's token.
async fn vote(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    form: Result<Form<VoteForm>, FormRejection>,
) -> UiResult<Response> {
    let form = form.ok().map(|f| f.0);
    let Some(sess) = current(&s, &headers).await? else {
        return Err(UiError::forbidden("sign in first: this form has no valid session"));
    };
    if !sess.csrf_ok(form.as_ref().and_then(|f| f.csrf.as_deref())) {
        tracing::warn!(user = sess.user(), request = %id, "UI POST without a valid anti-forgery token refused");
        return Err(UiError::forbidden(
            "this form has no valid anti-forgery token: reload the page and try again",
        ));
    }
    let approve = match verb.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return Err(UiError::new(StatusCode::NOT_FOUND, "no such action")),
    };
    if !sess.row.can_vote {
        return Err(UiError::forbidden("a read-only sign-in cannot vote"));
    }
    let reason = form
        .and_then(|f| f.reason)
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if !approve && reason.is_none() {
        return Err(UiError::new(StatusCode::BAD_REQUEST, "a deny needs a reason"));
    }
    s.engine
        .vote(&sess.principal(), &id, approve, reason, sess.vote_meta(), now_ms)
        .await?;
    Ok(Redirect::to(&format!("/requests/{}", sso::url_encode(&id))).into_response())
}

#[derive(Deserialize, Default)]
pub struct HistoryQuery {
    repository: Option<String>,
    environment: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

struct HistoryLine {
    id: String,
    created_at: String,
    status: String,
    environment: String,
    repository: String,
    requester: String,
    decided_by: String,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage<'a> {
    nav: Nav,
    watch: &'a str,
    q: HistoryQuery,
    statuses: Vec<(&'static str, bool)>,
    lines: Vec<HistoryLine>,
    problem: String,
}

fn day_ms(d: &str) -> Option<i64> {
    // Exactly `[+-]YYYY-MM-DD`.
    let d = d.trim();
    let ymd = d.strip_prefix(['+', '-']).unwrap_or(d);
    let shape = ymd.len() == 10
        && ymd
            .bytes()
            .enumerate()
            .all(|p| matches!(p, (4 | 7, b'-') | (0..4 | 5..7 | 8.., b'0'..=b'9')));
    let day = jiff::civil::Date::strptime("%Y-%m-%d", d).ok().filter(|_| shape)?;
    Some(day.duration_since(jiff::civil::date(1970, 1, 1)).as_millis() as i64)
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|x| x.trim().to_string()).filter(|x| !x.is_empty())
}

async fn history(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<HistoryQuery>) -> Response {
    let sess = match signed_in(&s, &headers, "/history").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut problem = String::new();
    let mut date = |v: &Option<String>, what: &str, plus: i64| match nonempty(v) {
        None => None,
        Some(d) => match day_ms(&d) {
            Some(ms) => Some(ms + plus),
            None => {
                problem = format!("{what}: `{d}` is not a date (YYYY-MM-DD)");
                None
            }
        },
    };
    let from = date(&q.from, "from", 0);
    let to = date(&q.to, "to", 86_400_000);
    let status = nonempty(&q.status).filter(|x| crate::core::decide::Status::parse(x).is_some());
    let f = HistoryFilter {
        repository: nonempty(&q.repository),
        environment: nonempty(&q.environment),
        status: status.clone(),
        from,
        to,
        limit: 500,
    };
    let rows = match s.engine.store.history(&f).await {
        Ok(r) => r,
        Err(e) => return UiError::from(e).into_response(),
    };
    let mut lines = Vec::new();
    for row in rows {
        let doc = match crate::service::doc_of(&row) {
            Ok(d) => d,
            Err(e) => return UiError::from(e).into_response(),
        };
        lines.push(HistoryLine {
            id: row.id.clone(),
            created_at: rfc3339(row.created_at),
            status: row.status.clone(),
            environment: row.environment.clone(),
            repository: row.repository.clone(),
            requester: if doc.context.actor.is_empty() {
                row.opened_by.clone()
            } else {
                doc.context.actor.clone()
            },
            decided_by: doc.decided_by.unwrap_or_default(),
        });
    }
    let statuses = ["pending", "approved", "denied", "expired", "canceled", "consumed"]
        .into_iter()
        .map(|x| (x, status.as_deref() == Some(x)))
        .collect();
    render(&HistoryPage {
        nav: Nav::of(&sess),
        watch: "",
        q,
        statuses,
        lines,
        problem,
    })
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage<'a> {
    nav: Nav,
    watch: &'a str,
    ok: bool,
    events: i64,
    head: String,
    broken_at: String,
    problem: String,
    key: crate::core::api::PublicKey,
}

async fn audit(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let sess = match signed_in(&s, &headers, "/audit").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let check = match s.engine.store.verify_chain().await {
        Ok(c) => c,
        Err(e) => return UiError::from(e).into_response(),
    };
    render(&AuditPage {
        nav: Nav::of(&sess),
        watch: "",
        ok: check.broken.is_none(),
        events: check.count(),
        head: check.head().to_string(),
        broken_at: check.broken.as_ref().map(|b| b.0.to_string()).unwrap_or_default(),
        problem: check.broken.as_ref().map(|b| b.1.clone()).unwrap_or_default(),
        key: s.engine.keys.public(),
    })
}

// ----- sign-in ------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    nav: Nav,
    watch: &'a str,
    next: String,
    csrf: String,
    sso: String,
    sso_href: String,
    problem: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_response(s: &AppState, next: String, status: StatusCode, problem: String) -> Response {
    let csrf = random_token();
    let page = LoginPage {
        nav: Nav::default(),
        watch: "",
        sso: s.ui.sso.as_ref().map(|c| c.display_name()).unwrap_or_default(),
        sso_href: format!("/auth/sso?next={}", sso::url_encode(&next)),
        next,
        csrf: csrf.clone(),
        problem,
    };
    let mut resp = (status, render(&page)).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(PRELOGIN_COOKIE, &csrf, "/login", "Strict", s.ui.secure, 600),
    );
    resp
}

async fn login_page(State(s): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    login_response(&s, local_next(q.next.as_deref()), StatusCode::OK, String::new())
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: Option<String>,
    csrf: Option<String>,
    next: Option<String>,
}

/// `POST /login`: signs in with an approver token (never in a URL: a form body only).
async fn login_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> UiResult<Response> {
    let Ok(Form(f)) = form else {
        return Err(UiError::forbidden("this form has no valid anti-forgery token"));
    };
    let expected = cookie(&headers, PRELOGIN_COOKIE).unwrap_or_default();
    if !f.csrf.as_deref().is_some_and(|c| session::same_secret(c, &expected)) {
        return Err(UiError::forbidden(
            "this sign-in form has no valid anti-forgery token: reload the page and try again",
        ));
    }
    let next = local_next(f.next.as_deref());
    let token = f.token.unwrap_or_default();
    let Some(crate::auth::Principal::Approver(user)) = s.engine.tokens.authenticate(token.trim()) else {
        tracing::info!("web sign-in with an unknown or non-approver token refused");
        return Ok(login_response(
            &s,
            next,
            StatusCode::UNAUTHORIZED,
            "That is not an approver token this server knows.".into(),
        ));
    };
    let cookie = start_session(&s, user, true, "session", now_ms(), vec![]).await?;
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(PRELOGIN_COOKIE, "", "/login", "Strict", s.ui.secure, 0),
    );
    Ok(resp)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> UiResult<Response> {
    let Some(sess) = current(&s, &headers).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    if !sess.csrf_ok(form.ok().and_then(|f| f.0.csrf).as_deref()) {
        return Err(UiError::forbidden("this form has no valid anti-forgery token"));
    }
    s.engine.store.delete_session(&sess.row.id_sha256).await?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/", "Strict", s.ui.secure, 0),
    );
    Ok(resp)
}

/// `GET /auth/sso`: sends the browser to the provider with a fresh state, nonce and PKCE
/// challenge; the state's digest, the nonce and the verifier stay here.
async fn sso_start(State(s): State<AppState>, Query(q): Query<NextQuery>) -> UiResult<Response> {
    let Some(client) = &s.ui.sso else {
        return Err(UiError::new(
            StatusCode::NOT_FOUND,
            "single sign-on is not configured (`sso:` in gate.yaml)",
        ));
    };
    let state = random_token();
    let nonce = random_token();
    let verifier = random_token();
    let url = client.authorize_url(&state, &nonce, &verifier).await.map_err(|e| {
        tracing::warn!(error = %e, "single sign-on provider unavailable");
        UiError::new(
            StatusCode::BAD_GATEWAY,
            format!("cannot reach the sign-on provider: {e}"),
        )
    })?;
    s.engine
        .store
        .insert_sso_login(&SsoLogin {
            state_sha256: digest(&state),
            nonce,
            verifier,
            next: local_next(q.next.as_deref()),
            expires_at: now_ms() + 600_000,
        })
        .await?;
    let mut resp = Redirect::to(&url).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SSO_COOKIE, &state, "/auth", "Lax", s.ui.secure, 600),
    );
    Ok(resp)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Template)]
#[template(path = "continue.html")]
struct ContinuePage<'a> {
    nav: Nav,
    watch: &'a str,
    next: String,
}

/// `GET /auth/callback`: checks the state against this browser's cookie, redeems the code
/// with the PKCE verifier, verifies the ID token and its nonce, maps the person to a user.
async fn sso_callback(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> UiResult<Response> {
    let Some(client) = &s.ui.sso else {
        return Err(UiError::new(StatusCode::NOT_FOUND, "single sign-on is not configured"));
    };
    if let Some(e) = &q.error {
        return Err(UiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "the sign-on provider refused: {e} {}",
                q.error_description.as_deref().unwrap_or("")
            ),
        ));
    }
    let state = q.state.unwrap_or_default();
    let bound = cookie(&headers, SSO_COOKIE).unwrap_or_default();
    if !session::same_secret(&state, &bound) {
        return Err(UiError::new(
            StatusCode::BAD_REQUEST,
            "this sign-in was not started in this browser (state mismatch): start again",
        ));
    }
    let Some(login) = s.engine.store.take_sso_login(&digest(&state), now_ms()).await? else {
        return Err(UiError::new(
            StatusCode::BAD_REQUEST,
            "this sign-in expired or was already used: start again",
        ));
    };
    let code = q.code.unwrap_or_default();
    let who = client.finish(&code, &login.verifier, &login.nonce).await.map_err(|e| {
        tracing::warn!(error = %e, "single sign-on refused");
        UiError::new(StatusCode::UNAUTHORIZED, format!("sign-in refused: {e}"))
    })?;
    let cfg = &client.cfg;
    if cfg.user_claim() == "email" && !who.email_verified {
        return Err(UiError::forbidden(
            "the provider says this email address is not verified",
        ));
    }
    if !cfg.allowed_domains.is_empty() {
        let domain_ok = who.email_verified
            && who
                .email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .is_some_and(|(_, d)| cfg.allowed_domains.iter().any(|a| a.eq_ignore_ascii_case(d)));
        if !domain_ok {
            return Err(UiError::forbidden(format!(
                "`{}` may not sign in here: a verified email in {} is needed",
                who.email.as_deref().unwrap_or(&who.identity),
                cfg.allowed_domains.join(", ")
            )));
        }
    }
    let users = s.engine.config.users_for_login(&who.identity);
    let (user, can_vote) = match users.as_slice() {
        [one] => (one.clone(), true),
        [] if !cfg.allowed_domains.is_empty() => (who.identity.clone(), false),
        [] => {
            return Err(UiError::forbidden(format!(
                "`{}` ({}) matches no user in the server config",
                who.identity,
                cfg.user_claim()
            )));
        }
        many => {
            return Err(UiError::forbidden(format!(
                "`{}` matches several users ({}): make the config unambiguous",
                who.identity,
                many.join(", ")
            )));
        }
    };
    let cookie = start_session(&s, user, can_vote, "sso", who.auth_time, who.amr).await?;
    // The provider's redirect here was a cross-site navigation, so a SameSite=Strict cookie
    // would not ride on a redirect from it; a page of ours that moves on does carry it.
    let mut resp = render(&ContinuePage {
        nav: Nav::default(),
        watch: "",
        next: login.next,
    });
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SSO_COOKIE, "", "/auth", "Lax", s.ui.secure, 0),
    );
    Ok(resp)
}

/// `GET /ui/events`: the change stream of `/api/v1/events`, for a signed-in browser.
async fn events(State(s): State<AppState>, headers: HeaderMap) -> UiResult<Response> {
    if current(&s, &headers).await?.is_none() {
        return Err(UiError::new(StatusCode::UNAUTHORIZED, "sign in first"));
    }
    Ok(super::api::event_stream(&s).into_response())
}

/// The UI state for `AppState`.
pub fn state(config: &crate::config::Config, public_url: &str) -> Result<Arc<UiState>, String> {
    UiState::new(config, public_url).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_local() {
        assert_eq!(local_next(Some("/requests/x")), "/requests/x");
        assert_eq!(local_next(Some("//evil.example")), "/");
        assert_eq!(local_next(Some("https://evil.example")), "/");
        assert_eq!(local_next(Some("/\\evil")), "/");
        assert_eq!(local_next(None), "/");
    }

    #[test]
    fn links_follow_the_platform() {
        let mut c = crate::core::api::Context {
            platform: "github".into(),
            repository: "acme/app".into(),
            commit: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
            git_ref: "refs/pull/42/merge".into(),
            run_url: "https://ghe.example/acme/app/actions/runs/1".into(),
            ..Default::default()
        };
        let l = context_links(&c);
        assert_eq!(
            l[0].1,
            "https://ghe.example/acme/app/commit/4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        assert_eq!(l[1].1, "https://ghe.example/acme/app/pull/42");
        assert_eq!(l[2].1, c.run_url);
        c.platform = "gitlab".into();
        c.git_ref = "refs/merge-requests/7/head".into();
        c.run_url = "javascript:alert(1)".into();
        let l = context_links(&c);
        assert_eq!(
            l[0].1,
            "https://gitlab.com/acme/app/-/commit/4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        assert_eq!(l[1].1, "https://gitlab.com/acme/app/-/merge_requests/7");
        assert_eq!(l.len(), 2, "a javascript: run URL is never a link");
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(human_age(30_000), "under a minute");
        assert_eq!(human_age(5 * 60_000), "5 min");
        assert_eq!(human_age(125 * 60_000), "2 h 5 min");
        assert_eq!(human_age(50 * 3_600_000), "2 d 2 h");
    }
}
