//! The scheduler loop of `clerk serve`: holds (or waits for) the scheduler
//! lease, and per tick turns what [`plan`](super::plan) decides into one
//! store batch — queued runs, `scheduler.*` events and the bots' cursors.
//! Every write is fenced by the lease's epoch. On stop, firings it queued
//! ahead are left to another live serve, or skipped ([`hand_over`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use super::lease::{
    self, Ask, FOLLOW_EVERY, Leadership, RENEW_EVERY, SCHEDULER_LEASE, SWEEP_EVERY,
};
use super::plan::{self, BotClock, Now};
use super::{ENQUEUE_LEAD, MISFIRE_GRACE, Shared, outage_backoff, sleep_or_stop};
use crate::audit::NewEvent;
use crate::scheduler::bot::Bot;
use crate::store::time::{format_ts, now_micros};
use crate::store::{Fence, QueuedRun, RunChange, SchedBatch};

/// The lead never grows beyond this, however slow the store is.
const MAX_LEAD: Duration = Duration::from_secs(30);
/// Longest wait between two scheduler ticks.
const TICK: Duration = Duration::from_millis(250);
/// At most this many `scheduler.skipped` events per bot per tick; the rest
/// are summed up in one more event.
const MAX_SKIP_EVENTS: usize = 100;

pub(super) async fn run(shared: Arc<Shared>) {
    let mut leader: Option<Leadership> = None;
    let mut said_worker_only = false;
    let mut clocks: Option<HashMap<String, BotClock>> = None;
    let mut failures = 0u32;
    // Until a batch has been timed: assume every bot fires at once and a
    // row costs half a millisecond to write.
    let mut lead =
        (ENQUEUE_LEAD + Duration::from_micros(500) * shared.bots().len() as u32).min(MAX_LEAD);
    let mut next_ask = Instant::now();
    let mut last_sweep = Instant::now() - Duration::from_secs(60);
    loop {
        if shared.stopping.is_cancelled() {
            break;
        }
        // Leadership, by the database's clock: the holder renews often
        // enough that the lease never lapses; the others ask often enough
        // to take a dead holder's lease over within a few seconds.
        if Instant::now() >= next_ask {
            let asked = Instant::now();
            match lease::ask(&shared, leader.as_ref()).await {
                Ok(Ask::Held {
                    leadership,
                    new,
                    previous,
                }) => {
                    if new {
                        match &previous {
                            Some(p) => tracing::info!(
                                previous = %p,
                                epoch = leadership.fence.epoch,
                                "took over the scheduler lease; this clerk serve is the scheduler for the store"
                            ),
                            None => tracing::info!(
                                epoch = leadership.fence.epoch,
                                "this clerk serve is the scheduler for the store"
                            ),
                        }
                        said_worker_only = false;
                        clocks = None;
                        last_sweep = Instant::now() - Duration::from_secs(60);
                    }
                    leader = Some(leadership);
                    next_ask = asked + RENEW_EVERY;
                }
                Ok(Ask::Other(holder)) => {
                    if leader.take().is_some() {
                        tracing::warn!("lost the scheduler lease; running as a worker only");
                    }
                    if !said_worker_only {
                        tracing::info!(
                            scheduler = %holder.unwrap_or_default(),
                            "another clerk serve is the scheduler for this store; running as a worker only"
                        );
                        said_worker_only = true;
                    }
                    next_ask = asked + FOLLOW_EVERY;
                }
                Err(e) => {
                    failures += 1;
                    let wait = outage_backoff(failures).min(FOLLOW_EVERY * 2);
                    tracing::warn!(error = %e, retry_in = ?wait, "store unavailable; the scheduler retries");
                    next_ask = Instant::now() + wait;
                }
            }
        }
        // Stop acting before the lease can have lapsed in the database.
        if leader.as_ref().is_some_and(Leadership::lapsed) {
            tracing::warn!(
                "could not renew the scheduler lease in time; not firing until it is held again"
            );
            leader = None;
            said_worker_only = false;
        }
        let Some(fence) = leader.as_ref().map(|l| l.fence.clone()) else {
            sleep_or_stop(&shared, next_ask.saturating_duration_since(Instant::now())).await;
            continue;
        };
        let mut result: anyhow::Result<()> = Ok(());
        if last_sweep.elapsed() >= SWEEP_EVERY {
            result = async {
                lease::sweep_dead_workers(&shared, &fence).await?;
                lease::expire_overdue(&shared, &fence).await
            }
            .await;
            last_sweep = Instant::now();
        }
        if shared.reloaded.swap(false, Ordering::SeqCst) {
            clocks = None;
        }
        if result.is_ok() {
            result = match clocks.as_mut() {
                Some(c) => tick(&shared, c, lead, &fence).await.map(|took| {
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
        }
        match result {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!("store reachable again; the scheduler goes on");
                }
                failures = 0;
            }
            Err(e) if lease::is_fenced(&e) => {
                // Another serve holds the lease now: nothing was written.
                tracing::warn!(error = %format!("{e:#}"), "lost the scheduler lease (fenced); running as a worker only");
                leader = None;
                clocks = None;
                next_ask = Instant::now();
                continue;
            }
            Err(e) => {
                failures += 1;
                let wait = outage_backoff(failures);
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?wait, "store unavailable; the scheduler retries");
                sleep_or_stop(
                    &shared,
                    wait.min(
                        next_ask
                            .saturating_duration_since(Instant::now())
                            .max(RENEW_EVERY),
                    ),
                )
                .await;
                continue;
            }
        }
        // Sleep until the next firing is within the lead time (at most a
        // tick, and not past the next renewal of the lease).
        let wait = clocks
            .as_ref()
            .map_or(TICK, |c| plan::wait(c, Utc::now(), lead, TICK))
            .min(next_ask.saturating_duration_since(Instant::now()));
        sleep_or_stop(&shared, wait).await;
    }
    if let Some(l) = leader {
        hand_over(&shared, &l.fence).await;
    }
}

