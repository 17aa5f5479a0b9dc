-- A run's subject writes, journaled: each seen-log row also carries the subjects its commit
-- changed, as a JSON array of [keyed id, digest hex, present], and `subjects` takes them
-- later in key order (`merge_run_writes`), many commits' worth in one pass. Written straight
-- into `subjects`, each commit of 250 people dirtied ~250 random pages of its B-tree (keyed
-- ids are spread all over it): 264 MB of WAL for a first sync of 100,000, two thirds of
-- it. NULL once merged, and for rows from before this column.
ALTER TABLE run_seen ADD COLUMN writes TEXT;
