-- clerk schema, version 4: lineage and the durable work-item ledger (issue 10).
-- lineage:          the unit of "this job, once": `bot:NAME@<scheduled_for>` for a
--                   bot firing, `run:<first run id>` for a manual run; every run
--                   that continues another (bot retry, resume) shares it.
-- playbook_sha256:  SHA-256 of the playbook file the run executed.
-- playbook_steps:   JSON map step id -> digest of the step's definition, so a
--                   resume can name the steps that changed.
-- resumed_from:     the run this run continues (unique: a run is continued at
--                   most once).
-- work_items:       one row per (lineage, step id, item key); item_key '' marks
--                   a `once: true` step outside loops. Every state change is
--                   written in the same transaction as its audit event, whose
--                   hash is kept in event_hash.
-- audit_events.item_key: the work item an event belongs to (hashed when not null).

ALTER TABLE runs ADD COLUMN lineage TEXT;
ALTER TABLE runs ADD COLUMN playbook_sha256 TEXT;
ALTER TABLE runs ADD COLUMN playbook_steps TEXT;
ALTER TABLE runs ADD COLUMN resumed_from TEXT;
UPDATE runs SET lineage = 'bot:' || bot || '@' || scheduled_for
    WHERE bot IS NOT NULL AND scheduled_for IS NOT NULL;
UPDATE runs SET lineage = 'run:' || id WHERE lineage IS NULL;
CREATE INDEX runs_lineage_idx ON runs (lineage, queued_at);
CREATE UNIQUE INDEX runs_resumed_from_idx ON runs (resumed_from);

CREATE TABLE work_items (
    lineage       TEXT NOT NULL,
    step_id       TEXT NOT NULL,
    item_key      TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    output        TEXT,
    output_masked BIGINT NOT NULL,
    error         TEXT,
    error_kind    TEXT,
    run_id        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    event_hash    TEXT,
    PRIMARY KEY (lineage, step_id, item_key)
);
CREATE INDEX work_items_run_idx ON work_items (run_id);
CREATE INDEX work_items_state_idx ON work_items (state);
CREATE INDEX work_items_key_idx ON work_items (item_key);

ALTER TABLE audit_events ADD COLUMN item_key TEXT;
CREATE INDEX audit_events_item_key_idx ON audit_events (item_key, id);
