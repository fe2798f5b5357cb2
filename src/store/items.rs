//! The work-item ledger (`work_items`): one row per (lineage, step id, item
//! key) saying how far that item got in its job. Every state change is a
//! compare-and-set on the state the caller expects, written in the SAME
//! transaction as the audit event that records it (the event's hash is kept
//! in `event_hash`), so the ledger and the audit trail never disagree.
//!
//! A missing row counts as `pending`. `item_key` '' is the ledger row of a
//! `once: true` step outside loops.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::events::EVENT_COLS;
use super::time::{format_ts, now_micros, parse_ts};
use super::{AuditEvent, NewEvent};
use super::{Store, StoreError};

/// Where a work item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Pending,
    InProgress,
    Done,
    BusinessException,
    SystemException,
    InDoubt,
    Skipped,
}

impl ItemState {
    pub const ALL: [ItemState; 7] = [
        ItemState::Pending,
        ItemState::InProgress,
        ItemState::Done,
        ItemState::BusinessException,
        ItemState::SystemException,
        ItemState::InDoubt,
        ItemState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::InProgress => "in_progress",
            ItemState::Done => "done",
            ItemState::BusinessException => "business_exception",
            ItemState::SystemException => "system_exception",
            ItemState::InDoubt => "in_doubt",
            ItemState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<ItemState> {
        ItemState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for ItemState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The primary key of a work item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ItemId {
    pub lineage: String,
    pub step_id: String,
    /// The loop's `checkpoint` value; '' for a `once` step.
    pub item_key: String,
}

impl ItemId {
    pub fn new(lineage: &str, step_id: &str, item_key: &str) -> ItemId {
        ItemId {
            lineage: lineage.to_string(),
            step_id: step_id.to_string(),
            item_key: item_key.to_string(),
        }
    }

    fn describe(&self) -> String {
        if self.item_key.is_empty() {
            format!("step {} of lineage {}", self.step_id, self.lineage)
        } else {
            format!(
                "item {} of step {} (lineage {})",
                self.item_key, self.step_id, self.lineage
            )
        }
    }
}

/// A row of `work_items`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemRow {
    pub lineage: String,
    pub step_id: String,
    pub item_key: String,
    pub state: ItemState,
    /// How many times the item was started (in_progress), over all runs.
    pub attempts: i64,
    /// The item's output (`"***"` when `output_masked`).
    pub output: Option<serde_json::Value>,
    pub output_masked: bool,
    pub error: Option<String>,
    /// `business`, `system`, `usage`, `internal`.
    pub error_kind: Option<String>,
    /// The run that last changed the row.
    pub run_id: String,
    #[serde(with = "super::time::serde_ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "super::time::serde_ts")]
    pub updated_at: DateTime<Utc>,
    /// Hash of the audit event that recorded the last change.
    pub event_hash: Option<String>,
}

/// The new state of an item and what goes with it.
#[derive(Debug, Clone)]
pub struct ItemChange {
    pub state: ItemState,
    /// The run making the change (for admin changes: the run that last
    /// touched it is kept when `None`).
    pub run_id: Option<String>,
    /// Count one more attempt (set when the item is started).
    pub new_attempt: bool,
    /// `Some`: replace the output (`None` keeps it).
    pub output: Option<serde_json::Value>,
    pub output_masked: bool,
    /// Replaces error and kind (both cleared when `None` and the state is not
    /// an exception).
    pub error: Option<String>,
    pub error_kind: Option<String>,
}

impl ItemChange {
    pub fn to(state: ItemState, run_id: &str) -> ItemChange {
        ItemChange {
            state,
            run_id: Some(run_id.to_string()),
            new_attempt: false,
            output: None,
            output_masked: false,
            error: None,
            error_kind: None,
        }
    }
}

/// Which items [`Store::list_items`] returns (all filters combine).
#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    /// Items last touched by this run.
    pub run: Option<String>,
    pub lineage: Option<String>,
    pub state: Option<ItemState>,
    pub key: Option<String>,
    /// Only rows of loop items (not `once` steps, whose key is '').
    pub items_only: bool,
    pub limit: Option<i64>,
}

/// How many items are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ItemCounts {
    pub pending: i64,
    pub in_progress: i64,
    pub done: i64,
    pub business_exception: i64,
    pub system_exception: i64,
    pub in_doubt: i64,
    pub skipped: i64,
}

