//! Leaves the outcome where each platform keeps job evidence: on GitHub Actions the step
//! outputs (`$GITHUB_OUTPUT`) and a Markdown step summary (`$GITHUB_STEP_SUMMARY`); on
//! GitLab CI a dotenv report and an annotations report. The signed record itself is
//! written by `gate request`; Jenkins and plain shells archive that file. What the forge
//! is told (`--github-check`, `--gitlab-note`) is in [`forge`].

pub mod forge;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::Platform;
use crate::core::api::RequestView;

/// The outcome of one `gate request`, as reported to the platform.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// `approved`, `denied`, `expired`, `canceled`, `superseded`, `consumed`, `pending` (with
    /// `--no-wait`) or `error` (no decision could be had).
    pub decision: &'a str,
    pub view: &'a RequestView,
    /// Why: the deny reason, the policy's reason, or what went wrong.
    pub reason: &'a str,
    /// Who approved (their votes counted).
    pub approvers: &'a [String],
    /// Where the signed record was written, if it was.
    pub record_path: Option<&'a str>,
    /// The server's base URL, for the `gate verify` hint.
    pub server: &'a str,
}

/// Where the GitLab reports go.
#[derive(Debug, Clone)]
pub struct Files {
    pub dotenv: PathBuf,
    pub annotations: PathBuf,
}

/// Writes the platform's reports; returns warnings for what could not be written
/// (the exit code is the gate's answer, a missing report does not change it).
pub fn write(platform: Platform, r: &Report, files: &Files, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut warnings = Vec::new();
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    match platform {
        Platform::Github => {
            match get("GITHUB_OUTPUT") {
                Some(path) => {
                    if let Err(e) = append(Path::new(&path), &github_outputs(r)) {
                        warnings.push(format!("cannot write the step outputs to {path}: {e}"));
                    }
                }
                None => warnings.push("GITHUB_OUTPUT is not set: no step outputs written".into()),
            }
            if let Some(path) = get("GITHUB_STEP_SUMMARY")
                && let Err(e) = append(Path::new(&path), &github_summary(r))
            {
                warnings.push(format!("cannot write the step summary to {path}: {e}"));
            }
        }
        Platform::Gitlab => {
            if let Err(e) = replace(&files.dotenv, &gitlab_dotenv(r)) {
                warnings.push(format!("cannot write {}: {e}", files.dotenv.display()));
            }
            if let Err(e) = replace(&files.annotations, &gitlab_annotations(r)) {
                warnings.push(format!("cannot write {}: {e}", files.annotations.display()));
            }
        }
        Platform::Jenkins | Platform::Generic => {}
    }
    warnings
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(text.as_bytes())
}

fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

/// `$GITHUB_OUTPUT` lines. Values that may hold newlines use the `name<<DELIM` form with
/// a random delimiter that the value does not contain.
pub fn github_outputs(r: &Report) -> String {
    let mut out = String::new();
    let approvers = r.approvers.join(",");
    let pairs: [(&str, &str, bool); 6] = [
        ("decision", r.decision, false),
        ("request-id", &r.view.id, false),
        ("url", &r.view.url, false),
        ("approvers", &approvers, true),
        ("record-path", r.record_path.unwrap_or(""), true),
        ("reason", r.reason, true),
    ];
    for (name, value, multi) in pairs {
        if multi || value.contains(['\n', '\r']) {
            let delim = loop {
                let d = format!("ghadelimiter_{}", uuid::Uuid::new_v4().simple());
                if !value.contains(&d) {
                    break d;
                }
            };
            out.push_str(&format!("{name}<<{delim}\n{value}\n{delim}\n"));
        } else {
            out.push_str(&format!("{name}={value}\n"));
        }
    }
    out
}

fn icon(decision: &str) -> &'static str {
    match decision {
        "approved" => "✅",
        "denied" => "❌",
        "expired" => "⌛",
        "canceled" | "superseded" => "🚫",
        "pending" => "⏳",
        _ => "⚠️",
    }
}

/// Escapes text for a Markdown table cell or paragraph: no HTML, no formatting, no
/// table breaks, newlines as `<br>`.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(ch);
            }
            c => out.push(c),
        }
    }
    out
}

/// A URL fit for `[text](url)`.
fn link_url(u: &str) -> String {
    u.replace(' ', "%20").replace('(', "%28").replace(')', "%29")
}

