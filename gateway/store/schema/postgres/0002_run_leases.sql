-- Run leases: the replica running a sync run owns it until `lease_until`, renewing it with
-- every page and a heartbeat; a run whose lease ran out is claimed by another replica
-- (FOR UPDATE SKIP LOCKED: two claimers never take the same run, and never wait for each
-- other) and resumed from its last committed page. Page commits are fenced by the owner.
ALTER TABLE sync_runs ADD COLUMN owner TEXT;
ALTER TABLE sync_runs ADD COLUMN lease_until TIMESTAMPTZ;
-- The running runs, by lease expiry: what every scheduler tick looks at.
CREATE INDEX sync_runs_leases ON sync_runs (lease_until) WHERE status = 'running';
