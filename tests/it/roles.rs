//! Roles, route by route: every route of the API (from the real OpenAPI document) and of
//! the web UI (from its router) called as each role, on SQLite and PostgreSQL, against an
//! expectation table; a route without a row fails the walk. A request the caller may not
//! read answers 404 exactly as an unknown id. Then what the statuses cannot show: which
//! requests each listing holds (pagination included), the event stream's changes, the
//! real `gate` binary, and scoped pipeline credentials (`allow:`).

use std::collections::BTreeSet;

use http::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Anonymous,
    /// `ci`, which opens the requests of the walk.
    Owner,
    /// `ci2`, another pipeline.
    OtherPipeline,
    /// alice: in sre, the group the production rule requires.
    Named,
    /// erin: in ops only, named on none of the walk's requests.
    NotNamed,
    /// dave: the actor of every request of the walk.
    Requester,
    Auditor,
    Admin,
}

use Role::*;

/// The roles in the order of [`Row::expect`].
const ROLES: [Role; 8] = [
    Anonymous,
    Owner,
    OtherPipeline,
    Named,
    NotNamed,
    Requester,
    Auditor,
    Admin,
];

impl Role {
    /// The gate.yaml name behind the role, if any.
    fn name(self) -> Option<&'static str> {
        match self {
            Anonymous => None,
            Owner => Some("ci"),
            OtherPipeline => Some("ci2"),
            Named => Some("alice"),
            NotNamed => Some("erin"),
            Requester => Some("dave"),
            Auditor => Some(AUDITOR),
            Admin => Some(ADMIN),
        }
    }

    /// Pipelines have no web UI session: on UI routes they are anonymous.
    fn signs_in(self) -> bool {
        !matches!(self, Anonymous | Owner | OtherPipeline)
    }
}

/// Which request `{id}` stands for.
#[derive(Clone, Copy, Debug)]
enum Fixture {
    /// No `{id}` in the path.
    None,
    /// One pending request shared by the reads.
    Pending,
    /// A new pending request for each call (the call changes it).
    FreshPending,
    /// A new request approved by alice for each call.
    FreshApproved,
    /// One request alice approved, shared by the reads of records.
    Decided,
    /// A new delegation from alice to bob for each call (`{id}` is the delegation's).
    Delegation,
}

/// One route and the status each role gets, in [`ROLES`] order:
/// anonymous, owner, other pipeline, named approver, approver not named, requester,
/// auditor, admin. Adding a route is adding one line.
struct Row {
    method: &'static str,
    /// The path as routed, with `{id}` for a request and an optional query.
    path: &'static str,
    fixture: Fixture,
    expect: [u16; 8],
}

const fn row(method: &'static str, path: &'static str, fixture: Fixture, expect: [u16; 8]) -> Row {
    Row {
        method,
        path,
        fixture,
        expect,
    }
}

use Fixture::{Decided, FreshApproved, FreshPending, Pending};

const ALL_200: [u16; 8] = [200; 8];
/// A request route read by those who may read the request, 404 for the others.
const READS: [u16; 8] = [401, 200, 404, 200, 404, 200, 200, 200];
/// Auditors and admins only.
const AUDITORS: [u16; 8] = [401, 403, 403, 403, 403, 403, 200, 200];
/// A vote: counted for the named approver; 404 for one who may not read the request;
/// refused (403) for pipelines, the requester, the auditor and the admin (not named).
const VOTES: [u16; 8] = [401, 403, 403, 200, 404, 403, 403, 403];

