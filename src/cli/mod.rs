//! Command-line interface. Each command returns an [`Exit`] or a [`Failure`] that
//! carries one, so `main` stays a one-liner.

/// `println!` that stops quietly on a closed stdout (`gate show … | head`) instead of
/// panicking; the command still ends with its own exit code.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

mod approver;
mod audit;
mod bundle;
mod delegate;
mod exit;
mod key;
mod migrate_data;
mod policy_test;
mod reports;
mod request;
mod serve;
mod simulate;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use exit::Exit;

/// A command that failed: the message printed after `gate: `, and how to exit.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }
    /// [`Exit::CouldNotDecide`]: usage, config, auth, or an unreachable server.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Exit::CouldNotDecide, message)
    }
    /// [`Exit::No`]: the answer is no.
    pub fn no(message: impl Into<String>) -> Failure {
        Failure::new(Exit::No, message)
    }
}

impl From<crate::client::ClientError> for Failure {
    fn from(e: crate::client::ClientError) -> Self {
        Failure::usage(e.to_string())
    }
}

pub type Outcome = Result<Exit, Failure>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "gate",
    version = concat!(env!("CARGO_PKG_VERSION"), env!("GATE_BUILD_SUFFIX")),
    about = "Just-in-time approval gate for CI/CD pipelines",
    propagate_version = true
)]
pub struct Cli {
    /// The jitgate server.
    #[arg(long, global = true, env = "GATE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Bearer token: a pipeline's for `request`, an approver's for votes.
    #[arg(long, global = true, env = "GATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "GATE_OUTPUT")]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the jitgate server.
    Serve(serve::ServeArgs),
    /// Open an approval request for this pipeline run and wait for the decision.
    Request(Box<request::RequestArgs>),
    /// Use an approved request once, from this run, as a held job's first step (after
    /// `gate request --no-wait`); writes the record. Exit 0 only when it was approved and
    /// this call consumed it.
    Consume(Box<request::ConsumeArgs>),
    /// Approve a request.
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        /// Vote for this person, under their delegation to you.
        #[arg(long = "for", value_name = "PERSON")]
        for_whom: Option<String>,
    },
    /// Deny a request (a reason is required).
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
        /// Vote for this person, under their delegation to you.
        #[arg(long = "for", value_name = "PERSON")]
        for_whom: Option<String>,
    },
    /// Requests waiting for you.
    Pending {
        /// Print only the ids, one a line (for scripts: `ID=$(gate pending --quiet | head -n1)`).
        #[arg(long, short)]
        quiet: bool,
    },
    /// One request in detail.
    Show { id: String },
    /// Withdraw a pending request.
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Check a signed record offline; exit 0 only if it is valid, approved and matches.
    Verify(VerifyArgs),
    /// The audit chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Policy tooling.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Let someone vote for you until a time (while you are away).
    Delegate(delegate::DelegateArgs),
    /// Delegations you gave or received (an admin sees all); `revoke ID` ends one.
    Delegations {
        #[command(subcommand)]
        command: Option<delegate::DelegationsCommand>,
    },
    /// Server administration (admins only).
    Admin {
        #[command(subcommand)]
        command: delegate::AdminCommand,
    },
    /// Token helpers.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The server's signing key file.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Copy a stopped deployment into another, empty database (SQLite to PostgreSQL):
    /// every table, in one transaction, counts compared.
    MigrateData(migrate_data::MigrateDataArgs),
}

