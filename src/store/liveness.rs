//! Runs whose process is provably gone: `clerk run` records which process
//! runs its run (`run_owners`, migration 0006); any clerk command that opens
//! the store marks a `running` run as `interrupted` — with a `run.interrupted`
//! audit event in the same transaction — when its process ran on this host
//! (same host name and PID namespace) and that pid is gone or now belongs to a
//! process started at another time. Runs of other hosts are never judged.

use serde_json::json;
use sqlx::Row as _;

use super::NewEvent;
use super::time::{format_ts, now_micros};
use super::{Store, StoreError};
use crate::process;

/// What identifies this host for liveness: the host name and the PID
/// namespace (containers sharing a host name have different namespaces).
pub fn host_key() -> String {
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!("{} {ns}", process::hostname())
}

impl Store {
    /// Records that this process runs `run_id`.
    pub async fn record_run_owner(&self, run_id: &str) -> Result<(), StoreError> {
        let (pid, started) = process::me();
        let q = self
            .sql(
                "INSERT INTO run_owners (run_id, instance_id, host, pid, pid_started, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .into_owned();
        let host = host_key();
        let now = format_ts(&now_micros());
        let q = &q;
        let (host, now) = (&host, &now);
        self.write(|| async move {
            sqlx::query(q)
                .bind(run_id)
                .bind(process::instance_id())
                .bind(host.as_str())
                .bind(i64::from(pid))
                .bind(started as i64)
                .bind(now.as_str())
                .execute(self.pool())
                .await
                .map_err(|e| self.err(e, format_args!("insert run_owners (run {run_id})")))?;
            Ok(())
        })
        .await
    }

    /// Marks `running` runs of this host whose process is gone as
    /// `interrupted` (each with its event); returns their ids.
    pub async fn sweep_dead_runs(&self) -> Result<Vec<String>, StoreError> {
        let q = self
            .sql(
                "SELECT o.run_id, o.instance_id, o.pid, o.pid_started FROM run_owners o \
                 JOIN runs r ON r.id = o.run_id WHERE r.status = 'running' AND o.host = $1",
            )
            .into_owned();
        let rows = sqlx::query(&q)
            .bind(host_key())
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "read run_owners"))?;
        let mut swept = Vec::new();
        for row in rows {
            let (Ok(id), Ok(instance), Ok(pid), Ok(started)) = (
                row.try_get::<String, _>("run_id"),
                row.try_get::<String, _>("instance_id"),
                row.try_get::<i64, _>("pid"),
                row.try_get::<i64, _>("pid_started"),
            ) else {
                continue;
            };
            let (Ok(pid32), Ok(started64)) = (u32::try_from(pid), u64::try_from(started)) else {
                continue;
            };
            if !process::is_gone(pid32, started64) {
                continue;
            }
            if self.mark_interrupted(&id, &instance, pid).await? {
                swept.push(id);
            }
        }
        Ok(swept)
    }

    /// `running` → `interrupted`, only if still running (a run that finished
    /// meanwhile keeps its status); the event is appended in the same transaction.
    async fn mark_interrupted(
        &self,
        id: &str,
        instance: &str,
        pid: i64,
    ) -> Result<bool, StoreError> {
        let message = format!(
            "interrupted: the clerk process running it (pid {pid} on {}) is gone — killed, or its terminal closed",
            process::hostname()
        );
        let update = self
            .sql(
                "UPDATE runs SET status = 'interrupted', finished_at = $1, error = $2 \
                 WHERE id = $3 AND status = 'running'",
            )
            .into_owned();
        let event = NewEvent::new("run.interrupted", "clerk")
            .run(id)
            .outcome("failed")
            .error(&message)
            .detail(json!({
                "reason": "process_gone",
                "instance": instance,
                "pid": pid,
                "host": process::hostname(),
            }));
        let (update, event, message) = (&update, &event, &message);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            let n = sqlx::query(update)
                .bind(format_ts(&now_micros()))
                .bind(message.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("update runs (run {id})")))?
                .rows_affected();
            if n == 0 {
                return Ok(false);
            }
            self.append_in_tx(&mut tx, event.clone()).await?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit interruption of run {id}")))?;
            Ok(true)
        })
        .await
    }
}
