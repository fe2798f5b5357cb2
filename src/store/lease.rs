//! Leases judged by the DATABASE's clock, with fencing.
//!
//! Several `clerk serve` processes on several machines share one store; their
//! clocks may disagree by seconds. So a lease's expiry is written and
//! compared by the database itself (SQLite: its `'now'`; PostgreSQL:
//! `clock_timestamp()`), never by a host's clock.
//!
//! Each time a lease changes hands its `epoch` grows by one: the holder's
//! fencing token. A writer that acts under a lease passes its [`Fence`];
//! guarded writes (the scheduler's batch, a run's transition) check in their
//! own transaction that the lease is still held by that holder, in that
//! epoch, and not expired — and on PostgreSQL lock the lease row, so a
//! takeover waits for the write to commit. A scheduler that lost its lease
//! (paused, partitioned, too slow to renew) therefore cannot write schedule
//! state or finish a run another took over: its write fails with
//! [`StoreError::StateConflict`] and nothing is written.
//!
//! Also here: queued runs past their `expires_at` become `expired`
//! ([`Store::expire_overdue`]).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::NewEvent;
use super::time::{format_ts, now_micros, parse_ts};
use super::{Backend, Store, StoreError};

/// The right to act under a lease: `holder` holds `lease` in `epoch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub epoch: i64,
}

/// A lease held: its fence, and who held it before when that was another
/// holder (a takeover or a hand-over).
#[derive(Clone, Debug)]
pub struct LeaseGrant {
    pub fence: Fence,
    pub previous: Option<String>,
}

