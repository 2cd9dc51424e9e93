//! Audit events to a SIEM end to end: a real server, real requests and votes (through
//! the API and the `gate` binary), and collectors in the test: TCP and TLS listeners that
//! read syslog frames back (parsed with `syslog_loose`), and a wiremock HEC. Waits are
//! on observable outcomes (a frame read, the outbox's state), bounded by a deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use jitgate::core::api::{NotificationList, NotificationView};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A reason no structured-data writer should let through unescaped.
const HOSTILE: &str = r#"ok"] [evil@1 x="1"] \ done"#;
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Framing {
    Octets,
    Lines,
}

/// A syslog collector: accepts connections (TLS with `tls`) and hands every message it
/// reads, deframed, to the receiver. `close()` drops the connections it holds.
struct Collector {
    rx: mpsc::UnboundedReceiver<String>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Collector {
    fn start(listener: TcpListener, framing: Framing, tls: Option<tokio_rustls::TlsAcceptor>) -> Collector {
        let (tx, rx) = mpsc::unbounded_channel();
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Default::default();
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let (c, a) = (conns.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (tx, tls) = (tx.clone(), tls.clone());
                let task = tokio::spawn(async move {
                    match tls {
                        // A failed handshake (a client that does not trust us) reads nothing.
                        Some(t) => {
                            if let Ok(s) = t.accept(tcp).await {
                                read_frames(s, framing, tx).await
                            }
                        }
                        None => read_frames(tcp, framing, tx).await,
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Collector { rx, conns, accepted }
    }

    async fn next(&mut self, what: &str) -> String {
        tokio::time::timeout(DEADLINE, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no syslog message for {what}"))
            .expect("collector running")
    }

    fn close(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Reads frames (RFC 6587: `LEN SP MSG` or `MSG LF`) until the stream ends.
async fn read_frames(mut s: impl tokio::io::AsyncRead + Unpin, framing: Framing, tx: mpsc::UnboundedSender<String>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        loop {
            let frame = match framing {
                Framing::Lines => buf.iter().position(|b| *b == b'\n').map(|i| {
                    let f = buf[..i].to_vec();
                    buf.drain(..=i);
                    f
                }),
                Framing::Octets => buf.iter().position(|b| *b == b' ').and_then(|sp| {
                    let len: usize = std::str::from_utf8(&buf[..sp]).ok()?.parse().ok()?;
                    (buf.len() >= sp + 1 + len).then(|| {
                        let f = buf[sp + 1..sp + 1 + len].to_vec();
                        buf.drain(..sp + 1 + len);
                        f
                    })
                }),
            };
            match frame {
                Some(f) => {
                    let _ = tx.send(String::from_utf8(f).expect("a UTF-8 frame"));
                }
                None => break,
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The whole audit chain as the server exports it, by `seq`.
async fn chain(s: &TestApp) -> BTreeMap<i64, Value> {
    let text = s
        .http()
        .get("/api/v1/audit/export")
        .bearer(&token(AUDITOR))
        .send()
        .await
        .text()
        .await;
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["seq"].as_i64().unwrap(), v))
        .collect()
}

/// The outbox rows of `channel` once `cond` holds, long-polling the notifications API.
async fn outbox_until(
    s: &TestApp,
    channel: &str,
    what: &str,
    cond: impl Fn(&[NotificationView]) -> bool,
) -> Vec<NotificationView> {
    let http = s.http();
    let deadline = Instant::now() + DEADLINE;
    let mut version: Option<u64> = None;
    loop {
        let mut route = "/notifications?limit=5000".to_string();
        if let Some(v) = version {
            route.push_str(&format!("&version={v}&wait=5"));
        }
        let (status, list) = http.api("GET", &route, &token(AUDITOR), None).await;
        assert_eq!(status, 200, "{route}: {list}");
        let list: NotificationList = serde_json::from_value(list).unwrap();
        let rows: Vec<NotificationView> = list
            .notifications
            .into_iter()
            .filter(|r| r.channel == channel)
            .collect();
        if cond(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {rows:#?}\n{}",
            s.log()
        );
        version = Some(list.version);
    }
}

/// One syslog message parsed and checked against the chain's event: every header
/// field, the structured data (unescaped by the parser), and the MSG after its BOM.
fn check_message(raw: &str, chain: &BTreeMap<i64, Value>, facility: syslog_loose::SyslogFacility) -> Value {
    use syslog_loose::{Protocol, SyslogSeverity, Variant};
    let m = syslog_loose::parse_message_with_year_exact(raw, |_| 2026, Variant::RFC5424)
        .unwrap_or_else(|e| panic!("{e}: {raw}"));
    assert!(matches!(m.protocol, Protocol::RFC5424(1)), "{raw}");
    let body = m
        .msg
        .strip_prefix('\u{feff}')
        .unwrap_or_else(|| panic!("MSG has a BOM: {raw}"));
    let doc: Value = serde_json::from_str(body).unwrap();
    let seq = doc["seq"].as_i64().unwrap();
    let ev = &chain[&seq];
    for k in [
        "seq",
        "at",
        "kind",
        "request_id",
        "actor",
        "data",
        "prev_hash",
        "hash",
        "sig",
    ] {
        assert_eq!(doc[k], ev[k], "{k} of event {seq}");
    }
    assert_eq!(doc["environment"], "production");
    assert_eq!(doc["repository"], "acme/app");
    let kind = ev["kind"].as_str().unwrap();
    assert_eq!(m.facility, Some(facility), "{raw}");
    let severity = match kind {
        "refused" => SyslogSeverity::SEV_WARNING,
        "denied" | "expired" | "canceled" => SyslogSeverity::SEV_NOTICE,
        _ => SyslogSeverity::SEV_INFO,
    };
    assert_eq!(m.severity, Some(severity), "{raw}");
    assert_eq!(m.timestamp.unwrap().timestamp_millis(), ev["at_ms"].as_i64().unwrap());
    assert_eq!(m.hostname, Some("gate-test.example"));
    assert_eq!(m.appname, Some("jitgate"));
    assert!(matches!(m.procid, Some(syslog_loose::ProcId::PID(p)) if p > 0), "{raw}");
    assert_eq!(m.msgid, Some(kind));
    assert_eq!(m.structured_data.len(), 1, "{raw}");
    let sd = &m.structured_data[0];
    assert_eq!(sd.id, "jitgate@32473");
    let params: BTreeMap<String, String> = sd.params().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(params["request_id"], ev["request_id"].as_str().unwrap());
    assert_eq!(params["environment"], "production");
    assert_eq!(params["repository"], "acme/app");
    assert_eq!(params["actor"], ev["actor"].as_str().unwrap());
    assert_eq!(params["seq"], seq.to_string());
    assert_eq!(params["hash"], ev["hash"].as_str().unwrap());
    let why = ev["data"]
        .get("reason")
        .or(ev["data"].get("why"))
        .and_then(Value::as_str);
    assert_eq!(params.get("reason").map(String::as_str), why, "{raw}");
    doc
}

fn syslog_yaml(channels: &[String]) -> String {
    format!(
        "notify:\n  retry_base: 50ms\n  retry_max: 300ms\n  timeout: 5s\n  syslog:\n{}",
        channels.concat()
    )
}

/// Opens a request for erin, has bob approve it with a hostile reason through the
/// `gate` binary, carol try too (refused: it is decided), and the pipeline use it.
async fn a_request_lives(s: &TestApp) -> String {
    let id = s.open_via_api("erin").await.id;
    let out = s.run("bob", &["approve", &id, "--reason", HOSTILE]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(s.client("carol").approve(&id, None).await.is_err());
    s.client("ci").consume(&id).await.unwrap();
    id
}

#[tokio::test]
async fn syslog_gets_every_audit_event_octet_counted_and_newline_framed() {
    for db in backends() {
        let (octets, lines) = (
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        );
        let channels = [
            format!(
                "    - name: all\n      address: {}\n      hostname: gate-test.example\n",
                octets.local_addr().unwrap()
            ),
            format!(
                "    - name: votes\n      address: {}\n      framing: newline\n      facility: local0\n      hostname: gate-test.example\n      events: [vote, refused]\n",
                lines.local_addr().unwrap()
            ),
        ];
        let (mut all, mut votes) = (
            Collector::start(octets, Framing::Octets, None),
            Collector::start(lines, Framing::Lines, None),
        );
        let s = TestApp::builder()
            .backend(db)
            .config_extra(&syslog_yaml(&channels))
            .spawn()
            .await;
        a_request_lives(&s).await;
        let chain = chain(&s).await;
        let kinds: Vec<&str> = chain.values().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["created", "vote", "approved", "refused", "consumed"], "{db:?}");

        let mut got = BTreeMap::new();
        for _ in 0..chain.len() {
            let raw = all.next("every event").await;
            let doc = check_message(&raw, &chain, syslog_loose::SyslogFacility::LOG_AUTHPRIV);
            if doc["kind"] == "vote" {
                // The reason's `"`, `\` and `]` are escaped in the structured data.
                assert!(raw.contains(r#"reason="ok\"\] [evil@1 x=\"1\"\] \\ done""#), "{raw}");
            }
            assert!(got.insert(doc["seq"].as_i64().unwrap(), raw).is_none(), "a duplicate");
        }
        assert_eq!(got.keys().collect::<Vec<_>>(), chain.keys().collect::<Vec<_>>());
        for _ in 0..2 {
            let raw = votes.next("votes and refusals").await;
            let doc = check_message(&raw, &chain, syslog_loose::SyslogFacility::LOG_LOCAL0);
            assert!(["vote", "refused"].contains(&doc["kind"].as_str().unwrap()), "{raw}");
        }
        let rows = outbox_until(&s, "syslog", "every delivery recorded", |rows| {
            rows.len() == chain.len() + 2 && rows.iter().all(|r| r.state == "delivered")
        })
        .await;
        assert!(rows.iter().all(|r| r.attempts == 1), "{rows:#?}");
        assert!(
            rows.iter()
                .any(|r| r.delivery.starts_with("audit:") && r.recipient == "votes")
        );
    }
}

#[tokio::test]
async fn a_collector_down_then_up_gets_every_event_once() {
    // A port with nothing listening: connections are refused until the collector starts.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let channel = format!("    - name: siem\n      address: 127.0.0.1:{port}\n      hostname: gate-test.example\n");
    let s = TestApp::builder().config_extra(&syslog_yaml(&[channel])).spawn().await;
    let id = s.open_via_api("erin").await.id;
    s.client("bob").deny(&id, Some("no ticket".into())).await.unwrap();
    let rows = outbox_until(&s, "syslog", "failed attempts while the collector is down", |rows| {
        rows.len() == 3
            && rows.iter().all(|r| {
                r.state == "pending"
                    && r.attempts >= 2
                    && r.last_error.as_deref().is_some_and(|e| e.contains("connect"))
            })
    })
    .await;
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "{rows:#?}"
    );

    let mut c = Collector::start(
        TcpListener::bind(("127.0.0.1", port)).await.unwrap(),
        Framing::Octets,
        None,
    );
    outbox_until(&s, "syslog", "delivery once the collector is up", |rows| {
        rows.len() == 3 && rows.iter().all(|r| r.state == "delivered")
    })
    .await;
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    let early = chain(&s).await;
    for _ in 0..3 {
        let raw = c.next("the events written during the outage").await;
        let doc = check_message(&raw, &early, syslog_loose::SyslogFacility::LOG_AUTHPRIV);
        *seen.entry(doc["seq"].as_i64().unwrap()).or_default() += 1;
    }
    // The collector drops the connection; the next event finds it closed and reconnects.
    c.close();
    let second = s.open_via_api("erin").await.id;
    let chain = chain(&s).await;
    assert_eq!(chain.len(), 4);
    let raw = c.next("the event after the collector closed").await;
    let doc = check_message(&raw, &chain, syslog_loose::SyslogFacility::LOG_AUTHPRIV);
    *seen.entry(doc["seq"].as_i64().unwrap()).or_default() += 1;
    assert_eq!(c.accepted(), 2, "one connection after the outage, one after the close");
    assert!(c.rx.try_recv().is_err(), "nothing more");
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(seen.values().all(|n| *n == 1), "each event exactly once: {seen:?}");
    let rows = outbox_until(&s, "syslog", "the last delivery", |rows| {
        rows.len() == 4 && rows.iter().all(|r| r.state == "delivered")
    })
    .await;
    assert!(rows.iter().any(|r| r.request_id == second));
}

#[tokio::test]
async fn syslog_over_tls_trusts_the_ca_file_and_nothing_else() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("siem-ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key.into())
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut c = Collector::start(
        listener,
        Framing::Octets,
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))),
    );
    let channels = [
        format!(
            "    - name: trusting\n      address: localhost:{port}\n      tls: true\n      ca_file: {}\n      hostname: gate-test.example\n",
            ca.display()
        ),
        // The system roots alone do not know this certificate.
        format!(
            "    - name: system-roots\n      address: localhost:{port}\n      tls: true\n      events: [created]\n"
        ),
    ];
    let s = TestApp::builder().config_extra(&syslog_yaml(&channels)).spawn().await;
    a_request_lives(&s).await;
    let chain = chain(&s).await;
    let mut seqs = Vec::new();
    for _ in 0..chain.len() {
        let raw = c.next("events over TLS").await;
        seqs.push(
            check_message(&raw, &chain, syslog_loose::SyslogFacility::LOG_AUTHPRIV)["seq"]
                .as_i64()
                .unwrap(),
        );
    }
    seqs.sort();
    assert_eq!(seqs, chain.keys().copied().collect::<Vec<_>>());
    let rows = outbox_until(&s, "syslog", "the untrusted channel failing", |rows| {
        rows.iter()
            .any(|r| r.recipient == "system-roots" && r.attempts >= 2 && r.last_error.is_some())
    })
    .await;
    let bad = rows.iter().find(|r| r.recipient == "system-roots").unwrap();
    assert_eq!(bad.state, "pending");
    let err = bad.last_error.as_deref().unwrap();
    assert!(
        err.contains("TLS") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn hec_posts_each_event_with_its_token_and_retries_a_503() {
    const TOKEN: &str = "hec-token-0123";
    let mock = MockServer::start().await;
    let hec = || {
        Mock::given(method("POST"))
            .and(path("/services/collector/event"))
            .and(header("authorization", format!("Splunk {TOKEN}").as_str()))
    };
    let yaml = format!(
        "notify:\n  retry_base: 50ms\n  retry_max: 300ms\n  hec:\n    - name: splunk\n      url: {}\n      token_env: JITGATE_TEST_HEC_TOKEN\n      sourcetype: jitgate:audit\n      index: security\n      host: gate-test.example\n",
        mock.uri()
    );
    for db in backends() {
        mock.reset().await;
        hec()
            .respond_with(
                ResponseTemplate::new(503).set_body_json(serde_json::json!({"text": "Server is busy", "code": 9})),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&mock)
            .await;
        hec()
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"text": "Success", "code": 0})))
            .with_priority(2)
            .mount(&mock)
            .await;
        let s = TestApp::builder()
            .backend(db)
            .config_extra(&yaml)
            .env("JITGATE_TEST_HEC_TOKEN", TOKEN)
            .spawn()
            .await;
        a_request_lives(&s).await;
        let chain = chain(&s).await;
        let rows = outbox_until(&s, "hec", "every event delivered", |rows| {
            rows.len() == chain.len() && rows.iter().all(|r| r.state == "delivered")
        })
        .await;
        assert_eq!(
            rows.iter().map(|r| r.attempts).sum::<i64>(),
            chain.len() as i64 + 1,
            "one 503 retried"
        );
        let posts = mock.received_requests().await.unwrap();
        assert_eq!(posts.len(), chain.len() + 1, "{db:?}");
        let mut seen = BTreeMap::new();
        for p in &posts {
            assert_eq!(p.headers.get("authorization").unwrap(), &format!("Splunk {TOKEN}"));
            let body: Value = serde_json::from_slice(&p.body).unwrap();
            let ev = &chain[&body["event"]["seq"].as_i64().unwrap()];
            let time = body["time"].as_f64().unwrap();
            assert_eq!((time * 1000.0).round() as i64, ev["at_ms"].as_i64().unwrap());
            assert_eq!(body["host"], "gate-test.example");
            assert_eq!(body["source"], "jitgate");
            assert_eq!(body["sourcetype"], "jitgate:audit");
            assert_eq!(body["index"], "security");
            for k in ["seq", "kind", "actor", "data", "hash", "sig"] {
                assert_eq!(body["event"][k], ev[k], "{k}");
            }
            *seen.entry(ev["seq"].as_i64().unwrap()).or_insert(0) += 1;
        }
        assert_eq!(seen.keys().collect::<Vec<_>>(), chain.keys().collect::<Vec<_>>());
        assert_eq!(
            seen.values().filter(|n| **n == 2).count(),
            1,
            "only the 503'd event twice"
        );
    }
}

/// A `gate serve` with `gate.yaml` = `notify`, and its exit code and stderr.
async fn serve_with(notify: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "version: 1\nrules:\n  - name: all\n    decision: deny\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("gate.yaml"), notify).unwrap();
    let files = crate::support::serve::ServeFiles {
        config: dir.path().join("gate.yaml"),
        policy: dir.path().join("policy.yaml"),
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        database_url: None,
    };
    let out = files
        .command(std::path::Path::new(GATE))
        .env_remove("JITGATE_TEST_SURELY_UNSET_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(out.stdout.is_empty(), "it never listened");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn bad_siem_channels_stop_the_start_with_located_errors() {
    let (code, err) = serve_with(
        "notify:\n  syslog:\n    - name: siem\n      address: siem.example:514\n      events: [vote, voted]\n",
    )
    .await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("gate.yaml:5:") && err.contains("`voted` is not an audit event kind (known: all, created, vote"),
        "{err}"
    );
    let (code, err) = serve_with("notify:\n  syslog:\n    - name: siem\n      address: siem.example\n").await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("gate.yaml:4:") && err.contains("address `siem.example` is not `host:port`"),
        "{err}"
    );
    let (code, err) = serve_with(
        "notify:\n  hec:\n    - name: splunk\n      url: https://splunk.example:8088\n      token_env: JITGATE_TEST_SURELY_UNSET_TOKEN\n",
    )
    .await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("hec `splunk` token_env: environment variable `JITGATE_TEST_SURELY_UNSET_TOKEN` is not set"),
        "{err}"
    );
    let (code, err) =
        serve_with("notify:\n  syslog:\n    - name: siem\n      address: siem.example:6514\n      tls: true\n      ca_file: /nonexistent/ca.pem\n").await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("syslog `siem` TLS: ca_file /nonexistent/ca.pem"), "{err}");
}

/// docs/notifications.md's table of audit event kinds is `core::audit::KINDS`, and every
/// kind the source writes as a literal is in it (the store also checks each appended
/// event in debug builds, so a test writing an unlisted kind fails).
#[test]
fn every_audit_kind_is_listed_in_code_and_docs() {
    let kinds: Vec<String> = jitgate::core::audit::KINDS.iter().map(|k| k.to_string()).collect();
    let docs = std::fs::read_to_string(format!("{}/docs/notifications.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let start = docs.find("### Audit event kinds").expect("the section");
    let listed: Vec<String> = docs[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| kind"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('`').nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        listed, kinds,
        "docs/notifications.md \"Audit event kinds\" vs core::audit::KINDS"
    );
    // The section's example configuration is one the server takes.
    let section = &docs[docs.find("## Audit events to a SIEM").unwrap()..];
    let yaml = &section[section.find("```yaml\n").unwrap() + 8..];
    let yaml = &yaml[..yaml.find("```").unwrap()];
    let cfg = jitgate::config::Config::parse("notifications.md", yaml).unwrap_or_else(|e| panic!("{e}"));
    let n = cfg.notify.unwrap();
    assert_eq!((n.syslog.len(), n.hec.len()), (1, 1));

    let mut files = vec![std::path::PathBuf::from(format!("{}/src", env!("CARGO_MANIFEST_DIR")))];
    let mut written = std::collections::BTreeSet::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        for part in text.split("kind: \"").skip(1) {
            let rest = &part[part.find('"').unwrap_or(0)..];
            if rest.starts_with("\".into()") {
                written.insert(part[..part.find('"').unwrap()].to_string());
            }
        }
    }
    assert!(written.len() >= 6, "{written:?}");
    for k in &written {
        assert!(
            kinds.contains(k),
            "audit kind `{k}` is written in src/ but not in core::audit::KINDS"
        );
    }
}
