//! The worker pool of `clerk serve`: one dispatcher claims due runs in
//! batches — as many as there are free slots (`max_concurrent_runs`), in ONE
//! transaction that also writes each run's `run.started` event and its
//! playbook digest — and starts each claimed run on a task of its own.
//!
//! Why one dispatcher and not N polling workers: at 10,000 firings a minute
//! a claim per run (plus a poll per idle worker) is most of the store's
//! write budget; a batch claim costs one commit for many runs, and a claim
//! is only made for a run that has a free slot to start in at once, so
//! `started_at` is when the run really starts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::bot::Bot;
use crate::store::{ClaimScope, RunRow, Store};

type BotMap = Arc<HashMap<String, Arc<Bot>>>;

/// How often an idle dispatcher looks for due runs (it is also woken when
/// runs become due or a slot frees).
pub(crate) const POLL: Duration = Duration::from_millis(200);
/// At most this many runs per claim transaction.
const MAX_BATCH: usize = 64;

/// What the pool needs from `clerk serve`.
pub struct Pool<B, E> {
    pub store: Store,
    /// Written into `runs.worker`.
    pub worker_id: String,
    /// Runs at once.
    pub slots: usize,
    pub bots: B,
    pub stopping: CancellationToken,
    pub wake: Arc<Notify>,
    /// Runs one claimed run to its end (`slot` numbers the task for logs).
    pub execute: E,
}

/// Exponential backoff for store outages: 0.5 s doubling to 30 s.
fn outage_backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(30))
}

impl<B, E, F> Pool<B, E>
where
    B: Fn() -> BotMap + Send + Sync + 'static,
    E: Fn(Arc<Bot>, RunRow, usize) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    /// Claims and runs until `stopping`; then waits for the runs in flight.
    pub async fn run(self) {
        let slots = Arc::new(Semaphore::new(self.slots.max(1)));
        let freed = Arc::new(Notify::new());
        let mut running: JoinSet<()> = JoinSet::new();
        let mut failures = 0u32;
        let mut next_slot = 0usize;
        let instance = crate::process::instance_id();
        loop {
            while running.try_join_next().is_some() {}
            if self.stopping.is_cancelled() {
                break;
            }
            let free = slots.available_permits().min(MAX_BATCH);
            if free == 0 {
                tokio::select! {
                    _ = freed.notified() => {}
                    _ = self.stopping.cancelled() => {}
                }
                continue;
            }
            let bots = (self.bots)();
            let stamp = |bot: &str| {
                bots.get(bot).map(|b| {
                    (
                        b.playbook.sha256.clone(),
                        serde_json::to_string(&b.playbook.step_digests()).unwrap_or_default(),
                    )
                })
            };
            let claimed = match self
                .store
                .has_due_runs(crate::store::time::now_micros())
                .await
            {
                Ok(false) => Ok(None),
                Ok(true) => self
                    .store
                    .claim_due_batch(
                        &self.worker_id,
                        ClaimScope::Registered(instance),
                        free,
                        Some(&stamp),
                    )
                    .await
                    .map(Some),
                Err(e) => Err(e),
            };
            match claimed {
                Ok(Some(batch)) if !batch.runs.is_empty() || !batch.skipped.is_empty() => {
                    failures = 0;
                    for (id, bot) in &batch.skipped {
                        tracing::warn!(run = %id, %bot, "firing skipped (overlap or pause)");
                    }
                    for run in batch.runs {
                        let Some(bot) = run.bot.as_ref().and_then(|b| bots.get(b)).cloned() else {
                            // The bots were reloaded between publishing the
                            // bots this worker runs and this claim: end the
                            // run with the reason rather than leave it running.
                            self.unknown_bot(&run).await;
                            continue;
                        };
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            tracing::error!(run = %run.id, "no free slot for a claimed run");
                            continue;
                        };
                        let fut = (self.execute)(bot, run, next_slot % self.slots.max(1));
                        next_slot += 1;
                        let freed = freed.clone();
                        running.spawn(async move {
                            fut.await;
                            drop(permit);
                            freed.notify_one();
                        });
                    }
                }
                Ok(_) => {
                    failures = 0;
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = self.wake.notified() => {}
                        _ = self.stopping.cancelled() => {}
                    }
                }
                Err(e) => {
                    failures += 1;
                    let wait = outage_backoff(failures);
                    tracing::warn!(error = %e, retry_in = ?wait, "store unavailable; the worker retries");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stopping.cancelled() => {}
                    }
                }
            }
        }
        while running.join_next().await.is_some() {}
    }

    async fn unknown_bot(&self, run: &RunRow) {
        let reason = format!(
            "bot {} is no longer loaded on worker {} (bots reloaded as the run was claimed)",
            run.bot.as_deref().unwrap_or("-"),
            self.worker_id
        );
        tracing::warn!(run = %run.id, "{reason}");
        let event = crate::audit::NewEvent::new("run.finished", &run.actor)
            .run(run.id.as_str())
            .outcome("failed")
            .error(reason.as_str())
            .detail(serde_json::json!({ "status": "failed" }));
        let change = crate::store::RunChange {
            status: Some("failed".into()),
            finished_at: Some(crate::store::time::now_micros()),
            error: Some(reason.clone()),
            ..Default::default()
        };
        if let Err(e) = self
            .store
            .transition_run(&run.id, &["running"], change, event)
            .await
        {
            tracing::error!(run = %run.id, error = %e, "cannot record the end of the run");
        }
    }
}
