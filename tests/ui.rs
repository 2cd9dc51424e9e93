//! The web UI over plain HTTP (no browser): headers, sign-in, sessions, CSRF, votes with
//! their `via`, history filters; on SQLite and PostgreSQL. The browser test
//! (tests/browser.rs) covers single sign-on and the pages in Chromium.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};

/// Form bodies (reqwest is built without its `form` feature).
trait FormExt {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self;
}

impl FormExt for reqwest::RequestBuilder {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(jitgate::http::ui::sso::form_encode(&pairs))
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn cookie_value(h: &HeaderMap, name: &str) -> Option<(String, String)> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v.split(';').next().unwrap()[name.len() + 1..].to_string();
            (value, v.to_string())
        })
}

fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Signs in with `who`'s token; returns the session cookie header and the CSRF token.
async fn sign_in(c: &reqwest::Client, base: &str, who: &str) -> (String, String) {
    let r = c.get(format!("{base}/login")).send().await.unwrap();
    let (pre, _) = cookie_value(r.headers(), "gate_prelogin").unwrap();
    let csrf = hidden(&r.text().await.unwrap(), "csrf");
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", format!("gate_prelogin={pre}"))
        .form_body(&[("csrf", csrf.as_str()), ("token", &token(who)), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (sid, attrs) = cookie_value(r.headers(), "gate_session").unwrap();
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict") && !attrs.contains("Secure"),
        "{attrs}"
    );
    let cookie = format!("gate_session={sid}");
    let page = c
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = hidden(&page.text().await.unwrap(), "csrf");
    (cookie, csrf)
}

async fn ui_on(db: Db) {
    let s = Server::start_with(
        db,
        &policy("    require: [{ group: sre, count: 1 }]"),
        "session_ttl: 2h\n",
    )
    .await;
    let c = http();
    let base = s.url.as_str();

    // Signed out: pages send you to sign in, with the security headers on everything.
    let r = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login?next=%2F");
    let h = r.headers();
    assert_eq!(
        h["content-security-policy"],
        "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    for path in ["/login", "/static/app.js", "/static/app.css"] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers().contains_key("content-security-policy"), "{path}");
    }
    let r = c.get(format!("{base}/ui/events")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Sign-in: without the form's token refused; a wrong token is not a session.
    let r = c
        .post(format!("{base}/login"))
        .form_body(&[("token", token("alice").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(cookie_value(r.headers(), "gate_session").is_none());
    let pre = c.get(format!("{base}/login")).send().await.unwrap();
    let (pc, _) = cookie_value(pre.headers(), "gate_prelogin").unwrap();
    let csrf = hidden(&pre.text().await.unwrap(), "csrf");
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", format!("gate_prelogin={pc}"))
        .form_body(&[("csrf", csrf.as_str()), ("token", "tok-nobody")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie_value(r.headers(), "gate_session").is_none());
    // A pipeline token is not an approver's.
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", format!("gate_prelogin={pc}"))
        .form_body(&[("csrf", csrf.as_str()), ("token", &token("ci"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

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
    let (cookie, csrf) = sign_in(&c, base, "alice").await;

    // The detail page escapes what was typed and offers the forms.
    let page = c
        .get(format!("{base}/requests/{}", w.id))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("id=\"approve\""));
    let r = c
        .get(format!("{base}/ui/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    drop(r);

    let vote = |verb: &str, form: Vec<(&'static str, String)>| {
        c.post(format!("{base}/requests/{}/{verb}", w.id))
            .header("cookie", &cookie)
            .form_body(&form)
            .send()
    };
    let r = vote("approve", vec![("reason", "no token".into())]).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = vote(
        "approve",
        vec![("csrf", "x".repeat(csrf.len())), ("reason", "bad".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = vote("deny", vec![("csrf", csrf.clone()), ("reason", " ".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.client("ci").get(&w.id).await.unwrap().status, "pending");
    let r = vote("approve", vec![("csrf", csrf.clone()), ("reason", "fine".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
    let id = w.id.clone();
    let (code, events, err) = w.finish().await;
    assert_eq!(code, 0, "{events:?} {err}");
    let v = s.client("ci").get(&id).await.unwrap();
    assert_eq!(v.votes[0].via, "session");
    assert!(v.votes[0].auth_time.is_some());

    // History filters.
    let hist = |q: &'static str| c.get(format!("{base}/history?{q}")).header("cookie", &cookie).send();
    let all = hist("").await.unwrap().text().await.unwrap();
    assert!(all.contains(&id), "{all}");
    for (q, found) in [
        ("repository=acme%2Fweb&status=consumed", true),
        ("repository=acme%2Fother", false),
        ("environment=staging", false),
        ("from=2000-01-01&to=2999-12-31", true),
        ("to=2000-01-01", false),
    ] {
        let page = hist(q).await.unwrap().text().await.unwrap();
        assert_eq!(page.contains(&id), found, "{q}");
    }
    let audit = c
        .get(format!("{base}/audit"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("id=\"chain-ok\""), "{audit}");
    assert!(audit.contains("BEGIN PUBLIC KEY"));

    // Sign-out ends the session on the server: the old cookie no longer works.
    let r = c
        .post(format!("{base}/logout"))
        .header("cookie", &cookie)
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
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
