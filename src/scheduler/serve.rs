//! `clerk serve`: the scheduler loop, the worker pool and the process
//! lifecycle (signals, grace period, crash recovery, reload).
//!
//! - **One scheduler per store.** The process holding the `scheduler` lease
//!   fires bots; any other `clerk serve` on the same store runs workers only
//!   (and says so), and takes over when the lease expires or its holder — on
//!   the same host — is gone.
//! - **Firing = inserting a queued run** keyed by (bot, scheduled_for); the
//!   unique constraint makes a double firing impossible even if two
//!   schedulers ever raced. Firings are enqueued a moment ahead
//!   ([`ENQUEUE_LEAD`], more if the last batch took long) in one batch per
//!   tick, with `due_at` = the firing
//!   time; workers claim only due runs, so a run starts at its time even when
//!   thousands of bots share the same minute.
//! - **Missed firings** (more than [`MISFIRE_GRACE`] late: the scheduler was
//!   down) follow the bot's `catch_up`; each one skipped or caught up is an
//!   audit event.
//! - **Transient store errors** (locked, connection dropped) are logged and
//!   retried with backoff; the loops never give up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bot::{Bot, CatchUp, load_bots_dir};
use super::notify::{self, FailureNotice};
use crate::audit::NewEvent;
use crate::engine::{Engine, RunRequest, RunStatus};
use crate::store::time::{format_ts, now_micros};
use crate::store::{QueuedRun, RunChange, RunRow, SchedBatch, Store};

/// How far ahead of its time a firing is enqueued (with `due_at` set to the
/// firing time), so that a big batch is in the store before the boundary.
pub const ENQUEUE_LEAD: Duration = Duration::from_secs(2);
/// The lead never grows beyond this, however slow the store is.
const MAX_LEAD: Duration = Duration::from_secs(30);
/// A firing the scheduler reaches later than this was missed (the scheduler
/// was not running): it is handled by the bot's `catch_up` policy.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(10);
/// The scheduler lease: renewed every few seconds, taken over after this.
const LEASE_TTL: Duration = Duration::from_secs(15);
/// A worker process's liveness lease.
const WORKER_TTL: Duration = Duration::from_secs(30);
/// Longest wait between two scheduler ticks.
const TICK: Duration = Duration::from_millis(250);
/// At most this many missed firings per bot are enumerated in one tick.
const MAX_MISSED: usize = 10_000;
/// At most this many `scheduler.skipped` events per bot per tick; the rest
/// are summed up in one more event.
const MAX_SKIP_EVENTS: usize = 100;
const SCHEDULER_LEASE: &str = "scheduler";