/// The API (`/api/v1/openapi.json` lists these; the walk checks it lists no other).
const API: &[Row] = &[
    row(
        "POST",
        "/api/v1/requests",
        Fixture::None,
        [401, 201, 201, 403, 403, 403, 403, 403],
    ),
    row(
        "GET",
        "/api/v1/requests",
        Fixture::None,
        [401, 200, 200, 200, 200, 200, 200, 200],
    ),
    row("GET", "/api/v1/requests/{id}", Pending, READS),
    row("GET", "/api/v1/requests/{id}/wait?timeout=0", Pending, READS),
    row("POST", "/api/v1/requests/{id}/approve", FreshPending, VOTES),
    row("POST", "/api/v1/requests/{id}/deny", FreshPending, VOTES),
    row(
        "POST",
        "/api/v1/requests/{id}/cancel",
        FreshPending,
        [401, 200, 404, 403, 404, 200, 403, 403],
    ),
    row(
        "POST",
        "/api/v1/requests/{id}/consume",
        FreshApproved,
        [401, 200, 404, 403, 403, 403, 403, 403],
    ),
    // The approval of a GitHub run is found by the run's OIDC token alone: every static
    // credential is refused (a deployment protection rule's tests cover the token).
    row(
        "POST",
        "/api/v1/run/consume",
        Fixture::None,
        [401, 403, 403, 403, 403, 403, 403, 403],
    ),
    row("GET", "/api/v1/requests/{id}/record", Decided, READS),
    row("GET", "/api/v1/requests/{id}/audit", Pending, READS),
    row(
        "GET",
        "/api/v1/events",
        Fixture::None,
        [401, 200, 200, 200, 200, 200, 200, 200],
    ),
    row("GET", "/api/v1/notifications", Fixture::None, AUDITORS),
    row(
        "GET",
        "/api/v1/notifications?request={id}",
        Pending,
        [401, 403, 403, 200, 404, 200, 200, 200],
    ),
    row("GET", "/api/v1/keys", Fixture::None, ALL_200),
    row("GET", "/api/v1/audit/verify", Fixture::None, AUDITORS),
    row("GET", "/api/v1/audit/export", Fixture::None, AUDITORS),
    row(
        "GET",
        "/api/v1/reports/changes?from=2020-01-01&to=2100-01-01",
        Fixture::None,
        AUDITORS,
    ),
    // Between people: pipelines are refused; an auditor has no vote to hand on (422).
    row(
        "POST",
        "/api/v1/delegations",
        Fixture::None,
        [401, 403, 403, 201, 201, 201, 422, 201],
    ),
    row(
        "GET",
        "/api/v1/delegations",
        Fixture::None,
        [401, 403, 403, 200, 200, 200, 200, 200],
    ),
    // alice's delegation to bob: hers or an admin's to revoke; unknown to anyone else.
    row(
        "DELETE",
        "/api/v1/delegations/{id}",
        Fixture::Delegation,
        [401, 403, 403, 200, 404, 404, 404, 200],
    ),
    row(
        "POST",
        "/api/v1/admin/reload",
        Fixture::None,
        [401, 403, 403, 403, 403, 403, 403, 200],
    ),
    row("GET", "/api/v1/log/checkpoint", Fixture::None, ALL_200),
    row("GET", "/api/v1/log/key", Fixture::None, ALL_200),
    row("GET", "/api/v1/log/leaves/0", Fixture::None, AUDITORS),
    row(
        "GET",
        "/api/v1/log/proof/inclusion?index=0&size=1",
        Fixture::None,
        ALL_200,
    ),
    row(
        "GET",
        "/api/v1/log/proof/consistency?from=1&to=1",
        Fixture::None,
        ALL_200,
    ),
    // A witness is known by its signature, not a role; an empty body is no cosignature.
    row("POST", "/api/v1/log/cosign", Fixture::None, [422; 8]),
    row("GET", "/api/v1/openapi.json", Fixture::None, ALL_200),
    row("GET", "/healthz", Fixture::None, ALL_200),
    row("GET", "/readyz", Fixture::None, ALL_200),
    row("GET", "/metrics", Fixture::None, ALL_200),
    // Authenticated by the forge's signature, not a role; not configured here.
    row("POST", "/webhooks/github", Fixture::None, [404; 8]),
    row("POST", "/webhooks/gitlab", Fixture::None, [404; 8]),
];

/// Signed in: 200; otherwise the sign-in page (303).
const PAGE: [u16; 8] = [303, 303, 303, 200, 200, 200, 200, 200];
/// A request's page: 404 for a person who may not read it.
const PAGE_READS: [u16; 8] = [303, 303, 303, 200, 404, 200, 200, 200];
/// A vote form: no session is 403; counted is a redirect back to the request (303).
const UI_VOTES: [u16; 8] = [403, 403, 403, 303, 404, 403, 403, 403];

