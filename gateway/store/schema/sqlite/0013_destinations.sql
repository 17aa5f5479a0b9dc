-- Push destinations (issue #10): where a tenant's feed events are pushed to, next to the
-- pull feed. A webhook destination keeps its URL, its Standard Webhooks signing secrets
-- (sealed under the master key with the destination as associated data: the current one
-- and, during a rotation's overlap, the previous one until `previous_until`), which event
-- types it takes, and whether it gets thin events (ids only). Its worker's state lives
-- here too, so a restart or another replica carries on: the cursor over the tenant's
-- events (`after_seq`), the current batch's failures (attempts, since when, a short
-- reason code, never a response body), the replica holding its lease, and a replay an
-- admin asked for.
CREATE TABLE destinations (
    tenant TEXT NOT NULL REFERENCES tenants (id), id TEXT NOT NULL,
    kind TEXT NOT NULL, url TEXT NOT NULL, sealed_secrets BLOB NOT NULL,
    previous_until TEXT, event_types TEXT NOT NULL, thin INTEGER NOT NULL,
    batch_size INTEGER NOT NULL, max_attempts INTEGER NOT NULL,
    max_age_seconds INTEGER NOT NULL, created_at TEXT NOT NULL, paused_at TEXT,
    after_seq INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, failing_since TEXT,
    failure TEXT, delivered_at TEXT, replay_requested_at TEXT,
    claimed_by TEXT, claimed_until TEXT,
    PRIMARY KEY (tenant, id));
-- Events a destination could not take (its retries ran out, or it refused them for good),
-- by number: the events themselves stay in `events`. A person with an event here is
-- parked: their later events join it rather than overtaking it, so they arrive in order
-- once an admin replays them; everyone else's keep flowing.
CREATE TABLE destination_dead_letters (
    tenant TEXT NOT NULL, destination TEXT NOT NULL, seq INTEGER NOT NULL,
    subject_id TEXT NOT NULL, reason TEXT NOT NULL, dead_at TEXT NOT NULL,
    PRIMARY KEY (tenant, destination, seq),
    FOREIGN KEY (tenant, destination) REFERENCES destinations (tenant, id));
CREATE INDEX destination_dead_letters_subject
    ON destination_dead_letters (tenant, destination, subject_id);
