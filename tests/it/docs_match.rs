//! The docs name what the binary has: the migrations and tables a fresh database gets
//! (docs/operations.md), and a section of docs/cli.md for every command `gate help` lists.

use sqlx::Connection as _;

use crate::helpers::{GATE, TestApp};

fn doc(name: &str) -> String {
    std::fs::read_to_string(format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The backquoted words of `text`.
fn quoted(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(|q| q.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test]
async fn operations_md_lists_every_migration_and_table() {
    let app = TestApp::spawn().await;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    let applied: Vec<(i64, String)> = sqlx::query_as("SELECT version, name FROM gate_schema ORDER BY version")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let mut tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    tables.sort();
    assert!(applied.len() >= 8 && tables.len() >= 13, "{applied:?} {tables:?}");

    let ops = doc("operations.md");
    let para = |start: &str| {
        let i = ops
            .find(start)
            .unwrap_or_else(|| panic!("docs/operations.md has no {start:?}"));
        let rest = &ops[i..];
        rest[..rest.find("\n\n").unwrap_or(rest.len())].to_string()
    };
    let listed: Vec<String> = quoted(&para("Current migrations:"))
        .into_iter()
        .filter(|q| q.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    let actual: Vec<String> = applied.iter().map(|(v, n)| format!("{v} {n}")).collect();
    assert_eq!(
        listed, actual,
        "docs/operations.md \"Current migrations\" vs gate_schema"
    );
    let mut documented: Vec<String> = quoted(&para("Tables:"))
        .into_iter()
        .filter(|q| q.starts_with("gate_"))
        .collect();
    documented.sort();
    assert_eq!(
        documented, tables,
        "docs/operations.md \"Tables:\" vs the tables of a fresh database"
    );
}

#[test]
fn cli_md_has_a_section_for_every_command() {
    let help = std::process::Command::new(GATE).arg("help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .expect("gate help lists commands")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");
    let cli = doc("cli.md");
    for c in commands {
        assert!(
            cli.lines()
                .any(|l| l.starts_with("## ") && l.contains(&format!("`gate {c}"))),
            "docs/cli.md has no section for `gate {c}` (gate help lists it)"
        );
    }
}
