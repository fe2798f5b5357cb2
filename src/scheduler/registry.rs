//! This `clerk serve` in the workers registry: registered before its first
//! claim (instance id, host, pid, clerk version, `--labels`), with the bots
//! it can run (those it knows whose `runs_on` labels it has) written to
//! `worker_bots` for the claim query; a heartbeat every
//! [`HEARTBEAT_EVERY`] by the database clock (which also re-publishes the
//! bots after a SIGHUP reload, and registers again if the row vanished);
//! `stopped_at` on a clean stop.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::bot::Bot;
use crate::store::Store;
use crate::store::workers::{HEARTBEAT_EVERY, NewWorker, WorkerRow};

type BotMap = Arc<HashMap<String, Arc<Bot>>>;

/// The bots a worker with `labels` can run: every bot it knows whose
/// `runs_on` labels it has (sorted).
pub fn runnable_bots(bots: &HashMap<String, Arc<Bot>>, labels: &[String]) -> Vec<String> {
    let mut out: Vec<String> = bots
        .values()
        .filter(|b| b.runs_on.iter().all(|l| labels.contains(l)))
        .map(|b| b.name.clone())
        .collect();
    out.sort();
    out
}

/// A registered worker; [`Registration::stop`] ends its heartbeat and marks
/// it stopped.
pub struct Registration {
    store: Store,
    worker: NewWorker,
    heartbeat: JoinHandle<()>,
}

impl Registration {
    /// Registers this process (`runs_worker` is what it writes into
    /// `runs.worker`) and publishes the bots it can run; then keeps the
    /// heartbeat going until [`Registration::stop`].
    pub async fn start(
        store: &Store,
        runs_worker: &str,
        labels: &[String],
        bots_now: impl Fn() -> BotMap + Send + Sync + 'static,
    ) -> anyhow::Result<Registration> {
        let worker = NewWorker {
            instance_id: crate::process::instance_id().to_string(),
            host: crate::process::hostname(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            labels: labels.to_vec(),
            runs_worker: runs_worker.to_string(),
        };
        let bots = bots_now();
        publish(store, &worker, &bots)
            .await
            .map_err(|e| anyhow::anyhow!("cannot register this worker in the store: {e}"))?;
        tracing::info!(
            instance = %worker.instance_id,
            labels = %if worker.labels.is_empty() { "-".to_string() } else { worker.labels.join(",") },
            bots = runnable_bots(&bots, &worker.labels).len(),
            "worker registered"
        );
        let heartbeat = tokio::spawn(heartbeat(store.clone(), worker.clone(), bots, bots_now));
        Ok(Registration {
            store: store.clone(),
            worker,
            heartbeat,
        })
    }

    /// This worker's instance id (its `worker_bots` key).
    pub fn instance_id(&self) -> &str {
        &self.worker.instance_id
    }

    /// A clean stop: no more heartbeats, `stopped_at` set.
    pub async fn stop(self) {
        self.heartbeat.abort();
        let _ = self.heartbeat.await;
        if let Err(e) = self.store.stop_worker(&self.worker.instance_id).await {
            tracing::warn!(error = %e, "cannot mark this worker stopped in the store");
        }
    }
}

async fn publish(
    store: &Store,
    worker: &NewWorker,
    bots: &BotMap,
) -> Result<(), crate::store::StoreError> {
    store.register_worker(worker).await?;
    store
        .set_worker_bots(&worker.instance_id, &runnable_bots(bots, &worker.labels))
        .await
}

async fn heartbeat(
    store: Store,
    worker: NewWorker,
    mut published: BotMap,
    bots_now: impl Fn() -> BotMap,
) {
    loop {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        let bots = bots_now();
        let result = async {
            // Reloaded bots (SIGHUP): offer this worker the new set.
            if !Arc::ptr_eq(&bots, &published) {
                store
                    .set_worker_bots(&worker.instance_id, &runnable_bots(&bots, &worker.labels))
                    .await?;
                published = bots.clone();
            }
            if !store.worker_heartbeat(&worker.instance_id).await? {
                tracing::warn!("this worker's row was gone from the store: registering again");
                publish(&store, &worker, &bots).await?;
            }
            Ok::<(), crate::store::StoreError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot renew this worker's heartbeat; retrying");
        }
    }
}

/// Why no live worker can run a bot that needs `runs_on` labels (`None` if
/// one can, or if the bot needs no label).
pub fn no_worker_reason(runs_on: &[String], live: &[WorkerRow]) -> Option<String> {
    if runs_on.is_empty() || live.iter().any(|w| w.has_labels(runs_on)) {
        return None;
    }
    let seen: Vec<String> = live
        .iter()
        .map(|w| {
            let labels = if w.labels.is_empty() {
                "no labels".to_string()
            } else {
                w.labels.join(",")
            };
            format!("{} ({labels})", w.host)
        })
        .collect();
    Some(format!(
        "no live worker can run it: it needs runs_on [{}] and {}; start `clerk serve --labels {}` on a machine that has them",
        runs_on.join(", "),
        if seen.is_empty() {
            "no worker is live".to_string()
        } else {
            format!("the live workers have {}", seen.join("; "))
        },
        runs_on.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(labels: &[&str]) -> WorkerRow {
        let now = chrono::Utc::now();
        WorkerRow {
            instance_id: "I".into(),
            runs_worker: "w".into(),
            host: "h1".into(),
            pid: 1,
            version: "0".into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            started_at: now,
            heartbeat_at: now,
            heartbeat_age_s: 0.0,
            runs_in_flight: 0,
            stopped_at: None,
            live: true,
        }
    }

    #[test]
    fn a_bot_needs_a_live_worker_with_all_its_labels() {
        let vpn = vec!["vpn".to_string()];
        assert!(no_worker_reason(&[], &[]).is_none());
        assert!(no_worker_reason(&vpn, &[worker(&["grid-eu", "vpn"])]).is_none());
        let why = no_worker_reason(&vpn, &[worker(&["grid-eu"]), worker(&[])]).unwrap();
        assert!(why.contains("needs runs_on [vpn]"), "{why}");
        assert!(why.contains("h1 (grid-eu); h1 (no labels)"), "{why}");
        let why = no_worker_reason(&vpn, &[]).unwrap();
        assert!(why.contains("no worker is live"), "{why}");
    }
}
