//! `gate-load release`: what an approval wait costs in runner time, mode by mode, and how
//! soon after an approval the platform holding the job is told.
//!
//! Each round opens one request per mode and approves it after `--decision-delay` (the
//! people deciding):
//!
//! * step mode: a `gate request` process waits the whole time; its lifetime is the runner
//!   time the wait holds;
//! * GitLab, no wait: `gate request --no-wait --gitlab-play deploy --print-id` in a GitLab
//!   job's environment, then, after the approval, `gate consume ID`: the runner time is the
//!   two processes' lifetimes. A fake GitLab (here, on 127.0.0.1) lists the held job and
//!   notes when the play call arrives;
//! * Jenkins, no wait: the same with `--jenkins-input Approve` and the fake Jenkins'
//!   `proceedEmpty`.
//!
//! The release latency runs from sending the approve call to the play or input call
//! arriving at the fake: the approval's commit, the outbox worker's pick-up and the call.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{Method, Response};

use super::*;

const GITLAB_TOKEN_ENV: &str = "GATE_LOAD_GITLAB_TOKEN";
const JENKINS_TOKEN_ENV: &str = "GATE_LOAD_JENKINS_TOKEN";
const COMMIT: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
/// The fake GitLab's id of pipeline P's held job.
const JOB_BASE: u64 = 1_000_000;

/// A fake GitLab and Jenkins on one listener: the calls a release makes, answered as the
/// platforms document them, each arrival noted with its time.
pub(super) struct FakePlatform {
    base: String,
    /// When each play (`gitlab:<pipeline>`) or input answer (`jenkins:<build>`) arrived.
    arrived: Arc<Mutex<HashMap<String, Instant>>>,
    notify: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePlatform {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePlatform {
    pub(super) async fn start() -> Result<FakePlatform> {
        let arrived = Arc::new(Mutex::new(HashMap::new()));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (a, n) = (arrived.clone(), notify.clone());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (a, n) = (a.clone(), n.clone());
            async move { answer(req.method(), req.uri().path(), &a, &n) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakePlatform {
            base,
            arrived,
            notify,
            task,
        })
    }

    /// The server's `forge.gitlab` and `jenkins` sections pointing at the fake.
    pub(super) fn setup(&self) -> Setup {
        Setup {
            yaml: format!(
                "forge:\n  gitlab:\n    api_url: {b}/api/v4\n    token_env: {GITLAB_TOKEN_ENV}\n    requesters: false\njenkins:\n  url: {b}/\n  user: gate-load\n  token_env: {JENKINS_TOKEN_ENV}\n",
                b = self.base
            ),
            env: vec![
                (GITLAB_TOKEN_ENV.into(), "glpat-gate-load".into()),
                (JENKINS_TOKEN_ENV.into(), "jenkins-gate-load".into()),
            ],
        }
    }

    /// When the call `key` arrived, waiting for it up to `within`.
    async fn arrival(&self, key: &str, within: Duration) -> Result<Instant> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Created before the look, so an arrival between the two still wakes it.
            let notified = self.notify.notified();
            if let Some(t) = self.arrived.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
                return Ok(*t);
            }
            tokio::time::timeout_at(deadline, notified)
                .await
                .map_err(|_| anyhow!("no {key} call reached the fake platform within {within:?}"))?;
        }
    }
}

