//! The scheduler's side of the store: batch enqueueing of firings (runs,
//! their `run.queued` events, `scheduler.*` events and the per-bot cursors in
//! one transaction), claiming due runs by the overlap rules, worker leases and
//! the per-bot summaries `clerk bots list` shows.
//!
//! Batches matter at scale: 10,000 bots firing on the same minute are
//! enqueued with a few multi-row INSERTs and one read of the audit chain head,
//! instead of 10,000 transactions.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::NewEvent;
use super::runs::RUN_COLS;
use super::time::{format_ts, now_micros, parse_ts};
use super::{Backend, RunRow, Store, StoreError};

/// Rows per multi-row INSERT: well under SQLite's and PostgreSQL's limits on
/// bound parameters (16 columns × 200).
const CHUNK: usize = 200;

/// Arbitrary constant key for `pg_advisory_xact_lock` around claims ("clerkclm").
const PG_CLAIM_LOCK: i64 = 0x636c_6572_6b63_6c6d;

/// A run to enqueue, with its `run.queued` event (run id filled in).
#[derive(Clone, Debug)]
pub struct QueuedRun {
    pub id: String,
    pub bot: String,
    pub playbook: String,
    pub inputs: serde_json::Value,
    /// The firing; `None` for manual runs and retries.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When it may be claimed.
    pub due_at: DateTime<Utc>,
    pub overlap: String,
    pub actor: String,
    pub attempt: i64,
    pub retry_of: Option<String>,
    pub event: NewEvent,
}

/// What the scheduler writes in one transaction.
#[derive(Clone, Debug, Default)]
pub struct SchedBatch {
    pub runs: Vec<QueuedRun>,
    /// `scheduler.skipped` / `scheduler.caught_up` events (appended after the
    /// runs' events).
    pub events: Vec<NewEvent>,
    /// New cursor per bot: every firing up to this time has been dealt with.
    pub cursors: Vec<(String, DateTime<Utc>)>,
    /// Per run id: when the queued run expires unless started (`max_delay`).
    pub expires: HashMap<String, DateTime<Utc>>,
    /// Write only while this lease is held (the scheduler's): a scheduler
    /// that lost its lease writes no firing and moves no cursor.
    pub fence: Option<super::Fence>,
}

/// The result of [`Store::claim_due`].
#[derive(Debug, Default)]
pub struct Claim {
    /// The run now `running` for this worker, and its overlap policy.
    pub run: Option<RunRow>,
    /// Runs moved to `skipped` on the way (bot paused, or overlap: skip).
    pub skipped: Vec<(String, String)>,
}

/// Which queued runs a worker may claim.
#[derive(Clone, Copy, Debug)]
pub enum ClaimScope<'a> {
    /// Runs of any bot (tools and tests that act for every bot).
    AnyBot,
    /// Runs of the bots registered for this worker instance id in
    /// `worker_bots` (see [`Store::set_worker_bots`]).
    Registered(&'a str),
}

/// A bot's playbook SHA-256 and step digests (JSON text), recorded on a run
/// when it is claimed (see [`Store::claim_due_batch`]).
pub type PlaybookStamp<'a> = dyn Fn(&str) -> Option<(String, String)> + Sync + 'a;

/// The result of [`Store::claim_due_batch`].
#[derive(Debug, Default)]
pub struct ClaimBatch {
    /// The runs now `running` for this worker, oldest `due_at` first.
    pub runs: Vec<RunRow>,
    /// Runs moved to `skipped` on the way (bot paused, or overlap: skip).
    pub skipped: Vec<(String, String)>,
}

/// A row of `scheduler_lease`.
#[derive(Clone, Debug)]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}