impl ItemCounts {
    pub fn add(&mut self, state: ItemState, n: i64) {
        *self.slot(state) += n;
    }

    pub fn get(&self, state: ItemState) -> i64 {
        match state {
            ItemState::Pending => self.pending,
            ItemState::InProgress => self.in_progress,
            ItemState::Done => self.done,
            ItemState::BusinessException => self.business_exception,
            ItemState::SystemException => self.system_exception,
            ItemState::InDoubt => self.in_doubt,
            ItemState::Skipped => self.skipped,
        }
    }

    fn slot(&mut self, state: ItemState) -> &mut i64 {
        match state {
            ItemState::Pending => &mut self.pending,
            ItemState::InProgress => &mut self.in_progress,
            ItemState::Done => &mut self.done,
            ItemState::BusinessException => &mut self.business_exception,
            ItemState::SystemException => &mut self.system_exception,
            ItemState::InDoubt => &mut self.in_doubt,
            ItemState::Skipped => &mut self.skipped,
        }
    }

    pub fn total(&self) -> i64 {
        ItemState::ALL.iter().map(|s| self.get(*s)).sum()
    }

    /// Items that a person has to look at.
    pub fn exceptions(&self) -> i64 {
        self.business_exception + self.system_exception + self.in_doubt
    }
}

const ITEM_COLS: &str = "lineage, step_id, item_key, state, attempts, output, output_masked, \
     error, error_kind, run_id, created_at, updated_at, event_hash";

/// One item's move for [`Store::transition_item_pair`]: the item, the
/// states it may be in, the change, its event and what follows it.
pub struct ItemMove<'a> {
    pub id: &'a ItemId,
    pub expected: &'a [ItemState],
    pub change: &'a ItemChange,
    /// Stored as given: redact it first.
    pub event: NewEvent,
    pub then: &'a [NewEvent],
}

/// What [`Store::transition_item_pair`] did: the first move, and the second
/// (or why it was not made).
pub type Moved = (
    (ItemRow, AuditEvent),
    Result<(ItemRow, AuditEvent), StoreError>,
);

impl Store {
    /// Moves an item to `change.state` if it is now in one of `expected`
    /// (`Pending` also matches a missing row) AND appends `event` (its
    /// `item_key` is set to the item's key, its run id defaults to the
    /// change's run) in one transaction; returns the row as written.
    ///
    /// A lost race — the item is in another state — returns
    /// [`StoreError::StateConflict`] and writes nothing. The event is stored
    /// as given: redact it first (`audit::Recorder::redact_event`).
    pub async fn transition_item(
        &self,
        id: &ItemId,
        expected: &[ItemState],
        change: &ItemChange,
        event: NewEvent,
    ) -> Result<(ItemRow, AuditEvent), StoreError> {
        self.transition_item_then(id, expected, change, event, &[])
            .await
    }

    /// [`Store::transition_item`], and `then` appended right after `event`
    /// in the same transaction (stored as given): what the engine records
    /// next anyway (the item's first `step.started`) is durable with the
    /// transition, one commit instead of two. A lost race writes none of it.
    pub async fn transition_item_then(
        &self,
        id: &ItemId,
        expected: &[ItemState],
        change: &ItemChange,
        event: NewEvent,
        then: &[NewEvent],
    ) -> Result<(ItemRow, AuditEvent), StoreError> {
        let only = ItemMove {
            id,
            expected,
            change,
            event,
            then,
        };
        self.moves(&only, None).await.map(|(moved, _)| moved)
    }