/// GitLab's `GET /projects/:id/pipelines/:pipeline_id/jobs` (the held job `deploy`,
/// manual) and `POST /projects/:id/jobs/:job_id/play`; Jenkins' `POST
/// {BUILD_URL}input/Approve/proceedEmpty`. Anything else is a 404.
fn answer(
    method: &Method,
    path: &str,
    arrived: &Mutex<HashMap<String, Instant>>,
    notify: &tokio::sync::Notify,
) -> Response<Body> {
    let reply = |status: u16, body: Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap_or_default()
    };
    let note = |key: String| {
        arrived
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert_with(Instant::now);
        notify.notify_waiters();
    };
    const PROJECT: &str = "/api/v4/projects/acme%2Fweb/";
    if let Some(rest) = path.strip_prefix(PROJECT) {
        if *method == Method::GET
            && let Some(p) = rest.strip_prefix("pipelines/").and_then(|r| r.strip_suffix("/jobs"))
        {
            let p: u64 = p.parse().unwrap_or(0);
            return reply(
                200,
                json!([{"id": JOB_BASE + p, "name": "deploy", "stage": "deploy", "status": "manual", "when": "manual"}]),
            );
        }
        if *method == Method::POST
            && let Some(j) = rest.strip_prefix("jobs/").and_then(|r| r.strip_suffix("/play"))
        {
            let j: u64 = j.parse().unwrap_or(0);
            note(format!("gitlab:{}", j.saturating_sub(JOB_BASE)));
            return reply(
                200,
                json!({"id": j, "name": "deploy", "stage": "deploy", "status": "pending"}),
            );
        }
    }
    if *method == Method::POST
        && let Some(n) = path
            .strip_prefix("/job/web/")
            .and_then(|r| r.strip_suffix("/input/Approve/proceedEmpty"))
    {
        note(format!("jenkins:{n}"));
        return reply(200, json!({}));
    }
    reply(404, json!({"message": "404 Not found"}))
}

/// A `gate` subcommand as a job of `platform` (`gitlab` pipeline or `jenkins` build `n`)
/// would run it, with the bench pipeline's token.
fn job(gate: &Path, server: &Server, fake: &FakePlatform, platform: &str, n: u64) -> Command {
    let mut cmd = Command::new(gate);
    clean_env(&mut cmd);
    cmd.env("GATE_SERVER", &server.base)
        .env("GATE_TOKEN", &server.pipeline_token)
        .env("GATE_ENVIRONMENT", "production")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match platform {
        "gitlab" => {
            cmd.env("GITLAB_CI", "true")
                .env("CI", "true")
                .env("CI_PROJECT_PATH", "acme/web")
                .env("CI_COMMIT_REF_NAME", "main")
                .env("CI_COMMIT_SHA", COMMIT)
                .env("GITLAB_USER_LOGIN", "erin")
                .env("CI_PIPELINE_ID", n.to_string())
                .env("CI_JOB_ID", (JOB_BASE * 2 + n).to_string())
                .env("CI_JOB_NAME", "gate")
                .env("CI_JOB_URL", format!("https://gitlab.example/acme/web/-/jobs/{n}"));
        }
        _ => {
            cmd.env("JENKINS_URL", format!("{}/", fake.base))
                .env("BUILD_URL", format!("{}/job/web/{n}/", fake.base))
                .env("BUILD_TAG", format!("jenkins-web-{n}"))
                .env("JOB_NAME", "web")
                .env("GIT_COMMIT", COMMIT)
                .env("BUILD_USER_ID", "dave");
        }
    }
    cmd
}

/// Runs `cmd` to its end: its lifetime, and its stdout.
async fn lifetime(mut cmd: Command, what: &str) -> Result<(Duration, String)> {
    let t = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| anyhow!("{what} did not exit within 60 s"))??;
    let took = t.elapsed();
    ensure!(
        out.status.success(),
        "{what} exited with {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// One step-mode wait: the runner time it holds (the process's lifetime).
async fn step_mode(cli: &Cli, gate: &Path, server: &Server, round: usize) -> Result<Duration> {
    let approver = server.approver()?;
    let record = server.dir.join(format!("step-{round}.json"));
    let mut cmd = gate_request(gate, server, &record);
    cmd.stderr(Stdio::null());
    let t = Instant::now();
    let mut child = cmd.spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .map_err(|_| anyhow!("step mode, round {round}: no `opened` line within 60 s"))??
        .ok_or_else(|| anyhow!("step mode, round {round}: `gate request` printed nothing"))?;
    let ev: Value = serde_json::from_str(&first)?;
    let id = ev["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no id in {first}"))?
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    tokio::time::sleep(Duration::from_secs_f64(cli.decision_delay)).await;
    approve_one(&approver, &id, &Stats::default()).await?;
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .map_err(|_| anyhow!("step mode, round {round}: the gate did not exit within 60 s of the approval"))??;
    ensure!(
        status.success(),
        "step mode, round {round}: `gate request` exited with {status}"
    );
    Ok(t.elapsed())
}

