-- clerk schema, version 3: the scheduler's durable queue.
-- due_at:   when a queued run may be claimed (the firing time for scheduled
--           runs, which are enqueued a moment ahead; now for manual runs;
--           now + delay for retries).
-- overlap:  the bot's overlap policy when the run was queued (skip | queue |
--           allow), so that every worker process claims by the same rule.
-- retry_of: the failed run this run retries.
-- scheduler_cursor: per bot, the last firing the scheduler has dealt with
-- (enqueued, skipped or passed while paused), so that missed firings after
-- downtime are found and handled by the bot's catch_up policy.

ALTER TABLE runs ADD COLUMN due_at TEXT;
ALTER TABLE runs ADD COLUMN overlap TEXT;
ALTER TABLE runs ADD COLUMN retry_of TEXT;
CREATE INDEX runs_due_idx ON runs (status, due_at);

CREATE TABLE scheduler_cursor (
    bot           TEXT PRIMARY KEY,
    fired_through TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