/// The web UI (`src/http/ui/mod.rs` routes these; the walk checks it routes no other).
const UI: &[Row] = &[
    row("GET", "/", Fixture::None, PAGE),
    row("GET", "/requests/{id}", Pending, PAGE_READS),
    row("POST", "/requests/{id}/approve", FreshPending, UI_VOTES),
    row("POST", "/requests/{id}/deny", FreshPending, UI_VOTES),
    row("GET", "/requests/{id}/record", Decided, PAGE_READS),
    row("GET", "/history", Fixture::None, PAGE),
    row("GET", "/audit", Fixture::None, [303, 303, 303, 403, 403, 403, 200, 200]),
    row(
        "GET",
        "/reports",
        Fixture::None,
        [303, 303, 303, 403, 403, 403, 200, 200],
    ),
    row(
        "GET",
        "/reports/changes.csv?from=2020-01-01&to=2100-01-01",
        Fixture::None,
        [303, 303, 303, 403, 403, 403, 200, 200],
    ),
    row("GET", "/delegations", Fixture::None, PAGE),
    // Counted is a redirect to the list; an auditor's is refused on the page (422).
    row(
        "POST",
        "/delegations",
        Fixture::None,
        [403, 403, 403, 303, 303, 303, 422, 303],
    ),
    row(
        "POST",
        "/delegations/{id}/revoke",
        Fixture::Delegation,
        [403, 403, 403, 303, 404, 404, 404, 303],
    ),
    row("GET", "/login", Fixture::None, ALL_200),
    // Without the sign-in form's anti-forgery cookie and token.
    row("POST", "/login", Fixture::None, [403; 8]),
    row(
        "POST",
        "/logout",
        Fixture::None,
        [303, 303, 303, 403, 403, 403, 403, 403],
    ),
    // Single sign-on is not configured here.
    row("GET", "/auth/sso", Fixture::None, [404; 8]),
    row("GET", "/auth/callback", Fixture::None, [404; 8]),
    row(
        "GET",
        "/ui/events",
        Fixture::None,
        [401, 401, 401, 200, 200, 200, 200, 200],
    ),
    row("GET", "/static/app.css", Fixture::None, ALL_200),
    row("GET", "/static/app.js", Fixture::None, ALL_200),
];

fn manifest(file: &str) -> String {
    std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `(METHOD, path)` of every operation the OpenAPI document describes.
fn api_routes() -> BTreeSet<(String, String)> {
    let spec: Value = serde_json::from_str(&manifest("src/http/openapi.json")).unwrap();
    let mut out = BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for m in ops.as_object().unwrap().keys() {
            out.insert((m.to_uppercase(), path.clone()));
        }
    }
    out
}

/// `(METHOD, path)` of every route of the web UI's router, `{verb}` spelled out.
fn ui_routes() -> BTreeSet<(String, String)> {
    let src = manifest("src/http/ui/mod.rs");
    let mut out = BTreeSet::new();
    for chunk in src.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).unwrap().to_string();
        let body = &chunk[..chunk.find("\n        .").unwrap_or(chunk.len())];
        for (method, call) in [("GET", "get("), ("POST", "post(")] {
            let calls = body
                .match_indices(call)
                .any(|(i, _)| i == 0 || !body.as_bytes()[i - 1].is_ascii_alphanumeric());
            if !calls {
                continue;
            }
            match path.strip_suffix("/{verb}") {
                Some(base) if method == "POST" => {
                    out.insert((method.into(), format!("{base}/approve")));
                    out.insert((method.into(), format!("{base}/deny")));
                }
                Some(base) => {
                    out.insert((method.into(), format!("{base}/record")));
                }
                None => {
                    out.insert((method.into(), path.clone()));
                }
            }
        }
    }
    assert!(out.len() > 10, "the UI router's routes were not found: {out:?}");
    out
}

/// A table's routes as the router spells them (no query, `{index}` for a leaf).
fn table_routes(rows: &[Row]) -> BTreeSet<(String, String)> {
    rows.iter()
        .map(|r| {
            let path = r
                .path
                .split('?')
                .next()
                .unwrap()
                .replace("/leaves/0", "/leaves/{index}")
                .replace("/reports/changes.csv", "/reports/{file}");
            (r.method.to_string(), path)
        })
        .collect()
}

