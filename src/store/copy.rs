//! Copying a whole deployment into another database (`gate migrate-data`): every table
//! the migrations create, row for row and value for value (ids, hashes, signatures,
//! timestamps), a batch at a time, in one transaction on the target. Both ends go
//! through the same sqlx `Any` code, so the direction does not matter.

use sqlx::AnyConnection;
use sqlx::Row;

use super::{Backend, Result, Store, StoreError, migrate};

/// Rows per read and per insert. At most 15 columns × 500 rows = 7,500 bound values per
/// statement, under SQLite's limit (32,766) and PostgreSQL's (65,535).
const BATCH: usize = 500;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
}
use Kind::{Int, Text};

struct Table {
    name: &'static str,
    /// The primary key: the order rows are read in, and where the next batch resumes.
    key: &'static [&'static str],
    cols: &'static [(&'static str, Kind)],
}

/// Every table the migrations create except `gate_schema` (the target records its own
/// migrations), parents before the tables whose foreign keys name them. None has a
/// sequence or identity column (ids are text; `seq` and `idx` are assigned by the
/// writer from the chain's head), so there is nothing to advance after the copy.
const TABLES: &[Table] = &[
    Table {
        name: "gate_requests",
        key: &["id"],
        cols: &[
            ("id", Text),
            ("idem_key", Text),
            ("status", Text),
            ("version", Int),
            ("created_at", Int),
            ("expires_at", Int),
            ("approval_expires_at", Int),
            ("decided_at", Int),
            ("consumed_at", Int),
            ("deadline", Int),
            ("environment", Text),
            ("repository", Text),
            ("opened_by", Text),
            ("doc", Text),
        ],
    },
    Table {
        name: "gate_votes",
        key: &["request_id", "voter"],
        cols: &[
            ("request_id", Text),
            ("voter", Text),
            ("approve", Int),
            ("reason", Text),
            ("at", Int),
            ("via", Text),
            ("meta", Text),
        ],
    },
    Table {
        name: "gate_audit",
        key: &["seq"],
        cols: &[
            ("seq", Int),
            ("at", Int),
            ("request_id", Text),
            ("kind", Text),
            ("actor", Text),
            ("data", Text),
            ("prev_hash", Text),
            ("hash", Text),
            ("sig", Text),
        ],
    },
    Table {
        name: "gate_records",
        key: &["request_id"],
        cols: &[("request_id", Text), ("envelope", Text), ("updated_at", Int)],
    },
    Table {
        name: "gate_holders",
        key: &["request_id", "token_sha256"],
        cols: &[("request_id", Text), ("token_sha256", Text), ("created_at", Int)],
    },
    Table {
        name: "gate_sessions",
        key: &["id_sha256"],
        cols: &[
            ("id_sha256", Text),
            ("user_name", Text),
            ("can_vote", Int),
            ("via", Text),
            ("auth_time", Int),
            ("amr", Text),
            ("csrf", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("idp_groups", Text),
        ],
    },
    Table {
        name: "gate_sso_logins",
        key: &["state_sha256"],
        cols: &[
            ("state_sha256", Text),
            ("nonce", Text),
            ("verifier", Text),
            ("next", Text),
            ("expires_at", Int),
        ],
    },
    Table {
        name: "gate_outbox",
        key: &["id"],
        cols: &[
            ("id", Text),
            ("idem_key", Text),
            ("request_id", Text),
            ("event", Text),
            ("channel", Text),
            ("recipient", Text),
            ("payload", Text),
            ("created_at", Int),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("claimed_by", Text),
            ("claimed_until", Int),
            ("delivered_at", Int),
            ("gave_up_at", Int),
            ("last_error", Text),
        ],
    },
    Table {
        name: "gate_webhook_deliveries",
        key: &["forge", "delivery_id"],
        cols: &[
            ("forge", Text),
            ("delivery_id", Text),
            ("received_at", Int),
            ("request_id", Text),
            ("outcome", Text),
        ],
    },
    Table {
        name: "gate_log_hashes",
        key: &["idx"],
        cols: &[("idx", Int), ("hash", Text)],
    },
    Table {
        name: "gate_checkpoints",
        key: &["size"],
        cols: &[("size", Int), ("note", Text), ("created_at", Int)],
    },
    Table {
        name: "gate_cosignatures",
        key: &["witness", "size"],
        cols: &[("witness", Text), ("size", Int), ("line", Text), ("created_at", Int)],
    },
    Table {
        name: "gate_scim_users",
        key: &["id"],
        cols: &[
            ("id", Text),
            ("user_name", Text),
            ("user_key", Text),
            ("email_key", Text),
            ("external_id", Text),
            ("active", Int),
            ("doc", Text),
            ("version", Int),
            ("created_at", Int),
            ("updated_at", Int),
            ("deleted_at", Int),
        ],
    },
    Table {
        name: "gate_scim_groups",
        key: &["id"],
        cols: &[
            ("id", Text),
            ("display_name", Text),
            ("name_key", Text),
            ("external_id", Text),
            ("doc", Text),
            ("version", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "gate_scim_members",
        key: &["group_id", "user_id"],
        cols: &[("group_id", Text), ("user_id", Text)],
    },
    Table {
        name: "gate_delegations",
        key: &["id"],
        cols: &[
            ("id", Text),
            ("delegator", Text),
            ("delegate", Text),
            ("reason", Text),
            ("created_at", Int),
            ("created_by", Text),
            ("until_at", Int),
            ("revoked_at", Int),
            ("revoked_by", Text),
        ],
    },
];

/// Which end of the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{what}: {err}")]
    Db { what: String, err: StoreError },
    #[error("the source holds no jitgate schema (no gate_schema table): is it a jitgate database?")]
    NotJitgate,
    #[error(
        "the source's schema is at version {found}, this gate's is {current}: start this version's `gate serve` on the source once (it migrates at start), stop it, then run migrate-data again"
    )]
    SourceOlder { found: i64, current: i64 },
    #[error(
        "the {side}'s schema is at version {found}, newer than this gate's {current}: use the gate binary that wrote it"
    )]
    Newer { side: Side, found: i64, current: i64 },
    #[error("the {side} has the table {table}, which this gate does not know how to copy")]
    UnknownTable { side: Side, table: String },
    #[error("the {side} has no table {table}")]
    MissingTable { side: Side, table: &'static str },
    #[error("the {side}'s table {table} has the columns [{found}]; this gate expects [{expected}]")]
    Columns {
        side: Side,
        table: &'static str,
        found: String,
        expected: String,
    },
    #[error("the target is not empty: {table} holds {rows} rows (migrate-data copies only into an empty database)")]
    TargetNotEmpty { table: &'static str, rows: i64 },
    #[error(
        "{table}: {source_rows} rows in the source, {copied} copied, {target_rows} in the target; nothing was committed"
    )]
    CountMismatch {
        table: &'static str,
        source_rows: i64,
        copied: i64,
        target_rows: i64,
    },
    #[error(
        "the audit chain's head is {target_head} on the target but {source_head} on the source; nothing was committed"
    )]
    HeadMismatch { source_head: String, target_head: String },
}

