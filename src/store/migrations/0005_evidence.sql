-- clerk schema, version 5: evidence.
-- hash_format: the hash format each audit event was chained with (see
-- src/audit/format.rs and docs/audit.md). Events written before this
-- migration keep format 1 (nothing is re-chained); new events use format 2
-- (SHA-256 over RFC 8785 canonical JSON of every stored field).

ALTER TABLE audit_events ADD COLUMN hash_format BIGINT NOT NULL DEFAULT 1;
CREATE INDEX audit_events_kind_idx ON audit_events (kind, id);
