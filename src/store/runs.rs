//! The `runs` table: the run queue and the run history. Every change of a
//! run's state is committed together with its audit event.

use chrono::{DateTime, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::NewEvent;
use super::time::{format_ts, now_micros, parse_ts};
use super::{Store, StoreError};

pub(super) const RUN_COLS: &str = "id, bot, playbook, status, inputs, scheduled_for, queued_at, started_at, \
     finished_at, actor, attempt, error, failed_step, vars, worker, lineage, playbook_sha256, \
     playbook_steps, resumed_from";

/// Statuses from which a run may be continued by another run (`clerk runs
/// resume`, a bot retry, `serve` after a crash). `succeeded_with_exceptions`
/// too: after a person fixed business exceptions and requeued them (`clerk
/// items retry`), a resume is what processes them (and retries system
/// exceptions); done items are skipped as always.
pub const RESUMABLE_STATUSES: &[&str] = &[
    "failed",
    "cancelled",
    "timed_out",
    "interrupted",
    "succeeded_with_exceptions",
];

/// The lineage a run gets when none is given: the bot firing
/// (`bot:NAME@<scheduled_for>`) or the run itself (`run:<id>`).
pub fn default_lineage(
    bot: Option<&str>,
    scheduled_for: Option<&DateTime<Utc>>,
    id: &str,
) -> String {
    match (bot, scheduled_for) {
        (Some(bot), Some(at)) => format!("bot:{bot}@{}", format_ts(at)),
        _ => format!("run:{id}"),
    }
}

/// A run to insert (queued by the scheduler, or started by `clerk run`).
#[derive(Clone, Debug, Default)]
pub struct NewRun {
    /// A ULID.
    pub id: String,
    /// The bot, `None` for manual runs.
    pub bot: Option<String>,
    pub playbook: String,
    pub inputs: serde_json::Value,
    /// The schedule slot this run is for (unique per bot).
    pub scheduled_for: Option<DateTime<Utc>>,
    pub actor: String,
    pub attempt: i64,
    /// `queued`, or `running` for manual runs (then `started_at` = now).
    pub status: String,
    /// `None`: [`default_lineage`]. A run continuing another passes the
    /// other's lineage.
    pub lineage: Option<String>,
    /// SHA-256 of the playbook file, and its step digests (step id → digest).
    pub playbook_sha256: Option<String>,
    pub playbook_steps: Option<serde_json::Value>,
    /// The run this one continues. When set, [`Store::create_run`] is
    /// guarded: the previous run must be in [`RESUMABLE_STATUSES`] and not
    /// already continued by another run, else [`StoreError::StateConflict`].
    pub resumed_from: Option<String>,
}

/// A row of `runs`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub bot: Option<String>,
    pub playbook: String,
    pub status: String,
    pub inputs: serde_json::Value,
    #[serde(with = "super::time::serde_ts_opt")]
    pub scheduled_for: Option<DateTime<Utc>>,
    #[serde(with = "super::time::serde_ts")]
    pub queued_at: DateTime<Utc>,
    #[serde(with = "super::time::serde_ts_opt")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "super::time::serde_ts_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    pub actor: String,
    pub attempt: i64,
    pub error: Option<String>,
    pub failed_step: Option<String>,
    pub vars: Option<serde_json::Value>,
    pub worker: Option<String>,
    /// The job this run belongs to (see [`default_lineage`]).
    #[serde(default)]
    pub lineage: String,
    #[serde(default)]
    pub playbook_sha256: Option<String>,
    /// Step id → digest of its definition (for naming changes on resume).
    #[serde(default, skip_serializing)]
    pub playbook_steps: Option<serde_json::Value>,
    #[serde(default)]
    pub resumed_from: Option<String>,
}

/// Fields to change on a run; `None` leaves a field unchanged.
#[derive(Clone, Debug, Default)]
pub struct RunChange {
    pub status: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub failed_step: Option<String>,
    pub vars: Option<serde_json::Value>,
    pub worker: Option<String>,
    pub playbook_sha256: Option<String>,
    pub playbook_steps: Option<serde_json::Value>,
    /// Write only while this lease is still held (checked in the same
    /// transaction): a scheduler or worker that lost its lease cannot
    /// change a run another took over.
    pub fence: Option<super::Fence>,
}

