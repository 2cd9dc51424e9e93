//! Break-glass in the change report: what a record says about it, and each break-glass
//! change's review state as the report's own rows show it (so a bundle recomputes it).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Row;

/// A change approved by break-glass, as its record says, with its review's state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BreakGlassRow {
    pub by: String,
    pub reason: String,
    pub incident: String,
    pub review_id: String,
    /// `approved` or `denied` when the review's record is in this report; `open` when it
    /// is not (still pending, or decided outside the period).
    pub review: String,
}

/// One break-glass change of the summary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BreakGlassChange {
    pub request_id: String,
    pub environment: String,
    pub by: String,
    pub incident: String,
    pub review_id: String,
    pub review: String,
}

/// The record's break-glass (on a change) and what it reviews (on a review).
pub(super) fn of(predicate: &Value) -> (Option<BreakGlassRow>, Option<String>) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let bg = &predicate["break_glass"];
    let row = bg.is_object().then(|| BreakGlassRow {
        by: s(&bg["by"]),
        reason: s(&bg["reason"]),
        incident: s(&bg["incident"]),
        review_id: s(&bg["review_id"]),
        review: "open".into(),
    });
    (row, predicate["request"]["review_of"].as_str().map(str::to_string))
}

/// Fills each break-glass row's review state from the review rows among `rows`.
pub(super) fn link_reviews(rows: &mut [Row]) {
    let outcomes: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| r.review_of.as_ref().map(|of| (of.clone(), r.outcome.clone())))
        .collect();
    for r in rows.iter_mut() {
        let id = r.request_id.clone();
        if let Some(bg) = r.break_glass.as_mut() {
            bg.review = outcomes
                .iter()
                .find(|(of, _)| *of == id)
                .map_or("open".to_string(), |(_, o)| o.clone());
        }
    }
}

/// The summary's list of break-glass changes.
pub(super) fn changes(rows: &[Row]) -> Vec<BreakGlassChange> {
    rows.iter()
        .filter_map(|r| {
            r.break_glass.as_ref().map(|b| BreakGlassChange {
                request_id: r.request_id.clone(),
                environment: r.environment.clone(),
                by: b.by.clone(),
                incident: b.incident.clone(),
                review_id: b.review_id.clone(),
                review: b.review.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_says_break_glass_and_review() {
        let p = json!({"break_glass": {"by": "carol", "reason": "db down", "incident": "INC-1", "review_id": "r2"}, "request": {}});
        let (bg, reviewed) = of(&p);
        let bg = bg.unwrap();
        assert_eq!((bg.by.as_str(), bg.review.as_str(), reviewed), ("carol", "open", None));
        let (bg, reviewed) = of(&json!({"request": {"kind": "review", "review_of": "r1"}}));
        assert_eq!((bg, reviewed.as_deref()), (None, Some("r1")));
    }
}