#[test]
fn the_expectation_table_has_a_row_for_every_route() {
    let want = api_routes();
    let have = table_routes(API);
    let missing: Vec<_> = want.difference(&have).collect();
    let extra: Vec<_> = have.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "API routes without a row in tests/it/roles.rs: {missing:?}; rows for no route: {extra:?}"
    );
    let want = ui_routes();
    let have = table_routes(UI);
    let missing: Vec<_> = want.difference(&have).collect();
    let extra: Vec<_> = have.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "web UI routes without a row in tests/it/roles.rs: {missing:?}; rows for no route: {extra:?}"
    );
}

/// A production request for acme/app by dave, opened by `pipeline`.
fn create_body(pipeline_run: &str) -> Value {
    json!({
        "context": {
            "repository": "acme/app", "ref": "refs/heads/main", "commit": COMMIT,
            "actor": "dave", "environment": "production", "action": "deploy",
            "run_id": pipeline_run,
        },
        "summary": "release",
    })
}

async fn open_as(http: &Http, pipeline: &str) -> String {
    let run = uuid::Uuid::new_v4().to_string();
    let (st, v) = http
        .api("POST", "/requests", &token(pipeline), Some(create_body(&run)))
        .await;
    assert_eq!(st, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn approved(http: &Http) -> String {
    let id = open_as(http, "ci").await;
    let (st, v) = http
        .api("POST", &format!("/requests/{id}/approve"), &token("alice"), None)
        .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("approved")), "{v}");
    id
}

struct Fixtures {
    pending: String,
    decided: String,
}

async fn request_for(http: &Http, f: Fixture, fx: &Fixtures) -> Option<String> {
    match f {
        Fixture::None => None,
        Pending => Some(fx.pending.clone()),
        Decided => Some(fx.decided.clone()),
        FreshPending => Some(open_as(http, "ci").await),
        FreshApproved => Some(approved(http).await),
        Fixture::Delegation => {
            let (st, v) = http
                .api("POST", "/delegations", &token("alice"), Some(delegation_body()))
                .await;
            assert_eq!(st, 201, "{v}");
            Some(v["id"].as_str().unwrap().to_string())
        }
    }
}

/// A delegation to bob until 2100.
fn delegation_body() -> Value {
    json!({"to": "bob", "until": "2100-01-01T00:00:00Z", "reason": "away"})
}

/// The body a route's call carries.
fn body_for(row: &Row) -> Option<Value> {
    match (row.method, row.path) {
        ("POST", "/api/v1/requests") => Some(create_body(&uuid::Uuid::new_v4().to_string())),
        ("POST", "/api/v1/delegations") => Some(delegation_body()),
        ("POST", p) if p.ends_with("/deny") => Some(json!({"reason": "not now"})),
        _ => None,
    }
}

/// The 404 of a request `role` may not read must be the unknown id's, word for word.
async fn same_as_unknown(http: &Http, role: Role, path: &str, id: &str, got: &Value) {
    let unknown = path.replace(id, "req_no_such_request");
    let mut r = http.get(&unknown);
    if let Some(n) = role.name() {
        r = r.bearer(&token(n));
    }
    let want = r.send().await.json_or_text().await;
    let strip = |v: &Value| v.to_string().replace(id, "ID").replace("req_no_such_request", "ID");
    assert_eq!(
        strip(got),
        strip(&want),
        "{role:?} {path}: an unreadable request must look unknown"
    );
}

async fn walk_api(http: &Http, fx: &Fixtures) {
    for row in API {
        for (role, want) in ROLES.iter().zip(row.expect) {
            let id = request_for(http, row.fixture, fx).await;
            let path = match &id {
                Some(id) => row.path.replace("{id}", id),
                None => row.path.to_string(),
            };
            let method = Method::from_bytes(row.method.as_bytes()).unwrap();
            let mut r = http.request(method, &path);
            if let Some(n) = role.name() {
                r = r.bearer(&token(n));
            }
            if let Some(b) = body_for(row) {
                r = r.json(&b);
            }
            let resp = r.send().await;
            let got = resp.status.as_u16();
            if row.path == "/api/v1/events" {
                // A stream: the status is all there is to see here.
                assert_eq!(got, want, "{role:?} {} {path}", row.method);
                continue;
            }
            let body = resp.json_or_text().await;
            assert_eq!(got, want, "{role:?} {} {path}: {body}", row.method);
            if got == 404
                && let Some(id) = &id
                && row.method == "GET"
            {
                same_as_unknown(http, *role, &path, id, &body).await;
            }
        }
    }
}

