-- Feed events serialised once, at write time: `wire` holds each event's JSON exactly as
-- the pull feed sends it (gateway.store.event_wire), so a page is spliced from stored bytes
-- instead of rebuilt per event.
-- Rows written before this migration keep wire NULL: they are not backfilled here (that
-- would rewrite the whole table inside the upgrade's one transaction); `feed_rows` builds
-- their wire when it reads them, with the same function.
ALTER TABLE events ADD COLUMN wire BLOB;
