-- Issue 16 §1 / 17 §2: hand-over between `clerk serve` processes.
-- scheduler_lease.epoch: the fencing token, grown each time a lease changes
--   hands (or is re-acquired after expiring); writes made under a lease check
--   it in their transaction, so a holder that lost its lease writes nothing.
-- runs.expires_at: a queued run not started by then becomes `expired` (the
--   bot's max_delay, by default the time to its next firing) instead of
--   running late.
ALTER TABLE scheduler_lease ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN expires_at TEXT;
CREATE INDEX runs_expires_idx ON runs (status, expires_at);