/// What `gate verify` checks; every flag given must match the record.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The record file (DSSE envelope).
    #[arg(required_unless_present = "bundle")]
    pub record: Option<PathBuf>,
    /// Public key: a PEM or key file, or an https URL such as SERVER/api/v1/keys. With
    /// `--bundle`, the key(s) the bundle must be signed with instead of its own keys.json.
    #[arg(long, env = "GATE_SERVER_KEY", required_unless_present = "bundle")]
    pub key: Option<String>,
    /// Check an evidence bundle from `gate audit bundle` instead, offline: every record's
    /// signature, its place in the bundled log checkpoint, and the report against the records.
    #[arg(long, value_name = "FILE", conflicts_with = "record")]
    pub bundle: Option<PathBuf>,
    /// The commit the record must be for.
    #[arg(long)]
    pub commit: Option<String>,
    /// An artifact digest (sha256:HEX) the record must cover; repeatable.
    #[arg(long = "artifact")]
    pub artifacts: Vec<String>,
    /// The environment the approval must be for.
    #[arg(long, value_name = "E")]
    pub environment: Option<String>,
    /// The repository the approval must be for (a glob such as acme/*).
    #[arg(long, value_name = "GLOB")]
    pub repository: Option<String>,
    /// The ref the approval must be for (a glob such as refs/heads/release/*).
    #[arg(long = "ref", value_name = "GLOB")]
    pub git_ref: Option<String>,
    /// The policy rule that must have decided.
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// At least this many people approved (automatic policy approvals do not count).
    #[arg(long, value_name = "N")]
    pub min_approvals: Option<u32>,
    /// The decision is at most this old (e.g. 30m, 1h).
    #[arg(long, value_name = "DUR", value_parser = parse_dur)]
    pub max_age: Option<crate::core::duration::Dur>,
    /// An admission policy (YAML): constraints per environment; the record's
    /// environment must be listed.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// A witness verifier key (or a file holding one): the record's log checkpoint must
    /// be cosigned by it; repeatable.
    #[arg(long = "witness-key", value_name = "VKEY")]
    pub witness_keys: Vec<String>,
    /// Where to fetch a later cosigned checkpoint when the record's own is not yet
    /// cosigned (default: the server the record names).
    #[arg(long, value_name = "URL")]
    pub log_server: Option<String>,
}

fn parse_dur(s: &str) -> Result<crate::core::duration::Dur, crate::core::duration::DurationError> {
    crate::core::duration::Dur::parse(s)
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a new signing key; the old ones stay published for verification. Offline:
    /// restart the server afterwards.
    Rotate(key::KeyFileArgs),
    /// Make a key file where there is none (a new signing identity).
    Init(key::KeyFileArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole audit log here: every event's hash, link and signature, the
    /// transparency log's tree against its signed checkpoint, and each request row against
    /// its events. Names the first thing that does not hold.
    Verify {
        /// The server's public key(s) (PEM, key file, or SERVER/api/v1/keys); by default
        /// the server's own, which a pinned key is safer than.
        #[arg(long, env = "GATE_SERVER_KEY")]
        key: Option<String>,
        /// A checkpoint kept earlier (from `--save-checkpoint`, a witness or a SIEM): the
        /// log must be an append-only extension of it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// A witness verifier key (or file) the latest checkpoint must be cosigned by; repeatable.
        #[arg(long = "witness-key")]
        witness_keys: Vec<String>,
        /// Save the latest checkpoint here when everything verified.
        #[arg(long)]
        save_checkpoint: Option<PathBuf>,
        /// Check a file from `gate audit export` instead of a server: offline, against
        /// `--key` and `--checkpoint`.
        #[arg(long, value_name = "FILE", requires_all = ["key", "checkpoint"])]
        export: Option<PathBuf>,
    },
    /// Print every audit event as JSON lines.
    Export,
    /// The change report: every request decided in a period (auditors and admins).
    Report(reports::ReportArgs),
    /// An evidence bundle (tar.gz) of a period: the report, every signed record, the
    /// log checkpoint with each record's inclusion proof, the keys, and a README.
    Bundle(reports::BundleArgs),
    /// Witness the server's transparency log: check that its checkpoint extends the one
    /// this witness cosigned last, refuse a fork loudly, and post a cosignature.
    Witness {
        /// The jitgate server to witness.
        #[arg(long, required_unless_present = "generate_key")]
        server: Option<String>,
        /// The witness's private key file.
        #[arg(long, required_unless_present = "generate_key")]
        key: Option<PathBuf>,
        /// Where the witness keeps the last checkpoint it cosigned.
        #[arg(long, required_unless_present = "generate_key")]
        state: Option<PathBuf>,
        /// The log's verifier key (`origin+id+key`); by default the one saved in the
        /// state file, or on the first run the server's.
        #[arg(long)]
        log_key: Option<String>,
        /// Keep witnessing, once every DUR (e.g. `5m`); without it, once (for cron).
        #[arg(long)]
        every: Option<String>,
        /// Make a witness key in FILE and print its verifier key for `log.witnesses`.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["server", "key", "state"])]
        generate_key: Option<PathBuf>,
        /// The witness's name (with --generate-key), e.g. `witness.example.com/security`.
        #[arg(long, requires = "generate_key")]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file.
    Check {
        file: PathBuf,
        /// Also check group members against this server config's users.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show which rule a request context matches, and why the others do not.
    Explain {
        file: PathBuf,
        /// Path of a JSON file holding a request context (the `context` object of the API).
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
    },
    /// Run policy test fixtures (YAML) offline: every *.yaml and *.yml under DIR.
    Test {
        /// A directory of fixture files (searched recursively), or one fixture file.
        dir: PathBuf,
        /// The policy for fixtures that name no `policy:` of their own.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Replay the real requests of a period through a new policy (auditors and admins, or
    /// an export file) and print each whose rule, approvers or outcome would change.
    /// Nothing is written.
    Simulate(simulate::SimulateArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Read a token on stdin; print the token_sha256 value for gate.yaml.
    Hash,
    /// Make a random token and print it with its hash.
    New,
}

/// Parses the process arguments, runs, and returns the exit code.
pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let cli = match without_empty_env(Cli::command())
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            // Argument errors are usage errors; `--help` and `--version` succeed.
            let exit = if e.use_stderr() {
                Exit::CouldNotDecide
            } else {
                Exit::Success
            };
            let _ = e.print();
            return exit.into();
        }
    };
    init_tracing(matches!(cli.command, Command::Serve(_)));
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gate: cannot start the runtime: {e}");
            return Exit::CouldNotDecide.into();
        }
    };
    match rt.block_on(run(cli)) {
        Ok(exit) => exit.into(),
        Err(f) => {
            eprintln!("gate: {f}");
            f.exit.into()
        }
    }
}

