//! `clerk serve`: the process lifecycle (start, signals, grace period,
//! reload, stop) around the scheduler, the workers and the leases.
//!
//! - [`scheduler`]: the scheduler loop — leadership, one tick per firing
//!   batch, the hand-over on stop. What a tick decides is [`plan`], a pure
//!   function of the bots, their cursors and a clock (unit-tested with a fake
//!   clock).
//! - [`lease`]: the scheduler lease and worker liveness, and the sweep that
//!   hands a dead worker's runs to their bot's `on_interrupt`.
//! - [`worker`]: runs a claimed run (the pool that claims is
//!   [`crate::scheduler::dispatch`]: batch claims for the free slots).
//!
//! - **One scheduler per store.** The process holding the `scheduler` lease
//!   fires bots; any other `clerk serve` on the same store runs workers only
//!   (and says so), and takes over when the lease lapses by the database's
//!   clock (a few seconds) or is given up on stop. Writes are fenced by the
//!   lease's epoch (see [`lease`]).
//! - **Firing = inserting a queued run** keyed by (bot, scheduled_for); the
//!   unique constraint makes a double firing impossible even if two
//!   schedulers ever raced. Firings are enqueued a moment ahead
//!   ([`ENQUEUE_LEAD`], more if the last batch took long) in one batch per
//!   tick, with `due_at` = the firing time; workers claim only due runs, so a
//!   run starts at its time even when thousands of bots share the same minute.
//! - **Missed firings** (more than [`MISFIRE_GRACE`] late: the scheduler was
//!   down) follow the bot's `catch_up`; each one skipped or caught up is an
//!   audit event.
//! - **Transient store errors** (locked, connection dropped) are logged and
//!   retried with backoff; the loops never give up.

mod lease;
pub mod plan;
mod scheduler;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bot::{Bot, load_bots_dir};
use crate::engine::Engine;
use crate::store::Store;

/// How far ahead of its time a firing is enqueued (with `due_at` set to the
/// firing time), so that a big batch is in the store before the boundary.
pub const ENQUEUE_LEAD: Duration = Duration::from_secs(2);
/// A firing the scheduler reaches later than this was missed (the scheduler
/// was not running): it is handled by the bot's `catch_up` policy.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(10);

/// How `clerk serve` was started.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub workspace: PathBuf,
    pub bots_dir: PathBuf,
    /// How long running runs may finish after SIGTERM/SIGINT.
    pub grace: Duration,
    /// Where the bots come from: the store's deployed version or the folder.
    pub deployed: Arc<super::deployed::Source>,
    /// `--labels`: this worker claims runs of bots whose `runs_on` it has.
    pub labels: Vec<String>,
}

type BotMap = Arc<HashMap<String, Arc<Bot>>>;

struct Shared {
    engine: Engine,
    store: Store,
    opts: ServeOptions,
    worker_id: String,
    bots: RwLock<BotMap>,
    /// SIGTERM/SIGINT: take no new runs, fire no more bots.
    stopping: CancellationToken,
    /// The grace period is over: cancel the runs still going.
    hard_stop: CancellationToken,
    /// Runs became due: wake idle workers.
    wake: Arc<Notify>,
    /// The bots were reloaded: the scheduler rebuilds its state.
    reloaded: AtomicBool,
    /// Runs this process is running, with their cancel tokens.
    in_flight: Mutex<HashMap<String, CancellationToken>>,
}

