//! The error codes the API documents are the ones it has: docs/api.md's table and the
//! OpenAPI document's `Error` schema each list every `ErrorCode` once, and nothing else.

use std::collections::BTreeSet;

use jitgate::service::error::ErrorCode;

use crate::helpers::TestApp;

fn known() -> BTreeSet<&'static str> {
    ErrorCode::ALL.iter().map(|c| c.as_str()).collect()
}

/// Asserts `listed` names each known code exactly once, saying what is missing or extra.
fn assert_lists_all(what: &str, listed: &[String]) {
    let set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    assert_eq!(set.len(), listed.len(), "{what} lists a code twice: {listed:?}");
    let missing: Vec<_> = known().difference(&set).copied().collect();
    let unknown: Vec<_> = set.difference(&known()).copied().collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "{what} disagrees with ErrorCode::ALL: missing {missing:?}, no such code {unknown:?}"
    );
}

/// The `code` column of the table under docs/api.md's `## Errors` (rows with a status).
fn documented() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let section = doc
        .split("\n## Errors\n")
        .nth(1)
        .expect("docs/api.md has an `## Errors` section");
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|l| {
            let mut cells = l.strip_prefix('|')?.split('|').map(str::trim);
            cells.next()?.parse::<u16>().ok()?;
            Some(cells.next()?.strip_prefix('`')?.strip_suffix('`')?.to_string())
        })
        .collect()
}

#[test]
fn the_api_docs_table_lists_every_error_code() {
    let listed = documented();
    assert!(!listed.is_empty(), "no error-code table found in docs/api.md");
    assert_lists_all("docs/api.md", &listed);
}

#[tokio::test]
async fn the_openapi_error_schema_lists_every_error_code() {
    let app = TestApp::builder().in_process().await;
    let spec = app.http().get("/api/v1/openapi.json").send().await.json().await;
    let codes = &spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"];
    let listed: Vec<String> = codes
        .as_array()
        .expect("the Error schema's `code` has an enum")
        .iter()
        .map(|c| c.as_str().expect("codes are strings").to_string())
        .collect();
    assert_lists_all("the OpenAPI Error schema", &listed);
}
