//! The `audit_events` table: appending to the hash chain (always inside the
//! caller's write transaction, so a state change and its event commit
//! together) and reading events back by id for paging, verify and export.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::time::{format_ts, now_micros, parse_ts};
use super::{Backend, Store, StoreError};
use crate::audit::chain::GENESIS_HASH;
use crate::audit::{AuditEvent, NewEvent};

pub(super) const EVENT_COLS: &str = "id, run_id, seq, at, actor, kind, step, step_name, action, target, \
     detail, outcome, duration_ms, error, prev_hash, hash, item_key";

/// A row of `audit_events` exactly as stored (`at` and `detail` unparsed), so
/// that verify hashes what is really in the table and can report rows that do
/// not even parse.
#[derive(Clone, Debug)]
pub struct RawEvent {
    pub id: i64,
    pub run_id: Option<String>,
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub step: Option<String>,
    pub step_name: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub detail: String,
    pub outcome: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    pub item_key: Option<String>,
}

impl RawEvent {
    /// Parses `at` and `detail`; the error says which column is bad.
    pub fn parse(self) -> Result<AuditEvent, String> {
        let at = parse_ts(&self.at)
            .ok_or_else(|| format!("column at is not an RFC 3339 timestamp: '{}'", self.at))?;
        let detail = serde_json::from_str(&self.detail)
            .map_err(|e| format!("column detail is not valid JSON: {e}"))?;
        Ok(AuditEvent {
            id: self.id,
            run_id: self.run_id,
            seq: self.seq,
            at,
            actor: self.actor,
            kind: self.kind,
            step: self.step,
            step_name: self.step_name,
            action: self.action,
            target: self.target,
            detail,
            outcome: self.outcome,
            duration_ms: self.duration_ms,
            error: self.error,
            item_key: self.item_key,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// One row read for verify: the id, and the row or why it cannot be read.
pub type RawRow = (i64, Result<RawEvent, String>);

pub(super) fn decode_raw(row: &AnyRow) -> Result<RawEvent, sqlx::Error> {
    Ok(RawEvent {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        kind: row.try_get("kind")?,
        step: row.try_get("step")?,
        step_name: row.try_get("step_name")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        detail: row.try_get("detail")?,
        outcome: row.try_get("outcome")?,
        duration_ms: row.try_get("duration_ms")?,
        error: row.try_get("error")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        item_key: row.try_get("item_key")?,
    })
}

impl Store {
    /// Appends one event to the chain in its own transaction and returns it
    /// as stored. Does NOT redact: components go through
    /// [`crate::audit::Recorder`], which masks secrets first.
    pub async fn append_event(&self, event: NewEvent) -> Result<AuditEvent, StoreError> {
        let event = &event;
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            let stored = self.append_in_tx(&mut tx, event.clone()).await?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit audit event {}", stored.id)))?;
            Ok(stored)
        })
        .await
    }

    /// Events ordered by id with `id > after_id`, at most `limit`, optionally
    /// only those of run `run_id` (exact id). For paging: pass the last id
    /// seen as the next `after_id`.
    pub async fn events(
        &self,
        run_id: Option<&str>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = self.fetch_event_rows(run_id, after_id, limit).await?;
        rows.iter()
            .map(|row| {
                let raw = decode_raw(row).map_err(|e| self.err(e, "read audit_events row"))?;
                let id = raw.id;
                raw.parse()
                    .map_err(|why| self.other(format_args!("audit_events event {id}: {why}")))
            })
            .collect()
    }

    /// Like [`Store::events`] for all runs, but rows exactly as stored, each
    /// decoded on its own (a tampered row that does not decode is reported,
    /// not fatal).
    pub async fn raw_events(&self, after_id: i64, limit: i64) -> Result<Vec<RawRow>, StoreError> {
        let rows = self.fetch_event_rows(None, after_id, limit).await?;
        rows.iter()
            .map(|row| {
                let id: i64 = row
                    .try_get("id")
                    .map_err(|e| self.err(e, "read audit_events.id"))?;
                Ok((
                    id,
                    decode_raw(row).map_err(|e| format!("row cannot be read: {e}")),
                ))
            })
            .collect()
    }

    async fn fetch_event_rows(
        &self,
        run_id: Option<&str>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let q = match run_id {
            Some(_) => format!(
                "SELECT {EVENT_COLS} FROM audit_events WHERE id > $1 AND run_id = $2 ORDER BY id LIMIT $3"
            ),
            None => {
                format!("SELECT {EVENT_COLS} FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2")
            }
        };
        let q = self.sql(&q);
        let mut query = sqlx::query(&q).bind(after_id);
        if let Some(r) = run_id {
            query = query.bind(r);
        }
        query
            .bind(limit.max(0))
            .fetch_all(self.pool())
            .await
            .map_err(|e| match run_id {
                Some(r) => self.err(e, format_args!("read audit_events of run {r}")),
                None => self.err(e, "read audit_events"),
            })
    }

    /// Takes the chain for appending inside the caller's write transaction
    /// (on PostgreSQL the table is locked EXCLUSIVE: appenders queue, readers
    /// go on) and returns the last event's id and hash (0 and the genesis hash
    /// for an empty chain).
    pub(crate) async fn lock_chain_head(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<(i64, String), StoreError> {
        if self.backend() == Backend::Postgres {
            sqlx::query("LOCK TABLE audit_events IN EXCLUSIVE MODE")
                .execute(&mut *conn)
                .await
                .map_err(|e| self.err(e, "lock audit_events"))?;
        }
        let head = sqlx::query("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e, "read the last audit event"))?;
        match head {
            Some(row) => {
                let id: i64 = row
                    .try_get("id")
                    .map_err(|e| self.err(e, "read audit_events.id"))?;
                let hash: String = row
                    .try_get("hash")
                    .map_err(|e| self.err(e, "read audit_events.hash"))?;
                Ok((id, hash))
            }
            None => Ok((0, GENESIS_HASH.to_string())),
        }
    }

    /// Appends `event` inside the caller's write transaction: reads the chain
    /// head and the run's last seq, hashes and inserts. On PostgreSQL the
    /// table is locked EXCLUSIVE first (appenders queue; readers go on).
    pub(crate) async fn append_in_tx(
        &self,
        conn: &mut AnyConnection,
        event: NewEvent,
    ) -> Result<AuditEvent, StoreError> {
        let (prev_id, prev_hash) = self.lock_chain_head(conn).await?;
        let seq = match &event.run_id {
            None => 0,
            Some(run) => {
                let q = self.sql("SELECT MAX(seq) AS s FROM audit_events WHERE run_id = $1");
                let last: Option<i64> = sqlx::query(&q)
                    .bind(run.as_str())
                    .fetch_one(&mut *conn)
                    .await
                    .and_then(|row| row.try_get("s"))
                    .map_err(|e| self.err(e, format_args!("read the last seq of run {run}")))?;
                last.unwrap_or(0) + 1
            }
        };
        let mut stored = AuditEvent {
            id: prev_id + 1,
            run_id: event.run_id,
            seq,
            at: now_micros(),
            actor: event.actor,
            kind: event.kind,
            step: event.step,
            step_name: event.step_name,
            action: event.action,
            target: event.target,
            detail: event.detail,
            outcome: event.outcome,
            duration_ms: event.duration_ms,
            error: event.error,
            item_key: event.item_key,
            prev_hash,
            hash: String::new(),
        };
        stored.hash = stored.compute_hash();
        let detail = serde_json::to_string(&stored.detail)
            .map_err(|e| self.other(format_args!("serialise detail of audit event: {e}")))?;
        let q = self
            .sql(&format!(
                "INSERT INTO audit_events ({EVENT_COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            ))
            .into_owned();
        sqlx::query(&q)
            .bind(stored.id)
            .bind(stored.run_id.as_deref())
            .bind(stored.seq)
            .bind(format_ts(&stored.at))
            .bind(stored.actor.as_str())
            .bind(stored.kind.as_str())
            .bind(stored.step.as_deref())
            .bind(stored.step_name.as_deref())
            .bind(stored.action.as_deref())
            .bind(stored.target.as_deref())
            .bind(detail)
            .bind(stored.outcome.as_deref())
            .bind(stored.duration_ms)
            .bind(stored.error.as_deref())
            .bind(stored.prev_hash.as_str())
            .bind(stored.hash.as_str())
            .bind(stored.item_key.as_deref())
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                self.err(
                    e,
                    format_args!("insert audit event {} ({})", stored.id, stored.kind),
                )
            })?;
        Ok(stored)
    }
}
