//! Schema migrations, applied in order at start. Each has a SQLite and a PostgreSQL
//! form; they differ only where the two dialects do (triggers).

use super::{Backend, Result, Store};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const TABLES: &str = r#"
CREATE TABLE gate_requests (
    id TEXT PRIMARY KEY,
    idem_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    approval_expires_at BIGINT,
    decided_at BIGINT,
    consumed_at BIGINT,
    deadline BIGINT,
    environment TEXT NOT NULL,
    repository TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX gate_requests_status ON gate_requests (status, created_at);
CREATE INDEX gate_requests_deadline ON gate_requests (deadline);
CREATE TABLE gate_votes (
    request_id TEXT NOT NULL REFERENCES gate_requests (id),
    voter TEXT NOT NULL,
    approve BIGINT NOT NULL,
    reason TEXT,
    at BIGINT NOT NULL,
    via TEXT NOT NULL,
    PRIMARY KEY (request_id, voter)
);
CREATE TABLE gate_audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX gate_audit_request ON gate_audit (request_id, seq);
CREATE TABLE gate_records (
    request_id TEXT PRIMARY KEY REFERENCES gate_requests (id),
    envelope TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#;

/// The transparency log's tables (migration 8), the same on both databases. A macro
/// rather than a const so `concat!` can put it between each dialect's statements.
macro_rules! log_tables {
    () => {
        r#"
CREATE TABLE gate_log_hashes (idx BIGINT PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE gate_checkpoints (size BIGINT PRIMARY KEY, note TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE gate_cosignatures (
    witness TEXT NOT NULL,
    size BIGINT NOT NULL,
    line TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (witness, size)
);
"#
    };
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tables",
        sqlite: TABLES,
        postgres: TABLES,
    },
    Migration {
        version: 2,
        name: "audit rows are append-only",
        sqlite: r#"
CREATE TRIGGER gate_audit_no_update BEFORE UPDATE ON gate_audit
BEGIN SELECT RAISE(ABORT, 'gate_audit is append-only: UPDATE refused'); END;
CREATE TRIGGER gate_audit_no_delete BEFORE DELETE ON gate_audit
BEGIN SELECT RAISE(ABORT, 'gate_audit is append-only: DELETE refused'); END;
"#,
        postgres: r#"
CREATE FUNCTION gate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'gate_audit is append-only: % refused', TG_OP; END $$;
CREATE TRIGGER gate_audit_no_update BEFORE UPDATE OR DELETE ON gate_audit
FOR EACH ROW EXECUTE FUNCTION gate_audit_append_only();
CREATE TRIGGER gate_audit_no_truncate BEFORE TRUNCATE ON gate_audit
FOR EACH STATEMENT EXECUTE FUNCTION gate_audit_append_only();
"#,
    },
    Migration {
        version: 3,
        name: "per-request holder tokens",
        sqlite: HOLDERS,
        postgres: HOLDERS,
    },
    Migration {
        version: 4,
        name: "how each vote was cast",
        sqlite: "ALTER TABLE gate_votes ADD COLUMN meta TEXT;",
        postgres: "ALTER TABLE gate_votes ADD COLUMN meta TEXT;",
    },
    Migration {
        version: 5,
        name: "web sessions",
        sqlite: SESSIONS,
        postgres: SESSIONS,
    },
    Migration {
        version: 6,
        name: "notification outbox",
        sqlite: OUTBOX,
        postgres: OUTBOX,
    },
    Migration {
        version: 7,
        name: "webhook deliveries",
        sqlite: DELIVERIES,
        postgres: DELIVERIES,
    },
    Migration {
        version: 8,
        name: "signed events and the transparency log",
        sqlite: concat!(
            "ALTER TABLE gate_audit ADD COLUMN sig TEXT;",
            log_tables!(),
            r#"
CREATE TRIGGER gate_log_hashes_no_update BEFORE UPDATE ON gate_log_hashes
BEGIN SELECT RAISE(ABORT, 'gate_log_hashes is append-only: UPDATE refused'); END;
CREATE TRIGGER gate_log_hashes_no_delete BEFORE DELETE ON gate_log_hashes
BEGIN SELECT RAISE(ABORT, 'gate_log_hashes is append-only: DELETE refused'); END;
CREATE TRIGGER gate_checkpoints_no_update BEFORE UPDATE ON gate_checkpoints
BEGIN SELECT RAISE(ABORT, 'gate_checkpoints is append-only: UPDATE refused'); END;
CREATE TRIGGER gate_checkpoints_no_delete BEFORE DELETE ON gate_checkpoints
BEGIN SELECT RAISE(ABORT, 'gate_checkpoints is append-only: DELETE refused'); END;
"#
        ),
        postgres: concat!(
            "ALTER TABLE gate_audit ADD COLUMN sig TEXT;",
            log_tables!(),
            r#"
CREATE FUNCTION gate_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$;
CREATE TRIGGER gate_log_hashes_no_update BEFORE UPDATE OR DELETE ON gate_log_hashes
FOR EACH ROW EXECUTE FUNCTION gate_append_only();
CREATE TRIGGER gate_checkpoints_no_update BEFORE UPDATE OR DELETE ON gate_checkpoints
FOR EACH ROW EXECUTE FUNCTION gate_append_only();
"#
        ),
    },
    Migration {
        version: 9,
        name: "people and groups from the identity provider",
        sqlite: DIRECTORY,
        postgres: DIRECTORY,
    },
    Migration {
        version: 10,
        name: "delegations",
        sqlite: DELEGATIONS,
        postgres: DELEGATIONS,
    },
    Migration {
        version: 11,
        name: "the change report's index",
        sqlite: REPORT_INDEX,
        postgres: REPORT_INDEX,
    },
];

/// SCIM users and groups (`store::scim`), and the identity provider's groups seen when a
/// web session signed in. A deleted SCIM user stays as a row with `deleted_at` set, so
/// the person's configured tokens stay refused.
const DIRECTORY: &str = r#"
CREATE TABLE gate_scim_users (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    user_key TEXT NOT NULL UNIQUE,
    email_key TEXT,
    external_id TEXT,
    active BIGINT NOT NULL,
    doc TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX gate_scim_users_email ON gate_scim_users (email_key);
CREATE TABLE gate_scim_groups (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    external_id TEXT,
    doc TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE gate_scim_members (
    group_id TEXT NOT NULL REFERENCES gate_scim_groups (id),
    user_id TEXT NOT NULL REFERENCES gate_scim_users (id),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX gate_scim_members_user ON gate_scim_members (user_id);
ALTER TABLE gate_sessions ADD COLUMN idp_groups TEXT;
"#;

/// Who votes for whom while they are away (`gate delegate`). Rows are never deleted:
/// a revocation sets `revoked_at`, so the list stays the history.
const DELEGATIONS: &str = r#"
CREATE TABLE gate_delegations (
    id TEXT PRIMARY KEY,
    delegator TEXT NOT NULL,
    delegate TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    until_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT
);
CREATE INDEX gate_delegations_delegate ON gate_delegations (delegate, until_at);
"#;

/// The change report reads the requests decided in a period in (decided_at, id) order,
/// a page at a time (`store::reports`): this index answers each page without a scan.
const REPORT_INDEX: &str = "CREATE INDEX gate_requests_decided ON gate_requests (decided_at, id);";

/// Web UI sign-ins and single sign-on logins in flight. Only SHA-256 digests of the
/// session id and of the login `state` are stored, never the values the browser holds.
const SESSIONS: &str = r#"
CREATE TABLE gate_sessions (
    id_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    can_vote BIGINT NOT NULL,
    via TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX gate_sessions_expires ON gate_sessions (expires_at);
CREATE TABLE gate_sso_logins (
    state_sha256 TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    verifier TEXT NOT NULL,
    next TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
"#;

/// Notifications queued with the change they tell about (see `store::outbox`).
const OUTBOX: &str = r#"
CREATE TABLE gate_outbox (
    id TEXT PRIMARY KEY,
    idem_key TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL,
    event TEXT NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    delivered_at BIGINT,
    gave_up_at BIGINT,
    last_error TEXT
);
CREATE INDEX gate_outbox_due ON gate_outbox (next_attempt_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX gate_outbox_request ON gate_outbox (request_id, created_at);
"#;

/// Forge webhook deliveries already acted on, so a replay is refused.
const DELIVERIES: &str = r#"
CREATE TABLE gate_webhook_deliveries (
    forge TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    request_id TEXT,
    outcome TEXT,
    PRIMARY KEY (forge, delivery_id)
);
"#;

const HOLDERS: &str = r#"
CREATE TABLE gate_holders (
    request_id TEXT NOT NULL REFERENCES gate_requests (id),
    token_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, token_sha256)
);
"#;

/// The schema version this build migrates to: its last migration's.
pub(super) fn current() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

pub(super) async fn run(store: &Store) -> Result<()> {
    let mut tx = store.begin().await?;
    if store.backend == Backend::Postgres {
        // Replicas starting together: one migrates, the others wait here.
        sqlx::query("SELECT pg_advisory_xact_lock(727574)")
            .execute(&mut *tx.tx)
            .await?;
    }
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS gate_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
        .execute(&mut *tx.tx)
        .await?;
    let done: Option<i64> = sqlx::Row::try_get(
        &sqlx::query("SELECT MAX(version) AS v FROM gate_schema")
            .fetch_one(&mut *tx.tx)
            .await?,
        "v",
    )?;
    let done = done.unwrap_or(0);
    for m in MIGRATIONS.iter().filter(|m| m.version > done) {
        let sql = match store.backend {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        sqlx::raw_sql(sql).execute(&mut *tx.tx).await?;
        sqlx::query("INSERT INTO gate_schema (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(crate::core::duration::now_ms())
            .execute(&mut *tx.tx)
            .await?;
    }
    tx.commit().await
}