impl CopyError {
    /// True when the copy ran and did not hold (and was rolled back), not bad input.
    pub fn is_mismatch(&self) -> bool {
        matches!(self, CopyError::CountMismatch { .. } | CopyError::HeadMismatch { .. })
    }
}

fn db(what: impl Into<String>) -> impl FnOnce(StoreError) -> CopyError {
    let what = what.into();
    move |err| CopyError::Db { what, err }
}

fn sx(what: &str) -> impl FnOnce(sqlx::Error) -> CopyError + '_ {
    move |e| CopyError::Db {
        what: what.to_string(),
        err: StoreError::Db(e),
    }
}

/// One table as copied: the rows it holds, the same on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: &'static str,
    pub rows: i64,
}

/// One value as read: copied back with the same type, `NULL` as `NULL`.
#[derive(Clone)]
enum Val {
    Int(Option<i64>),
    Text(Option<String>),
}

impl Store {
    /// One connection to `url`, closed again: its error names the cause (refused, no
    /// such database, bad password) at once, where a pool retries until it times out.
    pub async fn probe(url: &str) -> Result<()> {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let connect = sqlx::AnyConnection::connect(url);
        match tokio::time::timeout(std::time::Duration::from_secs(30), connect).await {
            Ok(conn) => Ok(conn?.close().await?),
            Err(_) => Err(StoreError::Db(sqlx::Error::PoolTimedOut)),
        }
    }