/// How `clerk serve` was started.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub workspace: PathBuf,
    pub bots_dir: PathBuf,
    /// How long running runs may finish after SIGTERM/SIGINT.
    pub grace: Duration,
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
pub async fn serve(engine: Engine, opts: ServeOptions, bots: Vec<Bot>) -> anyhow::Result<()> {
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
        worker_id: worker_id(),
        bots: RwLock::new(Arc::new(map)),
        stopping: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        wake: Arc::new(Notify::new()),
        reloaded: AtomicBool::new(false),
    });
    tracing::info!(
        worker = %shared.worker_id,
        store = shared.store.url(),
        workers,
        bots = shared.bots().len(),
        "clerk serve started"
    );

    // The liveness lease exists before the first claim, so no scheduler
    // can mistake this process's runs for a dead worker's.
    shared
        .store
        .try_acquire_lease(
            &format!("worker:{}", shared.worker_id),
            &shared.worker_id,
            WORKER_TTL,
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot register this worker in the store: {e}"))?;
    let heartbeat = tokio::spawn(heartbeat(shared.clone()));
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
    let scheduler = tokio::spawn(scheduler_loop(shared.clone()));
    let checkpoints = tokio::spawn(crate::audit::checkpoint::periodic(
        shared.store.clone(),
        shared.engine.config.clone(),
        shared.opts.workspace.clone(),
        shared.stopping.clone(),
    ));
    // One dispatcher claims due runs in batches for the free slots.
    let pool = vec![tokio::spawn(
        super::dispatch::Pool {
            store: shared.store.clone(),
            worker_id: shared.worker_id.clone(),
            slots: workers,
            bots: {
                let s = shared.clone();
                move || s.bots()
            },
            stopping: shared.stopping.clone(),
            wake: shared.wake.clone(),
            execute: {
                let s = shared.clone();
                move |bot, run, n| {
                    let s = s.clone();
                    async move { execute(&s, &bot, run, n).await }
                }
            },
        }
        .run(),
    )];
    let bots_now = {
        let s = shared.clone();
        move || s.bots()
    };
    let triggers = super::trigger::start(
        &shared.engine,
        &shared.opts.workspace,
        bots_now,
        shared.stopping.clone(),
        shared.wake.clone(),
    );

    wait_for_stop(&shared).await;
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
    futures::future::join_all(triggers).await;
    heartbeat.abort();
    registration.stop().await;
    let _ = shared
        .store
        .release_lease(&format!("worker:{}", shared.worker_id), &shared.worker_id)
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

/// Waits for SIGTERM or SIGINT, reloading the bots on SIGHUP meanwhile.
async fn wait_for_stop(shared: &Arc<Shared>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::warn!("cannot install signal handlers; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); return; }
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); return; }
                _ = hup.recv() => reload(shared),
            }
        }
    }
    #[cfg(not(unix))]
    {
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
    let now = Utc::now();
    for b in &bots {
        log_next(b, now);
    }
    let map: HashMap<String, Arc<Bot>> = bots
        .into_iter()
        .map(|b| (b.name.clone(), Arc::new(b)))
        .collect();
    tracing::info!(bots = map.len(), "SIGHUP: bots reloaded");
    match shared.bots.write() {
        Ok(mut g) => *g = Arc::new(map),
        Err(p) => *p.into_inner() = Arc::new(map),
    }
    shared.reloaded.store(true, Ordering::SeqCst);
}

/// `host:pid:random`: unique per process, and tells a same-host successor
/// whether the holder is still alive.
fn worker_id() -> String {
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

/// Exponential backoff for store outages: 0.5 s doubling to 30 s.
fn outage_backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(30))
}

