-- A run's subject writes, journaled: each seen-log row also carries the subjects its commit
-- changed, as a JSON array of [keyed id, digest hex, present], and `subjects` takes them
-- later in key order (`merge_run_writes`), many commits' worth in one pass, as SQLite does
-- (the same code; there it saves most of a first sync's WAL). NULL once merged, and for
-- rows from before this column. Out of line uncompressed, as `ids` (0014).
ALTER TABLE run_seen ADD COLUMN writes TEXT;
ALTER TABLE run_seen ALTER COLUMN writes SET STORAGE EXTERNAL;
