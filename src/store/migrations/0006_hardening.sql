-- Issue 16: which process runs a `clerk run` run, so that any later clerk
-- command can tell a run whose process is provably gone (kill -9, a closed
-- terminal, a crash) and mark it `interrupted` instead of leaving it
-- `running` for ever. `host` is the host name plus the PID namespace, so two
-- containers with the same host name are never confused; `pid_started` is the
-- process start time in clock ticks since boot (a reused pid has another).
CREATE TABLE run_owners (
    run_id      TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    host        TEXT NOT NULL,
    pid         BIGINT NOT NULL,
    pid_started BIGINT NOT NULL,
    created_at  TEXT NOT NULL
);
