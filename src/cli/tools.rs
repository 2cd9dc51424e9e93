//! Offline and admin tools: `verify`, `audit`, `policy`, `token`.

use std::io::{Read, Write};
use std::path::Path;

use super::{Ctx, Exit, Failure, Outcome, VerifyArgs, print_json};
use crate::client::Client;
use crate::core::api::Context;
use crate::core::audit::record::{self, Admission, Constraints, Expect, RecordError};

/// Loads the public key(s) from a file, a URL, or inline text.
pub async fn load_keys(spec: &str) -> Result<Vec<ed25519_dalek::VerifyingKey>, Failure> {
    let text = if spec.starts_with("http://") || spec.starts_with("https://") {
        Client::fetch_url(spec)
            .await
            .map_err(|e| Failure::usage(format!("key {spec}: {e}")))?
    } else if Path::new(spec).exists() {
        std::fs::read_to_string(spec).map_err(|e| Failure::usage(format!("key file {spec}: {e}")))?
    } else if spec.contains("BEGIN PUBLIC KEY") || spec.len() == 44 {
        spec.to_string()
    } else {
        return Err(Failure::usage(format!(
            "key `{spec}` is neither a file, a URL nor a key"
        )));
    };
    record::parse_public_keys(&text).map_err(|e| Failure::usage(format!("key {spec}: {e}")))
}

pub async fn verify(ctx: &Ctx, a: VerifyArgs) -> Outcome {
    if let Some(bundle) = &a.bundle {
        return super::bundle::verify(ctx, bundle, a.key.as_deref()).await;
    }
    let (Some(path), Some(key)) = (&a.record, &a.key) else {
        return Err(Failure::usage("give a record file and --key (or --bundle FILE)"));
    };
    let keys = load_keys(key).await?;
    let text = std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let policy = match &a.policy {
        Some(p) => {
            let file = p.display().to_string();
            let yaml = std::fs::read_to_string(p).map_err(|e| Failure::usage(format!("{file}: {e}")))?;
            Some(Admission::parse(&file, &yaml).map_err(|e| Failure::usage(e.to_string()))?)
        }
        None => None,
    };
    let expect = Expect {
        commit: a.commit,
        artifacts: a.artifacts,
        request_id: None,
        environment: a.environment,
        constraints: Constraints {
            repository: a.repository,
            git_ref: a.git_ref,
            rule: a.rule,
            min_approvals: a.min_approvals,
            max_age: a.max_age,
        },
        policy,
        now: crate::core::duration::now_ms(),
        witnesses: vec![],
    };
    let witnesses = super::audit::parse_witnesses(&a.witness_keys)?;
    match record::verify(&text, &keys, &expect) {
        Ok(v) => {
            if !witnesses.is_empty() {
                super::audit::witnessed(&v, &keys, &witnesses, a.log_server.as_deref())
                    .await
                    .map_err(|e| Failure::no(format!("{}: invalid record: {e}", path.display())))?;
            }
            if ctx.json() {
                print_json(
                    &serde_json::json!({"valid": true, "request": v.request_id, "outcome": v.outcome, "keyid": v.keyid}),
                );
            } else {
                outln!("valid: request {} {} (signed by {})", v.request_id, v.outcome, v.keyid);
            }
            Ok(Exit::Success)
        }
        Err(why) => {
            if ctx.json() {
                let field = match &why {
                    RecordError::Mismatch(m) => Some(m.field),
                    _ => None,
                };
                print_json(&serde_json::json!({"valid": false, "error": why.to_string(), "field": field}));
            }
            let what = match why {
                RecordError::Mismatch(_) => "refused",
                _ => "invalid record",
            };
            Err(Failure::no(format!("{}: {what}: {why}", path.display())))
        }
    }
}

pub async fn audit_export(ctx: &Ctx) -> Outcome {
    let c = ctx.client()?;
    let mut after = 0;
    loop {
        let page = c.audit_export(after, 10_000).await?;
        if page.trim().is_empty() {
            return Ok(Exit::Success);
        }
        for line in page.lines() {
            // A closed pipe (`| head`) ends the export quietly instead of panicking.
            if writeln!(std::io::stdout().lock(), "{line}").is_err() {
                return Ok(Exit::Success);
            }
            if let Some(seq) = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["seq"].as_i64())
            {
                after = seq;
            }
        }
    }
}

pub fn policy_check(ctx: &Ctx, file: &Path, config: Option<&Path>) -> Outcome {
    let p = crate::config::load_policy(file).map_err(|e| Failure::no(e.to_string()))?;
    if let Some(cfg) = config {
        let cfg = crate::config::Config::load(cfg).map_err(|e| Failure::no(e.to_string()))?;
        p.check_members(&|u| cfg.user(u).is_some())
            .map_err(|e| Failure::no(e.to_string()))?;
    }
    if ctx.json() {
        print_json(
            &serde_json::json!({"valid": true, "rules": p.rules.len(), "groups": p.groups.len() + p.forge_groups.len(), "digest": p.digest}),
        );
    } else {
        outln!(
            "{}: valid, {} rules, {} groups, digest {}",
            file.display(),
            p.rules.len(),
            p.groups.len() + p.forge_groups.len(),
            p.digest
        );
    }
    Ok(Exit::Success)
}