fn link(text: &str, url: &str) -> String {
    if url.starts_with("https://") || url.starts_with("http://") {
        format!("[{}]({})", md(text), link_url(url))
    } else {
        md(text)
    }
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `gate verify` command that checks this record.
pub fn verify_command(r: &Report) -> Option<String> {
    let path = r.record_path?;
    let mut cmd = format!(
        "gate verify {} --key {}",
        sh_quote(path),
        sh_quote(&format!("{}/api/v1/keys", r.server.trim_end_matches('/')))
    );
    if !r.view.context.commit.is_empty() {
        cmd.push_str(&format!(" --commit {}", sh_quote(&r.view.context.commit)));
    }
    for a in &r.view.artifacts {
        cmd.push_str(&format!(" --artifact {}", sh_quote(a)));
    }
    Some(cmd)
}

/// The Markdown step summary: the request and its link, the context, the rule, every
/// vote, the outcome and how to verify the record.
pub fn github_summary(r: &Report) -> String {
    let v = r.view;
    let c = &v.context;
    let mut s = String::new();
    s.push_str(&format!(
        "### {} jitgate: {} to {} {}\n\n",
        icon(r.decision),
        md(if c.action.is_empty() { "request" } else { &c.action }),
        md(&c.environment),
        r.decision.to_uppercase()
    ));
    let id = format!("`{}`", v.id.replace('`', ""));
    s.push_str(&format!(
        "Request {} under rule **{}**",
        if v.url.starts_with("https://") || v.url.starts_with("http://") {
            format!("[{id}]({})", link_url(&v.url))
        } else {
            id
        },
        md(&v.rule)
    ));
    if !v.policy_digest.is_empty() {
        s.push_str(&format!(" (policy `{}`)", v.policy_digest.replace('`', "")));
    }
    s.push_str(".\n\n");
    if !v.summary.is_empty() {
        s.push_str(&format!("> {}\n\n", md(&v.summary)));
    }

    s.push_str("| Context | |\n|---|---|\n");
    let mut row = |k: &str, val: String| {
        if !val.is_empty() {
            s.push_str(&format!("| {k} | {val} |\n"));
        }
    };
    row("Repository", md(&c.repository));
    row("Ref", md(&c.git_ref));
    row(
        "Commit",
        if c.commit.is_empty() {
            String::new()
        } else {
            format!("`{}`", c.commit.replace('`', ""))
        },
    );
    row("Actor", md(&c.actor));
    row("Re-run by", md(&c.triggering_actor));
    row(
        "Run",
        if c.run_url.is_empty() {
            md(&c.run_id)
        } else {
            link(
                &if c.run_id.is_empty() {
                    c.run_url.clone()
                } else if c.run_attempt.is_empty() {
                    c.run_id.clone()
                } else {
                    format!("{} (attempt {})", c.run_id, c.run_attempt)
                },
                &c.run_url,
            )
        },
    );
    row("Job", md(&c.job));
    row("Environment", md(&c.environment));
    row("Action", md(&c.action));
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    row("Labels", md(&labels.join(", ")));
    row(
        "Artifacts",
        v.artifacts
            .iter()
            .map(|a| format!("`{}`", a.replace('`', "")))
            .collect::<Vec<_>>()
            .join("<br>"),
    );
    row("Requester", md(&v.requester.join(", ")));
    s.push('\n');

    s.push_str("#### Votes\n\n");
    if v.votes.is_empty() {
        s.push_str("No votes.\n\n");
    } else {
        s.push_str("| Who | Vote | When | How | Reason |\n|---|---|---|---|---|\n");
        for vote in &v.votes {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                md(&vote.who()),
                md(&vote.decision),
                md(&vote.at),
                md(&vote.via),
                md(vote.reason.as_deref().unwrap_or(""))
            ));
        }
        s.push('\n');
    }

    s.push_str("#### Outcome\n\n");
    s.push_str(&format!("**{}**", r.decision));
    if let Some(by) = &v.decided_by {
        s.push_str(&format!(" by {}", md(by)));
    }
    if let Some(at) = &v.decided_at {
        s.push_str(&format!(" at {}", md(at)));
    }
    if !r.reason.is_empty() {
        s.push_str(&format!(": {}", md(r.reason)));
    }
    s.push('\n');
    if !r.approvers.is_empty() {
        s.push_str(&format!("\nApproved by: {}\n", md(&r.approvers.join(", "))));
    }
    if let Some(at) = &v.consumed_at {
        s.push_str(&format!("\nApproval used at {}.\n", md(at)));
    }
    s.push('\n');

    s.push_str("#### Record\n\n");
    match verify_command(r) {
        Some(cmd) => {
            s.push_str(&format!(
                "The signed record is `{}` (uploaded as an artifact by the jitgate action). Check it offline; \
                 `gate verify` exits 0 only for a valid approval of this commit:\n\n```sh\n{cmd}\n```\n",
                r.record_path.unwrap_or_default().replace('`', "")
            ));
        }
        None => s.push_str("No signed record was written.\n"),
    }
    s.push('\n');
    s
}

