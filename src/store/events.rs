//! The `audit_events` table: appending to the hash chain (always inside the
//! caller's write transaction, so a state change and its event commit
//! together) and reading events back by id for paging, verify and export.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::chain::GENESIS_HASH;
use super::time::{format_ts, now_micros, parse_ts};
use super::{AuditEvent, NewEvent};
use super::{Backend, Store, StoreError};

/// Rows per multi-row INSERT: 18 bound parameters each, well under
/// SQLite's (32,766) and PostgreSQL's (65,535) limits.
const INSERT_CHUNK: usize = 256;

/// `INSERT INTO audit_events (...) VALUES (...), (...)` for `rows` rows,
/// with `$N` placeholders.
fn insert_sql(rows: usize) -> String {
    let mut q = format!("INSERT INTO audit_events ({EVENT_COLS}) VALUES ");
    for i in 0..rows {
        if i > 0 {
            q.push_str(", ");
        }
        q.push('(');
        for c in 1..=18 {
            if c > 1 {
                q.push_str(", ");
            }
            q.push('$');
            q.push_str(&(i * 18 + c).to_string());
        }
        q.push(')');
    }
    q
}

pub(super) const EVENT_COLS: &str = "id, run_id, seq, at, actor, kind, step, step_name, action, target, \
     detail, outcome, duration_ms, error, hash_format, prev_hash, hash, item_key";

/// A row of `audit_events` exactly as stored (`at` and `detail` unparsed), so
/// that verify hashes what is really in the table and can report rows that do
/// not even parse. Its fields are in [`EVENT_COLS`] order: SQLite's packed
/// page (`raw_events_packed`) is a JSON array per row in that order, read
/// by the derived `Deserialize` as a sequence.
#[derive(Clone, Debug, serde::Deserialize)]
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
    pub hash_format: i64,
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
            hash_format: self.hash_format,
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
        hash_format: row.try_get("hash_format")?,
        item_key: row.try_get("item_key")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

