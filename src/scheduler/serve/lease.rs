//! The leases of `clerk serve`, judged by the database's clock
//! ([`Store::acquire_lease`](crate::store::Store::acquire_lease)), so that
//! machines whose clocks disagree still agree on who holds what:
//!
//! - **`scheduler`**: one scheduler per store. Its holder renews it every
//!   [`RENEW_EVERY`] for [`SCHEDULER_TTL`]; every other serve asks every
//!   [`FOLLOW_EVERY`], so a dead scheduler's lease is taken over within
//!   TTL + one ask (≈ 3.5 s). Each acquisition has an epoch, the fence
//!   every schedule write checks in its transaction; the holder also stops
//!   acting on its own when it could not renew in time ([`Leadership`]).
//! - **`worker:<instance id>`**: each serve's liveness, renewed every
//!   [`HEARTBEAT_EVERY`] for [`WORKER_TTL`]. The scheduler sweeps every
//!   [`SWEEP_EVERY`]: a `running` run whose worker has no live lease is
//!   marked `interrupted` and continued per its bot's `on_interrupt` — within
//!   ≈ TTL + one sweep (≈ 7 s) of the worker's death.
//!
//! Worker identity is the process's random instance id
//! ([`crate::process::instance_id`]); host and pid are logged for people.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::store::{Fence, StoreError};

/// How long the scheduler lease lasts without renewal (database clock).
pub(super) const SCHEDULER_TTL: Duration = Duration::from_secs(3);
/// How often the scheduler renews its lease.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How often a serve that is not the scheduler asks for the lease.
pub(super) const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// How long a worker's liveness lease lasts without renewal.
pub(super) const WORKER_TTL: Duration = Duration::from_secs(6);
/// How often each serve renews its liveness lease.
pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// How often the scheduler looks for runs of dead workers and expired runs.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The scheduler stops acting this long before its lease could lapse in
/// the database (its last renewal was asked at least this much earlier).
const SAFETY: Duration = Duration::from_millis(500);
pub(super) const SCHEDULER_LEASE: &str = "scheduler";

/// This process's worker id: its random instance id.
pub(super) fn worker_id() -> String {
    crate::process::instance_id().to_string()
}

/// The name of a serve's liveness lease.
pub(super) fn worker_lease(id: &str) -> String {
    format!("worker:{id}")
}

/// The scheduler lease as this process holds it.
pub(super) struct Leadership {
    pub fence: Fence,
    /// Past this instant the lease may have lapsed in the database.
    valid_until: Instant,
}

impl Leadership {
    pub fn lapsed(&self) -> bool {
        Instant::now() >= self.valid_until
    }
}

/// What asking for the scheduler lease found.
pub(super) enum Ask {
    /// Held (renewed, or newly acquired: then `previous` holder, if any).
    Held {
        leadership: Leadership,
        new: bool,
        previous: Option<String>,
    },
    /// Another live process holds it.
    Other(Option<String>),
}

/// Asks for (or renews) the scheduler lease.
pub(super) async fn ask(shared: &Shared, current: Option<&Leadership>) -> Result<Ask, StoreError> {
    let asked = Instant::now();
    match shared
        .store
        .acquire_lease(SCHEDULER_LEASE, &shared.worker_id, SCHEDULER_TTL)
        .await?
    {
        Some(grant) => {
            let new = current.is_none_or(|c| c.fence != grant.fence);
            Ok(Ask::Held {
                leadership: Leadership {
                    fence: grant.fence,
                    valid_until: asked + SCHEDULER_TTL.saturating_sub(SAFETY),
                },
                new,
                previous: grant.previous,
            })
        }
        None => Ok(Ask::Other(
            shared
                .store
                .lease_holder(SCHEDULER_LEASE)
                .await
                .ok()
                .flatten(),
        )),
    }
}

/// True when `e` says a fenced write found the lease no longer held.
pub(super) fn is_fenced(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<StoreError>(),
            Some(StoreError::StateConflict { what, .. }) if what.starts_with("lease ")
        )
    })
}

