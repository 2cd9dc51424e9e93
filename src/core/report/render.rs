//! The report's three forms: JSON (the [`Report`] itself), CSV (RFC 4180 via the `csv`
//! crate: a header row, every field quoted, CRLF line ends, cells that a spreadsheet
//! would run as a formula prefixed with `'`), and HTML printable on A4 (askama, so every
//! value is escaped; no script, the stylesheet inline so the file stands alone).

use askama::Template;

use super::{Report, Row};

/// The CSV header, in column order (docs/auditors.md explains each).
pub const CSV_COLUMNS: [&str; 22] = [
    "request_id",
    "environment",
    "repository",
    "ref",
    "commit",
    "artifacts",
    "requesters",
    "verified_by",
    "votes",
    "separation_of_duties",
    "rule",
    "policy_digest",
    "opened_at",
    "decided_at",
    "time_to_decision_s",
    "outcome",
    "decided_how",
    "decided_by",
    "reason",
    "record_digest",
    "break_glass",
    "review_of",
];

/// A cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, or a tab or CR
/// before one) gets a leading `'`, which spreadsheets show as text (OWASP's advice on
/// CSV injection).
pub fn defuse(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

/// `12.345`: seconds with milliseconds.
pub fn seconds(ms: i64) -> String {
    format!(
        "{}{}.{:03}",
        if ms < 0 { "-" } else { "" },
        ms.abs() / 1000,
        ms.abs() % 1000
    )
}

/// `dave (asserted: context.actor)`, `;`-separated.
pub fn requesters_text(r: &Row) -> String {
    r.requesters
        .iter()
        .map(|q| {
            if q.from.is_empty() {
                format!("{} ({})", q.identity, q.source)
            } else {
                format!("{} ({}: {})", q.identity, q.source, q.from)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `alice approve at 2026-10-02T10:00:00Z via token`, `bob for carol …`, `;`-separated.
pub fn votes_text(r: &Row) -> String {
    r.votes
        .iter()
        .map(|v| {
            let who = match &v.on_behalf_of {
                Some(o) => format!("{} for {o}", v.voter),
                None => v.voter.clone(),
            };
            format!("{who} {} at {} via {}", v.decision, v.at, v.via)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `by erin, incident INC-7: the API is down; review req_… approved`; empty for a change
/// not approved by break-glass.
pub fn break_glass_text(r: &Row) -> String {
    r.break_glass
        .as_ref()
        .map(|b| {
            format!(
                "by {}, incident {}: {}; review {} {}",
                b.by, b.incident, b.reason, b.review_id, b.review
            )
        })
        .unwrap_or_default()
}

/// `held: …` or `VIOLATED: …`.
pub fn separation_text(r: &Row) -> String {
    let s = &r.separation_of_duties;
    format!("{}: {}", if s.held { "held" } else { "VIOLATED" }, s.detail)
}

fn cells(r: &Row) -> [String; 22] {
    [
        r.request_id.clone(),
        r.environment.clone(),
        r.repository.clone(),
        r.git_ref.clone(),
        r.commit.clone(),
        r.artifacts.join(" "),
        requesters_text(r),
        r.verified_by.clone().unwrap_or_default(),
        votes_text(r),
        separation_text(r),
        r.rule.clone(),
        r.policy_digest.clone(),
        r.opened_at.clone(),
        r.decided_at.clone(),
        seconds(r.time_to_decision_ms),
        r.outcome.clone(),
        r.decided_how.clone(),
        r.decided_by.clone().unwrap_or_default(),
        r.reason.clone().unwrap_or_default(),
        r.record_digest.clone(),
        break_glass_text(r),
        r.review_of.clone().unwrap_or_default(),
    ]
}

/// The rows as RFC 4180 CSV.
pub fn csv(report: &Report) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    // Writing to memory cannot fail; an error here would be a bug in the csv crate.
    let _ = w.write_record(CSV_COLUMNS);
    for r in &report.rows {
        let _ = w.write_record(cells(r).iter().map(|c| defuse(c)));
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

#[derive(Template)]
#[template(path = "report_print.html")]
struct Print<'a> {
    r: &'a Report,
}

/// The report as a standalone HTML page, printable on A4.
pub fn html(report: &Report) -> String {
    Print { r: report }
        .render()
        .unwrap_or_else(|e| format!("<!doctype html><title>report</title><p>the report could not be rendered: {e}</p>"))
}

impl Row {
    pub fn requesters_text(&self) -> String {
        requesters_text(self)
    }
    pub fn votes_text(&self) -> String {
        votes_text(self)
    }
    pub fn separation_text(&self) -> String {
        separation_text(self)
    }
    pub fn time_s(&self) -> String {
        seconds(self.time_to_decision_ms)
    }
}

impl super::Summary {
    /// The median time to decision for the page, or `-` when there were no changes.
    pub fn median_s(&self) -> String {
        self.median_time_to_decision_ms
            .map(seconds)
            .unwrap_or_else(|| "-".into())
    }
    pub fn p90_s(&self) -> String {
        self.p90_time_to_decision_ms.map(seconds).unwrap_or_else(|| "-".into())
    }
}
