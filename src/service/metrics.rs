//! Prometheus text metrics, kept in process: HTTP responses by status, time from open
//! to decision, decisions by outcome, and gates waiting right now.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::core::decide::Status;

/// Upper bounds (seconds) of the decision-latency histogram.
const BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 43200.0, 86400.0,
];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    http: BTreeMap<u16, u64>,
    opened: u64,
    decisions: BTreeMap<String, u64>,
    latency_counts: [u64; BUCKETS.len()],
    latency_sum: f64,
    latency_count: u64,
    tampered: u64,
    checkpoints: u64,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn http(&self, status: u16) {
        self.with(|m| *m.http.entry(status).or_default() += 1);
    }

    /// A request whose row disagreed with its signed events was refused.
    pub fn tampered(&self) {
        self.with(|m| m.tampered += 1);
    }

    /// The log signed a checkpoint.
    pub fn checkpoint(&self) {
        self.with(|m| m.checkpoints += 1);
    }

    pub fn opened(&self) {
        self.with(|m| m.opened += 1);
    }

    /// A request left `pending` after `ms` milliseconds.
    pub fn decided(&self, outcome: Status, ms: i64) {
        let secs = ms.max(0) as f64 / 1000.0;
        self.with(|m| {
            *m.decisions.entry(outcome.as_str().to_string()).or_default() += 1;
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    m.latency_counts[i] += 1;
                }
            }
            m.latency_sum += secs;
            m.latency_count += 1;
        });
    }

    pub fn render(&self, waiting: i64) -> String {
        self.with(|m| {
            let mut s = String::new();
            let _ = writeln!(s, "# HELP jitgate_http_responses_total HTTP responses by status code.");
            let _ = writeln!(s, "# TYPE jitgate_http_responses_total counter");
            for (code, n) in &m.http {
                let _ = writeln!(s, "jitgate_http_responses_total{{status=\"{code}\"}} {n}");
            }
            let _ = writeln!(s, "# HELP jitgate_requests_opened_total Approval requests opened.");
            let _ = writeln!(s, "# TYPE jitgate_requests_opened_total counter");
            let _ = writeln!(s, "jitgate_requests_opened_total {}", m.opened);
            let _ = writeln!(
                s,
                "# HELP jitgate_decisions_total Requests that left pending, by outcome."
            );
            let _ = writeln!(s, "# TYPE jitgate_decisions_total counter");
            for (o, n) in &m.decisions {
                let _ = writeln!(s, "jitgate_decisions_total{{outcome=\"{o}\"}} {n}");
            }
            let _ = writeln!(
                s,
                "# HELP jitgate_decision_latency_seconds Time from opening a request to its decision."
            );
            let _ = writeln!(s, "# TYPE jitgate_decision_latency_seconds histogram");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "jitgate_decision_latency_seconds_bucket{{le=\"{b}\"}} {}",
                    m.latency_counts[i]
                );
            }
            let _ = writeln!(
                s,
                "jitgate_decision_latency_seconds_bucket{{le=\"+Inf\"}} {}",
                m.latency_count
            );
            let _ = writeln!(s, "jitgate_decision_latency_seconds_sum {}", m.latency_sum);
            let _ = writeln!(s, "jitgate_decision_latency_seconds_count {}", m.latency_count);
            let _ = writeln!(s, "# HELP jitgate_waiting_gates Gates in a long-wait right now.");
            let _ = writeln!(s, "# TYPE jitgate_waiting_gates gauge");
            let _ = writeln!(s, "jitgate_waiting_gates {waiting}");
            let _ = writeln!(
                s,
                "# HELP jitgate_tampered_total Actions refused because a request's row disagreed with its signed audit events."
            );
            let _ = writeln!(s, "# TYPE jitgate_tampered_total counter");
            let _ = writeln!(s, "jitgate_tampered_total {}", m.tampered);
            let _ = writeln!(s, "# HELP jitgate_log_checkpoints_total Transparency log checkpoints this process signed.");
            let _ = writeln!(s, "# TYPE jitgate_log_checkpoints_total counter");
            let _ = writeln!(s, "jitgate_log_checkpoints_total {}", m.checkpoints);
            s
        })
    }
}
