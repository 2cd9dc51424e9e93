//! Formatters for the pages: ages, links to the forge, audit event data in words.

use serde_json::Value;

pub(super) fn parse_time(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

/// "4 min", "2 h 5 min", "3 d 4 h".
/// `, groups a, b` for a vote cast in a session that saw identity provider groups.
pub(super) fn idp_groups(groups: &[String]) -> String {
    if groups.is_empty() {
        String::new()
    } else {
        format!(", groups {}", groups.join(", "))
    }
}

pub fn human_age(ms: i64) -> String {
    let m = (ms.max(0) / 60_000) as u64;
    match m {
        0 => "under a minute".into(),
        1..60 => format!("{m} min"),
        60..1440 => format!("{} h {} min", m / 60, m % 60),
        _ => format!("{} d {} h", m / 1440, (m % 1440) / 60),
    }
}

/// `https://host[:port]` of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

fn safe_path(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
}

/// Links to the commit, the change (PR/MR) and the run, where the context allows.
pub fn context_links(c: &crate::core::api::Context) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let server = origin(&c.run_url).unwrap_or_else(|| match c.platform.as_str() {
        "gitlab" => "https://gitlab.com".into(),
        _ => "https://github.com".into(),
    });
    let repo_ok = safe_path(&c.repository);
    let sha_ok = !c.commit.is_empty() && c.commit.bytes().all(|b| b.is_ascii_hexdigit());
    let num = |prefix: &str| {
        c.git_ref
            .strip_prefix(prefix)
            .and_then(|r| r.split('/').next())
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
    };
    match c.platform.as_str() {
        "github" if repo_ok => {
            if sha_ok {
                out.push((
                    format!("Commit {}", &c.commit[..c.commit.len().min(12)]),
                    format!("{server}/{}/commit/{}", c.repository, c.commit),
                ));
            }
            if let Some(n) = num("refs/pull/") {
                out.push((
                    format!("Pull request #{n}"),
                    format!("{server}/{}/pull/{n}", c.repository),
                ));
            }
        }
        "gitlab" if repo_ok => {
            if sha_ok {
                out.push((
                    format!("Commit {}", &c.commit[..c.commit.len().min(12)]),
                    format!("{server}/{}/-/commit/{}", c.repository, c.commit),
                ));
            }
            if let Some(n) = num("refs/merge-requests/") {
                out.push((
                    format!("Merge request !{n}"),
                    format!("{server}/{}/-/merge_requests/{n}", c.repository),
                ));
            }
        }
        _ => {}
    }
    if origin(&c.run_url).is_some() {
        out.push(("Pipeline run".into(), c.run_url.clone()));
    }
    out
}

/// The interesting fields of an audit event's data, in words.
pub(super) fn describe_event(data: &str) -> String {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(data) else {
        return String::new();
    };
    m.iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::Null => return None,
                Value::String(s) if s.is_empty() => return None,
                Value::Array(a) if a.is_empty() => return None,
                // Nested objects and lists (context, requirements, artifacts) and the
                // digest are on the page already.
                Value::Object(_) => return None,
                Value::Array(_) if k != "amr" => return None,
                _ if k == "policy_digest" => return None,
                Value::String(s) => s.clone(),
                Value::Array(_) => {
                    let t = v.to_string();
                    if t.len() > 200 {
                        format!("{}…", &t[..t.floor_char_boundary(200)])
                    } else {
                        t
                    }
                }
                other => other.to_string(),
            };
            Some(format!("{k}: {text}"))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_follow_the_platform() {
        let mut c = crate::core::api::Context {
            platform: "github".into(),
            repository: "acme/app".into(),
            commit: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
            git_ref: "refs/pull/42/merge".into(),
            run_url: "https://ghe.example/acme/app/actions/runs/1".into(),
            ..Default::default()
        };
        let l = context_links(&c);
        assert_eq!(
            l[0].1,
            "https://ghe.example/acme/app/commit/4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        assert_eq!(l[1].1, "https://ghe.example/acme/app/pull/42");
        assert_eq!(l[2].1, c.run_url);
        c.platform = "gitlab".into();
        c.git_ref = "refs/merge-requests/7/head".into();
        c.run_url = "javascript:alert(1)".into();
        let l = context_links(&c);
        assert_eq!(
            l[0].1,
            "https://gitlab.com/acme/app/-/commit/4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        assert_eq!(l[1].1, "https://gitlab.com/acme/app/-/merge_requests/7");
        assert_eq!(l.len(), 2, "a javascript: run URL is never a link");
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(human_age(30_000), "under a minute");
        assert_eq!(human_age(5 * 60_000), "5 min");
        assert_eq!(human_age(125 * 60_000), "2 h 5 min");
        assert_eq!(human_age(50 * 3_600_000), "2 d 2 h");
    }
}