    /// The names of the database's tables whose names start with `gate_`.
    async fn gate_tables(&self) -> Result<Vec<String>> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            Backend::Postgres => {
                "SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
            }
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        let names = rows
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(names.into_iter().filter(|n| n.starts_with("gate_")).collect())
    }

    async fn columns(&self, table: &str) -> Result<Vec<String>> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT name FROM pragma_table_info($1) ORDER BY cid",
            Backend::Postgres => {
                "SELECT column_name::text AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
            }
        };
        let rows = sqlx::query(sql).bind(table).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// The highest migration applied, `None` when there is no `gate_schema` table.
    async fn applied_version(&self) -> Result<Option<i64>> {
        if !self.gate_tables().await?.iter().any(|t| t == "gate_schema") {
            return Ok(None);
        }
        let v: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM gate_schema")
            .fetch_one(&self.pool)
            .await?
            .try_get("v")?;
        Ok(Some(v.unwrap_or(0)))
    }

    /// Checks that this database is at this build's schema with exactly the tables and
    /// columns the copy knows, so nothing is left behind.
    async fn check_schema(&self, side: Side) -> Result<(), CopyError> {
        let what = format!("reading the {side}'s schema");
        let current = migrate::current();
        match self.applied_version().await.map_err(db(&what))? {
            None => return Err(CopyError::NotJitgate),
            Some(v) if v < current => return Err(CopyError::SourceOlder { found: v, current }),
            Some(v) if v > current => {
                return Err(CopyError::Newer {
                    side,
                    found: v,
                    current,
                });
            }
            Some(_) => {}
        }
        let tables = self.gate_tables().await.map_err(db(&what))?;
        if let Some(t) = tables
            .iter()
            .find(|t| *t != "gate_schema" && !TABLES.iter().any(|k| k.name == *t))
        {
            return Err(CopyError::UnknownTable { side, table: t.clone() });
        }
        for t in TABLES {
            if !tables.iter().any(|n| n == t.name) {
                return Err(CopyError::MissingTable { side, table: t.name });
            }
            let mut found = self.columns(t.name).await.map_err(db(&what))?;
            let mut expected: Vec<String> = t.cols.iter().map(|(c, _)| c.to_string()).collect();
            found.sort();
            expected.sort();
            if found != expected {
                return Err(CopyError::Columns {
                    side,
                    table: t.name,
                    found: found.join(", "),
                    expected: expected.join(", "),
                });
            }
        }
        Ok(())
    }

    /// Checks a database can be copied from: at this build's schema (see
    /// [`CopyError::SourceOlder`]) with the tables and columns the copy knows.
    pub async fn check_copy_source(&self) -> Result<(), CopyError> {
        self.check_schema(Side::Source).await
    }

    /// Checks a database can be copied into, before it is migrated: not at a newer
    /// schema, and none of the tables it already has holds a row.
    pub async fn check_copy_target(&self) -> Result<(), CopyError> {
        let what = "reading the target's schema";
        let current = migrate::current();
        if let Some(v) = self.applied_version().await.map_err(db(what))?
            && v > current
        {
            return Err(CopyError::Newer {
                side: Side::Target,
                found: v,
                current,
            });
        }
        let tables = self.gate_tables().await.map_err(db(what))?;
        let mut conn = self.pool.acquire().await.map_err(sx(what))?;
        for t in TABLES.iter().filter(|t| tables.iter().any(|n| n == t.name)) {
            empty(&mut conn, t.name).await?;
        }
        Ok(())
    }

    /// Copies every table into `target` (migrated, and checked with
    /// [`Store::check_copy_target`]): the source is read in one snapshot, the target
    /// written in one transaction that commits only when every table's count matches the
    /// source's and the audit chain's head is the same. Returns each table's count.
    pub async fn copy_into(&self, target: &Store) -> Result<Vec<Copied>, CopyError> {
        self.check_schema(Side::Source).await?;
        target.check_schema(Side::Target).await?;
        let mut src = match self.backend {
            Backend::Sqlite => self.pool.begin().await,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
            }
        }
        .map_err(sx("reading the source"))?;
        let mut dst = target.begin().await.map_err(db("writing the target"))?;
        let mut out = Vec::new();
        for t in TABLES {
            empty(&mut dst.tx, t.name).await?;
        }
        for t in TABLES {
            let source_rows = count(&mut src, t.name, Side::Source).await?;
            let mut copied = 0i64;
            let mut after: Option<Vec<Val>> = None;
            loop {
                let rows = read_batch(&mut src, t, after.as_deref()).await?;
                let Some(last) = rows.last() else { break };
                after = Some(key_of(t, last));
                write_batch(&mut dst.tx, t, &rows).await?;
                copied += rows.len() as i64;
                if rows.len() < BATCH {
                    break;
                }
            }
            let target_rows = count(&mut dst.tx, t.name, Side::Target).await?;
            if source_rows != copied || copied != target_rows {
                return Err(CopyError::CountMismatch {
                    table: t.name,
                    source_rows,
                    copied,
                    target_rows,
                });
            }
            out.push(Copied {
                table: t.name,
                rows: copied,
            });
        }
        let source_head = head(&mut src, Side::Source).await?;
        let target_head = head(&mut dst.tx, Side::Target).await?;
        if source_head != target_head {
            return Err(CopyError::HeadMismatch {
                source_head,
                target_head,
            });
        }
        dst.commit().await.map_err(db("committing the target"))?;
        let _ = src.rollback().await;
        Ok(out)
    }
}