/// GitLab's dotenv report: one `KEY=value` a line, no quotes, no newlines in values.
pub fn gitlab_dotenv(r: &Report) -> String {
    let clean = |v: &str| v.replace(['\n', '\r'], " ");
    let mut s = format!(
        "GATE_DECISION={}\nGATE_REQUEST_ID={}\nGATE_REQUEST_URL={}\n",
        clean(r.decision),
        clean(&r.view.id),
        clean(&r.view.url)
    );
    if let Some(p) = r.record_path {
        s.push_str(&format!("GATE_RECORD={}\n", clean(p)));
    }
    s
}

/// GitLab's annotations report: a link to the request on the job page.
pub fn gitlab_annotations(r: &Report) -> String {
    let v = json!({"jitgate": [{"external_link": {
        "label": format!("jitgate request {} ({})", r.view.id, r.decision),
        "url": r.view.url,
    }}]});
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::api::{Context, VoteView};
    use crate::core::decide::Status;

    fn view() -> RequestView {
        RequestView {
            id: "r-1".into(),
            status: Status::Denied,
            url: "https://gate.example/r/r-1".into(),
            context: Context {
                repository: "acme/web".into(),
                git_ref: "refs/heads/main".into(),
                commit: "abc123".into(),
                actor: "erin".into(),
                run_id: "77".into(),
                run_url: "https://github.com/acme/web/actions/runs/77".into(),
                environment: "production".into(),
                action: "deploy".into(),
                ..Default::default()
            },
            summary: String::new(),
            artifacts: vec![],
            fields: Default::default(),
            requester: vec!["erin".into()],
            requester_sources: vec![],
            opened_by: "ci".into(),
            rule: "production".into(),
            policy_digest: "sha256:00".into(),
            requirements: vec![],
            open_stage: None,
            votes: vec![VoteView {
                voter: "bob".into(),
                decision: "deny".into(),
                reason: Some("no | ticket\n<b>now</b>".into()),
                at: "2025-01-01T00:00:00Z".into(),
                via: "token".into(),
                auth_time: None,
                amr: vec![],
                source: None,
                idp_groups: vec![],
                on_behalf_of: None,
            }],
            created_at: String::new(),
            expires_at: String::new(),
            decided_at: Some("2025-01-01T00:00:00Z".into()),
            decided_by: Some("bob (deny)".into()),
            reason: None,
            approval_expires_at: None,
            consumed_at: None,
            version: 3,
            verified_by: None,
            verified_fields: vec![],
            holder_token: None,
            release: None,
            links: Default::default(),
            covered_by: None,
            superseded_by: None,
            checks: vec![],
        }
    }

    #[test]
    fn outputs_use_heredocs_for_what_may_hold_newlines() {
        let v = view();
        let r = Report {
            decision: "denied",
            view: &v,
            reason: "line one\nline two",
            approvers: &[],
            record_path: Some("gate-record.json"),
            server: "https://gate.example/",
        };
        let out = github_outputs(&r);
        assert!(
            out.starts_with("decision=denied\nrequest-id=r-1\nurl=https://gate.example/r/r-1\n"),
            "{out}"
        );
        let reason = out.split("reason<<").nth(1).unwrap();
        let (delim, rest) = reason.split_once('\n').unwrap();
        assert!(delim.starts_with("ghadelimiter_"));
        assert_eq!(rest, format!("line one\nline two\n{delim}\n"));
        let s = github_summary(&r);
        assert!(
            s.contains("| bob | deny | 2025-01-01T00:00:00Z | token | no \\| ticket<br>&lt;b&gt;now&lt;/b&gt; |"),
            "{s}"
        );
        assert!(
            s.contains("gate verify gate-record.json --key https://gate.example/api/v1/keys --commit abc123"),
            "{s}"
        );
        assert!(s.contains("[`r-1`](https://gate.example/r/r-1)"), "{s}");
        assert_eq!(
            gitlab_dotenv(&r),
            "GATE_DECISION=denied\nGATE_REQUEST_ID=r-1\nGATE_REQUEST_URL=https://gate.example/r/r-1\nGATE_RECORD=gate-record.json\n"
        );
        let a: serde_json::Value = serde_json::from_str(&gitlab_annotations(&r)).unwrap();
        assert_eq!(
            a["jitgate"][0]["external_link"]["label"],
            "jitgate request r-1 (denied)"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a/b.json"), "a/b.json");
        assert_eq!(sh_quote("my record.json"), "'my record.json'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