impl Store {
    /// Appends one event to the chain in its own transaction and returns it
    /// as stored. Does NOT redact: components go through
    /// the audit recorder (`audit::Recorder`), which masks secrets first.
    pub async fn append_event(&self, event: NewEvent) -> Result<AuditEvent, StoreError> {
        let event = &event;
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            let stored = self.append_in_tx(&mut tx, event.clone()).await?;
            self.commit_write(tx)
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
        if self.backend() == Backend::Sqlite
            && let Some(rows) = self.raw_events_packed(after_id, limit).await
        {
            return Ok(rows);
        }
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

    /// SQLite: the page as ONE value, a JSON array of the rows built by
    /// SQLite itself. Why: through sqlx every row costs a hand-over between
    /// threads and a dozen allocations (column names, any-values), which
    /// was most of `audit verify`'s time; one text per page is parsed here
    /// in one pass. Only a page whose every row has the stored types comes
    /// back this way: anything else (a tampered row holding a number where
    /// text belongs, a BLOB, text that is not UTF-8) gives `None` and the
    /// caller reads that page row by row, which names the bad row.
    async fn raw_events_packed(&self, after_id: i64, limit: i64) -> Option<Vec<RawRow>> {
        let q = format!(
            "SELECT json_group_array(json_array({EVENT_COLS})) AS page FROM \
             (SELECT {EVENT_COLS} FROM audit_events WHERE id > ? ORDER BY id LIMIT ?)"
        );
        let text: String = sqlx::query(&q)
            .bind(after_id)
            .bind(limit.max(0))
            .fetch_one(self.pool())
            .await
            .and_then(|row| row.try_get("page"))
            .ok()?;
        let rows: Vec<RawEvent> = serde_json::from_str(&text).ok()?;
        let mut out: Vec<RawRow> = rows.into_iter().map(|ev| (ev.id, Ok(ev))).collect();
        // The aggregate follows the ordered subquery; sorted again to be sure.
        out.sort_by_key(|(id, _)| *id);
        Some(out)
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
        let kind = event.kind.clone();
        let mut stored = self
            .append_rows_in_tx(conn, vec![(now_micros(), event)], &HashSet::new())
            .await?;
        stored
            .pop()
            .ok_or_else(|| self.other(format_args!("audit event {kind} was not appended")))
    }

    /// Appends events to the chain inside the caller's transaction with one
    /// read of the chain head and multi-row INSERTs. Events of runs get seq
    /// `MAX(seq) + 1` of their run (read once per distinct run, except for
    /// the `fresh` runs created in this transaction, which have no events).
    pub(crate) async fn append_many_in_tx(
        &self,
        conn: &mut AnyConnection,
        events: Vec<NewEvent>,
        fresh: &HashSet<String>,
    ) -> Result<(), StoreError> {
        let at = now_micros();
        let rows = events.into_iter().map(|e| (at, e)).collect();
        self.append_rows_in_tx(conn, rows, fresh).await.map(|_| ())
    }

    /// THE chain append: every event clerk stores goes through here. Takes
    /// the chain head, gives each event its id, its run's next seq, its
    /// hash (format [`super::format::CURRENT`]) and — for run.* kinds of runs
    /// not created in this transaction — the run's row as it is now
    /// (`run_state`), then inserts in chunks.
    pub(crate) async fn append_rows_in_tx(
        &self,
        conn: &mut AnyConnection,
        events: Vec<(DateTime<Utc>, NewEvent)>,
        fresh: &HashSet<String>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        // Deferred events first: they happened before this transaction's own.
        let drained = self.take_pending();
        let n_drained = drained.len();
        let events: Vec<(DateTime<Utc>, NewEvent)> = if drained.is_empty() {
            events
        } else {
            let mut all = drained;
            all.extend(events);
            all
        };
        self.append_rows_exact(conn, events, fresh, n_drained).await
    }

    /// The chain append of exactly `events` (no deferred event is taken
    /// in): for a caller that built its event from the head it read, such
    /// as a checkpoint, so no event deferred meanwhile can slip in between.
    /// `n_drained`: how many leading events came from the deferred queue.
    pub(crate) async fn append_rows_exact(
        &self,
        conn: &mut AnyConnection,
        events: Vec<(DateTime<Utc>, NewEvent)>,
        fresh: &HashSet<String>,
        n_drained: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (mut prev_id, mut prev_hash) = self.lock_chain_head(conn).await?;
        let mut seqs: HashMap<String, i64> = HashMap::new();
        let seq_q = self
            .sql("SELECT MAX(seq) AS s FROM audit_events WHERE run_id = $1")
            .into_owned();
        let mut stored: Vec<AuditEvent> = Vec::with_capacity(events.len());
        let mut details: Vec<String> = Vec::with_capacity(events.len());
        for (at, e) in events {
            let seq = match &e.run_id {
                None => 0,
                Some(run) => {
                    let next = match seqs.get(run) {
                        Some(s) => s + 1,
                        None if fresh.contains(run) => 1,
                        None => {
                            let last: Option<i64> = sqlx::query(&seq_q)
                                .bind(run.as_str())
                                .fetch_one(&mut *conn)
                                .await
                                .and_then(|row| row.try_get("s"))
                                .map_err(|err| {
                                    self.err(err, format_args!("read the last seq of run {run}"))
                                })?;
                            last.unwrap_or(0) + 1
                        }
                    };
                    seqs.insert(run.clone(), next);
                    next
                }
            };
            let mut ev = AuditEvent {
                id: prev_id + 1,
                run_id: e.run_id,
                seq,
                at,
                actor: e.actor,
                kind: e.kind,
                step: e.step,
                step_name: e.step_name,
                action: e.action,
                target: e.target,
                detail: e.detail,
                outcome: e.outcome,
                duration_ms: e.duration_ms,
                error: e.error,
                item_key: e.item_key,
                hash_format: super::format::CURRENT,
                prev_hash: std::mem::take(&mut prev_hash),
                hash: String::new(),
            };
            if let Some(run) = ev.run_id.as_deref()
                && !fresh.contains(run)
                && super::event::is_run_state_kind(&ev.kind)
            {
                self.snapshot_run_state(conn, run, &mut ev.detail).await?;
            }
            ev.hash = ev.compute_hash();
            prev_id = ev.id;
            prev_hash = ev.hash.clone();
            let detail = serde_json::to_string(&ev.detail).map_err(|err| {
                self.other(format_args!("serialise detail of audit event: {err}"))
            })?;
            stored.push(ev);
            details.push(detail);
        }
        if n_drained > 0 {
            let last = &stored[n_drained - 1];
            self.note_taken((last.id, last.hash.clone()));
        }
        for (chunk, chunk_details) in stored
            .chunks(INSERT_CHUNK)
            .zip(details.chunks(INSERT_CHUNK))
        {
            let q = insert_sql(chunk.len());
            let q = self.sql(&q).into_owned();
            let mut query = sqlx::query(&q);
            for (ev, detail) in chunk.iter().zip(chunk_details) {
                query = query
                    .bind(ev.id)
                    .bind(ev.run_id.as_deref())
                    .bind(ev.seq)
                    .bind(format_ts(&ev.at))
                    .bind(ev.actor.as_str())
                    .bind(ev.kind.as_str())
                    .bind(ev.step.as_deref())
                    .bind(ev.step_name.as_deref())
                    .bind(ev.action.as_deref())
                    .bind(ev.target.as_deref())
                    .bind(detail.as_str())
                    .bind(ev.outcome.as_deref())
                    .bind(ev.duration_ms)
                    .bind(ev.error.as_deref())
                    .bind(ev.hash_format)
                    .bind(ev.prev_hash.as_str())
                    .bind(ev.hash.as_str())
                    .bind(ev.item_key.as_deref());
            }
            query.execute(&mut *conn).await.map_err(|e| {
                let first = &chunk[0];
                if chunk.len() == 1 {
                    self.err(
                        e,
                        format_args!("insert audit event {} ({})", first.id, first.kind),
                    )
                } else {
                    self.err(
                        e,
                        format_args!("insert {} audit events from {}", chunk.len(), first.id),
                    )
                }
            })?;
        }
        Ok(stored.split_off(n_drained))
    }

    /// Puts the run's row as it is now in this transaction (status, times,
    /// error) into a run.* event's detail under `run_state`, so that verify
    /// can prove the `runs` table agrees with the chain.
    async fn snapshot_run_state(
        &self,
        conn: &mut AnyConnection,
        run: &str,
        detail: &mut serde_json::Value,
    ) -> Result<(), StoreError> {
        let Some(obj) = detail.as_object_mut() else {
            return Ok(());
        };
        let q = self.sql("SELECT status, started_at, finished_at, error FROM runs WHERE id = $1");
        let row = sqlx::query(&q)
            .bind(run)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e, format_args!("read the state of run {run}")))?;
        if let Some(row) = row {
            let get = |c: &str| -> Result<Option<String>, StoreError> {
                row.try_get::<Option<String>, _>(c)
                    .map_err(|e| self.err(e, format_args!("read runs.{c} of run {run}")))
            };
            obj.insert(
                super::event::RUN_STATE_KEY.into(),
                serde_json::json!({
                    "status": get("status")?,
                    "started_at": get("started_at")?,
                    "finished_at": get("finished_at")?,
                    "error": get("error")?,
                }),
            );
        }
        Ok(())
    }

    /// Appends the event `build` makes from the chain head (id, hash and
    /// kind of the last event; 0, the genesis hash and `None` for an empty
    /// chain) in one transaction, so the head it names is the event right
    /// before it. `build` returning `None` appends nothing.
    pub async fn append_at_head<F>(&self, build: F) -> Result<Option<AuditEvent>, StoreError>
    where
        F: Fn(i64, &str, Option<&str>) -> Option<NewEvent>,
    {
        let build = &build;
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            // Deferred events first, so the head `build` sees is the real one.
            self.drain_pending_in_tx(&mut tx).await?;
            let (id, hash) = self.lock_chain_head(&mut tx).await?;
            let kind: Option<String> = if id > 0 {
                let q = self.sql("SELECT kind FROM audit_events WHERE id = $1");
                sqlx::query(&q)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .and_then(|r| r.try_get("kind"))
                    .map(Some)
                    .map_err(|e| self.err(e, format_args!("read audit event {id}")))?
            } else {
                None
            };
            let Some(event) = build(id, &hash, kind.as_deref()) else {
                tx.rollback().await.map_err(|e| self.err(e, "roll back"))?;
                return Ok(None);
            };
            // Exactly this event on the head `build` saw: events deferred
            // since the drain above wait for the next write.
            let kind = event.kind.clone();
            let stored = self
                .append_rows_exact(&mut tx, vec![(now_micros(), event)], &HashSet::new(), 0)
                .await?
                .pop()
                .ok_or_else(|| self.other(format_args!("audit event {kind} was not appended")))?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit audit event {}", stored.id)))?;
            Ok(Some(stored))
        })
        .await
    }

    /// Deletes the events with `id <= through_id` (they were written to an
    /// archive) and appends `marker` (the chained `audit.archived` event) in
    /// one transaction. Fails, deleting nothing, if the hash of event
    /// `through_id` is no longer `through_hash`.
    pub async fn archive_through(
        &self,
        through_id: i64,
        through_hash: &str,
        marker: NewEvent,
    ) -> Result<AuditEvent, StoreError> {
        let marker = &marker;
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            self.lock_chain_head(&mut tx).await?;
            let q = self.sql("SELECT hash FROM audit_events WHERE id = $1");
            let hash: Option<String> = sqlx::query(&q)
                .bind(through_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("read audit event {through_id}")))?
                .map(|r| r.try_get("hash"))
                .transpose()
                .map_err(|e| self.err(e, "read audit_events.hash"))?;
            if hash.as_deref() != Some(through_hash) {
                return Err(self.other(format_args!(
                    "audit event {through_id} changed while it was archived; nothing deleted"
                )));
            }
            let q = self.sql("DELETE FROM audit_events WHERE id <= $1");
            sqlx::query(&q)
                .bind(through_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, "delete archived audit events"))?;
            let stored = self.append_in_tx(&mut tx, marker.clone()).await?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit the archive"))?;
            Ok(stored)
        })
        .await
    }

    /// The detail of the newest `audit.archived` event, if any (verify
    /// starts the chain where it says the archive ended).
    pub async fn latest_archive_marker(&self) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT detail FROM audit_events WHERE kind = 'audit.archived' ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(|e| self.err(e, "read the last audit.archived event"))?;
        row.map(|r| r.try_get("detail"))
            .transpose()
            .map_err(|e| self.err(e, "read audit_events.detail"))
    }

    /// Every run's state as the `runs` table holds it: (id, status,
    /// started_at, finished_at, error), for verify.
    pub async fn run_states(&self) -> Result<Vec<[Option<String>; 5]>, StoreError> {
        let rows =
            sqlx::query("SELECT id, status, started_at, finished_at, error FROM runs ORDER BY id")
                .fetch_all(self.pool())
                .await
                .map_err(|e| self.err(e, "read runs"))?;
        rows.iter()
            .map(|r| {
                let g = |c: &str| {
                    r.try_get::<Option<String>, _>(c)
                        .map_err(|e| self.err(e, format_args!("read runs.{c}")))
                };
                Ok([
                    g("id")?,
                    g("status")?,
                    g("started_at")?,
                    g("finished_at")?,
                    g("error")?,
                ])
            })
            .collect()
    }

    /// The last event id that `clerk audit archive --before` may archive:
    /// before the first event at or after `before`, and before the first
    /// event of any run still queued or running.
    pub async fn archive_cutoff(&self, before: &str) -> Result<i64, StoreError> {
        let one = |q: String, bind: Option<String>| async move {
            let q = self.sql(&q).into_owned();
            let mut query = sqlx::query(&q);
            if let Some(b) = bind {
                query = query.bind(b);
            }
            query
                .fetch_one(self.pool())
                .await
                .and_then(|r| r.try_get::<Option<i64>, _>("v"))
                .map_err(|e| self.err(e, "find the archive cutoff"))
        };
        let last = one("SELECT MAX(id) AS v FROM audit_events".into(), None)
            .await?
            .unwrap_or(0);
        let first_new = one(
            "SELECT MIN(id) AS v FROM audit_events WHERE at >= $1".into(),
            Some(before.to_string()),
        )
        .await?;
        let first_active = one(
            "SELECT MIN(e.id) AS v FROM audit_events e JOIN runs r ON r.id = e.run_id \
             WHERE r.status IN ('queued', 'running')"
                .into(),
            None,
        )
        .await?;
        Ok([Some(last + 1), first_new, first_active]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(1)
            - 1)
    }
}

