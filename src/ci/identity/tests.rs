//! Which identity is offered and chosen, on each platform, and the JWT helpers.

use super::*;

fn jwt(claims: &str) -> String {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2ln",
        b.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        b.encode(claims)
    )
}

fn inputs(id: Option<&str>, tok: Option<&str>) -> Inputs {
    Inputs {
        audience: "jitgate".into(),
        id_token: id.map(String::from),
        static_token: tok.map(String::from),
    }
}

fn none(_: &str) -> Option<String> {
    None
}

#[tokio::test]
async fn gitlab_id_token_or_static_with_the_fix() {
    let t = jwt(r#"{"aud":"jitgate","sub":"project_path:g/p"}"#);
    let id = select(Platform::Gitlab, &inputs(Some(&t), Some("s")), &none)
        .await
        .unwrap();
    assert!(id.oidc);
    assert_eq!(id.line, "GitLab ID token from GATE_ID_TOKEN (audience jitgate)");
    assert!(id.masks.is_empty(), "masks are for GitHub only");

    let id = select(Platform::Gitlab, &inputs(Some(""), Some("s")), &none)
        .await
        .unwrap();
    assert!(!id.oidc);
    assert_eq!(id.token, "s");
    assert_eq!(
        id.line,
        "static token (GATE_ID_TOKEN is empty: add id_tokens: GATE_ID_TOKEN: aud: jitgate to the job)"
    );

    let e = select(Platform::Gitlab, &inputs(None, None), &none).await.unwrap_err();
    let e = e.to_string();
    assert!(e.contains("GATE_ID_TOKEN is empty") && e.contains("GATE_TOKEN"), "{e}");

    // Not a JWT: said, and the static token is used.
    let id = select(Platform::Gitlab, &inputs(Some("nope"), Some("s")), &none)
        .await
        .unwrap();
    assert_eq!(id.line, "static token (GATE_ID_TOKEN could not be used)");
    assert!(id.warnings[0].contains("not an OIDC token"), "{:?}", id.warnings);
}

#[tokio::test]
async fn jenkins_and_generic() {
    let t = jwt(r#"{"aud":["jitgate","other"]}"#);
    let id = select(Platform::Jenkins, &inputs(Some(&t), None), &none).await.unwrap();
    assert_eq!(
        id.line,
        "Jenkins OIDC token from GATE_ID_TOKEN (audience jitgate, other)"
    );
    let id = select(Platform::Jenkins, &inputs(None, Some("s")), &none)
        .await
        .unwrap();
    assert!(
        id.line
            .contains("withCredentials([string(credentialsId: 'jitgate-id-token'"),
        "{}",
        id.line
    );
    let id = select(Platform::Generic, &inputs(None, Some("s")), &none)
        .await
        .unwrap();
    assert!(
        id.line.starts_with("static token (not on GitHub Actions"),
        "{}",
        id.line
    );
}

#[tokio::test]
async fn github_without_permission_masks_the_static_token() {
    let id = select(Platform::Github, &inputs(None, Some("s3cret")), &none)
        .await
        .unwrap();
    assert_eq!(
        id.line,
        "static token (no id-token permission: add \"permissions: id-token: write\" to the job)"
    );
    assert_eq!(id.masks, ["s3cret"]);
    let e = select(Platform::Github, &inputs(None, None), &none).await.unwrap_err();
    assert!(e.to_string().contains("id-token: write"), "{e}");
}

#[test]
fn a_failed_fetch_is_said_and_falls_back() {
    let failed = || Offer::Failed {
        error: "could not get a GitHub OIDC token: HTTP 403".into(),
    };
    let id = choose(Platform::Github, &inputs(None, Some("s")), failed()).unwrap();
    assert_eq!(id.line, "static token (the GitHub OIDC token request failed)");
    assert_eq!(id.warnings, ["could not get a GitHub OIDC token: HTTP 403"]);
    let e = choose(Platform::Github, &inputs(None, None), failed()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no identity to present: could not get a GitHub OIDC token: HTTP 403, \
         and no static token either (--token or GATE_TOKEN)"
    );
    let ok = choose(
        Platform::Github,
        &inputs(None, Some("s")),
        Offer::Token {
            token: "jwt".into(),
            what: "GitHub OIDC token (audience jitgate)".into(),
            refresh: None,
        },
    )
    .unwrap();
    assert_eq!(ok.masks, ["s", "jwt"]);
}

#[test]
fn refresh_ahead_of_expiry() {
    assert_eq!(refresh_delay(1000 + 600, 1000), Duration::from_secs(480));
    assert_eq!(refresh_delay(1000 + 100, 1000), Duration::from_secs(50));
    assert_eq!(refresh_delay(1000, 1000), Duration::from_secs(1));
    let mut id = choose(
        Platform::Gitlab,
        &inputs(None, None),
        Offer::Token {
            token: jwt(r#"{"aud":"jitgate","exp":1700000000}"#),
            what: String::new(),
            refresh: None,
        },
    )
    .unwrap();
    assert_eq!(id.expires(), Some(1_700_000_000));
    let w = expiry_warning(&id, "2023-11-14T23:00:00Z").unwrap();
    assert!(w.contains("expires at 2023-11-14T22:13:20Z"), "{w}");
    assert_eq!(expiry_warning(&id, "2023-11-14T22:00:00Z"), None);
    id.refresh = Some(Refresh {
        url: String::new(),
        bearer: String::new(),
        audience: String::new(),
    });
    assert_eq!(expiry_warning(&id, "2023-11-14T23:00:00Z"), None, "refreshed in time");
}

/// A token about to expire is replaced by a fresh one from the runner's endpoint.
#[tokio::test]
async fn the_token_is_refreshed_before_it_expires() {
    use wiremock::matchers::{header, method, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let now = jiff::Timestamp::now().as_second();
    let next = jwt(&format!(r#"{{"aud":"jitgate","exp":{}}}"#, now + 3600));
    let runner = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("audience", "jitgate"))
        .and(header("authorization", "bearer rt"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"value": next})))
        .mount(&runner)
        .await;
    let refresh = Refresh {
        url: format!("{}/t?api-version=2.0", runner.uri()),
        bearer: "rt".into(),
        audience: "jitgate".into(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(refresh_loop(refresh, now, move |t| drop(tx.send(t)), |e| panic!("{e}")));
    let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, next);
    task.abort();
}

#[test]
fn audiences() {
    assert_eq!(jwt_audiences(&jwt(r#"{"aud":"a"}"#)).unwrap(), ["a"]);
    assert!(jwt_audiences(&jwt(r#"{}"#)).unwrap().is_empty());
    assert!(jwt_audiences("a.b").is_err());
    assert!(jwt_audiences("e30.e30.").is_err());
}
