//! Leases: the `scheduler` lease (one scheduler per store) and each serve
//! process's liveness lease (`worker:<id>`), and the sweep that hands the
//! runs of a worker that is gone to their bot's `on_interrupt`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::Shared;

/// The scheduler lease: renewed every few seconds, taken over after this.
pub(super) const LEASE_TTL: Duration = Duration::from_secs(15);
/// A worker process's liveness lease.
pub(super) const WORKER_TTL: Duration = Duration::from_secs(30);
pub(super) const SCHEDULER_LEASE: &str = "scheduler";

/// `host:pid:random`: unique per process, and tells a same-host successor
/// whether the holder is still alive.
pub(super) fn worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let rand = ulid::Ulid::new().to_string();
    format!("{host}:{}:{}", std::process::id(), &rand[20..])
}

/// False only when `holder` is known to be dead: it ran on this host and its
/// process is gone.
fn holder_alive(holder: &str, me: &str) -> bool {
    let mut h = holder.split(':');
    let mut m = me.split(':');
    let (Some(host), Some(pid)) = (h.next(), h.next()) else {
        return true;
    };
    if Some(host) != m.next() {
        return true;
    }
    match pid.parse::<u32>() {
        Ok(pid) if pid == std::process::id() => holder == me,
        Ok(pid) => std::path::Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => true,
    }
}

pub(super) async fn heartbeat(shared: Arc<Shared>) {
    let name = format!("worker:{}", shared.worker_id);
    loop {
        if let Err(e) = shared
            .store
            .try_acquire_lease(&name, &shared.worker_id, WORKER_TTL)
            .await
        {
            tracing::warn!(error = %e, "cannot renew this worker's lease; retrying");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

pub(super) async fn current_holder(shared: &Shared) -> Option<String> {
    shared
        .store
        .leases(SCHEDULER_LEASE)
        .await
        .ok()?
        .into_iter()
        .find(|l| l.name == SCHEDULER_LEASE)
        .map(|l| l.holder)
}

pub(super) async fn acquire_leadership(shared: &Shared) -> anyhow::Result<bool> {
    let store = &shared.store;
    if store
        .try_acquire_lease(SCHEDULER_LEASE, &shared.worker_id, LEASE_TTL)
        .await?
    {
        return Ok(true);
    }
    // The holder may be a crashed process on this host: take over at once.
    if let Some(holder) = current_holder(shared).await
        && !holder_alive(&holder, &shared.worker_id)
        && store
            .take_over_lease(SCHEDULER_LEASE, &holder, &shared.worker_id, LEASE_TTL)
            .await?
    {
        tracing::info!(previous = %holder, "took over the scheduler lease of a stopped clerk serve");
        return Ok(true);
    }
    Ok(false)
}

/// Runs left `running` by a worker that is gone become `interrupted`.
pub(super) async fn sweep_dead_workers(shared: &Shared) -> anyhow::Result<()> {
    let store = &shared.store;
    let running = store.runs_with_status("running").await?;
    if running.is_empty() {
        return Ok(());
    }
    let leases = store.leases("worker:").await?;
    let now = Utc::now();
    for run in running {
        let Some(worker) = run.worker.clone() else {
            continue; // a `clerk run` in a terminal, not ours to judge
        };
        if worker == shared.worker_id {
            continue;
        }
        let lease_live = leases
            .iter()
            .any(|l| l.holder == worker && l.expires_at > now);
        if lease_live && holder_alive(&worker, &shared.worker_id) {
            continue;
        }
        let reason = format!(
            "the worker {worker} stopped while the run was running (crash or kill); \
             the run was not finished"
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
        )
        .await?;
        shared.wake.notify_waiters();
        tracing::warn!(run = %run.id, bot = ?run.bot, %worker, "run left running by a stopped worker: marked interrupted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_of_lease_holders() {
        let me = worker_id();
        assert!(holder_alive(&me, &me));
        let host = me.split(':').next().unwrap();
        // A pid that cannot exist on Linux (above pid_max).
        assert!(!holder_alive(&format!("{host}:99999999:X"), &me));
        assert!(holder_alive("other-host:1:X", &me));
        assert!(holder_alive("garbage", &me));
    }
}