/// The run that continues a finished one in the same lineage (a bot retry
/// or resume), queued by [`Store::finish_run_and_enqueue`]. Bot, playbook,
/// inputs, actor and lineage are copied from the finished run.
#[derive(Clone, Debug)]
pub struct FollowUpRun {
    pub id: String,
    /// When it may be claimed.
    pub due_at: DateTime<Utc>,
    /// The bot's overlap policy (`skip` | `queue` | `allow`).
    pub overlap: String,
    /// `true`: a resume (`resumed_from` set: done items are skipped);
    /// `false`: a plain retry (`retry_of` only). Both keep the lineage.
    pub resume: bool,
    /// Its `run.queued` event (run id filled in by the store).
    pub event: NewEvent,
}

/// Which runs [`Store::list_runs`] returns.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub bot: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
}

/// One bound value of a dynamically built query.
enum Arg {
    Text(String),
    Int(i64),
}

impl Store {
    /// Inserts the run AND appends `event` (usually `run.queued`; its run id
    /// defaults to the new run's) in one transaction. Returns `None`, and
    /// appends nothing, if a run for (`bot`, `scheduled_for`) already exists.
    pub async fn create_run(
        &self,
        run: &NewRun,
        event: NewEvent,
    ) -> Result<Option<RunRow>, StoreError> {
        let inputs = serde_json::to_string(&run.inputs)
            .map_err(|e| self.other(format_args!("serialise inputs of run {}: {e}", run.id)))?;
        let steps = match &run.playbook_steps {
            Some(v) => Some(serde_json::to_string(v).map_err(|e| {
                self.other(format_args!(
                    "serialise playbook steps of run {}: {e}",
                    run.id
                ))
            })?),
            None => None,
        };
        let lineage = run.lineage.clone().unwrap_or_else(|| {
            default_lineage(run.bot.as_deref(), run.scheduled_for.as_ref(), &run.id)
        });
        let (event, lineage, steps) = (&event, lineage.as_str(), steps.as_deref());
        let inputs = inputs.as_str();
        self.write(|| async move {
            let queued_at = now_micros();
            let started_at = (run.status == "running").then_some(queued_at);
            let mut tx = self.begin_write().await?;
            if let Some(prev) = &run.resumed_from {
                self.lock_chain_head(&mut tx).await?;
                self.check_resumable(&mut tx, prev).await?;
            }
            let q = self.sql(
                "INSERT INTO runs (id, bot, playbook, status, inputs, scheduled_for, queued_at, \
                 started_at, actor, attempt, lineage, playbook_sha256, playbook_steps, resumed_from) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT (bot, scheduled_for) DO NOTHING",
            );
            let inserted = sqlx::query(&q)
                .bind(run.id.as_str())
                .bind(run.bot.as_deref())
                .bind(run.playbook.as_str())
                .bind(run.status.as_str())
                .bind(inputs)
                .bind(run.scheduled_for.as_ref().map(format_ts))
                .bind(format_ts(&queued_at))
                .bind(started_at.as_ref().map(format_ts))
                .bind(run.actor.as_str())
                .bind(run.attempt)
                .bind(lineage)
                .bind(run.playbook_sha256.as_deref())
                .bind(steps)
                .bind(run.resumed_from.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("insert into runs (run {})", run.id)))?
                .rows_affected();
            if inserted == 0 {
                tx.rollback()
                    .await
                    .map_err(|e| self.err(e, format_args!("roll back run {}", run.id)))?;
                return Ok(None);
            }
            let mut ev = event.clone();
            if ev.run_id.is_none() {
                ev.run_id = Some(run.id.clone());
            }
            self.append_in_tx(&mut tx, ev).await?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit new run {}", run.id)))?;
            Ok(Some(RunRow {
                id: run.id.clone(),
                bot: run.bot.clone(),
                playbook: run.playbook.clone(),
                status: run.status.clone(),
                inputs: run.inputs.clone(),
                scheduled_for: run.scheduled_for.map(|t| t.trunc_subsecs(6)),
                queued_at,
                started_at,
                finished_at: None,
                actor: run.actor.clone(),
                attempt: run.attempt,
                error: None,
                failed_step: None,
                vars: None,
                worker: None,
                lineage: lineage.to_string(),
                playbook_sha256: run.playbook_sha256.clone(),
                playbook_steps: run.playbook_steps.clone(),
                resumed_from: run.resumed_from.clone(),
            }))
        })
        .await
    }

    /// Applies `change` to run `id` (the full id) AND appends `event` (its
    /// run id defaults to `id`) in one transaction; returns the updated row.
    ///
    /// Guarded: the run must be in one of the `expected` statuses (empty:
    /// any). A lost race (another process moved the run first) returns
    /// [`StoreError::StateConflict`] and writes nothing — no row change, no
    /// event.
    pub async fn transition_run(
        &self,
        id: &str,
        expected: &[&str],
        change: RunChange,
        event: NewEvent,
    ) -> Result<RunRow, StoreError> {
        self.finish_run_and_enqueue(id, expected, change, event, None)
            .await
            .map(|(run, _)| run)
    }

    /// Like [`Store::transition_run`], and in the SAME transaction inserts
    /// `follow_up` (queued, same bot, playbook, inputs and lineage, the next
    /// attempt, `retry_of` = this run, `resumed_from` too when it is a resume)
    /// with its `run.queued` event: a crash cannot record the end of a run
    /// and lose its retry. Returns the updated run and the queued one.
    pub async fn finish_run_and_enqueue(
        &self,
        id: &str,
        expected: &[&str],
        change: RunChange,
        event: NewEvent,
        follow_up: Option<FollowUpRun>,
    ) -> Result<(RunRow, Option<RunRow>), StoreError> {
        let fence = change.fence.clone();
        let mut sets: Vec<&str> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        let mut text = |col: &'static str, v: Option<String>| {
            if let Some(v) = v {
                sets.push(col);
                args.push(Arg::Text(v));
            }
        };
        text("status", change.status);
        text("started_at", change.started_at.as_ref().map(format_ts));
        text("finished_at", change.finished_at.as_ref().map(format_ts));
        text("error", change.error);
        text("failed_step", change.failed_step);
        let json_text = |v: &Option<serde_json::Value>, what: &str| match v {
            Some(v) => serde_json::to_string(v)
                .map(Some)
                .map_err(|e| self.other(format_args!("serialise {what} of run {id}: {e}"))),
            None => Ok(None),
        };
        text("vars", json_text(&change.vars, "vars")?);
        text("worker", change.worker);
        text("playbook_sha256", change.playbook_sha256);
        text(
            "playbook_steps",
            json_text(&change.playbook_steps, "playbook steps")?,
        );
        let mut update = String::from("UPDATE runs SET ");
        for (i, col) in sets.iter().enumerate() {
            if i > 0 {
                update.push_str(", ");
            }
            update.push_str(&format!("{col} = ${}", i + 1));
        }
        update.push_str(&format!(" WHERE id = ${}", sets.len() + 1));
        if !expected.is_empty() {
            let marks: Vec<String> = (0..expected.len())
                .map(|i| format!("${}", sets.len() + 2 + i))
                .collect();
            update.push_str(&format!(" AND status IN ({})", marks.join(", ")));
        }
        let update = self.sql(&update).into_owned();
        let (update, args, event, follow_up, fence) = (&update, &args, &event, &follow_up, &fence);

        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            if let Some(f) = fence {
                self.check_fence_in_tx(&mut tx, f).await?;
            }
            // Take the chain first: on PostgreSQL this serialises every
            // writer of runs + events, so the status read below is current.
            self.lock_chain_head(&mut tx).await?;
            let current = self.read_run_in_tx(&mut tx, id).await?;
            if !expected.is_empty() && !expected.contains(&current.status.as_str()) {
                tx.rollback()
                    .await
                    .map_err(|e| self.err(e, format_args!("roll back change of run {id}")))?;
                return Err(StoreError::StateConflict {
                    what: format!("run {id}"),
                    expected: expected.iter().map(|s| s.to_string()).collect(),
                    found: current.status,
                });
            }
            if !args.is_empty() {
                let mut q = sqlx::query(update);
                for a in args {
                    q = match a {
                        Arg::Text(s) => q.bind(s.as_str()),
                        Arg::Int(n) => q.bind(*n),
                    };
                }
                q = q.bind(id);
                for st in expected {
                    q = q.bind(*st);
                }
                let n = q
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, format_args!("update runs (run {id})")))?
                    .rows_affected();
                if n == 0 {
                    let found = self.read_run_in_tx(&mut tx, id).await?.status;
                    tx.rollback()
                        .await
                        .map_err(|e| self.err(e, format_args!("roll back change of run {id}")))?;
                    return Err(StoreError::StateConflict {
                        what: format!("run {id}"),
                        expected: expected.iter().map(|s| s.to_string()).collect(),
                        found,
                    });
                }
            }
            let run = self.read_run_in_tx(&mut tx, id).await?;
            let mut ev = event.clone();
            if ev.run_id.is_none() {
                ev.run_id = Some(id.to_string());
            }
            self.append_in_tx(&mut tx, ev).await?;
            let queued = match follow_up {
                Some(f) => Some(self.insert_follow_up(&mut tx, &run, f).await?),
                None => None,
            };
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit change of run {id}")))?;
            Ok((run, queued))
        })
        .await
    }

    async fn read_run_in_tx(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: &str,
    ) -> Result<RunRow, StoreError> {
        let q = self
            .sql(&format!("SELECT {RUN_COLS} FROM runs WHERE id = $1"))
            .into_owned();
        let row = sqlx::query(&q)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e, format_args!("read runs (run {id})")))?
            .ok_or_else(|| StoreError::NotFound(format!("run {id} in store {}", self.url())))?;
        self.decode_run(&row)
    }

    /// Refuses (StateConflict) to continue `prev` unless it is in a
    /// resumable status and no run continues it yet.
    async fn check_resumable(
        &self,
        conn: &mut sqlx::AnyConnection,
        prev: &str,
    ) -> Result<(), StoreError> {
        let run = self.read_run_in_tx(conn, prev).await?;
        if !RESUMABLE_STATUSES.contains(&run.status.as_str()) {
            return Err(StoreError::StateConflict {
                what: format!("run {prev}"),
                expected: RESUMABLE_STATUSES.iter().map(|s| s.to_string()).collect(),
                found: run.status,
            });
        }
        let q = self.sql("SELECT id FROM runs WHERE resumed_from = $1");
        let by = sqlx::query(&q)
            .bind(prev)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e, format_args!("read runs resumed from {prev}")))?;
        if let Some(row) = by {
            let other: String = row.try_get("id").map_err(|e| self.err(e, "read runs.id"))?;
            return Err(StoreError::StateConflict {
                what: format!("run {prev}"),
                expected: vec!["not yet resumed".into()],
                found: format!("already resumed by run {other}"),
            });
        }
        Ok(())
    }

    async fn insert_follow_up(
        &self,
        conn: &mut sqlx::AnyConnection,
        prev: &RunRow,
        f: &FollowUpRun,
    ) -> Result<RunRow, StoreError> {
        if f.resume {
            self.check_resumable(conn, &prev.id).await?;
        }
        let inputs = serde_json::to_string(&prev.inputs)
            .map_err(|e| self.other(format_args!("serialise inputs of run {}: {e}", f.id)))?;
        let queued_at = now_micros();
        let q = self.sql(
            "INSERT INTO runs (id, bot, playbook, status, inputs, queued_at, actor, attempt, \
             due_at, overlap, retry_of, lineage, resumed_from) \
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        );
        sqlx::query(&q)
            .bind(f.id.as_str())
            .bind(prev.bot.as_deref())
            .bind(prev.playbook.as_str())
            .bind(inputs)
            .bind(format_ts(&queued_at))
            .bind(prev.actor.as_str())
            .bind(prev.attempt + 1)
            .bind(format_ts(&f.due_at))
            .bind(f.overlap.as_str())
            .bind(prev.id.as_str())
            .bind(prev.lineage.as_str())
            .bind(f.resume.then_some(prev.id.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(e, format_args!("insert follow-up run {}", f.id)))?;
        let mut ev = f.event.clone();
        ev.run_id = Some(f.id.clone());
        self.append_in_tx(conn, ev).await?;
        self.read_run_in_tx(conn, &f.id).await
    }

    /// Records which playbook a run executes (its SHA-256 and step digests)
    /// when the run was queued without it (a scheduled firing). Not a state
    /// change: no event (the engine puts the hash in `run.finished`).
    pub async fn set_run_playbook(
        &self,
        id: &str,
        sha256: &str,
        steps: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let steps = serde_json::to_string(steps)
            .map_err(|e| self.other(format_args!("serialise playbook steps of run {id}: {e}")))?;
        let q = self
            .sql("UPDATE runs SET playbook_sha256 = $1, playbook_steps = $2 WHERE id = $3")
            .into_owned();
        let (q, steps) = (&q, &steps);
        self.write(|| async move {
            sqlx::query(q)
                .bind(sha256)
                .bind(steps.as_str())
                .bind(id)
                .execute(self.pool())
                .await
                .map_err(|e| self.err(e, format_args!("record the playbook of run {id}")))?;
            Ok(())
        })
        .await
    }

    /// The run with this id, or with this unique id prefix (at least 6
    /// characters, case-insensitive). Several matches: [`StoreError::Ambiguous`].
    pub async fn get_run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let q = self
            .sql(&format!("SELECT {RUN_COLS} FROM runs WHERE id = $1"))
            .into_owned();
        let exact = sqlx::query(&q)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read runs (run {id})")))?;
        if let Some(row) = exact {
            return self.decode_run(&row).map(Some);
        }
        if id.chars().count() < 6 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let q = self
            .sql(&format!(
                "SELECT {RUN_COLS} FROM runs WHERE id LIKE $1 ORDER BY id LIMIT 2"
            ))
            .into_owned();
        let rows = sqlx::query(&q)
            .bind(format!("{}%", id.to_ascii_uppercase()))
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read runs (run id prefix {id})")))?;
        match rows.as_slice() {
            [] => Ok(None),
            [row] => self.decode_run(row).map(Some),
            _ => Err(StoreError::Ambiguous(format!(
                "'{id}' matches more than one run in store {}",
                self.url()
            ))),
        }
    }

    /// Runs, newest first, filtered by bot and status, at most `limit`.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let mut q = format!("SELECT {RUN_COLS} FROM runs");
        let mut args: Vec<Arg> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        if let Some(bot) = &filter.bot {
            args.push(Arg::Text(bot.clone()));
            conds.push(format!("bot = ${}", args.len()));
        }
        if let Some(status) = &filter.status {
            args.push(Arg::Text(status.clone()));
            conds.push(format!("status = ${}", args.len()));
        }
        if !conds.is_empty() {
            q.push_str(" WHERE ");
            q.push_str(&conds.join(" AND "));
        }
        q.push_str(" ORDER BY queued_at DESC, id DESC");
        if let Some(limit) = filter.limit {
            args.push(Arg::Int(limit.max(0)));
            q.push_str(&format!(" LIMIT ${}", args.len()));
        }
        self.fetch_runs(&q, &args, "list runs").await
    }

    /// All runs with this status, oldest first.
    pub async fn runs_with_status(&self, status: &str) -> Result<Vec<RunRow>, StoreError> {
        let q = format!("SELECT {RUN_COLS} FROM runs WHERE status = $1 ORDER BY queued_at, id");
        self.fetch_runs(
            &q,
            &[Arg::Text(status.to_string())],
            &format!("list {status} runs"),
        )
        .await
    }

    /// Atomically moves the oldest queued run (by `scheduled_for`, else
    /// `queued_at`) whose bot is not in `exclude_bots` to `running`, sets
    /// `started_at` and `worker`, and appends its `run.started` event, in one
    /// transaction. Exactly one claimer wins a run, also across processes.
    pub async fn claim_next_queued(
        &self,
        worker: &str,
        exclude_bots: &[String],
    ) -> Result<Option<RunRow>, StoreError> {
        let mut q = format!("SELECT {RUN_COLS} FROM runs WHERE status = 'queued'");
        if !exclude_bots.is_empty() {
            let marks: Vec<String> = (1..=exclude_bots.len()).map(|i| format!("${i}")).collect();
            q.push_str(&format!(
                " AND (bot IS NULL OR bot NOT IN ({}))",
                marks.join(", ")
            ));
        }
        q.push_str(" ORDER BY COALESCE(scheduled_for, queued_at), queued_at, id LIMIT 16");
        let select = self.sql(&q).into_owned();
        let claim = self
            .sql(
                "UPDATE runs SET status = 'running', started_at = $1, worker = $2 \
                 WHERE id = $3 AND status = 'queued'",
            )
            .into_owned();
        let (select, claim) = (&select, &claim);

        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            let mut query = sqlx::query(select);
            for b in exclude_bots {
                query = query.bind(b.as_str());
            }
            let rows = query
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.err(e, "read queued runs"))?;
            for row in &rows {
                let mut run = self.decode_run(row)?;
                let started = now_micros();
                let n = sqlx::query(claim)
                    .bind(format_ts(&started))
                    .bind(worker)
                    .bind(run.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, format_args!("claim run {}", run.id)))?
                    .rows_affected();
                if n == 0 {
                    continue; // another process took it first
                }
                run.status = "running".to_string();
                run.started_at = Some(started);
                run.worker = Some(worker.to_string());
                let ev = NewEvent::new("run.started", &run.actor)
                    .run(run.id.as_str())
                    .detail(serde_json::json!({
                        "worker": worker,
                        "attempt": run.attempt,
                        "bot": run.bot,
                        "playbook": run.playbook,
                    }));
                self.append_in_tx(&mut tx, ev).await?;
                tx.commit()
                    .await
                    .map_err(|e| self.err(e, format_args!("commit claim of run {}", run.id)))?;
                return Ok(Some(run));
            }
            tx.rollback()
                .await
                .map_err(|e| self.err(e, "roll back empty claim"))?;
            Ok(None)
        })
        .await
    }

    async fn fetch_runs(
        &self,
        q: &str,
        args: &[Arg],
        what: &str,
    ) -> Result<Vec<RunRow>, StoreError> {
        let q = self.sql(q);
        let mut query = sqlx::query(&q);
        for a in args {
            query = match a {
                Arg::Text(s) => query.bind(s.as_str()),
                Arg::Int(n) => query.bind(*n),
            };
        }
        let rows = query
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, what))?;
        rows.iter().map(|r| self.decode_run(r)).collect()
    }

    pub(super) fn decode_run(&self, row: &AnyRow) -> Result<RunRow, StoreError> {
        let id: String = row.try_get("id").map_err(|e| self.err(e, "read runs.id"))?;
        let get_text = |col: &str| -> Result<Option<String>, StoreError> {
            row.try_get::<Option<String>, _>(col)
                .map_err(|e| self.err(e, format_args!("read runs.{col} of run {id}")))
        };
        let required = |col: &str| -> Result<String, StoreError> {
            get_text(col)?.ok_or_else(|| self.other(format_args!("runs.{col} of run {id} is NULL")))
        };
        let ts = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
            match get_text(col)? {
                None => Ok(None),
                Some(s) => parse_ts(&s).map(Some).ok_or_else(|| {
                    self.other(format_args!(
                        "runs.{col} of run {id} is not a timestamp: '{s}'"
                    ))
                }),
            }
        };
        let json = |col: &str| -> Result<Option<serde_json::Value>, StoreError> {
            match get_text(col)? {
                None => Ok(None),
                Some(s) => serde_json::from_str(&s).map(Some).map_err(|e| {
                    self.other(format_args!(
                        "runs.{col} of run {id} is not valid JSON: {e}"
                    ))
                }),
            }
        };
        Ok(RunRow {
            bot: get_text("bot")?,
            playbook: required("playbook")?,
            status: required("status")?,
            inputs: json("inputs")?.unwrap_or(serde_json::Value::Null),
            scheduled_for: ts("scheduled_for")?,
            queued_at: ts("queued_at")?
                .ok_or_else(|| self.other(format_args!("runs.queued_at of run {id} is NULL")))?,
            started_at: ts("started_at")?,
            finished_at: ts("finished_at")?,
            actor: required("actor")?,
            attempt: row
                .try_get("attempt")
                .map_err(|e| self.err(e, format_args!("read runs.attempt of run {id}")))?,
            error: get_text("error")?,
            failed_step: get_text("failed_step")?,
            vars: json("vars")?,
            worker: get_text("worker")?,
            lineage: get_text("lineage")?.unwrap_or_else(|| format!("run:{id}")),
            playbook_sha256: get_text("playbook_sha256")?,
            playbook_steps: json("playbook_steps")?,
            resumed_from: get_text("resumed_from")?,
            id,
        })
    }
}