/// `Err(TargetNotEmpty)` when `table` holds a row.
async fn empty(conn: &mut AnyConnection, table: &'static str) -> Result<(), CopyError> {
    match count(conn, table, Side::Target).await? {
        0 => Ok(()),
        rows => Err(CopyError::TargetNotEmpty { table, rows }),
    }
}

async fn count(conn: &mut AnyConnection, table: &str, side: Side) -> Result<i64, CopyError> {
    let what = format!("counting {table} in the {side}");
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}")))
        .fetch_one(&mut *conn)
        .await
        .map_err(sx(&what))?;
    row.try_get("n").map_err(sx(&what))
}

/// The last audit event's `seq` and hash, or `empty`.
async fn head(conn: &mut AnyConnection, side: Side) -> Result<String, CopyError> {
    let what = format!("reading the audit chain's head in the {side}");
    let row = sqlx::query("SELECT seq, hash FROM gate_audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(sx(&what))?;
    match row {
        None => Ok("empty".into()),
        Some(r) => {
            let seq: i64 = r.try_get("seq").map_err(sx(&what))?;
            let hash: String = r.try_get("hash").map_err(sx(&what))?;
            Ok(format!("#{seq} {hash}"))
        }
    }
}

fn key_of(t: &Table, row: &[Val]) -> Vec<Val> {
    t.key
        .iter()
        .filter_map(|k| t.cols.iter().position(|(c, _)| c == k))
        .map(|i| row[i].clone())
        .collect()
}

fn bind<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    v: &Val,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    match v {
        Val::Int(i) => q.bind(*i),
        Val::Text(s) => q.bind(s.clone()),
    }
}

/// The next `BATCH` rows of `t` in key order, after the key `after`.
async fn read_batch(conn: &mut AnyConnection, t: &Table, after: Option<&[Val]>) -> Result<Vec<Vec<Val>>, CopyError> {
    let what = format!("reading {} from the source", t.name);
    let cols: Vec<&str> = t.cols.iter().map(|(c, _)| *c).collect();
    let key = t.key.join(", ");
    let filter = match after {
        None => String::new(),
        Some(_) => {
            let marks: Vec<String> = (1..=t.key.len()).map(|i| format!("${i}")).collect();
            format!(" WHERE ({key}) > ({})", marks.join(", "))
        }
    };
    let sql = format!(
        "SELECT {} FROM {}{filter} ORDER BY {key} LIMIT {BATCH}",
        cols.join(", "),
        t.name
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for v in after.unwrap_or_default() {
        q = bind(q, v);
    }
    let rows = q.fetch_all(&mut *conn).await.map_err(sx(&what))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut vals = Vec::with_capacity(t.cols.len());
        for (i, (c, kind)) in t.cols.iter().enumerate() {
            let v = match kind {
                Int => r.try_get::<Option<i64>, _>(i).map(Val::Int),
                Text => r.try_get::<Option<String>, _>(i).map(Val::Text),
            };
            vals.push(v.map_err(|e| CopyError::Db {
                what: format!("reading {}.{c} from the source", t.name),
                err: StoreError::Db(e),
            })?);
        }
        out.push(vals);
    }
    Ok(out)
}

/// Inserts `rows` into `t` in one statement.
async fn write_batch(conn: &mut AnyConnection, t: &Table, rows: &[Vec<Val>]) -> Result<(), CopyError> {
    let what = format!("writing {} to the target", t.name);
    let n = t.cols.len();
    let tuples: Vec<String> = (0..rows.len())
        .map(|r| {
            let marks: Vec<String> = (1..=n).map(|c| format!("${}", r * n + c)).collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    let cols: Vec<&str> = t.cols.iter().map(|(c, _)| *c).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        t.name,
        cols.join(", "),
        tuples.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        for v in row {
            q = bind(q, v);
        }
    }
    q.execute(&mut *conn).await.map_err(sx(&what))?;
    Ok(())
}
