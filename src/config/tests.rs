use super::*;

#[test]
fn a_key_given_twice_is_refused_with_its_place() {
    let e = Config::parse("gate.yaml", "listen: x\nsession_ttl: 2h\nlisten: y\n").unwrap_err();
    assert_eq!((e.line, e.column), (3, 1), "{e}");
    assert!(e.message.contains("duplicate entry with key \"listen\""), "{e}");
}

#[test]
fn unknown_key_located() {
    let e = Config::parse("gate.yaml", "listen: x\nusers:\n  - name: a\n    tokn: y\n").unwrap_err();
    assert_eq!(e.line, 4);
    assert!(e.message.contains("unknown field `tokn`"), "{e}");
}

#[test]
fn bad_digest_located() {
    let e = Config::parse("gate.yaml", "users:\n  - name: a\n    token_sha256: abc\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("64 hex"));
}

#[test]
fn oidc_issuers_parse_and_are_checked() {
    let ok = "oidc:\n  - issuer: https://token.actions.githubusercontent.com\n    audience: jitgate\n    platform: github\n    repositories: [\"acme/*\"]\n  - issuer: http://127.0.0.1:8080\n    audience: jitgate\n    platform: generic\n    name: jenkins\n";
    let c = Config::parse("gate.yaml", ok).unwrap();
    assert_eq!(c.oidc.len(), 2);
    assert_eq!(c.oidc[0].platform, OidcPlatform::Github);
    assert_eq!(c.oidc[0].pipeline_name(), "oidc:github");
    assert_eq!(c.oidc[1].pipeline_name(), "jenkins");

    let e = Config::parse(
        "gate.yaml",
        "oidc:\n  - issuer: https://gitlab.com\n    audience: jitgate\n    platform: gitlab\n    repos: [x]\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("unknown field `repos`"), "{e}");

    let e = Config::parse(
        "gate.yaml",
        "oidc:\n  - issuer: https://gitlab.com\n    audience: jitgate\n    platform: jenkins\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("unknown variant `jenkins`"), "{e}");

    let e = Config::parse(
        "gate.yaml",
        "users:\n  - name: a\noidc:\n  - issuer: http://gitlab.example\n    audience: jitgate\n    platform: gitlab\n",
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (4, 13), "{e}");
    assert!(e.message.contains("must be https://"), "{e}");

    let twice = "oidc:\n  - issuer: https://gitlab.com\n    audience: a\n    platform: gitlab\n  - issuer: https://gitlab.com\n    audience: b\n    platform: gitlab\n";
    assert!(
        Config::parse("gate.yaml", twice)
            .unwrap_err()
            .message
            .contains("listed twice")
    );
    let clash = "pipelines:\n  - name: ci\n    token_sha256: 0000000000000000000000000000000000000000000000000000000000000000\noidc:\n  - issuer: https://gitlab.com\n    audience: a\n    platform: gitlab\n    name: ci\n";
    assert!(
        Config::parse("gate.yaml", clash)
            .unwrap_err()
            .message
            .contains("already a user")
    );
    let generic =
        "oidc:\n  - issuer: https://ci.example\n    audience: a\n    platform: generic\n    repositories: [x]\n";
    assert!(
        Config::parse("gate.yaml", generic)
            .unwrap_err()
            .message
            .contains("use `subjects`")
    );
}

#[test]
fn sso_and_session_ttl_parse_and_are_checked() {
    let ok = "session_ttl: 30m\nsso:\n  issuer: https://login.example.com\n  client_id: jitgate\n  client_secret_env: SSO_SECRET\n  user_claim: preferred_username\n  allowed_domains: [example.com]\n";
    let c = Config::parse("gate.yaml", ok).unwrap();
    assert_eq!(c.session_ttl_ms(), 30 * 60 * 1000);
    let sso = c.sso.unwrap();
    assert_eq!(sso.user_claim(), "preferred_username");
    assert_eq!(sso.scopes(), ["openid", "email", "profile"]);
    assert!(!format!("{sso:?}").contains("SSO_SECRET=") && Config::default().session_ttl_ms() == 8 * 3600 * 1000);
    let secret = "sso:\n  issuer: https://login.example.com\n  client_id: jitgate\n  client_secret: hunter2\n  scopes: [email]\n";
    let sso = Config::parse("gate.yaml", secret).unwrap().sso.unwrap();
    assert!(!format!("{sso:?}").contains("hunter2"), "the secret is never printed");
    assert_eq!(sso.scopes(), ["openid", "email"]);
    for (bad, why) in [
        ("sso:\n  issuer: http://login.example.com\n  client_id: x\n", "https"),
        (
            "sso:\n  issuer: https://login.example.com\n  client_id: ' '\n",
            "client_id",
        ),
        (
            "sso:\n  issuer: https://l.example\n  client_id: x\n  token_auth: jwt\n",
            "token_auth",
        ),
        (
            "sso:\n  issuer: https://l.example\n  client_id: x\n  client_secret: a\n  client_secret_env: B\n",
            "not both",
        ),
        (
            "sso:\n  issuer: https://l.example\n  client_id: x\n  clientid: y\n",
            "unknown field",
        ),
    ] {
        let e = Config::parse("gate.yaml", bad).unwrap_err();
        assert!(e.message.contains(why), "{bad}: {e}");
    }
}

#[test]
fn scim_and_sso_groups_are_checked_where_they_are() {
    let d = "a".repeat(64);
    let ok = format!(
        "scim:\n  token_sha256: {d}\nsso:\n  issuer: https://l.example\n  client_id: x\n  groups_claim: groups\n  max_group_age: 2h\n"
    );
    let c = Config::parse("gate.yaml", &ok).unwrap();
    assert_eq!(c.scim.unwrap().token_sha256, d);
    let sso = c.sso.unwrap();
    assert_eq!(
        (sso.groups_claim.as_deref(), sso.max_group_age_ms()),
        (Some("groups"), 2 * 3_600_000)
    );
    for (bad, why, line) in [
        (
            "session_ttl: 1h\nscim:\n  token_sha256: nope\n".to_string(),
            "scim: token_sha256 must be 64 hex",
            2,
        ),
        (
            ok.replace("max_group_age: 2h", "max_group_age: 0s"),
            "`max_group_age` must be longer",
            7,
        ),
        (
            ok.replace("groups_claim: groups", "groups_claim: ' '"),
            "`groups_claim` is empty",
            6,
        ),
        ("scim:\n  token: x\n".to_string(), "unknown field", 2),
    ] {
        let e = Config::parse("gate.yaml", &bad).unwrap_err();
        assert!(e.message.contains(why), "{bad}: {e}");
        assert_eq!(e.line, line, "{bad}: {e}");
    }
}

#[test]
fn forge_access() {
    let c = Config::parse(
        "gate.yaml",
        "users:\n  - name: alice\n    github: alice-gh\n    gitlab: al\nforge:\n  github:\n    token_env: GH_T\n    webhook_secret: s3\n  gitlab:\n    api_url: https://gitlab.example/api/v4\n    token: glpat-x\n  cache_ttl: 2m\n",
    )
    .unwrap();
    let f = c.forge.as_ref().unwrap();
    assert_eq!(f.cache_ttl.unwrap().millis(), 120_000);
    let gh = f.github.as_ref().unwrap();
    let env = |k: &str| (k == "GH_T").then(|| "ghp_1".to_string());
    assert_eq!(gh.resolve_token(&env).unwrap(), "ghp_1");
    assert_eq!(gh.resolve_webhook_secret(&env).unwrap().as_deref(), Some("s3"));
    let none = |_: &str| None;
    assert!(
        gh.resolve_token(&none)
            .unwrap_err()
            .to_string()
            .contains("`GH_T`, which is not set")
    );
    let login = |l: &str| Identity::parse(l).unwrap();
    assert_eq!(c.user_for_login("github", &login("Alice-GH")).unwrap().name, "alice");
    assert_eq!(c.user_for_login("gitlab", &login("al")).unwrap().name, "alice");
    assert!(c.user_for_login("gitlab", &login("alice-gh")).is_none());

    let e = Config::parse("gate.yaml", "forge:\n  github:\n    token_env: X\n    tokn: y\n").unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("unknown field `tokn`"), "{e}");
    let e = Config::parse("gate.yaml", "forge:\n  github:\n    api_url: x\n").unwrap_err();
    assert!(e.message.contains("needs `token_env`"), "{e}");
    assert_eq!(e.line, 2, "{e}");
    let e = Config::parse(
        "gate.yaml",
        "forge:\n  gitlab:\n    token: t\n    api_url: http://gitlab.example\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("forge.gitlab.api_url"), "{e}");
}

#[test]
fn identities_map_to_users() {
    let c = Config::parse(
        "gate.yaml",
        "users:\n  - name: alice\n    github: alice-gh\n    email: A@x.io\n  - name: Bob\n    jenkins: bob.j\n",
    )
    .unwrap();
    let users = |raw: &str| c.users_for_identity(&Identity::parse(raw).unwrap());
    assert_eq!(users("Alice-GH"), vec!["alice"]);
    assert_eq!(users("a@x.io"), vec!["alice"]);
    assert_eq!(users("Alice <a@X.io>"), vec!["alice"]);
    assert_eq!(users("ａｌｉｃｅ"), vec!["alice"]);
    assert_eq!(users("bob"), vec!["Bob"], "the user's name as written");
    assert_eq!(users("BOB.J"), vec!["Bob"]);
    assert!(users("carol").is_empty());
    let login = |raw: &str| Identity::parse(raw).unwrap();
    assert_eq!(c.users_for_login(&login("A@X.IO")), vec!["alice"]);
    assert!(
        c.users_for_login(&login("bob.j")).is_empty(),
        "SSO does not read jenkins ids"
    );
    assert_eq!(
        c.user_for_login("github", &login("ALICE-gh")).map(|u| u.name.as_str()),
        Some("alice")
    );
    assert!(c.user_for_login("gitlab", &login("alice-gh")).is_none());
}

#[test]
fn a_user_identity_that_is_no_identity_stops_the_load() {
    let cases = [
        (
            "  - name: \"alice\\u200B\"\n",
            "user `alice\\u{200b}`: `name` contains U+200B",
        ),
        (
            "  - name: alice\n    email: \"alice@example.com\\uFEFF\"\n",
            "user `alice`: `email` contains U+FEFF",
        ),
        (
            "  - name: alice\n    github: \u{430}lice\n",
            "user `alice`: `github` `\u{430}lice` mixes scripts (Cyrillic, Latin)",
        ),
        (
            "  - name: alice\n    gitlab: \u{251}lice\n",
            "user `alice`: `gitlab` `\u{251}lice` looks like `alice`",
        ),
        (
            "  - name: alice\n    jenkins: \"Al <>\"\n",
            "user `alice`: `jenkins` `al <>` names no address",
        ),
    ];
    for (yaml, want) in cases {
        let e = Config::parse("gate.yaml", &format!("users:\n{yaml}")).unwrap_err();
        assert!(e.message.starts_with(want), "{yaml}: {}", e.message);
    }
    let e = Config::parse("gate.yaml", "users:\n  - name: alice\n    github: \u{430}lice\n").unwrap_err();
    assert_eq!((e.line, e.column), (3, 13), "located at the value");
}

#[test]
fn config_is_checked_with_locations() {
    let e = Config::parse(
        "gate.yaml",
        "notify:\n  webhooks:\n    - name: a\n      url: http://example.com/hook\n      secret_env: S\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("must be https://"), "{e}");
    let e = Config::parse(
        "gate.yaml",
        "notify:\n  email:\n    host: h\n    from: gate@x.io\n    starttls: maybe\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("unknown variant `maybe`"), "{e}");
    let e = Config::parse("gate.yaml", "notify:\n  retry_bse: 1s\n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    let e = Config::parse(
        "gate.yaml",
        "notify:\n  email:\n    host: h\n    from: not an address\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    let e = Config::parse("gate.yaml", "notify:\n  slack:\n    - name: s\n").unwrap_err();
    assert!(e.message.contains("exactly one of `url` and `url_env`"), "{e}");
    let e = Config::parse("gate.yaml", "notify:\n  retry_base: 10m\n").unwrap_err();
    assert!(e.message.contains("longer than"), "{e}");
    let ok = Config::parse(
        "gate.yaml",
        "notify:\n  retry_base: 100ms\n  email:\n    host: h\n    port: 2525\n    from: jitgate <gate@x.io>\n    starttls: none\n",
    )
    .unwrap();
    assert_eq!(
        ok.notify.unwrap().email.unwrap().starttls,
        crate::notify::config::StartTls::None
    );
}