async fn heartbeat(shared: Arc<Shared>) {
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

// ---------------------------------------------------------------------------
// The scheduler

/// Per bot: the next firing to deal with (the last one dealt with is the
/// cursor in the store).
#[derive(Debug, Clone)]
struct BotClock {
    next: Option<DateTime<Utc>>,
}

async fn scheduler_loop(shared: Arc<Shared>) {
    let mut leader = false;
    let mut said_worker_only = false;
    let mut clocks: Option<HashMap<String, BotClock>> = None;
    let mut failures = 0u32;
    // Until a batch has been timed: assume every bot fires at once and a
    // row costs half a millisecond to write.
    let mut lead =
        (ENQUEUE_LEAD + Duration::from_micros(500) * shared.bots().len() as u32).min(MAX_LEAD);
    let mut last_lease = std::time::Instant::now() - Duration::from_secs(60);
    let mut last_sweep = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        if shared.stopping.is_cancelled() {
            break;
        }
        // Leadership: renew often enough that the lease never lapses.
        if last_lease.elapsed() >= Duration::from_secs(3) {
            match acquire_leadership(&shared).await {
                Ok(true) => {
                    last_lease = std::time::Instant::now();
                    if !leader {
                        tracing::info!("this clerk serve is the scheduler for the store");
                        leader = true;
                        said_worker_only = false;
                        clocks = None;
                        last_sweep = std::time::Instant::now() - Duration::from_secs(60);
                    }
                }
                Ok(false) => {
                    last_lease = std::time::Instant::now();
                    if leader {
                        tracing::warn!("lost the scheduler lease; running as a worker only");
                    }
                    leader = false;
                    if !said_worker_only {
                        let holder = current_holder(&shared).await.unwrap_or_default();
                        tracing::info!(
                            scheduler = %holder,
                            "another clerk serve is the scheduler for this store; running as a worker only"
                        );
                        said_worker_only = true;
                    }
                }
                Err(e) => {
                    failures += 1;
                    let wait = outage_backoff(failures);
                    tracing::warn!(error = %e, retry_in = ?wait, "store unavailable; the scheduler retries");
                    sleep_or_stop(&shared, wait).await;
                    continue;
                }
            }
        }
        if !leader {
            sleep_or_stop(&shared, Duration::from_secs(1)).await;
            continue;
        }
        if last_sweep.elapsed() >= Duration::from_secs(15) {
            match sweep_dead_workers(&shared).await {
                Ok(()) => last_sweep = std::time::Instant::now(),
                Err(e) => tracing::warn!(error = %e, "cannot look for interrupted runs; retrying"),
            }
        }
        if shared.reloaded.swap(false, Ordering::SeqCst) {
            clocks = None;
        }
        let result = match clocks.as_mut() {
            Some(c) => tick(&shared, c, lead).await.map(|took| {
                // Start the next batch early enough that it is written
                // before its minute, with room to spare.
                if let Some(took) = took {
                    lead = lead.max(ENQUEUE_LEAD + took * 2).min(MAX_LEAD);
                }
            }),
            None => match init_clocks(&shared).await {
                Ok(c) => {
                    clocks = Some(c);
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!("store reachable again; the scheduler goes on");
                }
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                let wait = outage_backoff(failures);
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?wait, "store unavailable; the scheduler retries");
                sleep_or_stop(&shared, wait).await;
                continue;
            }
        }
        // Sleep until the next firing is within the lead time (at most a tick).
        let now = Utc::now();
        let wait = clocks
            .as_ref()
            .and_then(|c| c.values().filter_map(|k| k.next).min())
            .map(|next| {
                let lead = chrono::Duration::from_std(lead).unwrap_or_default();
                (next - lead - now).to_std().unwrap_or(Duration::ZERO)
            })
            .unwrap_or(TICK)
            .min(TICK);
        sleep_or_stop(&shared, wait).await;
    }
    if leader {
        if let Err(e) = skip_future_runs(&shared).await {
            tracing::warn!(error = %e, "cannot mark the runs queued ahead as skipped");
        }
        let _ = shared
            .store
            .release_lease(SCHEDULER_LEASE, &shared.worker_id)
            .await;
    }
}

async fn sleep_or_stop(shared: &Shared, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shared.stopping.cancelled() => {}
    }
}

async fn current_holder(shared: &Shared) -> Option<String> {
    shared
        .store
        .leases(SCHEDULER_LEASE)
        .await
        .ok()?
        .into_iter()
        .find(|l| l.name == SCHEDULER_LEASE)
        .map(|l| l.holder)
}

