//! Loading and evaluating whole policies.

use super::*;
use crate::core::api::Context;
use crate::core::duration::Dur;

const GOOD: &str = r#"version: 1
groups:
  sre: [alice, bob, carol]
  security: [alice, dave]
rules:
  - name: staging
    match: { environment: staging }
    decision: approve
  - name: production
    match: { environment: production, repository: "acme/*", ref: refs/heads/main }
    require:
      - { group: sre, count: 2 }
      - { group: security }
    timeout: 4h
    approval_ttl: 15m
  - name: everything else
    match: {}
    decision: deny
"#;

fn ctx(env: &str, repo: &str, r: &str) -> Context {
    Context {
        environment: env.into(),
        repository: repo.into(),
        git_ref: r.into(),
        ..Default::default()
    }
}

#[test]
fn first_match_wins() {
    let p = Policy::parse("p.yaml", GOOD).unwrap();
    assert_eq!(p.evaluate(&ctx("staging", "x/y", "main")).unwrap().name, "staging");
    let prod = p.evaluate(&ctx("production", "acme/web", "refs/heads/main")).unwrap();
    assert_eq!(prod.name, "production");
    assert_eq!(prod.timeout(), Dur::parse("4h").unwrap());
    assert_eq!(prod.require[1].count, 1);
    let other = p.evaluate(&ctx("production", "evil/web", "refs/heads/main")).unwrap();
    assert_eq!(other.name, "everything else");
    let ex = p.explain(&ctx("production", "evil/web", "refs/heads/main"));
    assert_eq!(ex.len(), 3);
    assert!(ex[1].mismatches[0].contains("repository `evil/web` does not match `acme/*`"));
    assert!(p.digest.starts_with("sha256:"));
}

#[test]
fn a_key_given_twice_is_an_error_with_its_place() {
    let bad = GOOD.replacen("groups:\n", "groups:\n  sre: [mallory]\n", 1);
    assert_ne!(bad, GOOD);
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("duplicate entry with key \"sre\""), "{e}");
    assert_eq!((e.line, e.column), (4, 3), "{e}");
    assert!(e.to_string().starts_with("p.yaml:4:3"), "{e}");
}

#[test]
fn unknown_key_names_line_and_column() {
    let bad = GOOD.replace("    timeout: 4h", "    timout: 4h");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert_eq!(e.line, 14, "{e}");
    assert!(e.message.contains("unknown field `timout`"), "{e}");
    assert!(e.to_string().starts_with("p.yaml:14:"), "{e}");
}

#[test]
fn malformed_yaml_names_line() {
    let e = Policy::parse("p.yaml", "version: 1\nrules:\n  - name: [unclosed\n").unwrap_err();
    assert!(e.line >= 3, "{e}");
}

#[test]
fn semantic_errors_located() {
    let bad = GOOD.replace("{ group: security }", "{ group: secops }");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("group `secops`"), "{e}");
    assert_eq!(e.line, 13);
    let bad = GOOD.replace("count: 2", "count: 5");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("only 3 members"), "{e}");
    assert_eq!(e.line, 12);
    let bad = GOOD.replace("    decision: deny\n", "");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("needs either"), "{e}");
    let bad = GOOD.replace("timeout: 4h", "timeout: 4y");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("unknown unit `y`"), "{e}");
    assert_eq!(e.line, 14);
}

#[test]
fn forge_groups_parse_and_are_checked() {
    let text = "version: 1\ngroups:\n  sre: [alice, bob]\n  security: { github_team: acme/security }\n  release: { gitlab_group: acme/release-managers }\nrules:\n  - name: prod\n    require:\n      - { group: security, count: 3 }\n      - { group: release }\n      - { group: sre }\n";
    let p = Policy::parse("p.yaml", text).unwrap();
    assert_eq!(p.groups.len(), 1);
    assert_eq!(
        p.forge_groups["security"],
        GroupSource::GithubTeam {
            org: "acme".into(),
            slug: "security".into()
        }
    );
    let reqs = p.requirements(&p.rules[0]);
    assert_eq!(reqs[0].source.as_deref(), Some("github_team:acme/security"));
    assert!(reqs[0].members.is_empty());
    assert_eq!(reqs[1].source.as_deref(), Some("gitlab_group:acme/release-managers"));
    assert_eq!(reqs[2].source, None);
    for s in ["github_team:acme/security", "gitlab_group:acme/release-managers"] {
        assert_eq!(GroupSource::parse(s).unwrap().to_string(), s);
    }
    // Members of forge groups are not users in the config: nothing to check at load.
    assert!(p.check_members(&|u| u == "alice" || u == "bob").is_ok());

    let bad = text.replace("github_team: acme/security", "github_tem: acme/security");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("unknown field `github_tem`"), "{e}");
    assert_eq!(e.line, 4, "{e}");
    let bad = text.replace("acme/security", "acme");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("not `org/team-slug`"), "{e}");
    assert_eq!((e.line, e.column), (4, 3), "{e}");
    let bad = text.replace(
        "{ github_team: acme/security }",
        "{ github_team: a/b, gitlab_group: c }",
    );
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("not several"), "{e}");
    let bad = text.replace("{ github_team: acme/security }", "{}");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("needs `github_team"), "{e}");
    let bad = text.replace("{ github_team: acme/security }", "acme/security");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("a list of user names"), "{e}");
    assert_eq!(e.line, 4, "{e}");
}

