-- clerk schema, version 1.
-- Portable DDL: it must run unchanged on SQLite and PostgreSQL.
-- Timestamps are TEXT in RFC 3339 UTC with exactly 6 fractional digits and `Z`
-- (e.g. 2025-01-31T02:30:00.000000Z), so they compare and sort as strings.
-- JSON values (inputs, vars, detail) are TEXT.

CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    bot           TEXT,
    playbook      TEXT NOT NULL,
    status        TEXT NOT NULL,
    inputs        TEXT NOT NULL,
    scheduled_for TEXT,
    queued_at     TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    actor         TEXT NOT NULL,
    attempt       BIGINT NOT NULL,
    error         TEXT,
    failed_step   TEXT,
    vars          TEXT,
    worker        TEXT,
    UNIQUE (bot, scheduled_for)
);

CREATE INDEX runs_status_idx ON runs (status, queued_at);
CREATE INDEX runs_bot_idx ON runs (bot, queued_at);
CREATE INDEX runs_queued_at_idx ON runs (queued_at);

CREATE TABLE bot_state (
    bot        TEXT PRIMARY KEY,
    paused     BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE scheduler_lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

-- The hash-chained audit trail. `id` is the position in the chain (1, 2, 3, ...
-- without gaps), assigned by the writer; `seq` is the place within the run
-- (0 for events without a run). Append-only: nothing in clerk updates or
-- deletes these rows, and `clerk audit verify` detects anyone who does.
CREATE TABLE audit_events (
    id          BIGINT PRIMARY KEY,
    run_id      TEXT,
    seq         BIGINT NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    step        TEXT,
    step_name   TEXT,
    action      TEXT,
    target      TEXT,
    detail      TEXT NOT NULL,
    outcome     TEXT,
    duration_ms BIGINT,
    error       TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    UNIQUE (run_id, seq)
);
