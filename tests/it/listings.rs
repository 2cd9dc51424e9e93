//! Listings that are correct at any size: the inbox filters before it limits, lists page
//! with a cursor (`Link: <…>; rel="next"`), an out-of-range `limit` is a 400, `gate
//! pending` follows the pages, and the web inbox and history link to their next page. On
//! SQLite and PostgreSQL.

use crate::helpers::*;
use jitgate::core::api::{Context, CreateRequest};
use reqwest::StatusCode;

/// `ops` requests need one of ops (erin, frank); `production` ones one of sre (alice, …).
fn two_rules() -> String {
    "version: 1
groups:
  sre: [alice, bob, carol]
  ops: [erin, frank]
rules:
  - name: ops
    match: { environment: ops }
    require: [{ group: ops, count: 1 }]
  - name: production
    match: { environment: production }
    require: [{ group: sre, count: 1 }]
"
    .into()
}

async fn open(s: &TestApp, environment: &str, n: usize) -> String {
    let body = CreateRequest {
        context: Context {
            repository: format!("acme/app{n}"),
            git_ref: "refs/heads/main".into(),
            commit: COMMIT.into(),
            actor: "dave".into(),
            environment: environment.into(),
            action: "deploy".into(),
            ..Default::default()
        },
        summary: format!("release {n}"),
        ..Default::default()
    };
    s.client("ci").create(&body).await.unwrap().0.id
}

fn next_of(h: &reqwest::header::HeaderMap) -> Option<String> {
    let link = h.get("link")?.to_str().unwrap();
    let target = link.strip_prefix('<')?.split_once(">; rel=\"next\"")?.0;
    Some(target.to_string())
}

/// More requests alice cannot vote on than one batch of the server's scan (200), all older
/// than the one she can.
async fn seeded(db: Db) -> (TestApp, Vec<String>, String) {
    let s = TestApp::builder().backend(db).policy(two_rules()).spawn().await;
    let mut ops = Vec::new();
    for n in 0..230 {
        ops.push(open(&s, "ops", n).await);
    }
    let hers = open(&s, "production", 999).await;
    (s, ops, hers)
}

