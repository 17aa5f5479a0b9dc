-- Run leases: the process running a sync run owns it until `lease_until`, renewing it with
-- every page and a heartbeat; a run whose lease ran out is claimed by another process and
-- resumed from its last committed page. Page commits are fenced by the owner.
ALTER TABLE sync_runs ADD COLUMN owner TEXT;
ALTER TABLE sync_runs ADD COLUMN lease_until TEXT;
