//! SQLite on a full disk: the database on a 2 MiB tmpfs, filled up by a filler file while
//! the server runs. Writes fail with 503 `unavailable` naming the full disk (no panic, no
//! hang), reads still answer, the database stays intact, and deleting the filler brings
//! the service back. Needs `mount` (root, as in CI).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::faults::DEADLINE;
use crate::faults_pg::{create_body, skip};
use crate::helpers::*;

/// A small tmpfs mounted for the test; unmounted (lazily, so a process still holding a
/// file cannot keep it) when dropped, also when the test fails.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !o.status.success() {
            return Err(format!("mount -t tmpfs: {}", String::from_utf8_lossy(&o.stderr).trim()));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes zeros to `path` until the disk says it is full.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // Whatever is left in a partial block too.
    while f.write(&[0u8]).is_ok_and(|n| n == 1) {
        written += 1;
    }
    let _ = f.sync_all();
    written
}

/// `PRAGMA integrity_check` on the file, read-only, as another process would.
async fn integrity(db: &Path) -> String {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut c = sqlx::sqlite::SqliteConnection::connect(&url)
        .await
        .expect("open the database read-only");
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
    rows.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_refuses_writes_clearly_and_recovers() {
    let disk = match Tmpfs::mount("2m") {
        Ok(d) => d,
        Err(e) => {
            skip(&format!("cannot mount a tmpfs to fill: {e}"));
            return;
        }
    };
    let db: PathBuf = disk.path().join("gate.db");
    let s = TestApp::builder()
        .database_url(&format!("sqlite://{}?mode=rwc", db.display()))
        .spawn()
        .await;
    let before = s.open_via_api("dave").await;

    let filler = disk.path().join("filler");
    assert!(fill(&filler) > 0, "the filler took the free space");

    // Writes until one fails: SQLite may first reuse room it already has in its WAL file.
    let ci = s.client("ci");
    let mut refused = None;
    for n in 0..500 {
        match tokio::time::timeout(DEADLINE, ci.create(&create_body(&format!("full-{n}"))))
            .await
            .expect("a write on a full disk answers, it does not hang")
        {
            Ok(_) => continue,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("a write fails once the disk is full");
    assert_eq!(e.status(), Some(503), "{e}\n{}", s.log());
    let text = e.to_string();
    assert!(text.contains("unavailable") && text.contains("disk is full"), "{text}");
    // A vote is a write too, refused the same way.
    let e = s.client("bob").approve(&before.id, None).await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");

    // Reads still answer.
    let got = s.client("ci").get(&before.id).await.expect("a read on a full disk");
    assert_eq!(got.status, jitgate::core::decide::Status::Pending);
    assert_eq!(crate::faults_pg::readyz(&s.url).await, 200, "reads work: still ready");
    assert_eq!(integrity(&db).await, "ok");
    assert!(
        s.child.as_ref().is_some_and(|c| c.id().is_some()),
        "the server is still running"
    );

    // Room again: the service resumes without a restart.
    std::fs::remove_file(&filler).unwrap();
    let after = tokio::time::timeout(DEADLINE, async {
        loop {
            match ci.create(&create_body("after-the-disk-was-freed")).await {
                Ok((v, _)) => break v,
                Err(e) if e.status() == Some(503) => {
                    tokio::time::sleep(Duration::from_millis(50)).await; // a retry's pause
                }
                Err(e) => panic!("{e}\n{}", s.log()),
            }
        }
    })
    .await
    .expect("writes work again once the disk has room");
    let approved = s
        .client("bob")
        .approve(&after.id, None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    assert_eq!(approved.status, jitgate::core::decide::Status::Approved);
    s.client("bob").approve(&before.id, None).await.unwrap();
    let v = s.run(crate::helpers::AUDITOR, &["audit", "verify"]).await;
    assert_eq!(v.code, 0, "{v:?}");
    let mut s = s;
    s.stop().await;
    assert_eq!(integrity(&db).await, "ok");
}