/// Renews this serve's liveness lease until the process ends, and stops
/// runs of this process that another serve has taken over meanwhile (this
/// process was judged dead: paused, cut off from the store).
pub(super) async fn heartbeat(shared: Arc<Shared>) {
    let name = worker_lease(&shared.worker_id);
    loop {
        match shared
            .store
            .acquire_lease(&name, &shared.worker_id, WORKER_TTL)
            .await
        {
            Ok(Some(g)) if g.fence.epoch > 1 => {
                tracing::warn!(
                    epoch = g.fence.epoch,
                    "this worker's liveness lease had lapsed (store unreachable or the process paused); its runs may have been taken over"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot renew this worker's lease; retrying"),
        }
        stop_taken_over_runs(&shared).await;
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}

/// Cancels the local runs whose row is no longer `running` (another serve
/// marked them interrupted and continued them): their end could not be
/// recorded anyway (the run's transition is guarded), and going on would
/// do the job twice.
async fn stop_taken_over_runs(shared: &Shared) {
    let mine: Vec<(String, tokio_util::sync::CancellationToken)> = match shared.in_flight.lock() {
        Ok(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Err(p) => p
            .into_inner()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    for (id, cancel) in mine {
        if let Ok(Some(run)) = shared.store.get_run(&id).await
            && run.status != "running"
            && !cancel.is_cancelled()
        {
            tracing::warn!(run = %id, status = %run.status, "the run was taken over by another clerk serve; stopping it here");
            cancel.cancel();
        }
    }
}

/// Runs left `running` by a worker whose liveness lease lapsed (database
/// clock) become `interrupted`, and their bot's `on_interrupt` queues the
/// continuation — under the scheduler's fence.
pub(super) async fn sweep_dead_workers(shared: &Shared, fence: &Fence) -> anyhow::Result<()> {
    let store = &shared.store;
    let running = store.runs_with_status("running").await?;
    if running.is_empty() {
        return Ok(());
    }
    let live: HashSet<String> = store.live_lease_holders("worker:").await?;
    for run in running {
        let Some(worker) = run.worker.clone() else {
            continue; // a `clerk run` in a terminal: judged by its own owner row
        };
        if worker == shared.worker_id || live.contains(&worker) {
            continue;
        }
        let reason = format!(
            "the worker {worker} stopped while the run was running (crash, kill or lost contact \
             with the store); the run was not finished"
        );
        // The bot's `on_interrupt` decides how its job goes on (same lineage).
        let bots = shared.bots();
        let bot = run.bot.as_ref().and_then(|b| bots.get(b));
        crate::scheduler::continuation::interrupt(
            &shared.engine.recorder,
            bot.map(|b| &**b),
            &run,
            &reason,
            &["running"],
            Some(fence),
        )
        .await?;
        shared.wake.notify_waiters();
        tracing::warn!(run = %run.id, bot = ?run.bot, %worker, "run left running by a stopped worker: marked interrupted");
    }
    Ok(())
}

/// Queued runs past their `max_delay` become `expired`.
pub(super) async fn expire_overdue(shared: &Shared, fence: &Fence) -> anyhow::Result<()> {
    for r in shared.store.expire_overdue(fence).await? {
        tracing::warn!(run = %r.id, bot = ?r.bot, scheduled_for = ?r.scheduled_for, "queued run expired: not started within the bot's max_delay");
    }
    Ok(())
}

/// Whether another serve is alive (its liveness lease live by the database
/// clock), so firings queued ahead can be left to it on stop.
pub(super) async fn others_alive(shared: &Shared) -> anyhow::Result<usize> {
    let live = shared.store.live_lease_holders("worker:").await?;
    Ok(live.iter().filter(|w| **w != shared.worker_id).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_id_is_the_instance_id() {
        assert_eq!(worker_id(), crate::process::instance_id());
        assert_eq!(worker_lease("X"), "worker:X");
    }

    #[test]
    fn fenced_errors_are_told_apart() {
        let fenced = anyhow::Error::from(StoreError::StateConflict {
            what: "lease scheduler".into(),
            expected: vec!["held by a (epoch 1)".into()],
            found: "held by b (epoch 2)".into(),
        });
        assert!(is_fenced(&fenced.context("write the batch")));
        let other = anyhow::Error::from(StoreError::StateConflict {
            what: "run 01X".into(),
            expected: vec!["running".into()],
            found: "interrupted".into(),
        });
        assert!(!is_fenced(&other));
    }
}
