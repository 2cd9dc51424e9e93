//! The store on every backend: SQLite always, PostgreSQL when GATE_TEST_DATABASE_URL is
//! set (each test in a database of its own).

use crate::helpers::{Db, backends, fresh_pg_database};
use jitgate::core::decide::Status;
use jitgate::store::{AuditDraft, RequestRow, Store, StoreError, VoteRow};

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[1; 32])
}

async fn open(db: Db) -> (Store, String, Option<tempfile::TempDir>) {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
            (
                Store::connect(&url).await.unwrap().with_event_key(key()),
                url,
                Some(dir),
            )
        }
        Db::Postgres => {
            let url = fresh_pg_database().await;
            (Store::connect(&url).await.unwrap().with_event_key(key()), url, None)
        }
    }
}

fn row(id: &str, key: &str) -> RequestRow {
    RequestRow {
        id: id.into(),
        idem_key: key.into(),
        status: Status::Pending,
        version: 1,
        created_at: 1_000,
        expires_at: 5_000,
        approval_expires_at: None,
        decided_at: None,
        consumed_at: None,
        environment: "production".into(),
        repository: "acme/web".into(),
        opened_by: "ci".into(),
        doc: "{}".into(),
    }
}

fn draft(i: i64) -> AuditDraft {
    AuditDraft {
        at: i,
        request_id: "r1".into(),
        kind: "vote".into(),
        actor: format!("user{i}"),
        data: serde_json::json!({"n": i}),
    }
}

#[tokio::test]
async fn migrations_apply_once_and_reopen() {
    for db in backends() {
        let (s, url, _dir) = open(db).await;
        s.close().await;
        // A second start on the same database finds everything in place.
        let s = Store::connect(&url).await.unwrap();
        s.ping().await.unwrap();
        assert!(s.get("nope").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn compare_and_set_and_unique_keys() {
    for db in backends() {
        let (s, _url, _dir) = open(db).await;
        let mut tx = s.begin().await.unwrap();
        tx.insert_request(&row("r1", "k1"), Some(5_000)).await.unwrap();
        tx.commit().await.unwrap();

        let mut next = row("r1", "k1");
        next.version = 2;
        next.status = Status::Approved;
        let mut tx = s.begin().await.unwrap();
        tx.update_request(&next, None).await.unwrap();
        tx.commit().await.unwrap();
        // A writer that read version 1 loses.
        let mut tx = s.begin().await.unwrap();
        let stale = tx.update_request(&next, None).await.unwrap_err();
        assert!(matches!(stale, StoreError::Conflict), "{db:?}: {stale}");
        assert!(stale.is_retryable());
        drop(tx);
        let (got, _) = s.get("r1").await.unwrap().unwrap();
        assert_eq!((got.status.as_str(), got.version), ("approved", 2));

        let mut tx = s.begin().await.unwrap();
        let dup = tx.insert_request(&row("r2", "k1"), None).await.unwrap_err();
        assert!(dup.is_retryable(), "{db:?}: a duplicate key is a lost race: {dup}");
        drop(tx);
        assert_eq!(s.find_by_key("k1").await.unwrap().as_deref(), Some("r1"));

        let mut tx = s.begin().await.unwrap();
        let v = VoteRow {
            voter: "bob".into(),
            approve: true,
            reason: None,
            at: 2,
            via: "token".into(),
            meta: None,
        };
        tx.insert_vote("r1", &v).await.unwrap();
        assert!(tx.insert_vote("r1", &v).await.is_err(), "one person votes once");
        drop(tx);
    }
}

#[tokio::test]
async fn deadlines_are_found() {
    for db in backends() {
        let (s, _url, _dir) = open(db).await;
        let mut tx = s.begin().await.unwrap();
        tx.insert_request(&row("early", "a"), Some(2_000)).await.unwrap();
        tx.insert_request(&row("late", "b"), Some(9_000)).await.unwrap();
        tx.insert_request(&row("done", "c"), None).await.unwrap();
        tx.commit().await.unwrap();
        let (due, next) = s.due(3_000).await.unwrap();
        assert_eq!(due, ["early"]);
        assert_eq!(next, Some(9_000));
    }
}

#[tokio::test]
async fn audit_chain_is_append_only_and_survives_concurrent_writers() {
    for db in backends() {
        let (s, _url, _dir) = open(db).await;
        let mut tasks = Vec::new();
        for i in 0..40 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let r = async {
                        let mut tx = s.begin().await?;
                        tx.append_audit(&draft(i)).await?;
                        tx.commit().await
                    }
                    .await;
                    match r {
                        Ok(()) => return,
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let check = s.verify_chain(vec![key().verifying_key()]).await.unwrap();
        assert!(check.broken.is_none(), "{db:?}: {:?}", check.broken);
        assert_eq!(check.count(), 40);
        // The transparency log holds every event, in chain order, whoever won each race.
        assert_eq!(s.log_size().await.unwrap(), 40, "{db:?}");
        assert_eq!(
            s.log_root(40).await.unwrap(),
            jitgate::core::log::tree::root_of(check.leaves()),
            "{db:?}"
        );
        // Signed by the store's key, and by no other.
        let other = ed25519_dalek::SigningKey::from_bytes(&[2; 32]).verifying_key();
        let wrong = s.verify_chain(vec![other]).await.unwrap();
        assert_eq!(wrong.broken.as_ref().map(|b| b.0), Some(1), "{db:?}");

        let upd = sqlx::query("UPDATE gate_audit SET actor = 'x' WHERE seq = 1")
            .execute(s.pool())
            .await;
        assert!(upd.unwrap_err().to_string().contains("append-only"), "{db:?}");
        let del = sqlx::query("DELETE FROM gate_audit WHERE seq = 1")
            .execute(s.pool())
            .await;
        assert!(del.unwrap_err().to_string().contains("append-only"), "{db:?}");
        if db == Db::Postgres {
            let tr = sqlx::query("TRUNCATE gate_audit").execute(s.pool()).await;
            assert!(tr.unwrap_err().to_string().contains("append-only"));
        }
        assert_eq!(s.verify_chain(vec![key().verifying_key()]).await.unwrap().count(), 40);
    }
}

#[tokio::test]
async fn webhook_deliveries_are_recorded_once() {
    for db in backends() {
        let (store, _url, _dir) = open(db).await;
        assert!(store.add_delivery("github", "d-1", 1).await.unwrap());
        assert!(
            !store.add_delivery("github", "d-1", 2).await.unwrap(),
            "{db:?}: a replay"
        );
        // The same id from the other forge is another delivery.
        assert!(store.add_delivery("gitlab", "d-1", 3).await.unwrap());
        store
            .finish_delivery("github", "d-1", Some("req_1"), "counted")
            .await
            .unwrap();
        assert_eq!(
            store.delivery("github", "d-1").await.unwrap(),
            Some((Some("req_1".into()), Some("counted".into())))
        );
        assert_eq!(store.delivery("github", "d-9").await.unwrap(), None);
    }
}
