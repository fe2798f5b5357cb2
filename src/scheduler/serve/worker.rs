//! The runs of `clerk serve`: the dispatcher ([`crate::scheduler::dispatch`])
//! claims due runs in batches for the free slots (overlap rules and the
//! worker's bots and labels decided in the claim query), and each runs with the engine in
//! the bot's time zone; the end of the run and the bot's `retry:` follow-up
//! are written in one transaction, and a failure notice follows the last
//! failed attempt.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Shared, outage_backoff};
use crate::audit::NewEvent;
use crate::engine::{RunRequest, RunStatus};
use crate::scheduler::bot::Bot;
use crate::scheduler::notify::{self, FailureNotice};
use crate::store::time::now_micros;
use crate::store::{RunChange, RunRow};

/// A run to its end, boxed (the dispatcher's `execute`).
type RunFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The dispatcher pool for this serve: `slots` runs at once, each run by
/// [`execute`].
pub(super) fn pool(
    shared: Arc<Shared>,
    slots: usize,
) -> crate::scheduler::dispatch::Pool<
    impl Fn() -> super::BotMap + Send + Sync + 'static,
    impl Fn(Arc<Bot>, RunRow, usize) -> RunFuture + Send + Sync + 'static,
> {
    crate::scheduler::dispatch::Pool {
        store: shared.store.clone(),
        worker_id: shared.worker_id.clone(),
        slots,
        bots: {
            let s = shared.clone();
            move || s.bots()
        },
        stopping: shared.stopping.clone(),
        wake: shared.wake.clone(),
        execute: {
            let s = shared.clone();
            move |bot: Arc<Bot>, run: RunRow, n: usize| {
                let s = s.clone();
                Box::pin(async move { execute(&s, &bot, run, n).await }) as RunFuture
            }
        },
    }
}

async fn execute(shared: &Shared, bot: &Arc<Bot>, run: RunRow, worker: usize) {
    // The newest deployed version's bot (recorded on the run), never a stale one.
    let Some(bot) = shared.opts.deployed.for_run(bot.clone(), &run).await else {
        return;
    };
    let bot = &bot;
    let lateness = run
        .scheduled_for
        .zip(run.started_at)
        .map(|(s, t)| (t - s).num_milliseconds());
    tracing::info!(run = %run.id, bot = %bot.name, attempt = run.attempt, lateness_ms = ?lateness, worker, "run started");
    let inputs = match &run.inputs {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    // Cancelled by a hard stop, or when another serve took the run over.
    let cancel = shared.hard_stop.child_token();
    let _in_flight = InFlight::register(shared, &run.id, &cancel);
    let req = RunRequest {
        playbook: bot.playbook.clone(),
        inputs,
        actor: run.actor.clone(),
        bot: Some(bot.name.clone()),
        workspace: shared.opts.workspace.clone(),
        cancel: cancel.clone(),
        max_runtime: bot.max_runtime,
        progress: false,
    };
    let plan = crate::scheduler::continuation::retry_plan(&shared.engine.recorder, bot, &run);
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
        if let Err(e) = crate::scheduler::continuation::interrupt(
            &shared.engine.recorder,
            Some(bot),
            &run,
            &reason,
            &["cancelled"],
            None,
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

/// A run this process is running, known to the heartbeat (which stops it
/// if another serve takes it over) until dropped.
struct InFlight<'a> {
    shared: &'a Shared,
    id: String,
}

impl<'a> InFlight<'a> {
    fn register(shared: &'a Shared, id: &str, cancel: &CancellationToken) -> Self {
        match shared.in_flight.lock() {
            Ok(mut m) => m.insert(id.to_string(), cancel.clone()),
            Err(p) => p.into_inner().insert(id.to_string(), cancel.clone()),
        };
        InFlight {
            shared,
            id: id.to_string(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        match self.shared.in_flight.lock() {
            Ok(mut m) => m.remove(&self.id),
            Err(p) => p.into_inner().remove(&self.id),
        };
    }
}
