//! The workers registry (migration 0012): one row per `clerk serve`, keyed
//! by its random instance id, with host, pid, clerk version, labels, start
//! time, last heartbeat, runs in flight and — after a clean stop —
//! `stopped_at`; plus `worker_bots`, the bots each worker can run, which the
//! claim query joins on.
//!
//! Every time here is the DATABASE's clock (`clock_timestamp()` on
//! PostgreSQL, `'now'` on SQLite), never the caller's: two hosts whose clocks
//! disagree still agree on whose heartbeat is fresh. Times are stored in the
//! store's usual text form (six fractional digits, `Z`), so they compare as
//! text.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::time::parse_ts;
use super::{Backend, RunRow, Store, StoreError};

/// How often `clerk serve` renews its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A worker whose heartbeat is older than this (by the database clock) is
/// not live: three heartbeats missed.
pub const LIVE_WITHIN: Duration = Duration::from_secs(7);
/// Rows of workers stopped or silent for longer than this are deleted.
const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// The database clock now, as an SQL expression giving the stored text form.
pub fn db_now_sql(backend: Backend) -> String {
    db_ago_sql(backend, Duration::ZERO)
}

/// The database clock `ago` in the past, as an SQL expression giving the
/// stored text form (whole seconds are enough for liveness).
pub fn db_ago_sql(backend: Backend, ago: Duration) -> String {
    let secs = ago.as_secs();
    match backend {
        Backend::Postgres => format!(
            "to_char((clock_timestamp() - interval '{secs} seconds') AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        ),
        // SQLite's %f is seconds with milliseconds; pad to microseconds.
        Backend::Sqlite => {
            format!("(strftime('%Y-%m-%dT%H:%M:%f', 'now', '-{secs} seconds') || '000Z')")
        }
    }
}

/// Labels as given on the command line: lower-case, sorted, no duplicates.
/// Each must be letters, digits, `-`, `_` or `.`.
pub fn normalize_labels<S: AsRef<str>>(labels: &[S]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for l in labels {
        let l = l.as_ref().trim().to_ascii_lowercase();
        if l.is_empty() {
            continue;
        }
        if !l
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "label `{l}` may only use letters, digits, `-`, `_` and `.`"
            ));
        }
        out.push(l);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What a `clerk serve` registers.
#[derive(Clone, Debug)]
pub struct NewWorker {
    pub instance_id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// Normalised (see [`normalize_labels`]).
    pub labels: Vec<String>,
    /// What this process writes into `runs.worker` when it claims a run.
    pub runs_worker: String,
}

/// A row of the registry, as `clerk workers` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WorkerRow {
    pub instance_id: String,
    /// What this worker writes into `runs.worker`.
    pub runs_worker: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub labels: Vec<String>,
    #[serde(with = "super::time::serde_ts")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "super::time::serde_ts")]
    pub heartbeat_at: DateTime<Utc>,
    /// Seconds since the last heartbeat, by the database clock.
    pub heartbeat_age_s: f64,
    pub runs_in_flight: i64,
    #[serde(with = "super::time::serde_ts_opt")]
    pub stopped_at: Option<DateTime<Utc>>,
    /// Not stopped, and heartbeat within the liveness window.
    pub live: bool,
}

impl WorkerRow {
    /// True if this worker has every label in `required`.
    pub fn has_labels(&self, required: &[String]) -> bool {
        required.iter().all(|l| self.labels.contains(l))
    }
}

const WORKER_COLS: &str = "instance_id, host, pid, version, labels, started_at, heartbeat_at, \
                           runs_in_flight, stopped_at, runs_worker";

impl Store {
    // The database clock now: `Store::db_now` (src/store/lease.rs).