pub fn policy_explain(ctx: &Ctx, file: &Path, request: &Path) -> Outcome {
    let p = crate::config::load_policy(file).map_err(|e| Failure::no(e.to_string()))?;
    let text = std::fs::read_to_string(request).map_err(|e| Failure::usage(format!("{}: {e}", request.display())))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Failure::usage(format!("{}: {e}", request.display())))?;
    // Accept a bare context or a whole create body.
    let ctx_value = v.get("context").cloned().unwrap_or(v);
    let c: Context =
        serde_json::from_value(ctx_value).map_err(|e| Failure::usage(format!("{}: {e}", request.display())))?;
    let verdicts = p.explain(&c);
    let matched = verdicts.iter().find(|v| v.matched).map(|v| v.rule.clone());
    if ctx.json() {
        let rule = matched.as_ref().and_then(|m| p.rules.iter().find(|r| &r.name == m));
        let fields = rule.map(|r| r.fields.clone()).unwrap_or_default();
        let mut out = serde_json::json!({"matched": matched, "rules": verdicts, "fields": fields,
            "approval_scope": rule.map(|r| r.approval_scope), "supersede": rule.map(|r| r.supersede)});
        // What else decides the matched rule, each key only when the rule has it.
        if let Some(r) = rule {
            if !r.stages.is_empty() {
                out["stages"] = serde_json::json!(r.stages);
            }
            if !r.auto_approve_if.is_empty() {
                out["auto_approve_if"] = serde_json::json!(r.auto_approve_if);
            }
            if !r.auto_deny_if.is_empty() {
                out["auto_deny_if"] = serde_json::json!(r.auto_deny_if);
            }
            if let Some(bg) = &r.break_glass {
                out["break_glass"] = serde_json::json!(bg);
            }
        }
        print_json(&out);
    } else {
        for v in &verdicts {
            if v.matched {
                let rule = p.rules.iter().find(|r| r.name == v.rule).expect("matched rule exists");
                let what = match (rule.decision, rule.require.is_empty()) {
                    (Some(d), _) => format!("decides {d:?} automatically").to_lowercase(),
                    (None, _) if !rule.stages.is_empty() => rule
                        .stages
                        .iter()
                        .map(|s| format!("stage {}: {}", s.name, requires_text(&s.require)))
                        .collect::<Vec<_>>()
                        .join(", then "),
                    (None, _) => requires_text(&rule.require),
                };
                outln!(
                    "MATCH  {}: {what}; timeout {}, approval valid {}",
                    v.rule,
                    rule.timeout(),
                    rule.approval_ttl()
                );
                if !rule.fields.is_empty() {
                    outln!("       requires fields: {}", rule.fields_described());
                }
                for (list, checks) in [
                    ("auto_approve_if", &rule.auto_approve_if),
                    ("auto_deny_if", &rule.auto_deny_if),
                ] {
                    if !checks.is_empty() {
                        let each: Vec<String> = checks.iter().map(|c| c.describe()).collect();
                        outln!("       {list}: {} (run once the request is open)", each.join(", "));
                    }
                }
                if let Some(bg) = &rule.break_glass {
                    outln!(
                        "       break-glass: {} may approve at once (valid {}); review by {} of {} within {}",
                        bg.groups.join(", "),
                        bg.ttl,
                        bg.review.count,
                        bg.review.group,
                        bg.review.within
                    );
                }
                if !rule.approval_scope.is_request() {
                    outln!("       approval_scope: run (one approval covers every gate of the run attempt)");
                }
                if rule.supersede {
                    outln!("       supersede: cancels older pending requests of the repository and environment");
                }
            } else {
                outln!("skip   {}: {}", v.rule, v.mismatches.join("; "));
            }
        }
        if matched.is_none() {
            outln!("no rule matches: the request would be refused");
        }
    }
    Ok(Exit::yes_or_no(matched.is_some()))
}

/// `2 of sre AND 1 of security`.
fn requires_text(require: &[crate::core::policy::Require]) -> String {
    require
        .iter()
        .map(|r| format!("{} of {}", r.count, r.group))
        .collect::<Vec<_>>()
        .join(" AND ")
}

pub fn token_hash() -> Outcome {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?;
    let t = s.trim_end_matches(['\r', '\n']);
    if t.is_empty() {
        return Err(Failure::usage("no token on stdin"));
    }
    outln!("{}", crate::auth::hash_token(t));
    Ok(Exit::Success)
}

pub fn token_new(ctx: &Ctx) -> Outcome {
    let t = crate::auth::new_token("gate");
    let h = crate::auth::hash_token(&t);
    if ctx.json() {
        print_json(&serde_json::json!({"token": t, "token_sha256": h}));
    } else {
        outln!("token:        {t}\ntoken_sha256: {h}");
    }
    Ok(Exit::Success)
}
