//! What each fuzz target checks, shared by the fuzzers (`fuzz/fuzz_targets/`) and the
//! test that replays every kept input (`tests/it/fuzz_inputs.rs`, in `cargo test`).
//! Each function takes the fuzzer's bytes and panics only when a property fails: a
//! loader or verifier panicking, or the HTTP API answering 500. It returns whether the
//! input was accepted, so the kept seeds can show they reach past the first check.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::LazyLock;

use jitgate::core::api::Context;
use jitgate::core::audit::keys::KeyPair;
use jitgate::core::audit::record::{Envelope, verify};
use serde_json::{Value, json};

/// The policy loader: a policy or an error with a place. A policy that loads is
/// evaluated against a few contexts too (glob matching, windows, requirements).
pub fn policy(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Ok(p) = jitgate::core::policy::Policy::parse("fuzz.yaml", &text) else {
        return false;
    };
    let _ = p.check_members(&|m| m.len() % 2 == 0);
    for env in ["production", "staging", "", "*"] {
        let ctx = Context {
            environment: env.into(),
            repository: "acme/app".into(),
            git_ref: "refs/heads/main".into(),
            ..Default::default()
        };
        if let Some(rule) = p.evaluate(&ctx) {
            let _ = p.requirements(rule);
            let _ = rule.window_open(1_796_000_000_000);
        }
        let _ = p.explain(&ctx);
    }
    true
}

/// The config loader (gate.yaml).
pub fn config(data: &[u8]) -> bool {
    jitgate::config::Config::parse("gate.yaml", &String::from_utf8_lossy(data)).is_ok()
}

static RECORD_KEY: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::from_seed([7; 32]));

/// The record verifier (`gate verify`): DSSE envelope, in-toto statement, predicate,
/// log entry. The first byte picks the layer: 0, the bytes are the envelope; 1, the
/// bytes are the statement, signed here so the signature check is passed; 2, the bytes
/// are an admission policy file (`gate verify --policy`).
pub fn record(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let text = String::from_utf8_lossy(rest);
    let keys = [RECORD_KEY.verifying_key()];
    let expect = jitgate::core::audit::expect::Expect {
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        now: 1_796_000_000_000,
        ..Default::default()
    };
    match mode % 3 {
        0 => verify(&text, &keys, &expect).is_ok(),
        1 => {
            let Ok(statement) = serde_json::from_str::<Value>(&text) else {
                return false;
            };
            let env: Envelope = RECORD_KEY.sign(&statement);
            let env = serde_json::to_string(&env).expect("an envelope serialises");
            verify(&env, &keys, &expect).is_ok()
        }
        _ => {
            let Ok(a) = jitgate::core::audit::expect::Admission::parse("admission.yaml", &text) else {
                return false;
            };
            let e = jitgate::core::audit::expect::Expect {
                policy: Some(a),
                ..expect
            };
            let _ = verify(&text, &keys, &e);
            true
        }
    }
}

/// A tokio runtime for the targets that go through async code.
static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

const ISSUER: &str = "https://token.actions.githubusercontent.com";

/// A verifier trusting one GitHub-style issuer whose keys (the test fixtures') a local
/// listener serves, so no network is involved.
static OIDC: LazyLock<jitgate::auth::oidc::Verifier> = LazyLock::new(|| {
    let jwks = format!(
        "{{\"keys\": [{}, {}]}}",
        std::fs::read_to_string(fixture("ec-1.jwk.json")).expect("fixture"),
        std::fs::read_to_string(fixture("rsa-1.jwk.json")).expect("fixture")
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let url = format!("http://{}/jwks", listener.local_addr().expect("an address"));
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
        }
    });
    let cfg: Vec<jitgate::config::OidcIssuer> = serde_norway::from_str(&format!(
        "- issuer: {ISSUER}\n  audience: jitgate\n  platform: github\n  jwks_url: {url}\n  repositories: [\"acme/*\"]\n"
    ))
    .expect("an issuer");
    jitgate::auth::oidc::Verifier::new(&cfg).expect("a verifier")
});

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(if env!("CARGO_MANIFEST_DIR").ends_with("fuzz") {
            "../tests"
        } else {
            "tests"
        })
        .join("fixtures/oidc")
        .join(name)
}