/// What one no-wait wait cost: the gate job, the consume step, and the release latency.
struct NoWait {
    gate_job: Duration,
    consume: Duration,
    release: Duration,
}

async fn no_wait(
    cli: &Cli,
    gate: &Path,
    server: &Server,
    fake: &FakePlatform,
    platform: &str,
    n: u64,
) -> Result<NoWait> {
    let approver = server.approver()?;
    let mut open = job(gate, server, fake, platform, n);
    open.args(["request", "--no-wait", "--print-id", "--repository", "acme/web"]);
    match platform {
        "gitlab" => open.args(["--gitlab-play", "deploy"]),
        _ => open.args(["--jenkins-input", "Approve"]),
    };
    let (gate_job, id) = lifetime(open, &format!("{platform} gate job {n}")).await?;
    let id = id.trim().to_string();
    ensure!(
        id.starts_with("req_"),
        "{platform} gate job {n}: stdout is not a request id: {id:?}"
    );
    tokio::time::sleep(Duration::from_secs_f64(cli.decision_delay)).await;
    let sent = Instant::now();
    approve_one(&approver, &id, &Stats::default()).await?;
    let arrived = fake
        .arrival(&format!("{platform}:{n}"), Duration::from_secs(60))
        .await?;
    let mut consume = job(gate, server, fake, platform, n);
    consume
        .args(["consume", &id, "--record-file"])
        .arg(server.dir.join(format!("{platform}-{n}.json")));
    let (consume, _) = lifetime(consume, &format!("{platform} consume {n}")).await?;
    Ok(NoWait {
        gate_job,
        consume,
        release: arrived.saturating_duration_since(sent),
    })
}

/// Seconds, as the runner-seconds figures are given.
fn secs(p: &Percentiles) -> String {
    format!(
        "p50 {:.2} s, p90 {:.2} s, max {:.2} s",
        p.p50 / 1000.0,
        p.p90 / 1000.0,
        p.max / 1000.0
    )
}

pub(super) async fn release(cli: &Cli, gate: &Path, server: &Server, fake: &FakePlatform) -> Result<Value> {
    println!(
        "== release ({}): {} rounds, each a step-mode wait and a no-wait wait on GitLab and on Jenkins, decided {} s after opening",
        server.backend, cli.release_runs, cli.decision_delay
    );
    let mut step = Vec::new();
    let mut modes: Vec<(&str, Vec<NoWait>)> = vec![("gitlab", Vec::new()), ("jenkins", Vec::new())];
    for round in 0..cli.release_runs {
        step.push(step_mode(cli, gate, server, round).await?);
        for (platform, runs) in &mut modes {
            runs.push(no_wait(cli, gate, server, fake, platform, 1000 + round as u64).await?);
        }
    }
    let st = Percentiles::of(&step);
    println!("step mode, runner time held (the whole wait):  {}", secs(&st));
    let mut out = json!({
        "scenario": "release", "backend": server.backend, "rounds": cli.release_runs,
        "decision_delay_s": cli.decision_delay, "step_mode_held": st.json(),
    });
    for (platform, runs) in &modes {
        let gate_job = Percentiles::of(&runs.iter().map(|r| r.gate_job).collect::<Vec<_>>());
        let consume = Percentiles::of(&runs.iter().map(|r| r.consume).collect::<Vec<_>>());
        let held = Percentiles::of(&runs.iter().map(|r| r.gate_job + r.consume).collect::<Vec<_>>());
        let release = Percentiles::of(&runs.iter().map(|r| r.release).collect::<Vec<_>>());
        println!("{platform} no-wait, gate job:                  {}", gate_job.line());
        println!("{platform} no-wait, consume step:              {}", consume.line());
        println!("{platform} no-wait, runner time held (both):   {}", held.line());
        println!("{platform} release (approve sent -> call in):  {}", release.line());
        out[*platform] = json!({
            "gate_job": gate_job.json(), "consume": consume.json(), "held": held.json(), "release": release.json(),
        });
    }
    Ok(out)
}
