//! What `gate request` is asked: its flags (each also a `GATE_` variable), and the
//! request body they make with the context detected from the platform.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use crate::ci;
use crate::cli::Failure;
use crate::core::api::CreateRequest;
use crate::core::policy::name_message;

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Target environment (matched by the policy).
    #[arg(long, env = "GATE_ENVIRONMENT")]
    pub environment: String,
    /// What is being done, e.g. deploy, migrate, rollback.
    #[arg(long, env = "GATE_ACTION", default_value = "deploy")]
    pub action: String,
    /// One line (or a paragraph) for the approvers.
    #[arg(long, env = "GATE_SUMMARY")]
    pub summary: Option<String>,
    /// key=value, repeatable (GATE_LABEL takes a comma-separated list).
    #[arg(long = "label", env = "GATE_LABEL", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// sha256:HEX digest of what is released, repeatable (GATE_ARTIFACT: comma-separated).
    #[arg(long = "artifact", env = "GATE_ARTIFACT", value_delimiter = ',')]
    pub artifacts: Vec<String>,
    /// A change field the policy may require, NAME=VALUE, repeatable (also GATE_FIELD_<NAME>=VALUE; the flag wins).
    #[arg(long = "field", value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
    /// Break the glass: approved at once if the rule allows it and you are in its
    /// `break_glass.groups`; needs --reason and --incident, and opens a review (docs/break-glass.md).
    #[arg(long, env = "GATE_BREAK_GLASS")]
    pub break_glass: bool,
    /// Why the glass is broken (with --break-glass).
    #[arg(long, env = "GATE_REASON")]
    pub reason: Option<String>,
    /// The incident this change is for (with --break-glass).
    #[arg(long, env = "GATE_INCIDENT")]
    pub incident: Option<String>,
    /// Ask for a shorter timeout than the policy's (e.g. 30m).
    #[arg(long, env = "GATE_TIMEOUT")]
    pub timeout: Option<String>,
    /// Wait for the decision (the default; wins over --no-wait, e.g. to undo GATE_NO_WAIT).
    #[arg(long, env = "GATE_WAIT")]
    pub wait: bool,
    /// Open the request and exit without waiting: 0 when it is open (pending) or
    /// approved, with GATE_REQUEST_ID in the platform's outputs; 1 when the policy denied it.
    #[arg(long, env = "GATE_NO_WAIT")]
    pub no_wait: bool,
    /// GitLab CI, with --no-wait: the manual job of this pipeline the server plays once
    /// the request is approved (never otherwise); its first step runs `gate consume`.
    #[arg(
        long,
        env = "GATE_GITLAB_PLAY",
        value_name = "JOB_NAME",
        requires = "no_wait",
        conflicts_with = "jenkins_input"
    )]
    pub gitlab_play: Option<String>,
    /// Jenkins: the id of the `input` step (outside any `node`) that holds the build; the
    /// server answers it (proceed on approval, abort otherwise). Needs --no-wait.
    #[arg(long, env = "GATE_JENKINS_INPUT", requires = "no_wait")]
    pub jenkins_input: Option<String>,
    /// With --no-wait: print the request id alone on stdout (every other line goes to
    /// stderr), for Jenkins' `sh(returnStdout: true)` and shell `$(…)`.
    #[arg(long, env = "GATE_PRINT_ID", requires = "no_wait")]
    pub print_id: bool,
    #[arg(long, env = "GATE_REPOSITORY")]
    pub repository: Option<String>,
    #[arg(long = "ref", env = "GATE_REF")]
    pub git_ref: Option<String>,
    #[arg(long, env = "GATE_COMMIT")]
    pub commit: Option<String>,
    #[arg(long, env = "GATE_ACTOR")]
    pub actor: Option<String>,
    #[arg(long, env = "GATE_RUN_URL")]
    pub run_url: Option<String>,
    /// Replays with the same key return the same request (default: the run identity).
    #[arg(long, env = "GATE_IDEMPOTENCY_KEY")]
    pub idempotency_key: Option<String>,
    /// How often to print a status line while waiting.
    #[arg(long, env = "GATE_STATUS_EVERY", default_value = "60s", hide = true)]
    pub status_every: String,
    /// The credential, the record and the platform's reports.
    #[command(flatten)]
    pub job: JobArgs,
}

