-- Issue 17 §3 / issue 16 §3: the workers registry. Each `clerk serve`
-- registers one row (its random instance id, host and pid for people, the
-- clerk version, its labels from `serve --labels`), renews `heartbeat_at`
-- every few seconds by the DATABASE's clock (so hosts with skewed clocks
-- agree on who is alive) and sets `stopped_at` on a clean stop.
-- `labels` is the sorted label list joined by commas (`grid-eu,vpn`).
CREATE TABLE workers (
    instance_id    TEXT PRIMARY KEY,
    host           TEXT NOT NULL,
    pid            BIGINT NOT NULL,
    version        TEXT NOT NULL,
    labels         TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    heartbeat_at   TEXT NOT NULL,
    runs_in_flight BIGINT NOT NULL,
    stopped_at     TEXT,
    -- What this process writes into `runs.worker` when it claims a run.
    runs_worker    TEXT NOT NULL
);
CREATE INDEX workers_runs_worker_idx ON workers (runs_worker);
CREATE INDEX workers_heartbeat_idx ON workers (heartbeat_at);
-- The bots a worker can run: it knows them and has every label in their
-- `runs_on`. Claims join on it, so rows no worker can run never block others.
CREATE TABLE worker_bots (
    instance_id TEXT NOT NULL,
    bot         TEXT NOT NULL,
    PRIMARY KEY (instance_id, bot)
);
-- "Does this bot have a running run?" in the claim query.
CREATE INDEX runs_bot_status_idx ON runs (bot, status);