async fn acquire_leadership(shared: &Shared) -> anyhow::Result<bool> {
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
async fn sweep_dead_workers(shared: &Shared) -> anyhow::Result<()> {
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
        super::continuation::interrupt(
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

async fn init_clocks(shared: &Shared) -> anyhow::Result<HashMap<String, BotClock>> {
    let cursors = shared.store.sched_cursors().await?;
    let now = Utc::now();
    let mut out = HashMap::new();
    for (name, bot) in shared.bots().iter() {
        // A bot never scheduled before starts now: no catch-up of its past.
        let cursor = cursors.get(name).copied().unwrap_or(now);
        out.insert(
            name.clone(),
            BotClock {
                next: bot.next_after(cursor),
            },
        );
    }
    Ok(out)
}

/// One scheduler pass: every firing up to now + lead, in one batch.
/// Returns how long the batch write took, if there was one.
async fn tick(
    shared: &Shared,
    clocks: &mut HashMap<String, BotClock>,
    lead: Duration,
) -> anyhow::Result<Option<Duration>> {
    let now = Utc::now();
    let horizon = now + chrono::Duration::from_std(lead).unwrap_or_default();
    if !clocks
        .values()
        .any(|c| c.next.is_some_and(|n| n <= horizon))
    {
        return Ok(None);
    }
    let misfire = now - chrono::Duration::from_std(MISFIRE_GRACE).unwrap_or_default();
    let paused = shared.store.paused_bots().await?;
    let bots = shared.bots();
    let mut batch = SchedBatch::default();
    let mut updates: Vec<(String, BotClock)> = Vec::new();
    let workspace = &shared.opts.workspace;
    for (name, clock) in clocks.iter() {
        if clock.next.is_none_or(|n| n > horizon) {
            continue;
        }
        let Some(bot) = bots.get(name) else { continue };
        let mut firings = Vec::new();
        let mut t = clock.next;
        while let Some(f) = t {
            if f > horizon || firings.len() >= MAX_MISSED {
                break;
            }
            firings.push(f);
            t = bot.next_after(f);
        }
        let Some(&last) = firings.last() else {
            continue;
        };
        updates.push((
            name.clone(),
            BotClock {
                next: t.filter(|n| *n > last),
            },
        ));
        batch.cursors.push((name.clone(), last));
        if !bot.enabled || paused.contains(name) {
            continue; // a paused bot does not fire; its pause is the audit record
        }
        let (missed, due): (Vec<_>, Vec<_>) = firings.into_iter().partition(|f| *f < misfire);
        let caught_up: Vec<DateTime<Utc>> = match bot.catch_up {
            CatchUp::None => Vec::new(),
            CatchUp::Latest => missed.last().copied().into_iter().collect(),
            CatchUp::All => missed
                .iter()
                .rev()
                .take(bot.catch_up_limit)
                .rev()
                .copied()
                .collect(),
        };
        let skipped: Vec<DateTime<Utc>> = missed
            .iter()
            .filter(|f| !caught_up.contains(f))
            .copied()
            .collect();
        if !skipped.is_empty() {
            let reason = match bot.catch_up {
                CatchUp::None => {
                    "missed: no scheduler was running or the store was unreachable (catch_up: none)"
                }
                CatchUp::Latest => {
                    "missed: no scheduler was running or the store was unreachable; only the latest is caught up (catch_up: latest)"
                }
                CatchUp::All => {
                    "missed: no scheduler was running or the store was unreachable; beyond catch_up_limit (catch_up: all)"
                }
            };
            tracing::warn!(bot = %name, missed = skipped.len(), "skipping missed firings: {reason}");
            for f in skipped.iter().take(MAX_SKIP_EVENTS) {
                batch.events.push(
                    NewEvent::new("scheduler.skipped", name)
                        .target(name.as_str())
                        .outcome("skipped")
                        .detail(
                            json!({ "bot": name, "scheduled_for": format_ts(f), "reason": reason }),
                        ),
                );
            }
            if skipped.len() > MAX_SKIP_EVENTS {
                let rest = &skipped[MAX_SKIP_EVENTS..];
                batch.events.push(
                    NewEvent::new("scheduler.skipped", name)
                        .target(name.as_str())
                        .outcome("skipped")
                        .detail(json!({
                            "bot": name,
                            "count": rest.len(),
                            "first": rest.first().map(format_ts),
                            "last": rest.last().map(format_ts),
                            "reason": reason,
                        })),
                );
            }
        }
        let inputs = match bot.run_inputs(&[]) {
            Ok(i) => Value::Object(i),
            Err(e) => {
                tracing::error!(bot = %name, "cannot resolve the bot's inputs: {e}");
                continue;
            }
        };
        for f in caught_up {
            let run = queued_run(bot, workspace, &inputs, f, now, true);
            batch.events.push(
                NewEvent::new("scheduler.caught_up", name)
                    .target(name.as_str())
                    .outcome("ok")
                    .detail(json!({
                        "bot": name,
                        "scheduled_for": format_ts(&f),
                        "run": run.id,
                        "catch_up": bot.catch_up.as_str(),
                    })),
            );
            batch.runs.push(run);
        }
        for f in due {
            batch
                .runs
                .push(queued_run(bot, workspace, &inputs, f, f, false));
        }
    }
    let recorder = &shared.engine.recorder;
    for r in &mut batch.runs {
        r.event = recorder.redact_event(std::mem::replace(&mut r.event, NewEvent::new("", "")));
    }
    batch.events = batch
        .events
        .into_iter()
        .map(|e| recorder.redact_event(e))
        .collect();
    let started = std::time::Instant::now();
    let inserted: std::collections::HashSet<String> = shared
        .store
        .write_sched_batch(&batch)
        .await
        .map_err(anyhow::Error::from)?
        .into_iter()
        .collect();
    let took = started.elapsed();
    if !inserted.is_empty() {
        tracing::debug!(
            runs = inserted.len(),
            events = batch.events.len(),
            ms = started.elapsed().as_millis() as u64,
            "enqueued firings"
        );
    }
    for (name, c) in updates {
        clocks.insert(name, c);
    }
    // Wake the workers when the earliest run enqueued ahead becomes due.
    if let Some(due) = batch
        .runs
        .iter()
        .filter(|r| inserted.contains(&r.id))
        .map(|r| r.due_at)
        .min()
    {
        let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let shared_wake = shared.wake_handle();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            shared_wake.notify_waiters();
        });
    }
    Ok(Some(took))
}

fn queued_run(
    bot: &Bot,
    workspace: &std::path::Path,
    inputs: &Value,
    scheduled_for: DateTime<Utc>,
    due_at: DateTime<Utc>,
    caught_up: bool,
) -> QueuedRun {
    let id = ulid::Ulid::new().to_string();
    let playbook = bot.playbook_label(workspace);
    let event = NewEvent::new("run.queued", &bot.name).detail(json!({
        "bot": bot.name,
        "playbook": playbook,
        "scheduled_for": format_ts(&scheduled_for),
        "inputs": inputs,
        "caught_up": caught_up,
    }));
    QueuedRun {
        id,
        bot: bot.name.clone(),
        playbook,
        inputs: inputs.clone(),
        scheduled_for: Some(scheduled_for),
        due_at,
        overlap: bot.overlap.as_str().into(),
        actor: bot.name.clone(),
        attempt: 1,
        retry_of: None,
        event,
    }
}

/// On shutdown, firings enqueued ahead whose time has not come become
/// `skipped` (with their events), so a later start does not run them late.
async fn skip_future_runs(shared: &Shared) -> anyhow::Result<()> {
    let now = Utc::now();
    let queued = shared.store.runs_with_status("queued").await?;
    for run in queued {
        let (Some(bot), Some(at)) = (&run.bot, run.scheduled_for) else {
            continue;
        };
        if at <= now || run.attempt > 1 {
            continue;
        }
        let reason = "clerk serve stopped before the firing time";
        let event = NewEvent::new("scheduler.skipped", bot)
            .run(run.id.as_str())
            .target(bot.as_str())
            .outcome("skipped")
            .detail(json!({ "bot": bot, "scheduled_for": format_ts(&at), "reason": reason }));
        let r = shared
            .store
            .transition_run(
                &run.id,
                &["queued"],
                RunChange {
                    status: Some("skipped".into()),
                    finished_at: Some(now_micros()),
                    error: Some(format!("skipped: {reason}")),
                    ..Default::default()
                },
                event,
            )
            .await;
        match r {
            Ok(_) => {}
            Err(crate::store::StoreError::StateConflict { found, .. }) => {
                tracing::warn!(run = %run.id, %found, "not skipping the firing: it is no longer queued (lost race)");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Workers

async fn execute(shared: &Shared, bot: &Arc<Bot>, run: RunRow, worker: usize) {
    let lateness = run
        .scheduled_for
        .zip(run.started_at)
        .map(|(s, t)| (t - s).num_milliseconds());
    tracing::info!(run = %run.id, bot = %bot.name, attempt = run.attempt, lateness_ms = ?lateness, worker, "run started");
    let inputs = match &run.inputs {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let req = RunRequest {
        playbook: bot.playbook.clone(),
        inputs,
        actor: run.actor.clone(),
        bot: Some(bot.name.clone()),
        workspace: shared.opts.workspace.clone(),
        cancel: shared.hard_stop.child_token(),
        max_runtime: bot.max_runtime,
        progress: false,
    };
    let plan = super::continuation::retry_plan(&shared.engine.recorder, bot, &run);
    // `now()` and `today()` in the bot's playbook are in the bot's time zone.
    let in_zone = crate::template::with_timezone(
        bot.display_tz(),
        shared.engine.execute_with_follow_up(&run.id, req, plan),
    );
    let outcome = match in_zone.await {
        Ok(o) => o,
        Err(e) => {
            // The end of the run could not be recorded (store trouble): try
            // again until it is, so the run does not stay `running`.
            tracing::error!(run = %run.id, error = %format!("{e:#}"), "cannot record the end of the run; retrying");
            let reason = format!("the end of the run could not be recorded: {e:#}");
            for i in 0..30u32 {
                let event = NewEvent::new("run.finished", &run.actor)
                    .run(run.id.as_str())
                    .outcome("failed")
                    .error(reason.as_str())
                    .detail(json!({ "status": "failed" }));
                let change = RunChange {
                    status: Some("failed".into()),
                    finished_at: Some(now_micros()),
                    error: Some(reason.clone()),
                    ..Default::default()
                };
                match shared
                    .store
                    .transition_run(&run.id, &["running"], change, event)
                    .await
                {
                    Ok(_) => break,
                    Err(crate::store::StoreError::StateConflict { found, .. }) => {
                        tracing::warn!(run = %run.id, %found, "the run is no longer running; its end is not overwritten (lost race)");
                        break;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(outage_backoff(i)).await;
            }
            return;
        }
    };
    tracing::info!(run = %run.id, bot = %bot.name, status = outcome.status.as_str(), "run finished");
    if matches!(outcome.status, RunStatus::Failed | RunStatus::TimedOut) {
        let error = outcome
            .error
            .as_ref()
            .map(|e| format!("step {}: {}", e.step, e.message));
        tracing::warn!(run = %run.id, bot = %bot.name, status = outcome.status.as_str(), error = error.as_deref().unwrap_or("-"), "run failed");
    }
    if outcome.status == RunStatus::Cancelled && shared.hard_stop.is_cancelled() {
        let reason = format!(
            "clerk serve was stopped and the run did not finish within the grace period of {}",
            humantime::format_duration(shared.opts.grace)
        );
        // Queued per the bot's `on_interrupt`, for the next serve to take.
        if let Err(e) = super::continuation::interrupt(
            &shared.engine.recorder,
            Some(bot),
            &run,
            &reason,
            &["cancelled"],
        )
        .await
        {
            tracing::error!(run = %run.id, error = %format!("{e:#}"), "cannot mark the run interrupted");
        }
        return;
    }
    if !matches!(outcome.status, RunStatus::Failed | RunStatus::TimedOut) {
        return;
    }
    if let Some(q) = &outcome.follow_up {
        // Queued with the end of the run (see `retry_plan`).
        tracing::info!(run = %run.id, retry = %q, attempt = run.attempt + 1, "failed run will be resumed (bot retry, same lineage)");
        return;
    }
    if bot.notify_on_failure.is_empty() {
        return;
    }
    let notice = FailureNotice {
        bot: &bot.name,
        run_id: &run.id,
        attempt: run.attempt,
        outcome: &outcome,
    };
    // The notice is a mail.send for the failed run; it records its own
    // `notify.*` events, so only the log is left to do here.
    match notify::send(
        &shared.engine,
        &shared.opts.workspace,
        &shared.hard_stop,
        &bot.notify_on_failure,
        &notice,
    )
    .await
    {
        Ok(result) => {
            tracing::info!(run = %run.id, bot = %bot.name, message_id = %result["message_id"].as_str().unwrap_or("-"), "failure mail sent")
        }
        Err(e) => {
            tracing::error!(run = %run.id, bot = %bot.name, error = %format!("{e:#}"), "cannot send the failure mail")
        }
    }
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

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(outage_backoff(0), Duration::from_millis(500));
        assert_eq!(outage_backoff(1), Duration::from_secs(1));
        assert_eq!(outage_backoff(20), Duration::from_secs(30));
    }
}