impl Shared {
    fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn bots(&self) -> BotMap {
        match self.bots.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Runs the scheduler and the workers until SIGTERM/SIGINT. `bots` have been
/// validated by the caller.
pub async fn serve(
    engine: Engine,
    opts: ServeOptions,
    bots: Vec<Bot>,
    signals: StopSignals,
) -> anyhow::Result<()> {
    let store = engine.recorder.store().clone();
    let workers = engine.config.max_concurrent_runs.max(1);
    let now = Utc::now();
    for b in &bots {
        log_next(b, now);
    }
    let map: HashMap<String, Arc<Bot>> = bots
        .into_iter()
        .map(|b| (b.name.clone(), Arc::new(b)))
        .collect();
    let shared = Arc::new(Shared {
        engine,
        store,
        opts,
        worker_id: lease::worker_id(),
        bots: RwLock::new(Arc::new(map)),
        stopping: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        wake: Arc::new(Notify::new()),
        reloaded: AtomicBool::new(false),
        in_flight: Mutex::new(HashMap::new()),
    });
    tracing::info!(
        worker = %shared.worker_id,
        host = %crate::process::display_hostname(),
        pid = std::process::id(),
        store = shared.store.url(),
        workers,
        bots = shared.bots().len(),
        "clerk serve started"
    );

    // The liveness lease exists before the first claim, so no scheduler
    // can mistake this process's runs for a dead worker's.
    shared
        .store
        .acquire_lease(
            &lease::worker_lease(&shared.worker_id),
            &shared.worker_id,
            lease::WORKER_TTL,
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot register this worker in the store: {e}"))?;
    let heartbeat = tokio::spawn(lease::heartbeat(shared.clone()));
    // In the workers registry (with the bots it can run) before its first claim.
    let registration = super::registry::Registration::start(
        &shared.store,
        &shared.worker_id,
        &shared.opts.labels,
        {
            let s = shared.clone();
            move || s.bots()
        },
    )
    .await?;
    let scheduler = tokio::spawn(scheduler::run(shared.clone()));
    let checkpoints = tokio::spawn(crate::audit::checkpoint::periodic(
        shared.store.clone(),
        shared.engine.config.clone(),
        shared.opts.workspace.clone(),
        shared.stopping.clone(),
    ));
    // One dispatcher claims due runs in batches for the free slots.
    let pool = vec![tokio::spawn(worker::pool(shared.clone(), workers).run())];
    let bots_now = {
        let s = shared.clone();
        move || s.bots()
    };
    let follow_deploys = tokio::spawn(shared.opts.deployed.clone().follow(
        shared.stopping.clone(),
        {
            let s = shared.clone();
            move |bots| install_bots(&s, bots, "new deployed version")
        },
    ));
    let triggers = super::trigger::start(
        &shared.engine,
        &shared.opts.workspace,
        bots_now,
        shared.stopping.clone(),
        shared.wake.clone(),
    );

    wait_for_stop(&shared, signals).await;
    shared.stopping.cancel();
    shared.wake.notify_waiters();
    let mut all = tokio::spawn(futures::future::join_all(pool));
    let finished = tokio::select! {
        _ = &mut all => true,
        _ = tokio::time::sleep(shared.opts.grace) => false,
        _ = second_signal() => false,
    };
    if !finished {
        tracing::warn!(
            grace = %humantime::format_duration(shared.opts.grace),
            "grace period over: cancelling the runs still going (they will be marked interrupted)"
        );
        shared.hard_stop.cancel();
        let _ = all.await;
    }
    let _ = scheduler.await;
    let _ = checkpoints.await;
    let _ = follow_deploys.await;
    futures::future::join_all(triggers).await;
    heartbeat.abort();
    registration.stop().await;
    let _ = shared
        .store
        .release_lease(&lease::worker_lease(&shared.worker_id), &shared.worker_id)
        .await;
    tracing::info!("clerk serve stopped");
    Ok(())
}

fn log_next(b: &Bot, now: DateTime<Utc>) {
    let tz = b.display_tz();
    match b.next_after(now) {
        Some(t) if b.enabled => tracing::info!(
            bot = %b.name,
            next = %t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z"),
            "bot scheduled"
        ),
        Some(_) => tracing::info!(bot = %b.name, "bot is disabled (enabled: false)"),
        None if b.trigger.is_some() => tracing::info!(bot = %b.name, "bot runs on mail (trigger)"),
        None => tracing::warn!(bot = %b.name, "bot has no future firing"),
    }
}

/// SIGTERM, SIGINT and SIGHUP, registered first thing by `clerk serve`: a
/// signal that arrives while serve is still opening the store and
/// registering itself is then a clean stop, not the default (fatal) action.
#[cfg(unix)]
pub type StopSignals = Option<[tokio::signal::unix::Signal; 3]>;
#[cfg(not(unix))]
pub type StopSignals = ();

#[cfg(unix)]
pub fn install_signals() -> StopSignals {
    use tokio::signal::unix::{SignalKind, signal};
    Some([
        signal(SignalKind::terminate()).ok()?,
        signal(SignalKind::interrupt()).ok()?,
        signal(SignalKind::hangup()).ok()?,
    ])
}
#[cfg(not(unix))]
pub fn install_signals() -> StopSignals {}

/// Waits for SIGTERM or SIGINT, reloading the bots on SIGHUP meanwhile.
async fn wait_for_stop(shared: &Arc<Shared>, signals: StopSignals) {
    #[cfg(unix)]
    {
        let Some([mut term, mut int, mut hup]) = signals else {
            tracing::warn!("cannot install signal handlers; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); return; }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); return; }
                _ = hup.recv() => reload(shared),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let () = signals;
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A second SIGTERM/SIGINT during the grace period ends it at once.
async fn second_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn reload(shared: &Arc<Shared>) {
    if shared.opts.deployed.on_reload() {
        return;
    }
    let (bots, diags) = load_bots_dir(&shared.opts.bots_dir);
    if !diags.is_empty() {
        for d in &diags.0 {
            tracing::error!("{d}");
        }
        tracing::error!(
            problems = diags.len(),
            "SIGHUP: the bots folder has problems; keeping the bots loaded before"
        );
        return;
    }
    install_bots(shared, bots, "SIGHUP");
}

/// Replaces the bots in effect; the scheduler rebuilds its clocks.
fn install_bots(shared: &Arc<Shared>, bots: Vec<Bot>, why: &str) {
    let now = Utc::now();
    for b in &bots {
        log_next(b, now);
    }
    let map: HashMap<String, Arc<Bot>> = bots
        .into_iter()
        .map(|b| (b.name.clone(), Arc::new(b)))
        .collect();
    tracing::info!(bots = map.len(), "{why}: bots reloaded");
    match shared.bots.write() {
        Ok(mut g) => *g = Arc::new(map),
        Err(p) => *p.into_inner() = Arc::new(map),
    }
    shared.reloaded.store(true, Ordering::SeqCst);
}

/// Exponential backoff for store outages: 0.5 s doubling to 30 s.
fn outage_backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(30))
}

async fn sleep_or_stop(shared: &Shared, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shared.stopping.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(outage_backoff(0), Duration::from_millis(500));
        assert_eq!(outage_backoff(1), Duration::from_secs(1));
        assert_eq!(outage_backoff(20), Duration::from_secs(30));
    }
}
