-- People the controller had erased (GDPR Art. 17) or restricted (Art. 18): by keyed id only.
-- A sync stores and delivers nothing more about them while the row exists; an admin lifts
-- it by deleting the row. `kind` is 'erased' or 'restricted'; `by_actor` the opaque id of
-- the account that asked.
CREATE TABLE suppressions (
    tenant TEXT NOT NULL REFERENCES tenants (id), subject_id TEXT NOT NULL,
    kind TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL, by_actor TEXT NOT NULL,
    PRIMARY KEY (tenant, subject_id));
-- The highest event number a tenant ever had, kept once an erasure deletes events: numbers
-- are never given twice, so a consumer's cursor never skips what comes after it.
CREATE TABLE event_heads (
    tenant TEXT PRIMARY KEY REFERENCES tenants (id), last_seq BIGINT NOT NULL);