    /// Registers this worker (or registers it again after a restart of the
    /// row: a heartbeat that found no row). Start and heartbeat are now by
    /// the database clock; `stopped_at` is cleared. Old rows of workers long
    /// gone are deleted on the way.
    pub async fn register_worker(&self, w: &NewWorker) -> Result<(), StoreError> {
        let now = db_now_sql(self.backend());
        let upsert = self
            .sql(&format!(
                "INSERT INTO workers ({WORKER_COLS}) VALUES ($1, $2, $3, $4, $5, {now}, {now}, 0, NULL, $6) \
                 ON CONFLICT (instance_id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
                 runs_worker = excluded.runs_worker, \
                 version = excluded.version, labels = excluded.labels, \
                 heartbeat_at = excluded.heartbeat_at, stopped_at = NULL"
            ))
            .into_owned();
        let forget = format!(
            "DELETE FROM workers WHERE heartbeat_at < {}",
            db_ago_sql(self.backend(), FORGET_AFTER)
        );
        let forget_bots = "DELETE FROM worker_bots WHERE instance_id NOT IN \
                           (SELECT instance_id FROM workers WHERE stopped_at IS NULL)";
        let mut labels = w.labels.clone();
        labels.sort();
        labels.dedup();
        let labels = labels.join(",");
        let (upsert, forget, labels) = (&upsert, &forget, &labels);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            sqlx::query(upsert)
                .bind(w.instance_id.as_str())
                .bind(w.host.as_str())
                .bind(i64::from(w.pid))
                .bind(w.version.as_str())
                .bind(labels.as_str())
                .bind(w.runs_worker.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("register worker {}", w.instance_id)))?;
            for q in [forget.as_str(), forget_bots] {
                sqlx::query(q)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, "forget old workers"))?;
            }
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit worker registration"))?;
            Ok(())
        })
        .await
    }

    /// Replaces the set of bots worker `instance_id` can run (the claim
    /// query only offers it queued runs of these bots).
    pub async fn set_worker_bots(
        &self,
        instance_id: &str,
        bots: &[String],
    ) -> Result<(), StoreError> {
        let delete = self
            .sql("DELETE FROM worker_bots WHERE instance_id = $1")
            .into_owned();
        let delete = &delete;
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            sqlx::query(delete)
                .bind(instance_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, "clear worker_bots"))?;
            for chunk in bots.chunks(400) {
                let mut q = String::from("INSERT INTO worker_bots (instance_id, bot) VALUES ");
                for i in 0..chunk.len() {
                    if i > 0 {
                        q.push_str(", ");
                    }
                    q.push_str(&format!("($1, ${})", i + 2));
                }
                let q = self.sql(&q).into_owned();
                let mut query = sqlx::query(&q).bind(instance_id);
                for b in chunk {
                    query = query.bind(b.as_str());
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, "write worker_bots"))?;
            }
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit worker_bots"))?;
            Ok(())
        })
        .await
    }

    /// Renews the heartbeat (database clock) and counts the worker's
    /// `running` runs into `runs_in_flight`. False if the row is gone or
    /// marked stopped (the caller registers again).
    pub async fn worker_heartbeat(&self, instance_id: &str) -> Result<bool, StoreError> {
        let q = self
            .sql(&format!(
                "UPDATE workers SET heartbeat_at = {}, runs_in_flight = \
                 (SELECT COUNT(*) FROM runs WHERE status = 'running' AND worker = workers.runs_worker) \
                 WHERE instance_id = $1 AND stopped_at IS NULL",
                db_now_sql(self.backend())
            ))
            .into_owned();
        let q = &q;
        self.write(|| async move {
            let n = sqlx::query(q)
                .bind(instance_id)
                .execute(self.pool())
                .await
                .map_err(|e| self.err(e, format_args!("heartbeat of worker {instance_id}")))?
                .rows_affected();
            Ok(n > 0)
        })
        .await
    }

    /// A clean stop: `stopped_at` = now (database clock), no runs in
    /// flight, and its bots no longer offered to it.
    pub async fn stop_worker(&self, instance_id: &str) -> Result<(), StoreError> {
        let now = db_now_sql(self.backend());
        let stop = self
            .sql(&format!(
                "UPDATE workers SET stopped_at = {now}, heartbeat_at = {now}, runs_in_flight = 0 \
                 WHERE instance_id = $1"
            ))
            .into_owned();
        let bots = self
            .sql("DELETE FROM worker_bots WHERE instance_id = $1")
            .into_owned();
        let (stop, bots) = (&stop, &bots);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            for q in [stop, bots] {
                sqlx::query(q)
                    .bind(instance_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, format_args!("stop worker {instance_id}")))?;
            }
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit worker stop"))?;
            Ok(())
        })
        .await
    }

    /// Every registered worker (live first, then by start), each with its
    /// heartbeat age and liveness judged by the database clock: live = not
    /// stopped and heartbeat younger than `live_within`.
    pub async fn workers(&self, live_within: Duration) -> Result<Vec<WorkerRow>, StoreError> {
        let q = format!(
            "SELECT {WORKER_COLS}, {} AS db_now, {} AS live_after FROM workers \
             ORDER BY started_at",
            db_now_sql(self.backend()),
            db_ago_sql(self.backend(), live_within)
        );
        let rows = sqlx::query(&q)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "read workers"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let text = |c: &str| -> Result<String, StoreError> {
                row.try_get::<String, _>(c)
                    .map_err(|e| self.err(e, format_args!("read workers.{c}")))
            };
            let ts = |c: &str| -> Result<DateTime<Utc>, StoreError> {
                let s = text(c)?;
                parse_ts(&s).ok_or_else(|| self.other(format_args!("workers.{c}: bad time `{s}`")))
            };
            let stopped: Option<String> = row
                .try_get("stopped_at")
                .map_err(|e| self.err(e, "read workers.stopped_at"))?;
            let heartbeat_text = text("heartbeat_at")?;
            let heartbeat_at = ts("heartbeat_at")?;
            let db_now = ts("db_now")?;
            let labels = text("labels")?;
            out.push(WorkerRow {
                instance_id: text("instance_id")?,
                runs_worker: text("runs_worker")?,
                host: text("host")?,
                pid: row
                    .try_get("pid")
                    .map_err(|e| self.err(e, "read workers.pid"))?,
                version: text("version")?,
                labels: labels
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
                started_at: ts("started_at")?,
                heartbeat_at,
                heartbeat_age_s: ((db_now - heartbeat_at).num_milliseconds().max(0) as f64 / 100.0)
                    .round()
                    / 10.0,
                runs_in_flight: row
                    .try_get("runs_in_flight")
                    .map_err(|e| self.err(e, "read workers.runs_in_flight"))?,
                live: stopped.is_none() && heartbeat_text > text("live_after")?,
                stopped_at: stopped.as_deref().and_then(parse_ts),
            });
        }
        out.sort_by_key(|w| !w.live);
        Ok(out)
    }

    /// The live workers (see [`Store::workers`]).
    pub async fn live_workers(&self, live_within: Duration) -> Result<Vec<WorkerRow>, StoreError> {
        Ok(self
            .workers(live_within)
            .await?
            .into_iter()
            .filter(|w| w.live)
            .collect())
    }

    /// `running` runs whose `worker` is a registered worker that is no
    /// longer live (stopped, or heartbeat older than `live_within` by the
    /// database clock). Runs whose worker never registered (a `clerk run`,
    /// an older clerk) are not returned: they are judged elsewhere.
    pub async fn runs_of_dead_workers(
        &self,
        live_within: Duration,
    ) -> Result<Vec<RunRow>, StoreError> {
        let cols = super::runs::RUN_COLS
            .split(", ")
            .map(|c| format!("r.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let q = format!(
            "SELECT {cols} FROM runs r JOIN workers w ON w.runs_worker = r.worker \
             WHERE r.status = 'running' AND (w.stopped_at IS NOT NULL OR w.heartbeat_at <= {})",
            db_ago_sql(self.backend(), live_within)
        );
        let rows = sqlx::query(&q)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "read runs of dead workers"))?;
        rows.iter().map(|r| self.decode_run(r)).collect()
    }
}