    /// Two moves in one transaction (one commit): the engine's end of one
    /// item and start of the next. `first` lost (its item is in another
    /// state): nothing is written and its [`StoreError::StateConflict`] is
    /// returned. `second` lost: `first` is committed alone and the second
    /// result holds the conflict.
    pub async fn transition_item_pair(
        &self,
        first: &ItemMove<'_>,
        second: &ItemMove<'_>,
    ) -> Result<Moved, StoreError> {
        let (one, two) = self.moves(first, Some(second)).await?;
        let two = two.unwrap_or_else(|| {
            Err(self.other(format_args!("{} was not moved", second.id.describe())))
        });
        Ok((one, two))
    }

    /// `first`, then `second` if given, in one write transaction (see
    /// [`Store::transition_item_pair`] for what a lost move does).
    async fn moves(
        &self,
        first: &ItemMove<'_>,
        second: Option<&ItemMove<'_>>,
    ) -> Result<
        (
            (ItemRow, AuditEvent),
            Option<Result<(ItemRow, AuditEvent), StoreError>>,
        ),
        StoreError,
    > {
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            // The chain lock first: it serialises writers on PostgreSQL, so
            // the state read below cannot change before the commit (on
            // SQLite `BEGIN IMMEDIATE` already did).
            if self.backend() == super::Backend::Postgres {
                self.lock_chain_head(&mut tx).await?;
            }
            let one = match self.move_in_tx(&mut tx, first).await? {
                Ok(m) => m,
                Err(lost) => {
                    tx.rollback()
                        .await
                        .map_err(|e| self.err(e, "roll back item change"))?;
                    return Err(lost);
                }
            };
            let two = match second {
                Some(m) => Some(self.move_in_tx(&mut tx, m).await?),
                None => None,
            };
            self.commit_write(tx)
                .await
                .map_err(|e| self.err(e, format_args!("commit {}", first.id.describe())))?;
            Ok((one, two))
        })
        .await
    }

    /// One move inside the caller's write transaction: `Ok(Err(conflict))`
    /// when the item is not in an expected state (nothing written for it).
    async fn move_in_tx(
        &self,
        tx: &mut sqlx::AnyConnection,
        m: &ItemMove<'_>,
    ) -> Result<Result<(ItemRow, AuditEvent), StoreError>, StoreError> {
        let ItemMove {
            id,
            expected,
            change,
            event,
            then,
        } = m;
        let output = match &change.output {
            Some(v) => Some(serde_json::to_string(v).map_err(|e| {
                self.other(format_args!("serialise output of {}: {e}", id.describe()))
            })?),
            None => None,
        };
        let output = output.as_deref();
        let current = self.read_item(&mut *tx, id).await?;
        let found = current.as_ref().map(|r| r.state);
        let ok = match found {
            None => expected.contains(&ItemState::Pending),
            Some(st) => expected.contains(&st),
        };
        if !ok {
            return Ok(Err(StoreError::StateConflict {
                what: id.describe(),
                expected: expected.iter().map(|s| s.as_str().to_string()).collect(),
                found: found.map_or("absent", ItemState::as_str).to_string(),
            }));
        }
        let mut ev = event.clone();
        if !id.item_key.is_empty() {
            ev.item_key = Some(id.item_key.clone());
        }
        if ev.run_id.is_none() {
            ev.run_id = change.run_id.clone();
        }
        let mut batch = vec![(now_micros(), ev)];
        batch.extend(then.iter().map(|e| (now_micros(), e.clone())));
        let mut rows = self
            .append_rows_in_tx(&mut *tx, batch, &Default::default())
            .await?;
        let stored = rows
            .len()
            .checked_sub(1 + then.len())
            .map(|i| rows.swap_remove(i))
            .ok_or_else(|| {
                self.other(format_args!(
                    "the event of {} was not appended",
                    id.describe()
                ))
            })?;
        let now_at = now_micros();
        let now = format_ts(&now_at);
        let exception = matches!(
            change.state,
            ItemState::BusinessException | ItemState::SystemException | ItemState::InDoubt
        );
        let attempts = current.as_ref().map_or(0, |r| r.attempts) + i64::from(change.new_attempt);
        let (old_output, old_masked) = match &current {
            Some(r) => (
                r.output
                    .as_ref()
                    .map(|v| serde_json::to_string(v).unwrap_or_default()),
                r.output_masked,
            ),
            None => (None, false),
        };
        let (out, masked) = match output {
            Some(o) => (Some(o.to_string()), change.output_masked),
            None => (old_output, old_masked),
        };
        let out_value = match &change.output {
            Some(v) => Some(v.clone()),
            None => current.as_ref().and_then(|r| r.output.clone()),
        };
        let (error, kind) = if change.error.is_some() || !exception {
            (change.error.clone(), change.error_kind.clone())
        } else {
            current
                .as_ref()
                .map(|r| (r.error.clone(), r.error_kind.clone()))
                .unwrap_or_default()
        };
        let run_id = change
            .run_id
            .clone()
            .or_else(|| current.as_ref().map(|r| r.run_id.clone()))
            .unwrap_or_default();
        let q = if current.is_some() {
            self.sql(
                "UPDATE work_items SET state = $4, attempts = $5, output = $6, \
                 output_masked = $7, error = $8, error_kind = $9, run_id = $10, \
                 updated_at = $11, event_hash = $12 \
                 WHERE lineage = $1 AND step_id = $2 AND item_key = $3",
            )
        } else {
            self.sql(
                "INSERT INTO work_items (lineage, step_id, item_key, state, attempts, output, \
                 output_masked, error, error_kind, run_id, updated_at, event_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11)",
            )
        };
        sqlx::query(&q)
            .bind(id.lineage.as_str())
            .bind(id.step_id.as_str())
            .bind(id.item_key.as_str())
            .bind(change.state.as_str())
            .bind(attempts)
            .bind(out.as_deref())
            .bind(i64::from(masked))
            .bind(error.as_deref())
            .bind(kind.as_deref())
            .bind(run_id.as_str())
            .bind(now.as_str())
            .bind(stored.hash.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e, format_args!("write {}", id.describe())))?;
        let row = ItemRow {
            lineage: id.lineage.clone(),
            step_id: id.step_id.clone(),
            item_key: id.item_key.clone(),
            state: change.state,
            attempts,
            output: out_value,
            output_masked: masked,
            error,
            error_kind: kind,
            run_id,
            created_at: current.as_ref().map_or(now_at, |r| r.created_at),
            updated_at: now_at,
            event_hash: Some(stored.hash.clone()),
        };
        Ok(Ok((row, stored)))
    }

    /// One item, if it has a row.
    pub async fn get_item(&self, id: &ItemId) -> Result<Option<ItemRow>, StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| self.err(e, "connect"))?;
        self.read_item(&mut conn, id).await
    }

    /// Every item of one step in a lineage, by key (one query; the engine
    /// reads it when a loop starts).
    pub async fn items_of_step(
        &self,
        lineage: &str,
        step_id: &str,
    ) -> Result<BTreeMap<String, ItemRow>, StoreError> {
        let q = self
            .sql(&format!(
                "SELECT {ITEM_COLS} FROM work_items WHERE lineage = $1 AND step_id = $2"
            ))
            .into_owned();
        let rows = sqlx::query(&q)
            .bind(lineage)
            .bind(step_id)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read work_items of step {step_id}")))?;
        let mut out = BTreeMap::new();
        for r in &rows {
            let item = self.decode_item(r)?;
            out.insert(item.item_key.clone(), item);
        }
        Ok(out)
    }

    /// Items matching `filter`, oldest change first.
    pub async fn list_items(&self, filter: &ItemFilter) -> Result<Vec<ItemRow>, StoreError> {
        let mut conds: Vec<String> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        let mut push = |col: &str, v: Option<String>| {
            if let Some(v) = v {
                args.push(v);
                conds.push(format!("{col} = ${}", args.len()));
            }
        };
        push("run_id", filter.run.clone());
        push("lineage", filter.lineage.clone());
        push("state", filter.state.map(|s| s.as_str().to_string()));
        push("item_key", filter.key.clone());
        if filter.items_only {
            conds.push("item_key <> ''".into());
        }
        let mut q = format!("SELECT {ITEM_COLS} FROM work_items");
        if !conds.is_empty() {
            q.push_str(" WHERE ");
            q.push_str(&conds.join(" AND "));
        }
        q.push_str(" ORDER BY updated_at, lineage, step_id, item_key");
        if let Some(limit) = filter.limit {
            q.push_str(&format!(" LIMIT {}", limit.max(0)));
        }
        let q = self.sql(&q);
        let mut query = sqlx::query(&q);
        for a in &args {
            query = query.bind(a.as_str());
        }
        let rows = query
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "list work_items"))?;
        rows.iter().map(|r| self.decode_item(r)).collect()
    }

    /// Every audit event of the item with this key, in every run and
    /// lineage, in chain order (one query on the `item_key` index).
    pub async fn events_for_item(&self, key: &str) -> Result<Vec<AuditEvent>, StoreError> {
        let q = self
            .sql(&format!(
                "SELECT {EVENT_COLS} FROM audit_events WHERE item_key = $1 ORDER BY id"
            ))
            .into_owned();
        let rows = sqlx::query(&q)
            .bind(key)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read audit events of item {key}")))?;
        rows.iter()
            .map(|row| {
                let raw = super::events::decode_raw(row)
                    .map_err(|e| self.err(e, "read audit_events row"))?;
                let id = raw.id;
                raw.parse()
                    .map_err(|why| self.other(format_args!("audit_events event {id}: {why}")))
            })
            .collect()
    }

    /// Puts items with these keys that ended as `business_exception` or
    /// `in_doubt` back to `pending` (a person fixed them), each with an
    /// `admin.item_requeued` event by `actor` (the OS user) carrying `reason`;
    /// `lineage` narrows the keys to one job. Items in other states are left
    /// alone. Returns the items requeued.
    pub async fn requeue_items(
        &self,
        keys: &[String],
        lineage: Option<&str>,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Vec<ItemRow>, StoreError> {
        let mut out = Vec::new();
        for key in keys {
            let candidates = self
                .list_items(&ItemFilter {
                    key: Some(key.clone()),
                    lineage: lineage.map(str::to_string),
                    ..Default::default()
                })
                .await?;
            for item in candidates {
                if !matches!(
                    item.state,
                    ItemState::BusinessException | ItemState::InDoubt
                ) {
                    continue;
                }
                let id = ItemId::new(&item.lineage, &item.step_id, &item.item_key);
                let event = NewEvent::new("admin.item_requeued", actor)
                    .target(item.item_key.as_str())
                    .outcome("ok")
                    .detail(serde_json::json!({
                        "lineage": item.lineage,
                        "step_id": item.step_id,
                        "from": item.state.as_str(),
                        "to": "pending",
                        "reason": reason,
                        "user": actor,
                    }));
                let mut change = ItemChange::to(ItemState::Pending, "");
                change.run_id = None;
                match self
                    .transition_item(
                        &id,
                        &[ItemState::BusinessException, ItemState::InDoubt],
                        &change,
                        event,
                    )
                    .await
                {
                    Ok((row, _)) => out.push(row),
                    // Someone else moved it meanwhile: leave it.
                    Err(StoreError::StateConflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Items per state among those last touched by run `run_id`.
    pub async fn item_counts_for_run(&self, run_id: &str) -> Result<ItemCounts, StoreError> {
        self.count_items("run_id", run_id).await
    }

    /// Items per state in a lineage (the job as a whole).
    pub async fn item_counts_for_lineage(&self, lineage: &str) -> Result<ItemCounts, StoreError> {
        self.count_items("lineage", lineage).await
    }

    /// Runs of one lineage, oldest first.
    pub async fn runs_of_lineage(&self, lineage: &str) -> Result<Vec<super::RunRow>, StoreError> {
        let q = self
            .sql(&format!(
                "SELECT {} FROM runs WHERE lineage = $1 ORDER BY queued_at, id",
                super::runs::RUN_COLS
            ))
            .into_owned();
        let rows = sqlx::query(&q)
            .bind(lineage)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read runs of lineage {lineage}")))?;
        rows.iter().map(|r| self.decode_run(r)).collect()
    }

    async fn count_items(&self, col: &str, value: &str) -> Result<ItemCounts, StoreError> {
        let q = self
            .sql(&format!(
                "SELECT state, COUNT(*) AS n FROM work_items WHERE {col} = $1 AND item_key <> '' \
             GROUP BY state"
            ))
            .into_owned();
        let rows = sqlx::query(&q)
            .bind(value)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("count work_items of {col} {value}")))?;
        let mut out = ItemCounts::default();
        for r in rows {
            let state: String = r
                .try_get("state")
                .map_err(|e| self.err(e, "read work_items.state"))?;
            let n: i64 = r
                .try_get("n")
                .map_err(|e| self.err(e, "read work_items count"))?;
            if let Some(st) = ItemState::parse(&state) {
                out.add(st, n);
            }
        }
        Ok(out)
    }

    async fn read_item(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: &ItemId,
    ) -> Result<Option<ItemRow>, StoreError> {
        let q = self.sql(&format!(
            "SELECT {ITEM_COLS} FROM work_items WHERE lineage = $1 AND step_id = $2 AND item_key = $3"
        )).into_owned();
        let row = sqlx::query(&q)
            .bind(id.lineage.as_str())
            .bind(id.step_id.as_str())
            .bind(id.item_key.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e, format_args!("read {}", id.describe())))?;
        row.map(|r| self.decode_item(&r)).transpose()
    }

    fn decode_item(&self, row: &AnyRow) -> Result<ItemRow, StoreError> {
        let text = |col: &str| -> Result<Option<String>, StoreError> {
            row.try_get::<Option<String>, _>(col)
                .map_err(|e| self.err(e, format_args!("read work_items.{col}")))
        };
        let req = |col: &str| -> Result<String, StoreError> {
            text(col)?.ok_or_else(|| self.other(format_args!("work_items.{col} is NULL")))
        };
        let ts = |col: &str| -> Result<DateTime<Utc>, StoreError> {
            let s = req(col)?;
            parse_ts(&s)
                .ok_or_else(|| self.other(format_args!("work_items.{col} is not a timestamp: {s}")))
        };
        let state_text = req("state")?;
        let state = ItemState::parse(&state_text).ok_or_else(|| {
            self.other(format_args!("work_items.state `{state_text}` is unknown"))
        })?;
        let output = match text("output")? {
            Some(s) => Some(
                serde_json::from_str(&s)
                    .map_err(|e| self.other(format_args!("work_items.output is not JSON: {e}")))?,
            ),
            None => None,
        };
        let int = |col: &str| -> Result<i64, StoreError> {
            row.try_get::<i64, _>(col)
                .map_err(|e| self.err(e, format_args!("read work_items.{col}")))
        };
        Ok(ItemRow {
            lineage: req("lineage")?,
            step_id: req("step_id")?,
            item_key: req("item_key")?,
            state,
            attempts: int("attempts")?,
            output,
            output_masked: int("output_masked")? != 0,
            error: text("error")?,
            error_kind: text("error_kind")?,
            run_id: req("run_id")?,
            created_at: ts("created_at")?,
            updated_at: ts("updated_at")?,
            event_hash: text("event_hash")?,
        })
    }
}