#[cfg(test)]
mod packed_tests {
    use super::*;

    /// SQLite's packed page is a JSON array per row in EVENT_COLS order; the
    /// derived `Deserialize` of `RawEvent` must read it field by field (else
    /// every page would silently fall back to the row-by-row read).
    #[tokio::test]
    async fn a_packed_page_reads_as_raw_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/clerk.db", dir.path().display()))
            .await
            .unwrap();
        for i in 0..3 {
            store
                .append_event(
                    crate::store::NewEvent::new("action", "ana")
                        .outcome("ok")
                        .detail(serde_json::json!({ "i": i })),
                )
                .await
                .unwrap();
        }
        let packed = store.raw_events_packed(0, 10).await.expect("packed page");
        let rows = store.fetch_event_rows(None, 0, 10).await.unwrap();
        assert_eq!(packed.len(), 3);
        for ((id, p), row) in packed.iter().zip(&rows) {
            let r = decode_raw(row).unwrap();
            let p = p.as_ref().unwrap();
            assert_eq!(*id, r.id);
            assert_eq!(
                (
                    &p.at,
                    &p.actor,
                    &p.detail,
                    &p.prev_hash,
                    &p.hash,
                    p.hash_format
                ),
                (
                    &r.at,
                    &r.actor,
                    &r.detail,
                    &r.prev_hash,
                    &r.hash,
                    r.hash_format
                )
            );
        }
    }
}
