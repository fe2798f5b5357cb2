-- clerk schema, version 2: the sent-mail journal.
-- One row per message a mail transport ACCEPTED, keyed by an idempotency key
-- derived from the run (or the bot firing it belongs to), the step path and
-- the envelope. A run retried as a whole finds its key here and does not send
-- the same mail again. Subjects are stored with secrets masked.

CREATE TABLE mail_journal (
    idempotency_key TEXT PRIMARY KEY,
    run_id          TEXT NOT NULL,
    step            TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    transport       TEXT NOT NULL,
    recipients      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    message_sha256  TEXT NOT NULL,
    reply           TEXT NOT NULL,
    sent_at         TEXT NOT NULL
);

CREATE INDEX mail_journal_run_idx ON mail_journal (run_id);