/// The newest run of a bot and how many of its firings were skipped lately.
#[derive(Clone, Debug, Default)]
pub struct BotRunSummary {
    pub last_run: Option<RunRow>,
    pub skipped: i64,
    pub last_skipped_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Writes a scheduler batch in one transaction: inserts the runs (a run
    /// whose (bot, scheduled_for) already exists is left alone, and gets no
    /// event), appends the inserted runs' `run.queued` events and the other
    /// events, and stores the cursors. Returns the ids of the runs inserted.
    pub async fn write_sched_batch(&self, batch: &SchedBatch) -> Result<Vec<String>, StoreError> {
        if batch.runs.is_empty() && batch.events.is_empty() && batch.cursors.is_empty() {
            return Ok(Vec::new());
        }
        let mut run_rows = Vec::with_capacity(batch.runs.len());
        for r in &batch.runs {
            let inputs = serde_json::to_string(&r.inputs)
                .map_err(|e| self.other(format_args!("serialise inputs of run {}: {e}", r.id)))?;
            run_rows.push(inputs);
        }
        let run_rows = &run_rows;
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            if let Some(f) = &batch.fence {
                self.check_fence_in_tx(&mut tx, f).await?;
            }
            let queued_at = format_ts(&now_micros());
            let mut inserted: HashSet<String> = HashSet::new();
            for (chunk_no, chunk) in batch.runs.chunks(CHUNK).enumerate() {
                let mut q = String::from(
                    "INSERT INTO runs (id, bot, playbook, status, inputs, scheduled_for, queued_at, \
                     actor, attempt, due_at, overlap, retry_of, lineage, expires_at) VALUES ",
                );
                for i in 0..chunk.len() {
                    let b = i * 13;
                    if i > 0 {
                        q.push_str(", ");
                    }
                    // A retry shares the lineage of the run it retries.
                    q.push_str(&format!(
                        "(${}, ${}, ${}, 'queued', ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, \
                         COALESCE((SELECT p.lineage FROM runs p WHERE p.id = ${}), ${}), ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 8,
                        b + 9,
                        b + 10,
                        b + 11,
                        b + 11,
                        b + 12,
                        b + 13
                    ));
                }
                q.push_str(" ON CONFLICT (bot, scheduled_for) DO NOTHING RETURNING id");
                let q = self.sql(&q).into_owned();
                let mut query = sqlx::query(&q);
                for (i, r) in chunk.iter().enumerate() {
                    query = query
                        .bind(r.id.as_str())
                        .bind(r.bot.as_str())
                        .bind(r.playbook.as_str())
                        .bind(run_rows[chunk_no * CHUNK + i].as_str())
                        .bind(r.scheduled_for.as_ref().map(format_ts))
                        .bind(queued_at.as_str())
                        .bind(r.actor.as_str())
                        .bind(r.attempt)
                        .bind(format_ts(&r.due_at))
                        .bind(r.overlap.as_str())
                        .bind(r.retry_of.as_deref())
                        .bind(super::runs::default_lineage(
                            Some(&r.bot),
                            r.scheduled_for.as_ref(),
                            &r.id,
                        ))
                        .bind(batch.expires.get(&r.id).map(format_ts));
                }
                let rows = query
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, "insert queued runs"))?;
                for row in rows {
                    let id: String = row
                        .try_get("id")
                        .map_err(|e| self.err(e, "read inserted run id"))?;
                    inserted.insert(id);
                }
            }
            let mut events: Vec<NewEvent> = Vec::new();
            for r in &batch.runs {
                if inserted.contains(&r.id) {
                    let mut ev = r.event.clone();
                    ev.run_id = Some(r.id.clone());
                    events.push(ev);
                }
            }
            events.extend(batch.events.iter().cloned());
            // The runs inserted here have no events yet: their seq starts at 1.
            self.append_many_in_tx(&mut tx, events, &inserted).await?;

