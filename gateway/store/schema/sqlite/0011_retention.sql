-- Retention (issue #9): a tenant's own retention policy, where it differs from the
-- gateway's defaults (the settings' retention_* values): one column per rule, NULL meaning
-- "the default". Days only, never above what the platforms' privacy statements promise
-- (checked by gateway.lifecycle.retention before it is written); who changed it last is an
-- opaque account id (the change itself is an audit entry on the tenant's ledger).
CREATE TABLE retention_policies (
    tenant TEXT PRIMARY KEY REFERENCES tenants (id),
    feed_compaction_days INTEGER, leaver_grace_days INTEGER, run_history_days INTEGER,
    request_history_days INTEGER, short_lived_days INTEGER,
    updated_at TEXT NOT NULL, updated_by TEXT NOT NULL);
-- Jobs that must run on one replica at a time (the retention job): the replica holding the
-- claim until `claimed_until` runs it, renewing the claim as it goes; another takes over
-- once it runs out. The last outcome and success are kept here, not in a process, so every
-- replica's /metrics tells the same story and a restart forgets nothing.
CREATE TABLE job_claims (
    name TEXT PRIMARY KEY, claimed_by TEXT, claimed_until TEXT,
    first_run_at TEXT NOT NULL, last_finished_at TEXT, last_outcome TEXT,
    last_success_at TEXT);
-- Deleted connectors' credentials, kept by releases before this one, are removed: nothing
-- fetches for a deleted connector again.
UPDATE connectors SET sealed_credentials = X'' WHERE deleted_at IS NOT NULL;