/// A stopping scheduler: firings it queued ahead stay `queued` when another
/// serve is alive (it runs them and takes the lease over at once), else they
/// become `skipped`; then the lease is given up (expired now, so the next
/// holder needs no wait and gets a higher epoch).
async fn hand_over(shared: &Shared, fence: &Fence) {
    match lease::others_alive(shared).await {
        Ok(n) if n > 0 => {
            tracing::info!(
                workers = n,
                "firings queued ahead are left queued for the other clerk serve processes"
            );
        }
        Ok(_) => {
            if let Err(e) = skip_future_runs(shared, fence).await {
                tracing::warn!(error = %e, "cannot mark the runs queued ahead as skipped");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether another clerk serve is alive; leaving the firings queued ahead as they are")
        }
    }
    if let Err(e) = shared
        .store
        .give_up_lease(SCHEDULER_LEASE, &shared.worker_id)
        .await
    {
        tracing::warn!(error = %e, "cannot give the scheduler lease up; it lapses by itself");
    }
}

async fn init_clocks(shared: &Shared) -> anyhow::Result<HashMap<String, BotClock>> {
    let cursors = shared.store.sched_cursors().await?;
    Ok(plan::init_clocks(&shared.bots(), &cursors, Utc::now()))
}

/// One scheduler pass: what [`plan::plan`] decides for now + lead, written
/// in one batch. Returns how long the batch write took, if there was one.
async fn tick(
    shared: &Shared,
    clocks: &mut HashMap<String, BotClock>,
    lead: Duration,
    fence: &Fence,
) -> anyhow::Result<Option<Duration>> {
    let now = Utc::now();
    let t = Now {
        now,
        lead,
        misfire_grace: MISFIRE_GRACE,
    };
    let horizon = now + chrono::Duration::from_std(lead).unwrap_or_default();
    if !clocks
        .values()
        .any(|c| c.next.is_some_and(|n| n <= horizon))
    {
        return Ok(None);
    }
    let paused = shared.store.paused_bots().await?;
    let bots = shared.bots();
    let Some(plan) = plan::plan(clocks, &bots, &paused, t) else {
        return Ok(None);
    };
    let workspace = &shared.opts.workspace;
    let mut batch = SchedBatch {
        cursors: plan.cursors.clone(),
        fence: Some(fence.clone()),
        ..Default::default()
    };
    for s in &plan.skipped {
        let name = &s.bot;
        tracing::warn!(bot = %name, missed = s.firings.len(), "skipping missed firings: {}", s.reason);
        for f in s.firings.iter().take(MAX_SKIP_EVENTS) {
            batch.events.push(
                NewEvent::new("scheduler.skipped", name)
                    .target(name.as_str())
                    .outcome("skipped")
                    .detail(
                        json!({ "bot": name, "scheduled_for": format_ts(f), "reason": s.reason }),
                    ),
            );
        }
        if s.firings.len() > MAX_SKIP_EVENTS {
            let rest = &s.firings[MAX_SKIP_EVENTS..];
            batch.events.push(
                NewEvent::new("scheduler.skipped", name)
                    .target(name.as_str())
                    .outcome("skipped")
                    .detail(json!({
                        "bot": name,
                        "count": rest.len(),
                        "first": rest.first().map(format_ts),
                        "last": rest.last().map(format_ts),
                        "reason": s.reason,
                    })),
            );
        }
    }
    let mut inputs: HashMap<&str, Option<Value>> = HashMap::new();
    for f in &plan.fire {
        let Some(bot) = bots.get(&f.bot) else {
            continue;
        };
        let input = inputs
            .entry(f.bot.as_str())
            .or_insert_with(|| match bot.run_inputs(&[]) {
                Ok(i) => Some(Value::Object(i)),
                Err(e) => {
                    tracing::error!(bot = %bot.name, "cannot resolve the bot's inputs: {e}");
                    None
                }
            });
        let Some(input) = input else { continue };
        let run = queued_run(bot, workspace, input, f);
        if let Some(e) = f.expires_at {
            batch.expires.insert(run.id.clone(), e);
        }
        if f.caught_up {
            batch.events.push(
                NewEvent::new("scheduler.caught_up", &bot.name)
                    .target(bot.name.as_str())
                    .outcome("ok")
                    .detail(json!({
                        "bot": bot.name,
                        "scheduled_for": format_ts(&f.scheduled_for),
                        "run": run.id,
                        "catch_up": bot.catch_up.as_str(),
                    })),
            );
        }
        batch.runs.push(run);
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
            ms = took.as_millis() as u64,
            "enqueued firings"
        );
    }
    plan.apply(clocks);
    // Wake the workers when the earliest run enqueued ahead becomes due.
    if let Some(due) = batch
        .runs
        .iter()
        .filter(|r| inserted.contains(&r.id))
        .map(|r| r.due_at)
        .min()
    {
        // Plus up to one poll interval at random: other workers find the
        // run on their next poll (within that interval), and woken at once
        // this worker would always claim first — every run of a bot firing
        // every second would go to the scheduling worker alone.
        let poll = u64::try_from(crate::scheduler::dispatch::POLL.as_millis()).unwrap_or(200);
        let jitter = Duration::from_millis((ulid::Ulid::new().random() % u128::from(poll)) as u64);
        let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO) + jitter;
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
    f: &plan::Firing,
) -> QueuedRun {
    let id = ulid::Ulid::new().to_string();
    let playbook = bot.playbook_label(workspace);
    let event = NewEvent::new("run.queued", &bot.name).detail(json!({
        "bot": bot.name,
        "playbook": playbook,
        "scheduled_for": format_ts(&f.scheduled_for),
        "inputs": inputs,
        "caught_up": f.caught_up,
    }));
    QueuedRun {
        id,
        bot: bot.name.clone(),
        playbook,
        inputs: inputs.clone(),
        scheduled_for: Some(f.scheduled_for),
        due_at: f.due_at,
        overlap: bot.overlap.as_str().into(),
        actor: bot.name.clone(),
        attempt: 1,
        retry_of: None,
        event,
    }
}

/// On shutdown, firings enqueued ahead whose time has not come become
/// `skipped` (with their events), so a later start does not run them late.
async fn skip_future_runs(shared: &Shared, fence: &Fence) -> anyhow::Result<()> {
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
                    fence: Some(fence.clone()),
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