            for chunk in batch.cursors.chunks(CHUNK) {
                let mut q = String::from(
                    "INSERT INTO scheduler_cursor (bot, fired_through, updated_at) VALUES ",
                );
                for i in 0..chunk.len() {
                    if i > 0 {
                        q.push_str(", ");
                    }
                    q.push_str(&format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3));
                }
                q.push_str(
                    " ON CONFLICT (bot) DO UPDATE SET fired_through = excluded.fired_through, \
                     updated_at = excluded.updated_at",
                );
                let q = self.sql(&q).into_owned();
                let mut query = sqlx::query(&q);
                for (bot, t) in chunk {
                    query = query
                        .bind(bot.as_str())
                        .bind(format_ts(t))
                        .bind(queued_at.as_str());
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, "write scheduler_cursor"))?;
            }
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit scheduler batch"))?;
            Ok(batch
                .runs
                .iter()
                .filter(|r| inserted.contains(&r.id))
                .map(|r| r.id.clone())
                .collect())
        })
        .await
    }

    /// True if some queued run is due at `now` (a cheap read before a claim).
    pub async fn has_due_runs(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let q = self.sql("SELECT id FROM runs WHERE status = 'queued' AND due_at <= $1 LIMIT 1");
        let row = sqlx::query(&q)
            .bind(format_ts(&now))
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.err(e, "read due runs"))?;
        Ok(row.is_some())
    }

    /// The earliest `due_at` of a queued run, if any.
    pub async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT MIN(due_at) AS d FROM runs WHERE status = 'queued'")
            .fetch_one(self.pool())
            .await
            .map_err(|e| self.err(e, "read the next due run"))?;
        let d: Option<String> = row
            .try_get("d")
            .map_err(|e| self.err(e, "read runs.due_at"))?;
        Ok(d.as_deref().and_then(parse_ts))
    }

    /// Claims the oldest due queued run this worker may take; see
    /// [`Store::claim_due_batch`] (this is a batch of one).
    pub async fn claim_due(
        &self,
        worker: &str,
        scope: ClaimScope<'_>,
    ) -> Result<Claim, StoreError> {
        let b = self.claim_due_batch(worker, scope, 1, None).await?;
        Ok(Claim {
            run: b.runs.into_iter().next(),
            skipped: b.skipped,
        })
    }

    /// Claims up to `max` of the oldest due queued runs this worker may take
    /// (by `due_at` only, so the index gives the order even with 10,000 runs
    /// due on the same instant), in ONE transaction (serialised across
    /// processes): each becomes `running` with `started_at` and `worker`,
    /// and gets its `run.started` event. On the way, due scheduled runs of
    /// paused bots, and runs of `overlap: skip` bots whose previous run is
    /// still running, become `skipped` with a `scheduler.skipped` event. A
    /// run of an `overlap: queue` bot — and a manual run or retry of a `skip`
    /// bot — waits while the bot has a running run.
    ///
    /// Every rule is decided in the query: it only returns rows this worker
    /// can act on (its bots — `scope` — and not blocked by a running run), so
    /// no backlog of rows that cannot run (bots no live worker knows, a
    /// renamed bot's leftovers, a busy bot's queue) can hide runnable ones.
    ///
    /// `stamp` gives a bot's playbook SHA-256 and step digests (JSON) to
    /// record on the run in the same UPDATE, so starting a run is this one
    /// transaction (the engine records them only for runs that lack them).
    pub async fn claim_due_batch(
        &self,
        worker: &str,
        scope: ClaimScope<'_>,
        max: usize,
        stamp: Option<&PlaybookStamp<'_>>,
    ) -> Result<ClaimBatch, StoreError> {
        let max = max.max(1);
        // An expired run is never started late (the scheduler marks it
        // `expired`); judged by the database clock.
        let now = self.sql_db_now(None);
        let scope_sql = match scope {
            ClaimScope::AnyBot => "r.bot IS NOT NULL",
            ClaimScope::Registered(_) => {
                "r.bot IN (SELECT wb.bot FROM worker_bots wb WHERE wb.instance_id = $2)"
            }
        };
        let cols = RUN_COLS
            .split(',')
            .map(|c| format!("r.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        // Rows of the same bot beyond the first few cannot all be claimed in
        // one batch (overlap), so read a little more than `max`.
        let select = self
            .sql(&format!(
                "SELECT {cols}, r.overlap AS overlap, \
                 CASE WHEN r.bot IN (SELECT bs.bot FROM bot_state bs WHERE bs.paused = 1) \
                 THEN 1 ELSE 0 END AS paused FROM runs r \
                 WHERE r.status = 'queued' AND r.due_at <= $1 AND {scope_sql} \
                 AND (r.expires_at IS NULL OR r.expires_at > {now}) AND ( \
                 COALESCE(r.overlap, 'queue') = 'allow' \
                 OR (r.scheduled_for IS NOT NULL AND COALESCE(r.overlap, 'queue') = 'skip') \
                 OR (r.scheduled_for IS NOT NULL AND r.bot IN \
                     (SELECT bs.bot FROM bot_state bs WHERE bs.paused = 1)) \
                 OR NOT EXISTS (SELECT 1 FROM runs x WHERE x.bot = r.bot AND x.status = 'running')) \
                 ORDER BY r.due_at LIMIT {}",
                max * 2 + 8
            ))
            .into_owned();
        let claim = self
            .sql(
                "UPDATE runs SET status = 'running', started_at = $1, worker = $2, \
                 playbook_sha256 = COALESCE(playbook_sha256, $4), \
                 playbook_steps = COALESCE(playbook_steps, $5) \
                 WHERE id = $3 AND status = 'queued'",
            )
            .into_owned();
        let skip = self
            .sql(
                "UPDATE runs SET status = 'skipped', finished_at = $1, error = $2 \
                 WHERE id = $3 AND status = 'queued'",
            )
            .into_owned();
        let (select, claim, skip) = (&select, &claim, &skip);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            if self.backend() == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)::text")
                    .bind(PG_CLAIM_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, "lock for claiming runs"))?;
            }
            let now = now_micros();
            let mut query = sqlx::query(select).bind(format_ts(&now));
            if let ClaimScope::Registered(instance) = scope {
                query = query.bind(instance);
            }
            let rows = query
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.err(e, "read due runs"))?;
            if rows.is_empty() {
                tx.rollback()
                    .await
                    .map_err(|e| self.err(e, "roll back empty claim"))?;
                return Ok(ClaimBatch::default());
            }
            // Bots with a running run: the query excluded the rows they
            // block, but runs claimed in this batch block later rows too.
            let mut running: HashSet<String> = HashSet::new();
            let mut out = ClaimBatch::default();
            let mut events: Vec<NewEvent> = Vec::new();
            for row in &rows {
                if out.runs.len() >= max {
                    break;
                }
                let mut run = self.decode_run(row)?;
                let Some(bot) = run.bot.clone() else { continue };
                let overlap: Option<String> = row.try_get("overlap").map_err(|e| {
                    self.err(e, format_args!("read runs.overlap of run {}", run.id))
                })?;
                let overlap = overlap.unwrap_or_else(|| "queue".into());
                let paused: i64 = row
                    .try_get("paused")
                    .map_err(|e| self.err(e, "read the bot's pause flag"))?;
                // The query let a scheduled `skip` row through whether or not
                // its bot runs (it is skipped if so): ask for those only.
                let must_ask = overlap == "skip" && run.scheduled_for.is_some() && paused != 1;
                let bot_running = running.contains(&bot)
                    || (must_ask && self.bot_is_running(&mut tx, &bot).await?);
                let reason = if run.scheduled_for.is_some() && paused == 1 {
                    Some("the bot is paused")
                } else if overlap == "skip" && run.scheduled_for.is_some() && bot_running {
                    Some("the previous run of the bot was still running (overlap: skip)")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let n = sqlx::query(skip)
                        .bind(format_ts(&now))
                        .bind(format!("skipped: {reason}"))
                        .bind(run.id.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.err(e, format_args!("skip run {}", run.id)))?
                        .rows_affected();
                    if n > 0 {
                        events.push(
                            NewEvent::new("scheduler.skipped", &bot)
                                .run(run.id.as_str())
                                .target(bot.as_str())
                                .outcome("skipped")
                                .detail(serde_json::json!({
                                    "bot": bot,
                                    "scheduled_for": run.scheduled_for.as_ref().map(format_ts),
                                    "reason": reason,
                                })),
                        );
                        out.skipped.push((run.id.clone(), bot.clone()));
                    }
                    continue;
                }
                if overlap != "allow" && bot_running {
                    continue;
                }
                let stamped = match (&run.playbook_sha256, stamp) {
                    (None, Some(f)) => f(&bot),
                    _ => None,
                };
                let n = sqlx::query(claim)
                    .bind(format_ts(&now))
                    .bind(worker)
                    .bind(run.id.as_str())
                    .bind(stamped.as_ref().map(|(sha, _)| sha.as_str()))
                    .bind(stamped.as_ref().map(|(_, steps)| steps.as_str()))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, format_args!("claim run {}", run.id)))?
                    .rows_affected();
                if n == 0 {
                    continue;
                }
                running.insert(bot.clone());
                if let Some((sha, steps)) = stamped {
                    run.playbook_sha256 = Some(sha);
                    run.playbook_steps = serde_json::from_str(&steps).ok();
                }
                run.status = "running".into();
                run.started_at = Some(now);
                run.worker = Some(worker.to_string());
                let lateness_ms = run
                    .scheduled_for
                    .map(|s| (now - s).num_milliseconds().max(0));
                events.push(
                    NewEvent::new("run.started", &run.actor)
                        .run(run.id.as_str())
                        .detail(serde_json::json!({
                            "worker": worker,
                            "attempt": run.attempt,
                            "bot": run.bot,
                            "playbook": run.playbook,
                            "scheduled_for": run.scheduled_for.as_ref().map(format_ts),
                            "lateness_ms": lateness_ms,
                        })),
                );
                out.runs.push(run);
            }
            if events.is_empty() {
                tx.rollback()
                    .await
                    .map_err(|e| self.err(e, "roll back empty claim"))?;
                return Ok(ClaimBatch::default());
            }
            self.append_many_in_tx(&mut tx, events, &HashSet::new())
                .await?;
            tx.commit().await.map_err(|e| self.err(e, "commit claim"))?;
            Ok(out)
        })
        .await
    }

    async fn bot_is_running(
        &self,
        conn: &mut sqlx::AnyConnection,
        bot: &str,
    ) -> Result<bool, StoreError> {
        let q = self.sql("SELECT id FROM runs WHERE bot = $1 AND status = 'running' LIMIT 1");
        let row = sqlx::query(&q)
            .bind(bot)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e, format_args!("read running runs of bot {bot}")))?;
        Ok(row.is_some())
    }

    /// Every bot's scheduler cursor.
    pub async fn sched_cursors(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows = sqlx::query("SELECT bot, fired_through FROM scheduler_cursor")
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "read scheduler_cursor"))?;
        let mut out = HashMap::new();
        for row in rows {
            let bot: String = row
                .try_get("bot")
                .map_err(|e| self.err(e, "read scheduler_cursor.bot"))?;
            let t: String = row
                .try_get("fired_through")
                .map_err(|e| self.err(e, "read scheduler_cursor.fired_through"))?;
            if let Some(t) = parse_ts(&t) {
                out.insert(bot, t);
            }
        }
        Ok(out)
    }

    /// The bots whose pause flag is set.
    pub async fn paused_bots(&self) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .bot_states()
            .await?
            .into_iter()
            .filter(|(_, s)| s.paused)
            .map(|(b, _)| b)
            .collect())
    }

    /// Leases whose name starts with `prefix`.
    pub async fn leases(&self, prefix: &str) -> Result<Vec<LeaseRow>, StoreError> {
        let q = self.sql("SELECT name, holder, expires_at FROM scheduler_lease WHERE name LIKE $1");
        let rows = sqlx::query(&q)
            .bind(format!("{prefix}%"))
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "read scheduler_lease"))?;
        let mut out = Vec::new();
        for row in rows {
            let name: String = row
                .try_get("name")
                .map_err(|e| self.err(e, "read scheduler_lease.name"))?;
            let holder: String = row
                .try_get("holder")
                .map_err(|e| self.err(e, "read scheduler_lease.holder"))?;
            let exp: String = row
                .try_get("expires_at")
                .map_err(|e| self.err(e, "read scheduler_lease.expires_at"))?;
            out.push(LeaseRow {
                name,
                holder,
                expires_at: parse_ts(&exp).unwrap_or(DateTime::<Utc>::MIN_UTC),
            });
        }
        Ok(out)
    }

    /// Takes lease `name` over from `old_holder` (known to be dead).
    pub async fn take_over_lease(
        &self,
        name: &str,
        old_holder: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let ttl = chrono::Duration::from_std(ttl)
            .map_err(|e| self.other(format_args!("lease {name}: ttl out of range: {e}")))?;
        let q = self
            .sql(
                "UPDATE scheduler_lease SET holder = $3, acquired_at = $4, expires_at = $5 \
                 WHERE name = $1 AND holder = $2",
            )
            .into_owned();
        let q = &q;
        self.write(|| async move {
            let now = now_micros();
            let n = sqlx::query(q)
                .bind(name)
                .bind(old_holder)
                .bind(holder)
                .bind(format_ts(&now))
                .bind(format_ts(&(now + ttl)))
                .execute(self.pool())
                .await
                .map_err(|e| self.err(e, format_args!("take over lease {name}")))?
                .rows_affected();
            Ok(n > 0)
        })
        .await
    }

    /// Per bot: its newest run, and its `scheduler.skipped` events since `since`.
    pub async fn bot_run_summaries(
        &self,
        since: DateTime<Utc>,
    ) -> Result<HashMap<String, BotRunSummary>, StoreError> {
        let q = format!(
            "SELECT {RUN_COLS} FROM runs r WHERE bot IS NOT NULL AND status <> 'skipped' \
             AND id = (SELECT id FROM runs r2 WHERE r2.bot = r.bot AND r2.status <> 'skipped' \
             ORDER BY r2.queued_at DESC, r2.id DESC LIMIT 1)"
        );
        let rows = sqlx::query(&q)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "read the last run of each bot"))?;
        let mut out: HashMap<String, BotRunSummary> = HashMap::new();
        for row in &rows {
            let run = self.decode_run(row)?;
            if let Some(bot) = run.bot.clone() {
                out.entry(bot).or_default().last_run = Some(run);
            }
        }
        let q = self.sql(
            "SELECT target, COUNT(*) AS n, MAX(at) AS last FROM audit_events \
             WHERE kind = 'scheduler.skipped' AND at >= $1 AND target IS NOT NULL GROUP BY target",
        );
        let rows = sqlx::query(&q)
            .bind(format_ts(&since))
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "count skipped firings"))?;
        for row in rows {
            let bot: String = row
                .try_get("target")
                .map_err(|e| self.err(e, "read audit_events.target"))?;
            let n: i64 = row
                .try_get("n")
                .map_err(|e| self.err(e, "read skipped count"))?;
            let last: Option<String> = row
                .try_get("last")
                .map_err(|e| self.err(e, "read audit_events.at"))?;
            let s = out.entry(bot).or_default();
            s.skipped = n;
            s.last_skipped_at = last.as_deref().and_then(parse_ts);
        }
        Ok(out)
    }
}