/// The OIDC/JWT path. First byte 0: the bytes are the token. 1: they are the claims,
/// signed here with the trusted ES256 key (so claim checks and the claim-to-context
/// mapping run on them). 2: they are the header, with valid claims, signed.
pub fn oidc(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let text = String::from_utf8_lossy(rest);
    let token = match mode % 3 {
        0 => text.into_owned(),
        1 => {
            let Ok(claims) = serde_json::from_str::<Value>(&text) else {
                return false;
            };
            sign(&json!({"alg": "ES256", "kid": "ec-1", "typ": "JWT"}), &claims)
        }
        _ => {
            let Ok(header) = serde_json::from_str::<Value>(&text) else {
                return false;
            };
            let claims = json!({"iss": ISSUER, "aud": "jitgate", "exp": 4_000_000_000u64, "sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app"});
            sign(&header, &claims)
        }
    };
    let _ = jitgate::auth::oidc::looks_like_jwt(&token);
    RT.block_on(OIDC.verify(&token)).is_ok()
}

/// A JWS over `header` and `claims` with the ES256 fixture key, whatever the header says.
fn sign(header: &Value, claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
    let key = jsonwebtoken::EncodingKey::from_ec_der(&std::fs::read(fixture("ec-1.p8.der")).expect("fixture"));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::ES256).expect("signs");
    format!("{input}.{sig}")
}

/// The server in process, over a SQLite file, with the usual users and pipelines.
struct App {
    router: axum::Router,
    request: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

static APP: LazyLock<App> = LazyLock::new(|| RT.block_on(app()));

async fn app() -> App {
    let dir = tempfile::tempdir().expect("a temp dir");
    let p = dir.path();
    let users = ["alice", "bob", "dave"]
        .iter()
        .map(|u| {
            format!(
                "  - name: {u}\n    token_sha256: {}\n",
                jitgate::auth::hash_token(&format!("tok-{u}"))
            )
        })
        .collect::<String>();
    let config = format!(
        // Refusals are not throttled here: the fuzzer should reach the checks, not 429s.
        "users:\n{users}pipelines:\n  - name: ci\n    token_sha256: {}\nthrottle:\n  refused: {{burst: 4000000000, per_minute: 60}}\n",
        jitgate::auth::hash_token("tok-ci")
    );
    std::fs::write(p.join("gate.yaml"), config).expect("write");
    std::fs::write(
        p.join("policy.yaml"),
        "version: 1\ngroups:\n  sre: [alice, bob]\nrules:\n  - name: production\n    match: { environment: production }\n    require: [{ group: sre, count: 1 }]\n  - name: rest\n    decision: deny\n",
    )
    .expect("write");
    let settings = jitgate::serve::Settings {
        config: jitgate::config::Config::load(&p.join("gate.yaml")).expect("config"),
        config_path: Some(p.join("gate.yaml")),
        policy: p.join("policy.yaml"),
        database_url: format!("sqlite://{}?mode=rwc", p.join("gate.db").display()),
        data_dir: p.to_path_buf(),
        signing_key: p.join("signing-key"),
        public_url: "http://gate.fuzz.test".into(),
    };
    let engine = jitgate::serve::build(&settings).await.expect("engine").engine;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let router = jitgate::http::app(engine.clone(), shutdown).expect("router");
    let body = json!({"context": {"environment": "production", "repository": "acme/app", "actor": "dave"}, "idempotency_key": "fuzz"});
    let (status, answer) = call(&router, "/api/v1/requests", "tok-ci", body.to_string().into_bytes()).await;
    assert!(status < 300, "setup: {status} {answer}");
    let request = serde_json::from_str::<Value>(&answer).expect("json")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    App {
        router,
        request,
        _dir: dir,
        _stop: stop,
    }
}

async fn call(router: &axum::Router, path: &str, token: &str, body: Vec<u8>) -> (u16, String) {
    use tower::ServiceExt as _;
    let req = http::Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .expect("a request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Request bodies: the bytes as the body of opening a request (first byte even) or of
/// a deny (odd). Any answer but a 500.
pub fn request_body(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let app = &*APP;
    let (path, token) = if mode % 2 == 0 {
        ("/api/v1/requests".to_string(), "tok-ci")
    } else {
        (format!("/api/v1/requests/{}/deny", app.request), "tok-bob")
    };
    let (status, body) = RT.block_on(call(&app.router, &path, token, rest.to_vec()));
    assert!(status != 500, "{path}: 500: {body}");
    assert!(status >= 200, "{path}: {status}");
    status < 300
}
