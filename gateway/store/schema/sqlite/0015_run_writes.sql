-- A full run's subject writes, journaled: each seen-log row also carries the subjects its
-- commit changed, as a JSON array of [keyed id, digest hex, present], and `subjects` takes
-- them in one transaction every 100,000 people and when the run sweeps or ends
-- (`merge_run_writes`), each page of it written to the WAL once a merge. Written straight into `subjects`, each commit of 250 people dirtied ~250 random
-- pages of its B-tree (keyed ids land all over it): most of a first sync's WAL and a third
-- of its time. NULL once merged, and for rows from before this column.
ALTER TABLE run_seen ADD COLUMN writes TEXT;
