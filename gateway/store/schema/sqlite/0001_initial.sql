-- Sluis 0.1.0: the schema the embedded store had before migrations were versioned.
-- Every statement is IF NOT EXISTS, so a database made by 0.1.0 (or earlier: the columns
-- those lacked are added first, see gateway/store/migrate.py) is adopted as version 1.
-- One statement per `;` at a line end.

-- The ledger: leaf hashes and bodies, stored tree nodes (every 4th level), signed
-- checkpoints, and each tenant's head (size and frontier).
CREATE TABLE IF NOT EXISTS ledger_entries (
    tenant TEXT NOT NULL, idx INTEGER NOT NULL, body BLOB NOT NULL, leaf_hash BLOB NOT NULL,
    PRIMARY KEY (tenant, idx));
CREATE TABLE IF NOT EXISTS ledger_nodes (
    tenant TEXT NOT NULL, level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (tenant, level, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    tenant TEXT NOT NULL, seq INTEGER NOT NULL, size INTEGER NOT NULL, note TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ledger_checkpoints_size ON ledger_checkpoints (tenant, size, seq);
CREATE TABLE IF NOT EXISTS ledger_heads (
    tenant TEXT PRIMARY KEY, size INTEGER NOT NULL, frontier BLOB NOT NULL) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL,
    sealed_key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS connectors (
    tenant TEXT NOT NULL REFERENCES tenants (id), id TEXT NOT NULL, type TEXT NOT NULL,
    base_url TEXT NOT NULL, sealed_credentials BLOB NOT NULL, settings TEXT NOT NULL,
    mapping_text TEXT NOT NULL, mapping_digest TEXT NOT NULL,
    interval_seconds INTEGER NOT NULL, max_delete_share REAL NOT NULL,
    created_at TEXT NOT NULL, watermark TEXT, last_success_at TEXT,
    paused_at TEXT, deleted_at TEXT, deleted_subjects TEXT,
    PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS instructions (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, connector TEXT NOT NULL,
    granted_by TEXT NOT NULL, granted_at TEXT NOT NULL, purpose TEXT NOT NULL,
    mapping_digest TEXT NOT NULL, fields TEXT NOT NULL, valid_until TEXT,
    revoked_at TEXT, revoked_by TEXT,
    FOREIGN KEY (tenant, connector) REFERENCES connectors (tenant, id));
CREATE INDEX IF NOT EXISTS instructions_by_connector ON instructions (tenant, connector, granted_at);
CREATE TABLE IF NOT EXISTS sync_runs (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, connector TEXT NOT NULL,
    mode TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL,
    finished_at TEXT, cursor TEXT, watermark TEXT, counts TEXT NOT NULL, error TEXT,
    instruction_id TEXT, pages INTEGER NOT NULL DEFAULT 0, since TEXT,
    confirm_deletes INTEGER);
CREATE INDEX IF NOT EXISTS sync_runs_by_connector ON sync_runs (tenant, connector, started_at);
-- At most one running run per connector, enforced by the database itself.
CREATE UNIQUE INDEX IF NOT EXISTS sync_runs_one_running
    ON sync_runs (tenant, connector) WHERE status = 'running';
-- Change detection only: digest and presence, no data (the events hold that). Rows are kept
-- small because keyed subject ids land all over the B-tree.
CREATE TABLE IF NOT EXISTS subjects (
    tenant TEXT NOT NULL, connector TEXT NOT NULL, subject_id TEXT NOT NULL,
    digest BLOB NOT NULL, present INTEGER NOT NULL, seen INTEGER NOT NULL,
    PRIMARY KEY (tenant, connector, subject_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    tenant TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL, subject_id TEXT NOT NULL, data TEXT, occurred_at TEXT NOT NULL,
    source TEXT NOT NULL, instruction_id TEXT NOT NULL,
    PRIMARY KEY (tenant, seq));
CREATE TABLE IF NOT EXISTS consumers (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL, token_hash BLOB NOT NULL UNIQUE, created_at TEXT NOT NULL,
    revoked_at TEXT);
CREATE TABLE IF NOT EXISTS checkpoint_pushes (
    tenant TEXT PRIMARY KEY REFERENCES tenants (id), url TEXT NOT NULL,
    configured_at TEXT NOT NULL, pushed_seq INTEGER, pushed_at TEXT,
    failed_at TEXT, failure TEXT);

-- The account register.
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, tenant TEXT REFERENCES tenants (id), role TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, password_hash TEXT, sealed_totp BLOB,
    totp_step INTEGER NOT NULL DEFAULT 0, recovery_hashes TEXT NOT NULL DEFAULT '[]',
    disabled_at TEXT);
CREATE INDEX IF NOT EXISTS accounts_by_tenant ON accounts (tenant, created_at);
CREATE TABLE IF NOT EXISTS invitations (
    token_hash BLOB PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts (id),
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT,
    sealed_pending_totp BLOB);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, token_hash BLOB NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts (id), created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL, csrf TEXT NOT NULL, step_up_at TEXT);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY, token_hash BLOB NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts (id), tenant TEXT, role TEXT NOT NULL,
    name TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    revoked_at TEXT, step_up_at TEXT);
CREATE TABLE IF NOT EXISTS tenant_oidc (
    tenant TEXT PRIMARY KEY REFERENCES tenants (id), issuer TEXT NOT NULL,
    client_id TEXT NOT NULL, sealed_secret BLOB NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signin_throttles (
    key TEXT PRIMARY KEY, failures INTEGER NOT NULL, first_failure_at TEXT NOT NULL,
    locked_until TEXT);
