//! The web UI over plain HTTP (no browser): headers, sign-in, sessions, CSRF, votes with
//! their `via`, history filters; on SQLite and PostgreSQL. The browser test
//! (tests/it/browser.rs) covers single sign-on and the pages in Chromium.

use crate::helpers::*;
use jitgate::core::decide::Status;
use reqwest::StatusCode;

fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Signs in with `who`'s token; returns the session cookie header and the CSRF token.
pub(crate) async fn sign_in(c: &Http, who: &str) -> (String, String) {
    let r = c.get("/login").send().await;
    let (pre, _) = r.cookie("gate_prelogin").unwrap();
    let csrf = hidden(&r.text().await, "csrf");
    let r = c
        .post("/login")
        .header("cookie", format!("gate_prelogin={pre}"))
        .form(&[("csrf", csrf.as_str()), ("token", &token(who)), ("next", "/")])
        .send()
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let (sid, attrs) = r.cookie("gate_session").unwrap();
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict") && !attrs.contains("Secure"),
        "{attrs}"
    );
    let cookie = format!("gate_session={sid}");
    let page = c.get("/").header("cookie", &cookie).send().await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = hidden(&page.text().await, "csrf");
    (cookie, csrf)
}

/// Request `id`'s page as `who` sees it once signed in.
pub(crate) async fn request_page(c: &Http, who: &str, id: &str) -> String {
    let (cookie, _) = sign_in(c, who).await;
    c.get(&format!("/requests/{id}"))
        .header("cookie", &cookie)
        .send()
        .await
        .text()
        .await
}

async fn ui_on(db: Db) {
    let s = TestApp::builder()
        .backend(db)
        .config_extra("session_ttl: 2h\n")
        .spawn()
        .await;
    let c = s.http();

    // Signed out: pages send you to sign in, with the security headers on everything.
    let r = c.get("/").send().await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/login?next=%2F");
    let h = &r.headers;
    assert_eq!(
        h["content-security-policy"],
        "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    for path in ["/login", "/static/app.js", "/static/app.css"] {
        let r = c.get(path).send().await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.headers.contains_key("content-security-policy"), "{path}");
    }
    let r = c.get("/ui/events").send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Sign-in: without the form's token refused; a wrong token is not a session.
    let r = c
        .post("/login")
        .form(&[("token", token("alice").as_str())])
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.cookie("gate_session").is_none());
    let pre = c.get("/login").send().await;
    let (pc, _) = pre.cookie("gate_prelogin").unwrap();
    let csrf = hidden(&pre.text().await, "csrf");
    let r = c
        .post("/login")
        .header("cookie", format!("gate_prelogin={pc}"))
        .form(&[("csrf", csrf.as_str()), ("token", "tok-nobody")])
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.cookie("gate_session").is_none());
    // A pipeline token is not an approver's.
    let r = c
        .post("/login")
        .header("cookie", format!("gate_prelogin={pc}"))
        .form(&[("csrf", csrf.as_str()), ("token", &token("ci"))])
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let w = s
        .open(&[
            "--environment",
            "production",
            "--repository",
            "acme/web",
            "--actor",
            "dave-gh",
            "--commit",
            COMMIT,
            "--summary",
            "<script>alert(1)</script>",
        ])
        .await;
    let (cookie, csrf) = sign_in(&c, "alice").await;

    // The detail page escapes what was typed and offers the forms.
    let page = c
        .get(&format!("/requests/{}", w.id))
        .header("cookie", &cookie)
        .send()
        .await
        .text()
        .await;
    assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("id=\"approve\""));
    let r = c.get("/ui/events").header("cookie", &cookie).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/event-stream");
    drop(r);

    let vote = |verb: &str, form: Vec<(&'static str, String)>| {
        c.post(&format!("/requests/{}/{verb}", w.id))
            .header("cookie", &cookie)
            .form(&form)
            .send()
    };
    let r = vote("approve", vec![("reason", "no token".into())]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = vote(
        "approve",
        vec![("csrf", "x".repeat(csrf.len())), ("reason", "bad".into())],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = vote("deny", vec![("csrf", csrf.clone()), ("reason", " ".into())]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.client("ci").get(&w.id).await.unwrap().status, Status::Pending);
    let r = vote("approve", vec![("csrf", csrf.clone()), ("reason", "fine".into())]).await;
    let status = r.status;
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", r.text().await);
    let id = w.id.clone();
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    let v = s.client("ci").get(&id).await.unwrap();
    assert_eq!(v.votes[0].via, "session");
    assert!(v.votes[0].auth_time.is_some());

    // History filters.
    let hist = |q: &'static str| c.get(&format!("/history?{q}")).header("cookie", &cookie).send();
    let all = hist("").await.text().await;
    assert!(all.contains(&id), "{all}");
    for (q, found) in [
        ("repository=acme%2Fweb&status=consumed", true),
        ("repository=acme%2Fother", false),
        ("environment=staging", false),
        ("from=2000-01-01&to=2999-12-31", true),
        ("to=2000-01-01", false),
    ] {
        let page = hist(q).await.text().await;
        assert_eq!(page.contains(&id), found, "{q}");
    }
    // The audit page is an auditor's.
    let r = c.get("/audit").header("cookie", &cookie).send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (auditor, _) = sign_in(&c, AUDITOR).await;
    let audit = c.get("/audit").header("cookie", &auditor).send().await.text().await;
    assert!(audit.contains("id=\"chain-ok\""), "{audit}");
    assert!(audit.contains("BEGIN PUBLIC KEY"));

    // Sign-out ends the session on the server: the old cookie no longer works.
    let r = c
        .post("/logout")
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = c.get("/").header("cookie", &cookie).send().await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn web_ui_sessions_csrf_and_votes_on_every_backend() {
    for db in backends() {
        ui_on(db).await;
    }
}

/// Sessions expire; single sign-on logins are single use; only digests are stored.
#[tokio::test]
async fn sessions_expire_and_sso_logins_are_single_use() {
    use jitgate::store::{SessionRow, SsoLogin, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let row = SessionRow {
        id_sha256: "d1".into(),
        user_name: "alice".into(),
        can_vote: true,
        via: "sso".into(),
        auth_time: 500,
        amr: vec!["pwd".into(), "mfa".into()],
        csrf: "c".into(),
        created_at: 1000,
        expires_at: 2000,
        idp_groups: Some(vec!["release-managers".into()]),
    };
    store.insert_session(&row).await.unwrap();
    assert_eq!(store.session("d1", 1999).await.unwrap(), Some(row.clone()));
    assert_eq!(store.session("d1", 2000).await.unwrap(), None, "expired");
    store.purge_sessions(2000).await.unwrap();
    assert_eq!(store.session("d1", 0).await.unwrap(), None, "purged");

    let l = SsoLogin {
        state_sha256: "s1".into(),
        nonce: "n".into(),
        verifier: "v".into(),
        next: "/".into(),
        expires_at: 5000,
    };
    store.insert_sso_login(&l).await.unwrap();
    assert_eq!(store.take_sso_login("s1", 4000).await.unwrap(), Some(l.clone()));
    assert_eq!(store.take_sso_login("s1", 4000).await.unwrap(), None, "used once");
    store
        .insert_sso_login(&SsoLogin {
            state_sha256: "s2".into(),
            ..l
        })
        .await
        .unwrap();
    assert_eq!(store.take_sso_login("s2", 5000).await.unwrap(), None, "expired");
}
