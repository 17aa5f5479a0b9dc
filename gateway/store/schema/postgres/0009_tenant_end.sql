-- The end of a tenant's contract: terminated (processing and delivery stop, nothing is
-- authorised any more) and, after the grace period, destroyed (crypto-shredding: its
-- subject key overwritten, every row of its data deleted; its ledger kept, holding keyed
-- ids no one can link to anyone now).
ALTER TABLE tenants ADD COLUMN terminated_at TIMESTAMPTZ;
ALTER TABLE tenants ADD COLUMN destroyed_at TIMESTAMPTZ;