async fn inbox_and_paging_on(db: Db) {
    let (s, ops, hers) = seeded(db).await;
    let http = s.http();

    // Filter, then limit: alice's one request comes back, and nothing more is announced.
    let r = http
        .get("/api/v1/requests?status=pending&limit=1")
        .bearer(&token("alice"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(next_of(&r.headers), None, "{:?}", r.headers);
    let page = r.json().await;
    let ids: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [hers.as_str()]);

    let out = s.run("alice", &["pending"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&hers), "{}", out.stdout);
    assert!(!out.stdout.contains(&ops[0]), "{}", out.stdout);

    // erin's 230, 100 at a time: each page links the next, the last links nothing, and
    // together they are every request once, oldest first.
    let mut path = "/api/v1/requests?status=pending&limit=100".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = http.get(&path).bearer(&token("erin")).send().await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let next = next_of(&r.headers);
        let page = r.json().await;
        pages += 1;
        for v in page.as_array().unwrap() {
            seen.push(v["id"].as_str().unwrap().to_string());
        }
        match next {
            Some(n) => {
                assert!(
                    n.starts_with("/api/v1/requests?status=pending&limit=100&cursor="),
                    "{n}"
                );
                path = n;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ops);

    // `gate pending` follows the pages: all 230 of erin's (500 is the default page).
    let out = s.run("erin", &["--output", "json", "pending"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listed.len(), 230);

    // A page exactly as long as what is left announces no empty next page.
    let r = http
        .get("/api/v1/requests?status=pending&limit=230")
        .bearer(&token("erin"))
        .send()
        .await;
    assert_eq!(next_of(&r.headers), None);
    assert_eq!(r.json().await.as_array().unwrap().len(), 230);
}

#[tokio::test]
async fn the_inbox_filters_before_it_limits_and_pages_with_a_cursor() {
    for db in backends() {
        inbox_and_paging_on(db).await;
    }
}

/// More of erin's than one default page (500): `gate pending` follows the `next` link.
#[tokio::test]
async fn gate_pending_follows_the_cursor_past_one_page() {
    let s = TestApp::builder().policy(two_rules()).spawn().await;
    let mut ops = Vec::new();
    for n in 0..505 {
        ops.push(open(&s, "ops", n).await);
    }
    let r = s.http().get("/api/v1/requests").bearer(&token("erin")).send().await;
    assert!(next_of(&r.headers).is_some(), "the first page links a second");
    assert_eq!(r.json().await.as_array().unwrap().len(), 500);
    let out = s.run("erin", &["--output", "json", "pending"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = listed.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ops);
}

#[tokio::test]
async fn out_of_range_limits_and_forged_cursors_are_400s() {
    let s = TestApp::builder().policy(two_rules()).spawn().await;
    let http = s.http();
    for (path, needle) in [
        ("/requests?limit=0", "limit: 0 is out of range; use 1 to 5000"),
        ("/requests?limit=5001", "limit: 5001 is out of range; use 1 to 5000"),
        ("/requests?limit=-3", "limit: -3 is out of range; use 1 to 5000"),
        (
            "/notifications?limit=9999",
            "limit: 9999 is out of range; use 1 to 5000",
        ),
        (
            "/requests?cursor=bm9kb3Q",
            "cursor: `bm9kb3Q` is not a cursor this server issued",
        ),
        (
            "/requests?cursor=%21%21",
            "cursor: `!!` is not a cursor this server issued",
        ),
    ] {
        let (status, body) = http.api("GET", path, &token("alice"), None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{path}: {msg}");
    }
    for ok in ["/requests?limit=1", "/requests?limit=5000"] {
        assert_eq!(http.api("GET", ok, &token("alice"), None).await.0, 200, "{ok}");
    }
}

/// The `href` of the page's "Next page" link, unescaped.
fn next_href(html: &str) -> Option<String> {
    let at = html.find("<a rel=\"next\" href=\"")? + 20;
    Some(
        html[at..at + html[at..].find('"')?]
            .replace("&amp;", "&")
            .replace("&#38;", "&")
            .replace("&#x3d;", "="),
    )
}

async fn ui_pages_on(db: Db) {
    let (s, ops, hers) = seeded(db).await;
    let c = s.http();

    // alice's inbox: hers, however many others are older; one page.
    let alice = crate::ui::sign_in(&c, "alice").await.0;
    let html = c.get("/").header("cookie", &alice).send().await.text().await;
    assert!(html.contains(&format!("/requests/{hers}")), "{html}");
    assert_eq!(next_href(&html), None);

    // erin's: 100 per page, then a next page with the rest.
    let erin = crate::ui::sign_in(&c, "erin").await.0;
    let mut path = "/".to_string();
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let r = c.get(&path).header("cookie", &erin).send().await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let html = r.text().await;
        let mine = &html[..html.find("Other pending requests").unwrap_or(html.len())];
        seen += ops
            .iter()
            .filter(|id| mine.contains(&format!("/requests/{id}\"")))
            .count();
        pages += 1;
        match next_href(&html) {
            Some(n) => path = n,
            None => break,
        }
    }
    assert_eq!((pages, seen), (3, 230));

    // History: 200 per page, newest first, the filter kept on the next page; only what
    // erin may read (ops' requests, not alice's), so the pages are full of hers.
    let r = c.get("/history?status=pending").header("cookie", &erin).send().await;
    let html = r.text().await;
    assert!(!html.contains(&format!("/requests/{hers}\"")));
    assert!(html.contains(&format!("/requests/{}\"", ops[30])));
    assert!(!html.contains(&format!("/requests/{}\"", ops[29])));
    let next = next_href(&html).expect("a next page link");
    assert!(next.starts_with("/history?status=pending&after="), "{next}");
    let html = c.get(&next).header("cookie", &erin).send().await.text().await;
    let rest = ops[..30]
        .iter()
        .filter(|id| html.contains(&format!("/requests/{id}\"")))
        .count();
    assert_eq!(rest, 30, "the oldest 30 are on page two");
    assert!(!html.contains(&format!("/requests/{hers}\"")));
    assert_eq!(next_href(&html), None);

    let r = c.get("/?after=nonsense").header("cookie", &erin).send().await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().await.contains("after: `nonsense` is not a cursor"));
}

#[tokio::test]
async fn the_web_inbox_and_history_link_their_next_page() {
    for db in backends() {
        ui_pages_on(db).await;
    }
}

/// The outbox pages with a cursor like every listing: following `Link: rel="next"` at
/// `limit=1` gives every row once, in the order one big page gives them, for everyone's
/// (newest first) and for one request's (oldest first).
#[tokio::test]
async fn the_outbox_pages_with_a_cursor_and_never_repeats_or_skips() {
    for db in backends() {
        // A webhook nobody answers: the rows stay in the outbox, which is all this needs.
        let s = TestApp::builder()
            .backend(db)
            .config_extra("notify:\n  webhooks:\n    - name: audit\n      url: http://127.0.0.1:9/hook\n      secret_env: HOOK_SECRET\n")
            .env("HOOK_SECRET", "whsec-listings-0123456789")
            .spawn()
            .await;
        let mut ids = Vec::new();
        for n in 0..3 {
            let body = CreateRequest {
                context: Context {
                    repository: format!("acme/app{n}"),
                    actor: "dave".into(),
                    environment: "production".into(),
                    ..Default::default()
                },
                ..Default::default()
            };
            ids.push(s.client("ci").create(&body).await.unwrap().0.id);
        }
        for filter in [String::new(), format!("&request={}", ids[1])] {
            let keys = |v: &serde_json::Value| -> Vec<String> {
                let list: jitgate::core::api::NotificationList = serde_json::from_value(v.clone()).unwrap();
                list.notifications.into_iter().map(|n| n.delivery).collect()
            };
            let (status, all) = s
                .http()
                .api(
                    "GET",
                    &format!("/notifications?limit=5000{filter}"),
                    &token(crate::helpers::ADMIN),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{all}");
            let all = keys(&all);
            assert!(all.len() >= if filter.is_empty() { 3 } else { 1 }, "{db:?}: {all:?}");
            let mut paged = Vec::new();
            let mut next = Some(format!("/api/v1/notifications?limit=1{filter}"));
            while let Some(url) = next.take() {
                let r = s.http().get(&url).bearer(&token(crate::helpers::ADMIN)).send().await;
                assert_eq!(r.status, 200, "{url}");
                next = r.headers.get("link").map(|l| {
                    let l = l.to_str().unwrap();
                    l.strip_prefix('<')
                        .unwrap()
                        .split_once(">; rel=\"next\"")
                        .unwrap()
                        .0
                        .to_string()
                });
                let page = keys(&r.json().await);
                assert!(page.len() == 1, "{db:?} {url}: {page:?}");
                paged.extend(page);
                assert!(
                    paged.len() <= all.len(),
                    "{db:?}: the pages go on past the rows: {paged:?}"
                );
            }
            assert_eq!(paged, all, "{db:?} {filter}");
        }
    }
}