/// A signed-in session for `role` (cookie, anti-forgery token), if it has one.
async fn session(http: &Http, role: Role) -> Option<(String, String)> {
    match role.name() {
        Some(n) if role.signs_in() => Some(crate::ui::sign_in(http, n).await),
        _ => None,
    }
}

async fn walk_ui(http: &Http, fx: &Fixtures) {
    for row in UI {
        for (role, want) in ROLES.iter().zip(row.expect) {
            let id = request_for(http, row.fixture, fx).await;
            let path = match &id {
                Some(id) => row.path.replace("{id}", id),
                None => row.path.to_string(),
            };
            let sess = session(http, *role).await;
            let method = Method::from_bytes(row.method.as_bytes()).unwrap();
            let mut r = http.request(method, &path);
            if let Some(n) = role.name().filter(|_| !role.signs_in()) {
                // A pipeline's token means nothing to the web UI.
                r = r.bearer(&token(n));
            }
            if let Some((cookie, csrf)) = &sess {
                r = r.header("cookie", cookie.clone());
                if row.method == "POST" && path.starts_with("/requests/") {
                    r = r.form(&[("csrf", csrf.as_str()), ("reason", "not now")]);
                }
            }
            if row.method == "POST" && path.starts_with("/delegations") {
                // The whole form, with or without a session, so the answer is about who asks.
                let csrf = sess.as_ref().map_or("", |(_, c)| c.as_str());
                r = r.form(&[
                    ("csrf", csrf),
                    ("to", "bob"),
                    ("until", "2100-01-01T00:00"),
                    ("reason", "away"),
                ]);
            }
            let resp = r.send().await;
            let got = resp.status.as_u16();
            if row.path == "/ui/events" {
                assert_eq!(got, want, "{role:?} {} {path}", row.method);
                continue;
            }
            let text = resp.text().await;
            assert_eq!(got, want, "{role:?} {} {path}: {text}", row.method);
            if got == 404 && id.is_some() {
                let (cookie, csrf) = sess.as_ref().unwrap();
                let method = Method::from_bytes(row.method.as_bytes()).unwrap();
                let mut r = http
                    .request(method, &path.replace(id.as_deref().unwrap(), "req_no_such_request"))
                    .header("cookie", cookie.clone());
                if row.method == "POST" {
                    r = r.form(&[("csrf", csrf.as_str()), ("reason", "not now")]);
                }
                let unknown = r.send().await;
                assert_eq!(unknown.status.as_u16(), 404);
                let unknown = unknown.text().await.replace("req_no_such_request", "ID");
                assert_eq!(text.replace(id.as_deref().unwrap(), "ID"), unknown, "{role:?} {path}");
            }
        }
    }
}

#[tokio::test]
async fn every_route_with_every_role() {
    for db in backends() {
        let s = TestApp::builder().backend(db).spawn().await;
        let http = s.http();
        let fx = Fixtures {
            pending: open_as(&http, "ci").await,
            decided: approved(&http).await,
        };
        walk_api(&http, &fx).await;
        walk_ui(&http, &fx).await;
    }
}

/// The ids of `GET /api/v1/requests?status=…` as `who`, page by page (`limit` each).
async fn listed(http: &Http, who: &str, status: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = Some(format!("/api/v1/requests?status={status}&limit={limit}"));
    while let Some(url) = next.take() {
        let r = http.get(&url).bearer(&token(who)).send().await;
        assert_eq!(r.status, 200, "{url}");
        next = r.headers.get("link").map(|l| {
            let l = l.to_str().unwrap();
            l[1..l.find('>').unwrap()].to_string()
        });
        let page = r.json().await;
        let page = page.as_array().unwrap();
        assert!(page.len() <= limit, "{url}: {page:?}");
        assert!(
            !page.is_empty() || out.is_empty(),
            "{url}: an empty page after a next link"
        );
        out.extend(page.iter().map(|v| v["id"].as_str().unwrap().to_string()));
    }
    out
}

