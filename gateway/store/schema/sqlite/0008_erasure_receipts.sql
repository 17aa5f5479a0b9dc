-- A feed consumer's confirmation that it removed an erased person (GDPR Art. 17, 19): by
-- keyed id and consumer id, the first time it said so. What a data-subject request shows
-- as its receipt per destination.
CREATE TABLE erasure_receipts (
    tenant TEXT NOT NULL REFERENCES tenants (id), subject_id TEXT NOT NULL,
    consumer_id TEXT NOT NULL, acknowledged_at TEXT NOT NULL,
    PRIMARY KEY (tenant, subject_id, consumer_id));
