-- The ledger at a year's scale: a transfer entry's body commits to its keyed ids (a count
-- and a digest) and the ids are kept here instead, 16 bytes each, each distinct list once
-- per tenant (a sync that reads the same pages of people again adds no list). The index
-- maps an id's first 8 bytes (as a signed integer) to the lists holding it, for "which
-- transfers carried this person" without reading the log; a hit is confirmed in the list.
-- Lists are indexed after they are stored, off the sync's commit (`ledger_index_heads`:
-- the last list indexed per tenant); a lookup reads the few lists beyond it directly.
-- `ledger_entries.subject_set`: the list an entry names (0: none, an audit entry or one
-- without ids; NULL: written before this, its ids are in its body).
-- `ledger_verified`: where the last verification of the tenant's log ended, with the
-- frontier there, so the next one resumes instead of starting at entry 0.
ALTER TABLE ledger_entries ADD COLUMN subject_set INTEGER;
CREATE TABLE ledger_subject_sets (
    tenant TEXT NOT NULL, set_no INTEGER NOT NULL, digest BLOB NOT NULL, ids BLOB NOT NULL,
    PRIMARY KEY (tenant, set_no));
CREATE UNIQUE INDEX ledger_subject_sets_digest ON ledger_subject_sets (tenant, digest);
CREATE TABLE ledger_subject_index (
    tenant TEXT NOT NULL, prefix INTEGER NOT NULL, set_no INTEGER NOT NULL,
    PRIMARY KEY (tenant, prefix, set_no)) WITHOUT ROWID;
CREATE TABLE ledger_index_heads (
    tenant TEXT PRIMARY KEY, set_no INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX ledger_entries_by_set ON ledger_entries (tenant, subject_set)
    WHERE subject_set > 0;
CREATE INDEX ledger_entries_unindexed ON ledger_entries (tenant, idx)
    WHERE subject_set IS NULL;
CREATE TABLE ledger_verified (
    tenant TEXT PRIMARY KEY, size INTEGER NOT NULL, seq INTEGER NOT NULL,
    frontier BLOB NOT NULL, verified_at TEXT NOT NULL) WITHOUT ROWID;