/// A queued run that expired (see [`Store::expire_overdue`]).
#[derive(Clone, Debug)]
pub struct ExpiredRun {
    pub id: String,
    pub bot: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// SQL yielding the database's now as stored text
    /// (`2026-01-31T02:30:00.123456Z`), optionally plus `$N` (a text bind
    /// made by [`Store::db_interval`]).
    pub(crate) fn sql_db_now(&self, plus: Option<usize>) -> String {
        match (self.backend(), plus) {
            (Backend::Sqlite, None) => "(strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z')".into(),
            (Backend::Sqlite, Some(n)) => {
                format!("(strftime('%Y-%m-%dT%H:%M:%f', 'now', ${n}) || '000Z')")
            }
            (Backend::Postgres, None) => {
                "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                    .into()
            }
            (Backend::Postgres, Some(n)) => format!(
                "to_char((clock_timestamp() + CAST(${n} AS interval)) AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            ),
        }
    }

    /// The bind value for the `plus` of [`Store::sql_db_now`].
    pub(crate) fn db_interval(&self, d: Duration) -> String {
        let ms = d.as_millis();
        match self.backend() {
            Backend::Sqlite => format!("+{}.{:03} seconds", ms / 1000, ms % 1000),
            Backend::Postgres => format!("{ms} milliseconds"),
        }
    }

    /// The database's clock now.
    pub async fn db_now(&self) -> Result<DateTime<Utc>, StoreError> {
        let q = format!("SELECT {} AS now", self.sql_db_now(None));
        let row = sqlx::query(&q)
            .fetch_one(self.pool())
            .await
            .map_err(|e| self.err(e, "read the database clock"))?;
        let t: String = row
            .try_get("now")
            .map_err(|e| self.err(e, "read the database clock"))?;
        parse_ts(&t).ok_or_else(|| self.other(format_args!("the database clock said '{t}'")))
    }

    /// Takes lease `name` for `holder` for `ttl` (database clock), or renews
    /// it when `holder` has it and it has not expired. Returns the grant
    /// (epoch = fencing token), or `None` when another live holder has it.
    /// The epoch grows whenever the lease is (re)acquired rather than
    /// renewed — also by the same holder after it had expired.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseGrant>, StoreError> {
        let now = self.sql_db_now(None);
        let until = self.sql_db_now(Some(3));
        let read = self
            .sql("SELECT holder FROM scheduler_lease WHERE name = $1")
            .into_owned();
        let update = self
            .sql(&format!(
                "UPDATE scheduler_lease SET \
                 epoch = CASE WHEN holder = $2 AND expires_at > {now} THEN epoch ELSE epoch + 1 END, \
                 acquired_at = CASE WHEN holder = $2 AND expires_at > {now} THEN acquired_at ELSE {now} END, \
                 holder = $2, expires_at = {until} \
                 WHERE name = $1 AND (holder = $2 OR expires_at <= {now}) RETURNING epoch"
            ))
            .into_owned();
        let insert = self
            .sql(&format!(
                "INSERT INTO scheduler_lease (name, holder, acquired_at, expires_at, epoch) \
                 VALUES ($1, $2, {now}, {until}, 1) ON CONFLICT (name) DO NOTHING RETURNING epoch"
            ))
            .into_owned();
        let interval = self.db_interval(ttl);
        let (read, update, insert, interval) = (&read, &update, &insert, &interval);
        // Not behind the in-process write lock: a lease must be renewed on
        // time even while this process's workers queue up their claims (a
        // busy SQLite file still waits through its busy timeout).
        async move {
            let mut tx = self.begin_write().await?;
            let before = sqlx::query(read)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("read lease {name}")))?;
            let mut previous = None;
            if let Some(row) = before {
                let h: String = row
                    .try_get("holder")
                    .map_err(|e| self.err(e, "read scheduler_lease.holder"))?;
                if h != holder {
                    previous = Some(h);
                }
            }
            let mut epoch = None;
            for q in [update, insert] {
                let row = sqlx::query(q)
                    .bind(name)
                    .bind(holder)
                    .bind(interval.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| {
                        self.err(e, format_args!("write scheduler_lease (lease {name})"))
                    })?;
                if let Some(row) = row {
                    epoch = Some(
                        row.try_get::<i64, _>("epoch")
                            .map_err(|e| self.err(e, "read scheduler_lease.epoch"))?,
                    );
                    break;
                }
            }
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit scheduler_lease (lease {name})")))?;
            Ok(epoch.map(|epoch| LeaseGrant {
                fence: Fence {
                    lease: name.to_string(),
                    holder: holder.to_string(),
                    epoch,
                },
                previous,
            }))
        }
        .await
    }

    /// Gives lease `name` up if `holder` has it: it expires now (the row and
    /// its epoch stay, so the next holder's epoch is higher).
    pub async fn give_up_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let q = self
            .sql(&format!(
                "UPDATE scheduler_lease SET expires_at = {} WHERE name = $1 AND holder = $2",
                self.sql_db_now(None)
            ))
            .into_owned();
        let q = &q;
        self.write(|| async move {
            sqlx::query(q)
                .bind(name)
                .bind(holder)
                .execute(self.pool())
                .await
                .map_err(|e| self.err(e, format_args!("give up lease {name}")))?;
            Ok(())
        })
        .await
    }

    /// The live holder of lease `name` (database clock), if any.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>, StoreError> {
        let q = self
            .sql(&format!(
                "SELECT holder FROM scheduler_lease WHERE name = $1 AND expires_at > {}",
                self.sql_db_now(None)
            ))
            .into_owned();
        let row = sqlx::query(&q)
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read lease {name}")))?;
        row.map(|r| r.try_get::<String, _>("holder"))
            .transpose()
            .map_err(|e| self.err(e, "read scheduler_lease.holder"))
    }

    /// Holders of live leases whose name starts with `prefix` (database clock).
    pub async fn live_lease_holders(&self, prefix: &str) -> Result<HashSet<String>, StoreError> {
        let q = self
            .sql(&format!(
                "SELECT holder FROM scheduler_lease WHERE name LIKE $1 AND expires_at > {}",
                self.sql_db_now(None)
            ))
            .into_owned();
        let rows = sqlx::query(&q)
            .bind(format!("{prefix}%"))
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read leases {prefix}*")))?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("holder"))
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e, "read scheduler_lease.holder"))
    }

    /// Inside a write transaction: fails with `StateConflict` (the caller
    /// rolls back) unless `fence` still holds — same holder, same epoch, not
    /// expired by the database clock. On PostgreSQL the lease row stays
    /// locked until the transaction ends, so a takeover waits for it.
    pub(crate) async fn check_fence_in_tx(
        &self,
        conn: &mut sqlx::AnyConnection,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let q = self
            .sql(&format!(
                "SELECT holder, epoch, CAST(CASE WHEN expires_at > {} THEN 1 ELSE 0 END AS BIGINT) AS live \
                 FROM scheduler_lease WHERE name = $1{lock}",
                self.sql_db_now(None)
            ))
            .into_owned();
        let row = sqlx::query(&q)
            .bind(fence.lease.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.err(e, format_args!("check lease {}", fence.lease)))?;
        let found = match row {
            None => "released".to_string(),
            Some(r) => {
                let holder: String = r
                    .try_get("holder")
                    .map_err(|e| self.err(e, "read scheduler_lease.holder"))?;
                let epoch: i64 = r
                    .try_get("epoch")
                    .map_err(|e| self.err(e, "read scheduler_lease.epoch"))?;
                let live: i64 = r
                    .try_get("live")
                    .map_err(|e| self.err(e, "read scheduler_lease.expires_at"))?;
                if holder == fence.holder && epoch == fence.epoch && live == 1 {
                    return Ok(());
                }
                if live == 1 {
                    format!("held by {holder} (epoch {epoch})")
                } else {
                    format!("expired (last held by {holder}, epoch {epoch})")
                }
            }
        };
        Err(StoreError::StateConflict {
            what: format!("lease {}", fence.lease),
            expected: vec![format!("held by {} (epoch {})", fence.holder, fence.epoch)],
            found,
        })
    }

    /// Queued runs whose `expires_at` has passed (database clock) become
    /// `expired`, each with a `run.expired` event, in one transaction under
    /// `fence` (the scheduler's). Returns them.
    pub async fn expire_overdue(&self, fence: &Fence) -> Result<Vec<ExpiredRun>, StoreError> {
        let select = self
            .sql(&format!(
                "SELECT id, bot, scheduled_for, expires_at, actor FROM runs \
                 WHERE status = 'queued' AND expires_at IS NOT NULL AND expires_at <= {} \
                 ORDER BY expires_at LIMIT 500",
                self.sql_db_now(None)
            ))
            .into_owned();
        let update = self
            .sql(
                "UPDATE runs SET status = 'expired', finished_at = $1, error = $2 \
                 WHERE id = $3 AND status = 'queued'",
            )
            .into_owned();
        let (select, update) = (&select, &update);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            self.check_fence_in_tx(&mut tx, fence).await?;
            let rows = sqlx::query(select)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.err(e, "read expired queued runs"))?;
            let mut out = Vec::new();
            let now = now_micros();
            for row in rows {
                let text = |c: &str| row.try_get::<Option<String>, _>(c);
                let (Ok(Some(id)), Ok(bot), Ok(sched), Ok(Some(exp)), Ok(actor)) = (
                    text("id"),
                    text("bot"),
                    text("scheduled_for"),
                    text("expires_at"),
                    text("actor"),
                ) else {
                    continue;
                };
                let Some(expires_at) = parse_ts(&exp) else {
                    continue;
                };
                let scheduled_for = sched.as_deref().and_then(parse_ts);
                let late = scheduled_for.map(|s| (now - s).num_milliseconds());
                let error = format!(
                    "expired: not started by {} (the bot's max_delay)",
                    format_ts(&expires_at)
                );
                let n = sqlx::query(update)
                    .bind(format_ts(&now))
                    .bind(error.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, format_args!("expire run {id}")))?
                    .rows_affected();
                if n == 0 {
                    continue;
                }
                let actor = actor.or_else(|| bot.clone()).unwrap_or_default();
                let ev = NewEvent::new("run.expired", &actor)
                    .run(id.as_str())
                    .target(bot.as_deref().unwrap_or(""))
                    .outcome("skipped")
                    .error(error.as_str())
                    .detail(serde_json::json!({
                        "bot": bot,
                        "scheduled_for": scheduled_for.as_ref().map(format_ts),
                        "expires_at": format_ts(&expires_at),
                        "late_ms": late,
                    }));
                self.append_in_tx(&mut tx, ev).await?;
                out.push(ExpiredRun {
                    id,
                    bot,
                    scheduled_for,
                    expires_at,
                });
            }
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit expired runs"))?;
            Ok(out)
        })
        .await
    }
}
