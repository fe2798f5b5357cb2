//! Read-only queries for the dashboard and `/metrics`: run search with
//! pagination, work items across runs, and the counts the metrics expose.
//! Nothing here writes.

use sqlx::Row as _;

use super::time::parse_ts;
use super::{RunRow, Store, StoreError};

/// The runs page's filters (all optional) and page.
#[derive(Clone, Debug, Default)]
pub struct RunSearch {
    pub bot: Option<String>,
    pub status: Option<String>,
    pub actor: Option<String>,
    /// Queued at or after this UTC time (RFC 3339 text as stored).
    pub from: Option<String>,
    /// Queued before this UTC time.
    pub to: Option<String>,
    /// Runs that worked on the item with this key.
    pub item: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// One work item as the audit trail tells it (item.started / item.finished).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ItemEvent {
    pub run_id: String,
    pub bot: Option<String>,
    pub key: String,
    pub path: String,
    /// `ok`, `failed`, or none when the item never finished.
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub at: String,
}

/// `"checkpoint":"KEY"` as the canonical JSON of an event detail holds it,
/// with LIKE wildcards escaped.
fn checkpoint_pattern(key: &str) -> String {
    let json = serde_json::to_string(key).unwrap_or_default();
    let escaped = json
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%\"checkpoint\":{escaped}%")
}

impl Store {
    /// One page of runs, newest first, and how many match in all.
    pub async fn search_runs(&self, s: &RunSearch) -> Result<(Vec<RunRow>, i64), StoreError> {
        let mut conds: Vec<String> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        let mut eq = |col: &str, v: &Option<String>, op: &str| {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                args.push(v.clone());
                conds.push(format!("{col} {op} ${}", args.len()));
            }
        };
        eq("bot", &s.bot, "=");
        eq("status", &s.status, "=");
        eq("actor", &s.actor, "=");
        eq("queued_at", &s.from, ">=");
        eq("queued_at", &s.to, "<");
        if let Some(item) = s.item.as_ref().filter(|v| !v.is_empty()) {
            args.push(checkpoint_pattern(item));
            conds.push(format!(
                "id IN (SELECT run_id FROM audit_events WHERE kind = 'item.started' AND detail LIKE ${} ESCAPE '\\')",
                args.len()
            ));
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let count_q = self
            .sql(&format!("SELECT COUNT(*) AS n FROM runs{filter}"))
            .into_owned();
        let mut q = sqlx::query(&count_q);
        for a in &args {
            q = q.bind(a.as_str());
        }
        let total: i64 = q
            .fetch_one(self.pool())
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(|e| self.err(e, "count runs"))?;
        let list_q = self
            .sql(&format!(
                "SELECT id FROM runs{filter} ORDER BY queued_at DESC, id DESC LIMIT ${} OFFSET ${}",
                args.len() + 1,
                args.len() + 2
            ))
            .into_owned();
        let mut q = sqlx::query(&list_q);
        for a in &args {
            q = q.bind(a.as_str());
        }
        let ids: Vec<String> = q
            .bind(s.limit.max(1))
            .bind(s.offset.max(0))
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "search runs"))?
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e, "read runs.id"))?;
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.get_run(&id).await? {
                runs.push(r);
            }
        }
        Ok((runs, total))
    }

    /// The latest item events (started and finished), newest first, at most
    /// `limit`, optionally only those with this key.
    pub async fn item_events(
        &self,
        key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ItemEvent>, StoreError> {
        let mut q = String::from(
            "SELECT e.run_id, r.bot, e.step, e.kind, e.outcome, e.error, e.detail, e.at \
             FROM audit_events e LEFT JOIN runs r ON r.id = e.run_id \
             WHERE e.kind IN ('item.started', 'item.finished')",
        );
        if key.is_some() {
            q.push_str(" AND e.detail LIKE $2 ESCAPE '\\'");
        }
        q.push_str(" ORDER BY e.id DESC LIMIT $1");
        let q = self.sql(&q).into_owned();
        let mut query = sqlx::query(&q).bind(limit.max(1));
        if let Some(k) = key {
            query = query.bind(checkpoint_pattern(k));
        }
        let rows = query
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "read item events"))?;
        // Newest first: the first event seen of an item (run + path) is its latest.
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for row in rows {
            let get = |c: &str| row.try_get::<Option<String>, _>(c);
            let (Ok(Some(run_id)), Ok(path), Ok(Some(kind)), Ok(detail)) =
                (get("run_id"), get("step"), get("kind"), get("detail"))
            else {
                continue;
            };
            let path = path.unwrap_or_default();
            if !seen.insert((run_id.clone(), path.clone())) {
                continue;
            }
            let detail: serde_json::Value = detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            let key = match detail.get("checkpoint") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) if !v.is_null() => v.to_string(),
                _ => format!(
                    "#{}",
                    detail.get("index").and_then(|v| v.as_i64()).unwrap_or(0)
                ),
            };
            out.push(ItemEvent {
                run_id,
                bot: get("bot").ok().flatten(),
                key,
                path,
                outcome: if kind == "item.finished" {
                    get("outcome").ok().flatten()
                } else {
                    None
                },
                error: get("error").ok().flatten(),
                at: get("at").ok().flatten().unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// `(value, count)` pairs of `SELECT col, COUNT(*) ... GROUP BY col` on a
    /// fixed query (for metrics).
    pub async fn group_counts(&self, query: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(query)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "count for metrics"))?;
        rows.iter()
            .map(|r| {
                let k: Option<String> = r.try_get(0).map_err(|e| self.err(e, "read group key"))?;
                let n: i64 = r.try_get(1).map_err(|e| self.err(e, "read group count"))?;
                Ok((k.unwrap_or_default(), n))
            })
            .collect()
    }

    /// The id of the newest audit event (0 for an empty chain).
    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query("SELECT MAX(id) AS n FROM audit_events")
            .fetch_one(self.pool())
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(|e| self.err(e, "read the last audit event id"))?;
        Ok(n.unwrap_or(0))
    }

    /// How late each scheduled run started, in seconds (runs with a schedule
    /// slot that have started).
    pub async fn firing_lateness(&self) -> Result<Vec<f64>, StoreError> {
        let rows = sqlx::query(
            "SELECT scheduled_for, started_at FROM runs \
             WHERE scheduled_for IS NOT NULL AND started_at IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e, "read firing lateness"))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let s = parse_ts(&r.try_get::<String, _>("scheduled_for").ok()?)?;
                let t = parse_ts(&r.try_get::<String, _>("started_at").ok()?)?;
                Some(((t - s).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0))
            })
            .collect())
    }

    /// A trivial query: is the store answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 AS one FROM schema_migrations LIMIT 1")
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.err(e, "ping"))?;
        Ok(())
    }
}