#[test]
fn identity_provider_groups_parse() {
    let text = "version: 1\ngroups:\n  release: { scim_group: Release Managers }\n  oncall: { idp_group: sre-oncall }\nrules:\n  - name: prod\n    require:\n      - { group: release, count: 2 }\n      - { group: oncall }\n";
    let p = Policy::parse("p.yaml", text).unwrap();
    let reqs = p.requirements(&p.rules[0]);
    assert_eq!(reqs[0].source.as_deref(), Some("scim_group:Release Managers"));
    assert_eq!(reqs[1].source.as_deref(), Some("idp_group:sre-oncall"));
    for s in ["scim_group:Release Managers", "idp_group:sre-oncall"] {
        let g = GroupSource::parse(s).unwrap();
        assert!(!g.on_forge());
        assert_eq!(g.to_string(), s);
    }
    let bad = text.replace("{ scim_group: Release Managers }", "{ scim_group: \"  \" }");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("`scim_group` names no group"), "{e}");
    assert_eq!(e.line, 3, "{e}");
    let bad = text.replace("{ idp_group: sre-oncall }", "{ idp_group: a, scim_group: b }");
    let e = Policy::parse("p.yaml", &bad).unwrap_err();
    assert!(e.message.contains("not several"), "{e}");
}

#[test]
fn labels_and_members() {
    let p = Policy::parse(
        "p.yaml",
        "version: 1\ngroups:\n  g: [ann]\nrules:\n  - name: r\n    match: { labels: { tier: gold } }\n    require: [{ group: g }]\n  - name: rest\n    decision: deny\n",
    )
    .unwrap();
    let mut c = Context::default();
    assert_eq!(p.evaluate(&c).unwrap().name, "rest");
    c.labels.insert("tier".into(), "gold".into());
    assert_eq!(p.evaluate(&c).unwrap().name, "r");
    let e = p.check_members(&|u| u == "bob").unwrap_err();
    assert_eq!((e.line, e.column), (3, 7));
    assert!(p.check_members(&|u| u == "ann").is_ok());
}

const TIMED: &str = r#"version: 1
groups:
  sre: [alice, bob]
  release: [rita, rob]
  security: { github_team: acme/security }
rules:
  - name: prod
    require: [{ group: sre, count: 2 }]
    timeout: 4h
    escalate:
      - { after: 30m, notify: [release], add_groups: [release] }
      - { after: 2h, notify: [sre] }
    windows:
      allow: "Mon-Fri 08:00-18:00 America/New_York"
  - name: hotfix
    decision: approve
    windows: { allow: ["Sat 10:00-12:00 UTC", "Sun 22:00-02:00 Europe/Zurich"] }
"#;

#[test]
fn escalate_and_windows_parse() {
    let p = Policy::parse("p.yaml", TIMED).unwrap();
    let prod = &p.rules[0];
    assert_eq!(prod.escalate.len(), 2);
    assert_eq!(prod.escalate[0].after, Dur::parse("30m").unwrap());
    assert_eq!(prod.escalate[0].add_groups, vec!["release".to_string()]);
    assert!(prod.escalate[1].add_groups.is_empty());
    assert_eq!(prod.allowed_windows(), ["Mon-Fri 08:00-18:00 America/New_York"]);
    assert_eq!(p.rules[1].allowed_windows().len(), 2);
    // 2026-06-06 is a Saturday: closed in New York all day, open 10-12 UTC for hotfixes.
    let sat = |h: i64| 1_780_704_000_000 + h * 3_600_000;
    assert!(!prod.window_open(sat(15)));
    assert!(p.rules[1].window_open(sat(11)));
    assert!(!p.rules[1].window_open(sat(12)));
    // A rule without windows is always open; the rule round-trips through a request's document.
    assert!(Policy::parse("p.yaml", GOOD).unwrap().rules[1].window_open(sat(15)));
    let back: Rule = serde_json::from_str(&serde_json::to_string(prod).unwrap()).unwrap();
    assert_eq!(&back, prod);
}