/// An environment variable that is set but empty counts as unset: CI systems hand empty
/// inputs and variables over as empty strings, and `GATE_TIMEOUT=""` means "no timeout
/// given", not "an invalid timeout".
pub fn without_empty_env(cmd: clap::Command) -> clap::Command {
    let cmd = cmd.mut_args(|a| match a.get_env() {
        Some(k) if std::env::var_os(k).is_some_and(|v| v.is_empty()) => a.env(None),
        _ => a,
    });
    cmd.mut_subcommands(without_empty_env)
}

/// Logs to stderr, filtered by `GATE_LOG`; `GATE_LOG_FORMAT=json` writes one JSON object
/// per line (with the current span's fields, such as the request id) instead of text.
fn init_tracing(server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let format = std::env::var("GATE_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format.trim() {
        "json" => builder.json().with_current_span(true).with_span_list(false).try_init(),
        _ => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    if !matches!(format.trim(), "" | "text" | "json") {
        tracing::warn!("GATE_LOG_FORMAT: `{format}` is not `text` or `json`; logging text");
    }
}

pub async fn run(cli: Cli) -> Outcome {
    let ctx = Ctx {
        server: cli.server.clone(),
        token: cli.token.clone(),
        output: cli.output,
    };
    match cli.command {
        Command::Serve(a) => serve::run(a).await,
        Command::Request(a) => request::run(&ctx, *a).await,
        Command::Consume(a) => request::consume(&ctx, *a).await,
        Command::Approve { id, reason, for_whom } => approver::vote(&ctx, &id, true, reason, for_whom).await,
        Command::Deny { id, reason, for_whom } => approver::vote(&ctx, &id, false, Some(reason), for_whom).await,
        Command::Delegate(a) => delegate::delegate(&ctx, a).await,
        Command::Delegations { command } => delegate::delegations(&ctx, command).await,
        Command::Admin { command } => delegate::admin(&ctx, command).await,
        Command::Pending { quiet } => approver::pending(&ctx, quiet).await,
        Command::Show { id } => approver::show(&ctx, &id).await,
        Command::Cancel { id, reason } => approver::cancel(&ctx, &id, reason).await,
        Command::Verify(a) => tools::verify(&ctx, a).await,
        Command::Audit {
            command:
                AuditCommand::Verify {
                    key,
                    checkpoint,
                    witness_keys,
                    save_checkpoint,
                    export,
                },
        } => {
            audit::verify(
                &ctx,
                audit::VerifyArgs {
                    key,
                    checkpoint,
                    witness_keys,
                    save_checkpoint,
                    export,
                },
            )
            .await
        }
        Command::Audit {
            command:
                AuditCommand::Witness {
                    server,
                    key,
                    state,
                    log_key,
                    every,
                    generate_key,
                    name,
                },
        } => match (generate_key, server, key, state) {
            (Some(file), ..) => audit::generate_key(&file, name.as_deref().unwrap_or("jitgate-witness")),
            (None, Some(server), Some(key), Some(state)) => {
                let every = every
                    .map(|e| match crate::core::duration::Dur::parse(&e) {
                        Ok(d) if d.millis() > 0 => Ok(d.as_std()),
                        Ok(_) => Err(Failure::usage(format!("--every {e}: must be longer than zero"))),
                        Err(err) => Err(Failure::usage(format!("--every {e}: {err}"))),
                    })
                    .transpose()?;
                audit::witness(
                    &ctx,
                    audit::WitnessArgs {
                        server,
                        key,
                        state,
                        log_key,
                        every,
                    },
                )
                .await
            }
            _ => Err(Failure::usage(
                "give --server, --key and --state (or --generate-key FILE)",
            )),
        },
        Command::Audit {
            command: AuditCommand::Export,
        } => tools::audit_export(&ctx).await,
        Command::Audit {
            command: AuditCommand::Report(a),
        } => reports::report(&ctx, &a).await,
        Command::Audit {
            command: AuditCommand::Bundle(a),
        } => reports::bundle(&ctx, &a).await,
        Command::Policy {
            command: PolicyCommand::Check { file, config },
        } => tools::policy_check(&ctx, &file, config.as_deref()),
        Command::Policy {
            command: PolicyCommand::Explain { file, request },
        } => tools::policy_explain(&ctx, &file, &request),
        Command::Policy {
            command: PolicyCommand::Test { dir, policy },
        } => policy_test::run(&ctx, &dir, policy.as_deref()),
        Command::Policy {
            command: PolicyCommand::Simulate(a),
        } => simulate::run(&ctx, &a).await,
        Command::Token {
            command: TokenCommand::Hash,
        } => tools::token_hash(),
        Command::Token {
            command: TokenCommand::New,
        } => tools::token_new(&ctx),
        Command::Key {
            command: KeyCommand::Rotate(a),
        } => key::rotate(&ctx, &a),
        Command::Key {
            command: KeyCommand::Init(a),
        } => key::init(&ctx, &a),
        Command::MigrateData(a) => migrate_data::run(&ctx, &a).await,
    }
}

/// What every command that talks to a server needs.
pub struct Ctx {
    pub server: String,
    pub token: Option<String>,
    pub output: Output,
}

impl Ctx {
    pub fn client(&self) -> Result<crate::client::Client, Failure> {
        if self.token.as_deref().is_none_or(str::is_empty) {
            return Err(Failure::usage("no token: pass --token or set GATE_TOKEN"));
        }
        Ok(crate::client::Client::new(&self.server, self.token.clone())?)
    }

    pub fn json(&self) -> bool {
        self.output == Output::Json
    }
}

/// Prints a JSON value on one line.
pub fn print_json<T: serde::Serialize>(v: &T) {
    outln!("{}", serde_json::to_string(v).unwrap_or_else(|_| "null".into()));
}
