//! `gate serve` and `gate serve --demo`.

use std::path::PathBuf;

use clap::Args;

use super::{Exit, Failure, Outcome};
use crate::config::{Config, Pipeline, User};
use crate::serve::{self as server, Settings};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Server config file.
    #[arg(long, env = "GATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "GATE_LISTEN")]
    pub listen: Option<String>,
    /// postgres://… for PostgreSQL; default SQLite in the data dir.
    #[arg(long, env = "GATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Policy file.
    #[arg(long, env = "GATE_POLICY")]
    pub policy: Option<PathBuf>,
    /// Where SQLite and the signing key live.
    #[arg(long, env = "GATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The URL people reach this server at (for approval links).
    #[arg(long, env = "GATE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Ed25519 signing key file (made on the first start of a new database).
    #[arg(long, env = "GATE_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Run with a demo config and policy, print tokens, and show a request being approved.
    #[arg(long)]
    pub demo: bool,
}

pub(super) const DEMO_POLICY: &str = r#"# jitgate demo policy
version: 1
groups:
  sre: [alice, bob, carol]
  security: [carol]
rules:
  - name: staging deploys go through
    match: { environment: staging }
    decision: approve
  - name: production needs two SREs
    match: { environment: production }
    require:
      - { group: sre, count: 2 }
    timeout: 4h
    approval_ttl: 15m
  - name: everything else is refused
    decision: deny
"#;

pub async fn run(a: ServeArgs) -> Outcome {
    let mut config = match &a.config {
        Some(p) => Config::load(p).map_err(|e| Failure::usage(e.to_string()))?,
        None => Config::default(),
    };
    let data_dir = data_dir(a.data_dir.as_ref(), &config);
    let mut demo_tokens = Vec::new();
    let mut policy = a.policy.clone().or(config.policy.clone());
    if a.demo {
        let dir = data_dir.join("demo");
        std::fs::create_dir_all(&dir).map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
        let pfile = dir.join("policy.yaml");
        std::fs::write(&pfile, DEMO_POLICY).map_err(|e| Failure::usage(format!("{}: {e}", pfile.display())))?;
        policy = Some(pfile);
        config.users.clear();
        config.pipelines.clear();
        for (name, gh) in [
            ("alice", "alice-gh"),
            ("bob", "bob-gh"),
            ("carol", "carol-gh"),
            ("dave", "dave-gh"),
        ] {
            let t = crate::auth::new_token(name);
            config.users.push(User {
                name: name.into(),
                token_sha256: Some(crate::auth::hash_token(&t)),
                github: Some(gh.into()),
                ..Default::default()
            });
            demo_tokens.push((name.to_string(), t));
        }
        let t = crate::auth::new_token("pipeline");
        config.pipelines.push(Pipeline {
            name: "demo-pipeline".into(),
            token_sha256: crate::auth::hash_token(&t),
            allow: None,
        });
        demo_tokens.push(("demo-pipeline".into(), t));
    }
    let policy = policy
        .ok_or_else(|| Failure::usage("no policy: pass --policy FILE, set `policy:` in gate.yaml, or try --demo"))?;
    let listen = a
        .listen
        .clone()
        .or(config.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let database_url = a
        .database_url
        .clone()
        .or(config.database_url.clone())
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("gate.db").display()));
    let signing_key = signing_key(a.signing_key.as_ref(), &config, &data_dir);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Failure::usage(e.to_string()))?;
    let public_url = a
        .public_url
        .clone()
        .or(config.public_url.clone())
        .unwrap_or_else(|| format!("http://{addr}"));
    let settings = Settings {
        config,
        config_path: if a.demo { None } else { a.config.clone() },
        policy,
        database_url,
        data_dir,
        signing_key,
        public_url: public_url.clone(),
    };
    let server = server::build(&settings)
        .await
        .map_err(|e| Failure::usage(format!("{e:#}")))?;
    let stop = shutdown_signal();
    // Tests and scripts read this line to learn the port.
    outln!("jitgate listening on http://{addr}");
    if a.demo {
        let base = format!("http://{addr}");
        let env = settings.data_dir.join("demo").join("env");
        write_demo_env(&env, &base, &demo_tokens)?;
        let demo = demo_walkthrough(base.clone(), demo_tokens.clone(), env.display().to_string());
        tokio::spawn(async move {
            if let Err(e) = demo.await {
                eprintln!("demo walk-through failed: {e}");
            }
        });
    }
    server::serve(listener, server, stop)
        .await
        .map_err(|e| Failure::usage(format!("{e:#}")))?;
    Ok(Exit::Success)
}