#[tokio::test]
async fn listings_hold_only_readable_requests_and_pages_stay_full() {
    for db in backends() {
        let s = TestApp::builder().backend(db).spawn().await;
        let http = s.http();
        // Interleaved: ci's and ci2's requests, each pair approved by alice.
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..3 {
            for (p, into) in [("ci", &mut mine), ("ci2", &mut theirs)] {
                let id = open_as(&http, p).await;
                into.push(id);
            }
        }
        // Pending: a pipeline lists its own, one per page, and every page has one.
        assert_eq!(listed(&http, "ci", "pending", 1).await, mine, "{db:?}");
        assert_eq!(listed(&http, "ci2", "pending", 1).await, theirs, "{db:?}");
        // Approved: every reader of a request lists it, the others do not.
        for id in mine.iter().chain(&theirs) {
            let (st, v) = http
                .api("POST", &format!("/requests/{id}/approve"), &token("alice"), None)
                .await;
            assert_eq!(st, 200, "{v}");
        }
        let all: Vec<String> = mine
            .iter()
            .zip(&theirs)
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect();
        for (who, want) in [
            ("ci", mine.clone()),
            ("ci2", theirs.clone()),
            ("alice", all.clone()),
            ("dave", all.clone()),
            ("erin", vec![]),
            (AUDITOR, all.clone()),
            (ADMIN, all.clone()),
        ] {
            assert_eq!(listed(&http, who, "approved", 2).await, want, "{db:?} {who}");
        }
        // The history page: the same requests, and erin's is empty.
        for (who, seen) in [("erin", false), ("dave", true), (AUDITOR, true)] {
            let (cookie, _) = crate::ui::sign_in(&http, who).await;
            let page = http.get("/history").header("cookie", cookie).send().await.text().await;
            for id in &all {
                assert_eq!(page.contains(id.as_str()), seen, "{db:?} {who} history and {id}");
            }
        }
    }
}

