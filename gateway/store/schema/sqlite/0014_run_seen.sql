-- A run's seen log: the subjects a sync run found unchanged, one row per commit with that
-- commit's ids packed as a JSON array of text. A full sync's sweep takes as leavers the
-- present subjects neither written by the run (`subjects.seen`) nor in its log. Marking
-- each unchanged subject in `subjects` instead dirtied one random page per person (keyed
-- ids land all over the B-tree): ~870 MB written for a no-change re-sync of 100,000.
-- Rows are only appended (the implicit rowid grows; the ids, last, go to overflow pages
-- a scan of the other columns never reads) and live as long as their run: deleted when
-- it ends, and with its tenant, connector or run history.
CREATE TABLE run_seen (
    tenant TEXT NOT NULL, connector TEXT NOT NULL, run TEXT NOT NULL, ids TEXT NOT NULL);
CREATE INDEX run_seen_by_run ON run_seen (run);