/// Writes the demo's server and tokens as shell `export` lines (`NAME_TOKEN`), readable
/// by the owner only, so the quickstart's commands run as written after `. gate-data/demo/env`.
fn write_demo_env(path: &std::path::Path, base: &str, tokens: &[(String, String)]) -> Result<(), Failure> {
    let mut text = format!("export GATE_SERVER={base}\n");
    for (name, token) in tokens {
        let var = if name == "demo-pipeline" {
            "PIPELINE".to_string()
        } else {
            name.to_uppercase()
        };
        text.push_str(&format!("export {var}_TOKEN={token}\n"));
    }
    let fail = |e: std::io::Error| Failure::usage(format!("{}: {e}", path.display()));
    crate::store::keyfile::write_private(path, &text).map_err(fail)
}

/// The data dir: the flag, else gate.yaml's `data_dir`, else `gate-data`.
pub(super) fn data_dir(flag: Option<&PathBuf>, config: &Config) -> PathBuf {
    flag.or(config.data_dir.as_ref())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("gate-data"))
}

/// The signing key file: the flag, else gate.yaml's `signing_key`, else in the data dir.
pub(super) fn signing_key(flag: Option<&PathBuf>, config: &Config, data_dir: &std::path::Path) -> PathBuf {
    flag.or(config.signing_key.as_ref())
        .cloned()
        .unwrap_or_else(|| data_dir.join("signing-key"))
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when first polled, so a signal that arrives right after start-up is not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut t), Ok(mut i)) => {
                    tokio::select! {
                        _ = t.recv() => {}
                        _ = i.recv() => {}
                    }
                }
                _ => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Opens a production request as the demo pipeline (dave is the actor), has alice and bob
/// approve it, uses it and verifies its record; then prints the lines to do it by hand.
async fn demo_walkthrough(base: String, tokens: Vec<(String, String)>, env_file: String) -> anyhow::Result<()> {
    use crate::client::Client;
    use crate::core::api::{Context, CreateRequest};
    let tok = |n: &str| tokens.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone());
    let pipeline = Client::new(&base, tok("demo-pipeline"))?;
    let body = CreateRequest {
        context: Context {
            platform: "generic".into(),
            repository: "acme/web".into(),
            git_ref: "refs/heads/main".into(),
            commit: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
            actor: "dave".into(),
            environment: "production".into(),
            action: "deploy".into(),
            ..Default::default()
        },
        summary: "demo: deploy web 1.2.3".into(),
        ..Default::default()
    };
    let (r, _) = pipeline.create(&body).await?;
    outln!(
        "\n== demo: dave's pipeline opened {} ({}), rule `{}`, needs {}",
        r.id,
        r.status,
        r.rule,
        r.needs()
    );
    let refused = Client::new(&base, tok("dave"))?.approve(&r.id, None).await;
    if let Err(e) = refused {
        outln!("== demo: dave tries to approve his own request: refused ({e})");
    }
    Client::new(&base, tok("alice"))?
        .approve(&r.id, Some("change CHG-1 reviewed".into()))
        .await?;
    let v = Client::new(&base, tok("bob"))?
        .approve(&r.id, Some("looks good".into()))
        .await?;
    outln!("== demo: alice and bob approved: {} is {}", v.id, v.status);
    let used = pipeline.consume(&r.id).await?;
    let env = pipeline.record(&r.id).await?;
    let keys = crate::core::audit::record::parse_public_keys(&serde_json::to_string(&pipeline.keys().await?)?)
        .map_err(anyhow::Error::msg)?;
    let ok = crate::core::audit::record::verify(&env, &keys, &Default::default()).map_err(anyhow::Error::msg)?;
    outln!(
        "== demo: the pipeline used the approval ({}) and verified its signed record (key {})",
        used.status,
        ok.keyid
    );
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "gate".into());
    outln!("\nTry it yourself in another terminal:\n");
    outln!("  export GATE_SERVER={base}");
    outln!(
        "  GATE_TOKEN={} {exe} request --environment production --repository acme/web --commit 4b825dc642cb6eb9a060e54bf8d69288fbee4904 --actor dave --summary 'deploy web 1.2.4'",
        tok("demo-pipeline").unwrap_or_default()
    );
    outln!("  GATE_TOKEN={} {exe} pending", tok("alice").unwrap_or_default());
    outln!(
        "  GATE_TOKEN={} {exe} approve <ID> --reason 'ok'",
        tok("alice").unwrap_or_default()
    );
    outln!(
        "  GATE_TOKEN={} {exe} approve <ID> --reason 'ok'",
        tok("bob").unwrap_or_default()
    );
    outln!("\nOr load the server and the tokens (PIPELINE_TOKEN, ALICE_TOKEN, ...) into your shell: . {env_file}");
    outln!("\nOr approve in the browser: open {base}/login and sign in with alice's or bob's token.");
    outln!("\nApprover tokens: alice, bob, carol (sre), dave (the requester here):");
    for (n, t) in &tokens {
        outln!("  {n:<14} {t}");
    }
    Ok(())
}