/// The next `change` event's request id on an event stream.
async fn next_change(stream: &mut reqwest::Response, buf: &mut String) -> String {
    loop {
        if let Some(at) = buf.find("\n\n") {
            let event: String = buf.drain(..at + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:"))
                && event.contains("event: change")
            {
                let v: Value = serde_json::from_str(data.trim()).unwrap();
                return v["id"].as_str().unwrap().to_string();
            }
            continue;
        }
        let chunk = stream.chunk().await.unwrap().expect("the stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_event_stream_carries_only_readable_requests() {
    let s = TestApp::spawn().await;
    let http = s.http();
    let client = reqwest::Client::new();
    let subscribe = |who: &str| {
        client
            .get(format!("{}/api/v1/events", s.url))
            .bearer_auth(token(who))
            .send()
    };
    let mut ci2 = subscribe("ci2").await.unwrap();
    let mut auditor = subscribe(AUDITOR).await.unwrap();
    assert_eq!((ci2.status().as_u16(), auditor.status().as_u16()), (200, 200));
    // ci's request first, then ci2's: ci2 sees only its own, the auditor both.
    let hidden = open_as(&http, "ci").await;
    let shown = open_as(&http, "ci2").await;
    let (mut b1, mut b2) = (String::new(), String::new());
    assert_eq!(next_change(&mut ci2, &mut b1).await, shown);
    assert_eq!(next_change(&mut auditor, &mut b2).await, hidden);
    assert_eq!(next_change(&mut auditor, &mut b2).await, shown);
}

#[tokio::test]
async fn the_gate_binary_shows_an_unreadable_request_as_unknown() {
    let s = TestApp::spawn().await;
    let id = open_as(&s.http(), "ci").await;
    let hidden = s.run("erin", &["show", &id]).await;
    let unknown = s.run("erin", &["show", "req_no_such_request"]).await;
    assert_ne!(hidden.code, 0, "{}", hidden.stderr);
    assert_eq!(hidden.code, unknown.code);
    assert!(
        hidden.stderr.contains(&format!("no request `{id}`")),
        "{}",
        hidden.stderr
    );
    assert_eq!(
        hidden.stderr.replace(&id, "ID"),
        unknown.stderr.replace("req_no_such_request", "ID")
    );
    // The requester and the auditor read it; the auditor cannot vote on it.
    assert_eq!(s.run("dave", &["show", &id]).await.code, 0);
    assert_eq!(s.run(AUDITOR, &["show", &id]).await.code, 0);
    let vote = s.run(AUDITOR, &["approve", &id]).await;
    assert_ne!(vote.code, 0);
    assert!(vote.stderr.contains("auditor"), "{}", vote.stderr);
}

/// `gate.yaml` of `s` with `allow:` lines under pipeline `name`'s entry; restarts it.
async fn scope_pipeline(s: &mut TestApp, name: &str, allow: &str) {
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let entry = format!(
        "  - name: {name}\n    token_sha256: {}\n",
        jitgate::auth::hash_token(&token(name))
    );
    assert!(cfg.contains(&entry), "{cfg}");
    std::fs::write(
        &s.config,
        cfg.replacen(&entry, &format!("{entry}    allow: {allow}\n"), 1),
    )
    .unwrap();
    s.kill().await;
    s.respawn().await;
}

#[tokio::test]
async fn a_scoped_pipeline_token_cannot_open_outside_its_scope() {
    let mut s = TestApp::spawn().await;
    scope_pipeline(
        &mut s,
        "ci",
        "{repositories: [acme/web], environments: [\"prod*\", staging]}",
    )
    .await;
    let http = s.http();
    let open = |repo: &str, env: &str| {
        let mut b = create_body(&uuid::Uuid::new_v4().to_string());
        b["context"]["repository"] = json!(repo);
        b["context"]["environment"] = json!(env);
        b
    };
    let (st, v) = http
        .api("POST", "/requests", &token("ci"), Some(open("acme/web", "production")))
        .await;
    assert_eq!(st, 201, "{v}");
    for (repo, env, names) in [
        (
            "acme/payments",
            "production",
            vec!["repository `acme/payments`", "acme/web"],
        ),
        (
            "acme/web",
            "development",
            vec!["environment `development`", "prod*, staging"],
        ),
    ] {
        let (st, v) = http.api("POST", "/requests", &token("ci"), Some(open(repo, env))).await;
        assert_eq!((st, v["error"]["code"].as_str()), (403, Some("out_of_scope")), "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        for n in names.iter().chain(&["pipeline `ci`"]) {
            assert!(msg.contains(n), "{n} not in {msg}");
        }
    }
    // Another pipeline is not scoped.
    let (st, v) = http
        .api(
            "POST",
            "/requests",
            &token("ci2"),
            Some(open("acme/payments", "production")),
        )
        .await;
    assert_eq!(st, 201, "{v}");

    // The real gate: exit 1, the refusal shown.
    let out = s
        .run(
            "ci",
            &[
                "request",
                "--repository",
                "acme/payments",
                "--environment",
                "production",
                "--commit",
                COMMIT,
                "--actor",
                "dave",
                "--no-wait",
            ],
        )
        .await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("repository `acme/payments` is not among the repository this credential allows (acme/web)"),
        "{}",
        out.stderr
    );
}

#[test]
fn allow_config_errors_are_located() {
    use jitgate::config::Config;
    let digest = "a".repeat(64);
    for (allow, line, needle) in [
        ("{repositories: [\"acme/***\"]}", 4, "`***`"),
        ("{repositories: [\"\"]}", 4, "is empty"),
        ("{repos: [acme/web]}", 4, "unknown field `repos`"),
    ] {
        let text = format!("pipelines:\n  - name: ci\n    token_sha256: {digest}\n    allow: {allow}\n");
        let e = Config::parse("gate.yaml", &text).unwrap_err();
        assert_eq!(e.line, line, "{allow}: {e}");
        assert!(e.column > 0, "{allow}: {e}");
        assert!(e.to_string().contains(needle), "{allow}: {e}");
    }
    let text = "oidc:\n  - issuer: https://token.actions.githubusercontent.com\n    audience: jitgate\n    platform: github\n    allow:\n      environments: [\"prod uction\"]\n";
    let e = Config::parse("gate.yaml", text).unwrap_err();
    assert_eq!(e.line, 6, "{e}");
    assert!(e.to_string().contains("allow: glob `prod uction`"), "{e}");
}