/// What `gate request` and `gate consume` share: the credential they present, the
/// record they write and the platform's reports they leave.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Pin the server's public key (file, URL or PEM); otherwise it is fetched from the server.
    #[arg(long = "server-key", visible_alias = "key", env = "GATE_SERVER_KEY")]
    pub key: Option<String>,
    /// Where to write the signed record.
    #[arg(long, env = "GATE_RECORD_FILE", default_value = "gate-record.json")]
    pub record_file: PathBuf,
    /// Give up (exit 2) after the server has been unreachable this long.
    #[arg(long, env = "GATE_RETRY_BUDGET", default_value = "10m")]
    pub retry_budget: String,
    /// The audience of the OIDC token the gate asks GitHub Actions for.
    #[arg(long, env = "GATE_AUDIENCE", default_value = "jitgate")]
    pub audience: String,
    /// An OIDC token to present instead of the static token (GitLab `id_tokens:`, a Jenkins credential).
    #[arg(long, env = "GATE_ID_TOKEN", hide_env_values = true)]
    pub id_token: Option<String>,
    /// GitLab CI: where to write the dotenv report (GATE_DECISION, GATE_REQUEST_ID, GATE_RECORD).
    #[arg(long, env = "GATE_DOTENV_FILE", default_value = "gate.env")]
    pub dotenv_file: PathBuf,
    /// GitLab CI: where to write the annotations report (a link to the request).
    #[arg(long, env = "GATE_ANNOTATIONS_FILE", default_value = "gate-annotations.json")]
    pub annotations_file: PathBuf,
    /// --github-check, --gitlab-note and their tokens: reports after the decision.
    #[command(flatten)]
    pub forge: crate::ci::report::forge::ForgeArgs,
}

impl JobArgs {
    /// `--retry-budget` as a duration, or the usage error naming it.
    pub fn budget(&self) -> Result<std::time::Duration, Failure> {
        crate::core::duration::Dur::parse(&self.retry_budget)
            .map(|d| d.as_std())
            .map_err(|e| Failure::usage(format!("--retry-budget: {e}")))
    }
}

pub(super) fn build_body(a: &RequestArgs) -> Result<CreateRequest, Failure> {
    // An empty `--actor "$USER"` must not quietly become "no requester".
    if a.actor.as_deref().is_some_and(|v| v.trim().is_empty()) {
        return Err(Failure::usage(
            "--actor is empty (is the variable it was given, such as $USER, unset here?): name who started \
             this run, or leave --actor out where the platform's variables name them",
        ));
    }
    let (platform, mut c) = ci::detect(&|k| std::env::var(k).ok());
    let set = |name: &str, slot: &mut String, flag: &Option<String>| {
        if let Some(v) = flag.as_ref().filter(|v| !v.is_empty()) {
            if !slot.is_empty() && slot != v {
                eprintln!(
                    "gate: --{name} `{v}` replaces `{slot}` from the {} environment",
                    platform.as_str()
                );
            }
            *slot = v.clone();
        }
    };
    set("repository", &mut c.repository, &a.repository);
    set("ref", &mut c.git_ref, &a.git_ref);
    set("commit", &mut c.commit, &a.commit);
    set("actor", &mut c.actor, &a.actor);
    set("run-url", &mut c.run_url, &a.run_url);
    c.environment = a.environment.clone();
    c.action = a.action.clone();
    let labels = crate::core::context::parse_labels(&a.labels).map_err(|e| Failure::usage(e.to_string()))?;
    c.labels.extend(labels);
    for art in &a.artifacts {
        let ok = art
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err(Failure::usage(format!(
                "--artifact `{art}` is not sha256:<64 hex digits>"
            )));
        }
    }
    // Without a run identity, a fresh key still makes our own retries of this call safe.
    let idempotency_key = a
        .idempotency_key
        .clone()
        .or_else(|| c.run_id.is_empty().then(|| uuid::Uuid::new_v4().to_string()));
    let break_glass = break_glass(a)?;
    Ok(CreateRequest {
        break_glass,
        context: c,
        summary: a.summary.clone().unwrap_or_default(),
        artifacts: a.artifacts.clone(),
        timeout: a.timeout.clone(),
        idempotency_key,
        fields: fields(&a.fields, std::env::vars_os())?,
        release: a
            .gitlab_play
            .as_ref()
            .map(|job| {
                crate::core::release::ReleaseAsk::GitlabPlay(crate::core::release::GitlabPlayAsk { job: job.clone() })
            })
            .or_else(|| {
                a.jenkins_input.clone().map(|input| {
                    crate::core::release::ReleaseAsk::JenkinsInput(crate::core::release::JenkinsInputAsk { input })
                })
            }),
    })
}

