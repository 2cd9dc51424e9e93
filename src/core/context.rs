//! Pieces of a request's context that the gate and the server both derive: full ref
//! names and labels.

use std::collections::BTreeMap;

/// `main` of kind `branch` → `refs/heads/main`, of kind `tag` → `refs/tags/main`; a name
/// that is already a full ref, or empty, is kept.
pub fn full_ref(name: &str, kind: &str) -> String {
    if name.is_empty() || name.starts_with("refs/") {
        return name.to_string();
    }
    match kind {
        "tag" => format!("refs/tags/{name}"),
        "branch" => format!("refs/heads/{name}"),
        _ => name.to_string(),
    }
}

/// A label given on the command line that is not `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label `{0}` is not key=value")]
pub struct LabelError(pub String);

/// A request's labels, by key.
pub type Labels = BTreeMap<String, String>;

/// Labels as given on the command line (`k=v`), checked.
pub fn parse_labels(items: &[String]) -> Result<Labels, LabelError> {
    let mut out = BTreeMap::new();
    for i in items {
        let (k, v) = i.split_once('=').ok_or_else(|| LabelError(i.clone()))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}