#[test]
fn escalate_and_windows_errors_are_located() {
    let check = |from: &str, to: &str, want: &str, line: usize| {
        let bad = TIMED.replace(from, to);
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains(want), "{e}");
        assert_eq!(e.line, line, "{e}");
        e
    };
    let e = check("Mon-Fri 08:00", "Mon-Fry 08:00", "`Fry` is not a day", 14);
    assert_eq!(e.column, 15, "{e}");
    check(
        "America/New_York",
        "America/Gotham",
        "`America/Gotham` is not a time zone",
        14,
    );
    check("Sun 22:00-02:00", "Sun 22:00-22:00", "is empty", 17);
    check("allow: \"Mon", "alow: \"Mon", "unknown field `alow`", 14);
    check(
        "allow: \"Mon-Fri 08:00-18:00 America/New_York\"",
        "allow: 5",
        "must be a window string",
        14,
    );
    check(
        "allow: \"Mon-Fri 08:00-18:00 America/New_York\"",
        "allow: []",
        "is empty",
        14,
    );
    check(
        "add_groups: [release]",
        "add_groups: [relase]",
        "group `relase`, which is not defined",
        11,
    );
    check(
        "add_groups: [release]",
        "add_groups: [security]",
        "forge group `security` is not supported",
        11,
    );
    check("notify: [sre]", "notify: [security]", "forge group `security`", 12);
    check("after: 2h", "after: 5h", "not before the timeout", 12);
    check("after: 2h", "after: 10m", "increasing", 12);
    check(
        "after: 2h, notify: [sre]",
        "after: 2h",
        "needs `notify` or `add_groups`",
        12,
    );
    check("{ after: 30m,", "{ aftr: 30m,", "unknown field `aftr`", 11);
    check(
        "    decision: approve\n",
        "    decision: approve\n    escalate: [{ after: 1m, notify: [sre] }]\n",
        "decides automatically",
        17,
    );
}

const FIELDS: &str = r#"version: 1
groups:
  sre: [alice, bob]
rules:
  - name: prod
    match: { environment: production }
    require: [{ group: sre }]
    fields:
      ticket: { pattern: "^CHG-[0-9]+$" }
      rollback: {}
  - name: rest
    decision: approve
"#;

#[test]
fn fields_parse_and_check_a_request() {
    use std::collections::BTreeMap;
    let p = Policy::parse("p.yaml", FIELDS).unwrap();
    let prod = &p.rules[0];
    assert_eq!(prod.fields.len(), 2);
    assert_eq!(prod.fields["ticket"].pattern.as_deref(), Some("^CHG-[0-9]+$"));
    assert_eq!(prod.fields["rollback"].pattern, None);
    assert!(p.rules[1].fields.is_empty());
    assert_eq!(prod.fields_described(), "rollback, ticket (pattern ^CHG-[0-9]+$)");
    let given = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let e = prod.check_fields(&given(&[("rollback", "redeploy")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field `ticket` is required by rule `prod` (pattern ^CHG-[0-9]+$)"
    );
    let e = prod
        .check_fields(&given(&[("ticket", "CHG-1"), ("rollback", "  \n")]))
        .unwrap_err();
    assert_eq!(e.to_string(), "field `rollback` is required by rule `prod`");
    let e = prod
        .check_fields(&given(&[("ticket", "chg-1\nx"), ("rollback", "r")]))
        .unwrap_err();
    assert!(matches!(e, FieldRefusal::NoMatch { .. }));
    assert_eq!(
        e.to_string(),
        "field `ticket` is \"chg-1\\nx\", which does not match the pattern ^CHG-[0-9]+$ of rule `prod`"
    );
    let ok = given(&[("ticket", "CHG-42"), ("rollback", "redeploy 1.2.3"), ("extra", "kept")]);
    prod.check_fields(&ok).unwrap();
    // The rule, fields and all, round-trips through a request's document.
    let back: Rule = serde_json::from_str(&serde_json::to_string(prod).unwrap()).unwrap();
    assert_eq!(&back, prod);
}

#[test]
fn fields_errors_are_located() {
    let check = |from: &str, to: &str, want: &str, line: usize, column: usize| {
        let bad = FIELDS.replace(from, to);
        assert_ne!(bad, FIELDS);
        let e = Policy::parse("p.yaml", &bad).unwrap_err();
        assert!(e.message.contains(want), "{e}");
        assert_eq!((e.line, e.column), (line, column), "{e}");
        assert!(e.to_string().starts_with(&format!("p.yaml:{line}:{column}: ")), "{e}");
    };
    check(
        "      rollback: {}",
        "      Roll-back: {}",
        "rule `prod` field `Roll-back` is not a field name",
        10,
        7,
    );
    check(
        "^CHG-[0-9]+$",
        "^CHG-[0-9+$",
        "rule `prod` field `ticket`: `^CHG-[0-9+$` is not a regular expression",
        9,
        27,
    );
    check("{ pattern: \"^CHG", "{ patern: \"^CHG", "unknown field `patern`", 9, 17);
    let many: String = (0..33).map(|i| format!("      f{i}: {{}}\n")).collect();
    check("      rollback: {}\n", &many, "at most 32 `fields`, not 34", 8, 5);
}
