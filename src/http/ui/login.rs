//! Signing in and out: `GET|POST /login` (an approver token, in a form body only),
//! `POST /logout`, and single sign-on, `GET /auth/sso` and `GET /auth/callback` (the
//! OpenID Connect client is [`super::sso`]).

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error::{UiError, UiResult};
use super::page::{Nav, render};
use super::session::{
    self, PRELOGIN_COOKIE, SESSION_COOKIE, SSO_COOKIE, cookie, current, digest, local_next, random_token, set_cookie,
    start_session,
};
use super::sso;
use crate::core::duration::now_ms;
use crate::http::AppState;
use crate::store::SsoLogin;

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
pub(super) struct NextQuery {
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

pub(super) async fn login_page(State(s): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    login_response(&s, local_next(q.next.as_deref()), StatusCode::OK, String::new())
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: Option<String>,
    csrf: Option<String>,
    next: Option<String>,
}

/// `POST /login`: signs in with an approver token (never in a URL: a form body only).
pub(super) async fn login_token(
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
    let Some(crate::auth::Principal::Approver(user)) = s.engine.tokens().authenticate(token.trim()) else {
        tracing::info!("web sign-in with an unknown or non-approver token refused");
        return Ok(login_response(
            &s,
            next,
            StatusCode::UNAUTHORIZED,
            "That is not an approver token this server knows.".into(),
        ));
    };
    s.engine
        .check_active(&crate::auth::Principal::Approver(user.clone()))
        .await?;
    let cookie = start_session(&s, user, true, "session", now_ms(), vec![], None).await?;
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(PRELOGIN_COOKIE, "", "/login", "Strict", s.ui.secure, 0),
    );
    Ok(resp)
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

pub(super) async fn logout(
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
pub(super) async fn sso_start(State(s): State<AppState>, Query(q): Query<NextQuery>) -> UiResult<Response> {
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
pub(super) struct CallbackQuery {
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
pub(super) async fn sso_callback(
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
                who.email.as_deref().unwrap_or(who.identity.as_str()),
                cfg.allowed_domains.join(", ")
            )));
        }
    }
    let mut users = s.engine.config().users_for_login(&who.identity);
    if users.is_empty() {
        // A person only the identity provider knows (SCIM), by userName or email.
        users.extend(s.engine.sso_person(&who.identity).await?);
    }
    let (user, can_vote) = match users.as_slice() {
        [one] => (one.clone(), true),
        [] if !cfg.allowed_domains.is_empty() => (who.identity.to_string(), false),
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
    s.engine
        .check_active(&crate::auth::Principal::Approver(user.clone()))
        .await?;
    let cookie = start_session(&s, user, can_vote, "sso", who.auth_time, who.amr, who.groups).await?;
    // The provider's redirect here was a cross-site navigation, so a SameSite=Strict cookie
    // would not ride on a redirect from it; a page of ours that moves on does carry it.
    let mut resp = render(&ContinuePage {
        nav: Nav::default(),
        watch: "",
        // Checked again: a login started before this rule may hold any `next`.
        next: local_next(Some(&login.next)),
    });
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SSO_COOKIE, "", "/auth", "Lax", s.ui.secure, 0),
    );
    Ok(resp)
}
