-- Which process pushes a tenant's checkpoints: several replicas poll, one posts. A claim
-- lasts until `claimed_until`; its holder renews it each round, another takes it after.
ALTER TABLE checkpoint_pushes ADD COLUMN claimed_by TEXT;
ALTER TABLE checkpoint_pushes ADD COLUMN claimed_until TIMESTAMPTZ;
