-- clerk schema, version 8: reading mail over IMAP.
-- imap_journal: every message a run's lineage fetched (state `fetched`) and
--   finished with (state `done`: moved, deleted or flagged), keyed by
--   (lineage, server, mailbox, UIDVALIDITY, UID), so that a resumed or
--   retried run never handles a finished message again and a UIDVALIDITY
--   change is noticed.
-- imap_trigger_state: per bot and mailbox, the UIDVALIDITY and the last UID
--   a mailbox trigger has dealt with, and its last contact with the server.
-- imap_trigger_runs: one row per message a trigger queued a run for; its
--   primary key makes queueing idempotent across processes and restarts.

CREATE TABLE imap_journal (
    lineage     TEXT NOT NULL,
    server      TEXT NOT NULL,
    mailbox     TEXT NOT NULL,
    uidvalidity BIGINT NOT NULL,
    uid         BIGINT NOT NULL,
    state       TEXT NOT NULL,
    message_id  TEXT,
    run_id      TEXT NOT NULL,
    step        TEXT NOT NULL,
    action      TEXT,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (lineage, server, mailbox, uidvalidity, uid)
);

CREATE TABLE imap_trigger_state (
    bot          TEXT NOT NULL,
    mailbox      TEXT NOT NULL,
    server       TEXT NOT NULL,
    uidvalidity  BIGINT NOT NULL,
    last_uid     BIGINT NOT NULL,
    last_contact TEXT,
    status       TEXT NOT NULL,
    error        TEXT,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (bot, mailbox)
);

CREATE TABLE imap_trigger_runs (
    bot         TEXT NOT NULL,
    mailbox     TEXT NOT NULL,
    uidvalidity BIGINT NOT NULL,
    uid         BIGINT NOT NULL,
    message_id  TEXT,
    run_id      TEXT NOT NULL,
    queued_at   TEXT NOT NULL,
    PRIMARY KEY (bot, mailbox, uidvalidity, uid)
);

CREATE INDEX imap_trigger_runs_run_idx ON imap_trigger_runs (run_id);
