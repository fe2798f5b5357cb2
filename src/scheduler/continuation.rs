//! How a bot's job goes on after a run of it did not succeed: the bot's
//! `on_interrupt` for a run an earlier `serve` left unfinished (crash,
//! `kill -9`, power cut, the grace period running out), and its `retry:` for
//! a run that failed. Both continue the job in the SAME lineage — done items
//! and mails already sent are not repeated — and the continuation is queued
//! in the same transaction as the end of the run it continues (one
//! `finish_run_and_enqueue`), so a crash in between cannot lose it. Being a
//! queued run, it is claimed by exactly one worker.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::bot::{Bot, OnInterrupt};
use crate::audit::{NewEvent, Recorder};
use crate::store::time::{format_ts, now_micros};
use crate::store::{Fence, FollowUpRun, RunChange, RunRow, StoreError};

/// The queued run that continues `run` (a resume when `resume`, else a retry
/// of the current playbook), due at `due`.
pub(super) fn follow_up(
    recorder: &Recorder,
    bot: &Bot,
    run: &RunRow,
    due: DateTime<Utc>,
    resume: bool,
    why: &str,
) -> FollowUpRun {
    let event = NewEvent::new("run.queued", &run.actor).detail(json!({
        "bot": bot.name,
        "playbook": run.playbook,
        "lineage": run.lineage,
        "retry_of": run.id,
        "resumed_from": if resume { Some(run.id.as_str()) } else { None },
        "attempt": run.attempt + 1,
        "due_at": format_ts(&due),
        "inputs": run.inputs,
        "reason": why,
    }));
    FollowUpRun {
        id: ulid::Ulid::new().to_string(),
        due_at: due,
        overlap: bot.overlap.as_str().into(),
        resume,
        event: recorder.redact_event(event),
    }
}

/// Marks `run` (in one of the statuses `from`: `running` when its worker is
/// gone, `cancelled` after a hard stop) `interrupted` with `reason` and, following
/// its bot's `on_interrupt` (when the bot is one of this serve's), queues
/// its continuation in the same transaction. Returns the queued run's id.
/// A run that ended meanwhile (lost race) is left as it is. With `fence`
/// (the scheduler's lease), nothing is written unless the lease is still
/// held (the error then says so).
pub(super) async fn interrupt(
    recorder: &Recorder,
    bot: Option<&Bot>,
    run: &RunRow,
    reason: &str,
    from: &[&str],
    fence: Option<&Fence>,
) -> anyhow::Result<Option<String>> {
    let policy = bot.map(|b| b.on_interrupt);
    let continuation = match (bot, policy) {
        (Some(b), Some(OnInterrupt::Resume)) => Some(follow_up(
            recorder,
            b,
            run,
            now_micros(),
            true,
            "on_interrupt: resume",
        )),
        (Some(b), Some(OnInterrupt::Retry)) => Some(follow_up(
            recorder,
            b,
            run,
            now_micros(),
            false,
            "on_interrupt: retry",
        )),
        _ => None,
    };
    let event = NewEvent::new("run.interrupted", &run.actor)
        .run(run.id.as_str())
        .outcome("failed")
        .error(reason)
        .detail(json!({
            "status": "interrupted",
            "bot": run.bot,
            "worker": run.worker,
            "on_interrupt": policy.map(OnInterrupt::as_str),
        }));
    let change = RunChange {
        status: Some("interrupted".into()),
        finished_at: Some(now_micros()),
        error: Some(reason.to_string()),
        fence: fence.cloned(),
        ..Default::default()
    };
    match recorder
        .store()
        .finish_run_and_enqueue(
            &run.id,
            from,
            change,
            recorder.redact_event(event),
            continuation,
        )
        .await
    {
        Ok((_, queued)) => {
            let queued = queued.map(|q| q.id);
            if let (Some(q), Some(p)) = (&queued, policy) {
                tracing::warn!(run = %run.id, continuation = %q, on_interrupt = p.as_str(), "interrupted run: its job goes on in a new run of the same lineage");
            }
            Ok(queued)
        }
        Err(StoreError::StateConflict { what, found, .. }) if !what.starts_with("lease ") => {
            tracing::warn!(run = %run.id, %found, "not marking the run interrupted: it is no longer running (lost race)");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// A bot's `retry:` as the engine's follow-up plan: a run that failed or
/// timed out, with attempts left, is continued by a resume in the same
/// lineage after the retry delay (done items and sent mails not repeated),
/// queued in the same transaction as the failed run's end.
pub(super) fn retry_plan(
    recorder: &Recorder,
    bot: &std::sync::Arc<Bot>,
    run: &RunRow,
) -> crate::engine::FollowUpFn {
    let (recorder, bot, run) = (recorder.clone(), bot.clone(), run.clone());
    Box::new(move |outcome| {
        use crate::engine::RunStatus;
        if !matches!(outcome.status, RunStatus::Failed | RunStatus::TimedOut) {
            return None;
        }
        let retry = bot.retry?;
        if run.attempt >= i64::from(retry.attempts) {
            return None;
        }
        let due = now_micros() + chrono::Duration::from_std(retry.delay).unwrap_or_default();
        Some(follow_up(&recorder, &bot, &run, due, true, "retry"))
    })
}
