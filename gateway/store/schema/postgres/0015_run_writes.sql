-- A full run's subject writes, journaled (as on SQLite, where it saves most of a first
-- sync's WAL): each seen-log row also carries the subjects its commit changed, as a JSON
-- array of [keyed id, digest hex, present], merged into `subjects` many commits at once
-- (`merge_run_writes`). PostgreSQL's syncs write `subjects` directly
-- (`Store.journals_subjects`); the column keeps both engines' tables alike. NULL once
-- merged. Out of line uncompressed, as `ids` (0014).
ALTER TABLE run_seen ADD COLUMN writes TEXT;
ALTER TABLE run_seen ALTER COLUMN writes SET STORAGE EXTERNAL;
