-- A tenant's feed generation: bumped in the transaction that deletes or rewrites any of
-- its events (erasure, retention, a destroyed tenant), so a replica that keeps full feed
-- pages in memory (`gateway.delivery.blocks`) knows, with one read per page, that they may
-- no longer be what the database holds.
ALTER TABLE event_heads ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