/// `--break-glass` with its `--reason` and `--incident`, both required; neither without it.
fn break_glass(a: &RequestArgs) -> Result<Option<crate::core::break_glass::BreakGlassAsk>, Failure> {
    let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(String::from);
    let (reason, incident) = (given(&a.reason), given(&a.incident));
    if !a.break_glass {
        if reason.is_some() || incident.is_some() {
            return Err(Failure::usage(
                "--reason and --incident go with --break-glass (an approver gives a reason with `gate approve`)",
            ));
        }
        return Ok(None);
    }
    match (reason, incident) {
        (Some(reason), Some(incident)) => Ok(Some(crate::core::break_glass::BreakGlassAsk { reason, incident })),
        (r, _) => Err(Failure::usage(format!(
            "--break-glass needs {}: say why, and which incident (docs/break-glass.md)",
            if r.is_none() { "--reason R" } else { "--incident ID" }
        ))),
    }
}

/// The request's change fields: `GATE_FIELD_<NAME>` variables (NAME lower-cased), then
/// `--field NAME=VALUE` flags, which win.
fn fields(
    flags: &[String],
    env: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for (k, v) in env {
        let Some(name) = k.to_str().and_then(|k| k.strip_prefix("GATE_FIELD_")) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if let Some(m) = name_message(&name) {
            return Err(Failure::usage(format!("GATE_FIELD_{}: {m}", name.to_ascii_uppercase())));
        }
        let v = v
            .into_string()
            .map_err(|_| Failure::usage(format!("GATE_FIELD_{}: not UTF-8", name.to_ascii_uppercase())))?;
        out.insert(name, v);
    }
    for f in flags {
        let Some((name, v)) = f.split_once('=') else {
            return Err(Failure::usage(format!(
                "--field `{}` is not NAME=VALUE",
                crate::core::text::for_terminal(f, false)
            )));
        };
        if let Some(m) = name_message(name) {
            return Err(Failure::usage(format!("--field {m}")));
        }
        out.insert(name.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    #[test]
    fn fields_from_flags_win_over_variables() {
        let env = [
            ("GATE_FIELD_TICKET", "CHG-1"),
            ("GATE_FIELD_ROLLBACK", "redeploy 1.2.3"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let got = super::fields(&["ticket=CHG-2".into(), "impact=low=ish".into()], env.into_iter()).unwrap();
        assert_eq!(got["ticket"], "CHG-2");
        assert_eq!(got["rollback"], "redeploy 1.2.3");
        assert_eq!(got["impact"], "low=ish");
        assert_eq!(got.len(), 3);
        let e = super::fields(&["ticket".into()], std::iter::empty()).unwrap_err();
        assert!(e.message.contains("is not NAME=VALUE"), "{}", e.message);
        let e = super::fields(&["Ticket=x".into()], std::iter::empty()).unwrap_err();
        assert!(e.message.contains("`Ticket` is not a field name"), "{}", e.message);
    }

    use clap::CommandFactory;

    /// Every `gate request` flag can be given as `GATE_` + the flag in upper snake case.
    #[test]
    fn every_request_flag_has_its_gate_variable() {
        let mut cli = crate::cli::Cli::command();
        cli.build();
        let request = cli.find_subcommand("request").expect("request command");
        let mut seen = 0;
        for arg in request.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            // `--field`'s variables are one per field: GATE_FIELD_<NAME>.
            if matches!(long, "help" | "version" | "field") {
                continue;
            }
            let want = format!("GATE_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "--{long} should be readable from {want}"
            );
            seen += 1;
        }
        assert!(seen > 20, "{seen}");
    }
}
