//! One action run on behalf of a run that has already ended — the failure
//! notice a bot sends after its last failed attempt (`notify.on_failure`).
//!
//! The scheduler composes the notice (recipients, text, evidence) and hands
//! it here; the engine runs the action through the registry with an
//! [`ActionContext`] for the ended run, exactly as it runs a step. So the
//! notice gets what every playbook action gets: the transport from
//! clerk.yaml, argument checks, resend protection through the journal, and
//! the action's default retry policy — the same [`RetryPolicy`] and error
//! kinds as a step (only system errors are retried). It is not a run of its
//! own: each attempt is audited against the ended run as `<kind>.sent`,
//! `<kind>.retrying` or `<kind>.failed` (`kind` given by the caller).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::actions::{self, ActionContext, AuditNote, RunInfo, RunResources, StepInfo};
use crate::audit::NewEvent;
use crate::playbook::RetryPolicy;

/// An action to run for an ended run.
pub struct ActionForRun<'a> {
    /// The ended run the action is done for (its audit trail gets the events).
    pub run_id: &'a str,
    /// Actor of the events (the bot's name).
    pub actor: &'a str,
    pub bot: Option<&'a str>,
    /// The run's playbook, as recorded.
    pub playbook: &'a str,
    pub workspace: &'a Path,
    /// The step path and name the action runs under (part of the resend key).
    pub step: &'a str,
    pub step_name: String,
    pub action: &'a str,
    pub args: Value,
    /// Event kind prefix: `notify` → `notify.sent` / `notify.retrying` / `notify.failed`.
    pub event_prefix: &'a str,
    /// Added to every event's detail.
    pub detail: Map<String, Value>,
    /// Used when the action itself names no target.
    pub target: String,
    pub cancel: &'a CancellationToken,
}

/// The problems `action` finds in `args` (empty: valid), or `None` when no
/// such action exists. For callers above the engine that build arguments.
pub fn check_action_args(action: &str, args: &Value) -> Option<Vec<String>> {
    actions::find(action).map(|d| (d.check)(args).into_iter().map(|p| p.message).collect())
}

impl Engine {
    /// Runs `req.action` for an ended run with the action's default retry
    /// policy, auditing every attempt against the run. Returns the action's
    /// result or the final error; either way the audit trail says so.
    pub async fn run_action_for(&self, req: ActionForRun<'_>) -> anyhow::Result<Value> {
        let def = actions::find(req.action)
            .with_context(|| format!("the {} action is not registered", req.action))?;
        let policy = match def.default_retry {
            Some(d) => RetryPolicy {
                attempts: d.attempts.max(1),
                delay: Duration::from_millis(d.delay_ms),
                backoff: d.backoff,
                max_delay: None,
            },
            None => RetryPolicy {
                attempts: 1,
                delay: Duration::ZERO,
                backoff: 1.0,
                max_delay: None,
            },
        };
        let run = RunInfo {
            id: req.run_id.to_string(),
            workspace: req.workspace.to_path_buf(),
            playbook: PathBuf::from(req.playbook),
            actor: req.actor.to_string(),
            bot: req.bot.map(str::to_string),
            artifacts_dir: req
                .workspace
                .join(".clerk")
                .join("artifacts")
                .join(req.run_id),
            // Empty: the journal reads the ended run's lineage from the store.
            lineage: String::new(),
        };
        let cancel = req.cancel;
        let mut attempt = 1u32;
        loop {
            let step = StepInfo {
                path: req.step.to_string(),
                name: Some(req.step_name.clone()),
                attempt,
                sensitive: false,
                id: req.step.to_string(),
                item_key: None,
            };
            let resources = RunResources::default();
            let start = Instant::now();
            let (outcome, note) = {
                let mut ctx = ActionContext {
                    run: &run,
                    step: &step,
                    config: &self.config,
                    secrets: &self.secrets,
                    resources: &resources,
                    recorder: &self.recorder,
                    cancel,
                    timeout: None,
                    note: AuditNote::default(),
                };
                let outcome = if cancel.is_cancelled() {
                    None
                } else {
                    tokio::select! {
                        r = (def.run)(&mut ctx, req.args.clone()) => Some(r),
                        _ = cancel.cancelled() => None,
                    }
                };
                (outcome, std::mem::take(&mut ctx.note))
            };
            resources.close_all().await;

            let mut detail = note.detail;
            for (k, v) in &req.detail {
                detail.insert(k.clone(), v.clone());
            }
            detail.insert("attempt".into(), json!(attempt));
            let target = note.target.unwrap_or_else(|| req.target.clone());
            let event = |what: &str| {
                NewEvent::new(&format!("{}.{what}", req.event_prefix), req.actor)
                    .run(req.run_id)
                    .action(def.name)
                    .target(target.as_str())
                    .duration_ms(start.elapsed().as_millis() as i64)
            };
            let (error, retry) = match outcome {
                Some(Ok(result)) => {
                    let ev = event("sent").outcome("ok").detail(Value::Object(detail));
                    self.record_quietly(ev).await;
                    return Ok(result);
                }
                None => (anyhow::anyhow!("cancelled: clerk serve is stopping"), false),
                Some(Err(e)) => {
                    let retry = e.kind.is_retryable() && attempt < policy.attempts;
                    (e.error, retry)
                }
            };
            let message = self.recorder.redact_str(&format!("{error:#}"));
            if retry {
                let wait = policy.delay_before(attempt + 1);
                detail.insert("retry_in_ms".into(), json!(wait.as_millis() as u64));
                let ev = event("retrying")
                    .outcome("failed")
                    .error(message.as_str())
                    .detail(Value::Object(detail));
                self.record_quietly(ev).await;
                tracing::warn!(
                    run = %req.run_id,
                    "{} attempt {attempt} of {} failed, retrying in {}: {message}",
                    req.action,
                    policy.attempts,
                    humantime::format_duration(wait)
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => {}
                }
                attempt += 1;
                continue;
            }
            let ev = event("failed")
                .outcome("failed")
                .error(message.as_str())
                .detail(Value::Object(detail));
            self.record_quietly(ev).await;
            return Err(anyhow::anyhow!(message));
        }
    }

    async fn record_quietly(&self, event: NewEvent) {
        if let Err(e) = self.recorder.record(event).await {
            tracing::error!(error = %format!("{e:#}"), "cannot record the action in the audit trail");
        }
    }
}
