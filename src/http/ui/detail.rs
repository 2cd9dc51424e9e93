//! `GET /requests/{id}`: one request, its requirements, votes and timeline, with the vote
//! form; `POST /requests/{id}/approve|deny`; `GET /requests/{id}/record`.

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error::{UiError, UiResult};
use super::format::{context_links, describe_event};
use super::page::{Nav, render};
use super::session::{Session, current, signed_in};
use super::sso;
use crate::core::api::RequestView;
use crate::core::decide::Status;
use crate::core::duration::{now_ms, rfc3339};
use crate::http::AppState;

struct Link {
    text: String,
    href: String,
}

struct Req {
    /// `stage release (not open yet)`; empty for a rule without stages.
    stage: String,
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
    /// Whom the caller's vote counts for under a delegation ("" for themselves).
    vote_for: String,
    /// Why there are no buttons, when there are none on a pending request.
    no_vote_reason: String,
    requester: String,
}

pub(super) async fn detail(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
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
    let who = sess.principal();
    let (row, votes) = s.engine.load_in(&who, &sess.vote_meta(), id).await?;
    let v = s.engine.view(&row, &votes)?;
    let auditor = s.engine.has_role(&who, crate::auth::config::Role::Auditor);
    let audit = s.engine.store.audit_for(id).await?;
    let user = sess.user();
    let pending = v.status == Status::Pending;
    let is_requester = v.requester.iter().any(|r| r == user);
    let voted = v.votes.iter().any(|x| x.voter == user);
    // Without a vote of their own to cast, a delegate's vote counts for whoever
    // delegated to them and may still vote here (the engine picks the same one).
    let vote_for = if v.approvers().iter().any(|a| a == user) || is_requester || !pending {
        String::new()
    } else {
        let approvers = v.approvers();
        let mut from = s.engine.delegators_of(user, now_ms()).await?;
        from.sort();
        from.into_iter().find(|d| approvers.contains(d)).unwrap_or_default()
    };
    let eligible = v.approvers().iter().any(|a| a == user)
        || !vote_for.is_empty()
        || s.engine.in_idp_group(&row, &sess.vote_meta(), now_ms())?;
    // A covered request follows the one covering it (`approval_scope: run`): vote there.
    let can_vote = pending && v.covered_by.is_none() && sess.row.can_vote && eligible && !auditor;
    let no_vote_reason = if !pending || can_vote {
        String::new()
    } else if let Some(c) = &v.covered_by {
        format!("This request is decided with request {c} of the same run (approval_scope: run): vote there.")
    } else if auditor {
        "You are an auditor: you read every request and never approve or deny one.".into()
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
        nav: Nav::of(sess, &s.engine),
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
                stage: stage_label(&v.requirements, r, v.open_stage.as_deref()),
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
                voter: x.who(),
                decision: x.decision.clone(),
                reason: x.reason.clone().unwrap_or_default(),
                at: x.at.clone(),
                how: match &x.auth_time {
                    Some(t) if !x.amr.is_empty() => format!("{} (signed in {t}, {})", x.via, x.amr.join("+")),
                    Some(t) => format!("{} (signed in {t})", x.via),
                    None => x.via.clone(),
                } + &super::format::idp_groups(&x.idp_groups),
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
        vote_for,
        no_vote_reason,
        requester: v.requester.join(", "),
        v,
    };
    Ok(render(&page))
}

/// `GET /requests/{id}/record`: the signed record, for a signed-in browser.
pub(super) async fn record(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, what)): Path<(String, String)>,
) -> UiResult<Response> {
    if what != "record" {
        return Err(UiError::new(StatusCode::NOT_FOUND, "no such page"));
    }
    let Some(sess) = current(&s, &headers).await? else {
        return Ok(Redirect::to(&format!(
            "/login?next={}",
            sso::url_encode(&format!("/requests/{id}/record"))
        ))
        .into_response());
    };
    s.engine.load_in(&sess.principal(), &sess.vote_meta(), &id).await?;
    let env = s.engine.store.record(&id).await?.ok_or_else(|| {
        UiError::new(
            StatusCode::CONFLICT,
            format!("request {id} is still pending: records are issued on the outcome"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], env).into_response())
}

#[derive(Deserialize)]
pub(super) struct VoteForm {
    csrf: Option<String>,
    reason: Option<String>,
}

/// `POST /requests/{id}/approve|deny`: the session's person votes. The engine enforces
/// who may (separation of duties included); this checks the session and the form's token.
pub(super) async fn vote(
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
    let who = sess.principal();
    let vote = s.engine.vote(&who, &id, approve, reason, sess.vote_meta(), now_ms);
    s.throttle.action(who.name(), vote).await?;
    Ok(Redirect::to(&format!("/requests/{}", sso::url_encode(&id))).into_response())
}

/// How the detail page names `r`'s stage: `stage security (waiting)` for the open stage
/// that waits for approvals, `(not open yet)` for the stages after it.
fn stage_label(
    all: &[crate::core::api::RequirementView],
    r: &crate::core::api::RequirementView,
    open: Option<&str>,
) -> String {
    let Some(stage) = r.stage.as_deref() else {
        return String::new();
    };
    let Some(open) = open else {
        return format!("stage {stage}");
    };
    let index = |s: &str| all.iter().position(|x| x.stage.as_deref() == Some(s));
    let state = match index(stage).cmp(&index(open)) {
        std::cmp::Ordering::Equal => " (waiting)",
        std::cmp::Ordering::Greater => " (not open yet)",
        std::cmp::Ordering::Less => "",
    };
    format!("stage {stage}{state}")
}
