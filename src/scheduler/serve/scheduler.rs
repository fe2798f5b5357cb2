//! The scheduler loop of `clerk serve`: holds (or waits for) the scheduler
//! lease, and per tick turns what [`plan`](super::plan) decides into one
//! store batch — queued runs, `scheduler.*` events and the bots' cursors.
//! On stop, firings it queued ahead are dealt with (see [`skip_future_runs`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::lease::{SCHEDULER_LEASE, acquire_leadership, current_holder, sweep_dead_workers};
use super::plan::{self, BotClock, Now};
use super::{ENQUEUE_LEAD, MISFIRE_GRACE, Shared, outage_backoff, sleep_or_stop};
use crate::audit::NewEvent;
use crate::scheduler::bot::Bot;
use crate::store::time::{format_ts, now_micros};
use crate::store::{QueuedRun, RunChange, SchedBatch};

/// The lead never grows beyond this, however slow the store is.
const MAX_LEAD: Duration = Duration::from_secs(30);
/// Longest wait between two scheduler ticks.
const TICK: Duration = Duration::from_millis(250);
/// At most this many `scheduler.skipped` events per bot per tick; the rest
/// are summed up in one more event.
const MAX_SKIP_EVENTS: usize = 100;

pub(super) async fn run(shared: Arc<Shared>) {
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
        let wait = clocks
            .as_ref()
            .map_or(TICK, |c| plan::wait(c, Utc::now(), lead, TICK));
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
pub(super) async fn skip_future_runs(shared: &Shared) -> anyhow::Result<()> {
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
