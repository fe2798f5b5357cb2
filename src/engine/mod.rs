//! The engine: runs one playbook as one run, from `run.started` to `run.finished`.
//!
//! It owns the run's lifecycle in the store (status transitions, each with its
//! audit event in the same transaction), closes per-run resources whatever
//! happens (success, failure, timeout, cancellation), and reports a
//! [`RunOutcome`] that the CLI and the scheduler present.
//!
//! Every run belongs to a lineage (the job); loops with a `checkpoint` keep
//! a work-item ledger per lineage (`ledger`), so a run that continues
//! another ([`Engine::resume`], a scheduler follow-up) skips done items,
//! verifies or sets aside items left in progress, and skips `once` steps.

mod diskfull;
mod exec;
mod inputs;
pub mod journal;
mod keep;
mod ledger;
mod notice;
mod resume;

pub use exec::StepFailure;
pub use inputs::{GivenInput, resolve_inputs};
pub use resume::{ResumeOptions, ResumeRefused, playbook_changes};

// What the scheduler needs from the actions layer, reached through the
// engine so that the layers keep one direction (cli → scheduler → engine →
// actions): the action catalogue for loading playbooks, the error kinds, the
// IMAP connection a mailbox trigger watches, and one action run for an ended
// run (the failure notice).
pub use crate::actions::ErrorKind;
pub use notice::{ActionForRun, check_action_args};

/// The IMAP connection and message decoding `mail.fetch` uses, for the
/// scheduler's mailbox trigger.
pub mod mailbox {
    pub use crate::actions::mail::imap::{client, parse};
}

/// Loads and checks a playbook file against the engine's actions.
pub fn load_playbook(
    path: &std::path::Path,
) -> Result<crate::playbook::Playbook, crate::playbook::Diagnostics> {
    crate::playbook::load_file(path, &crate::actions::Registry)
}

/// Loads and checks a playbook given as text (a deployed version kept in
/// the store); `path` is its label in messages and on runs.
pub fn load_playbook_str(
    text: &str,
    path: &std::path::Path,
) -> Result<crate::playbook::Playbook, crate::playbook::Diagnostics> {
    crate::playbook::load_str(text, path, &crate::actions::Registry)
}

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::actions::{RunInfo, RunResources};
use crate::audit::{NewEvent, Recorder};
use crate::config::Config;
use crate::playbook::Playbook;
use crate::secrets::{self, Secrets};
use crate::store::{FollowUpRun, ItemCounts, NewRun, RunChange};
use crate::template;
use exec::Exec;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    /// The run completed, but some work items ended as business or system
    /// exceptions or in doubt (see [`RunOutcome::items`]).
    SucceededWithExceptions,
    Failed,
    Cancelled,
    TimedOut,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::SucceededWithExceptions => "succeeded_with_exceptions",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
        }
    }
}

/// The result of a run, for the CLI and the scheduler.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub id: String,
    pub status: RunStatus,
    pub playbook: String,
    /// Final variables, secrets masked.
    pub vars: Value,
    pub error: Option<RunError>,
    pub artifacts: Vec<String>,
    /// The job this run belongs to, and the run it continues.
    pub lineage: String,
    pub resumed_from: Option<String>,
    /// What happened to the work items (loop items with a `checkpoint`) in
    /// this run: `done` (entered or verified), `business_exception`,
    /// `system_exception`, `in_doubt` (found in progress after a crash,
    /// not verified: a person must check), `skipped` (done by an earlier run
    /// of the lineage; output restored). Items an earlier run left as
    /// business exceptions count as `business_exception` again.
    pub items: ItemCounts,
    /// The run queued to continue this one, if a follow-up was decided
    /// ([`Engine::execute_with_follow_up`]).
    pub follow_up: Option<String>,
}

/// Where and why a run failed.
#[derive(Debug, Clone, Serialize)]
pub struct RunError {
    pub step: String,
    pub step_name: Option<String>,
    pub action: Option<String>,
    pub message: String,
}

/// Everything a run needs besides the playbook.
pub struct RunRequest {
    pub playbook: Arc<Playbook>,
    pub inputs: serde_json::Map<String, Value>,
    pub actor: String,
    pub bot: Option<String>,
    pub workspace: PathBuf,
    pub cancel: CancellationToken,
    /// Limit for the whole run (a bot's `max_runtime`): the run is cancelled and timed_out.
    pub max_runtime: Option<Duration>,
    /// Show progress bars for loops (when stderr is a terminal).
    pub progress: bool,
}

/// Shared services for running playbooks.
#[derive(Clone)]
pub struct Engine {
    pub config: Arc<Config>,
    pub recorder: Recorder,
    pub secrets: Arc<Secrets>,
}

impl Engine {
    /// Creates the run row (status running, `run.started`) and executes it.
    pub async fn run_now(&self, req: RunRequest) -> anyhow::Result<RunOutcome> {
        let id = ulid::Ulid::new().to_string();
        let new = NewRun {
            id: id.clone(),
            bot: req.bot.clone(),
            playbook: req.playbook.path.display().to_string(),
            inputs: Value::Object(req.inputs.clone()),
            scheduled_for: None,
            actor: req.actor.clone(),
            attempt: 1,
            status: "running".into(),
            lineage: None,
            playbook_sha256: Some(req.playbook.sha256.clone()),
            playbook_steps: Some(json!(req.playbook.step_digests())),
            resumed_from: None,
        };
        let event =
            self.recorder
                .redact_event(
                    NewEvent::new("run.started", &req.actor)
                        .run(&id)
                        .detail(json!({
                            "playbook": new.playbook,
                            "name": req.playbook.name,
                            "inputs": new.inputs,
                            "lineage": format!("run:{id}"),
                            "playbook_sha256": req.playbook.sha256,
                        })),
                );
        self.recorder
            .store()
            .create_run(&new, event)
            .await
            .context("cannot record the new run in the store")?
            .context("a run with this id already exists")?;
        self.execute(&id, req).await
    }

    /// Executes a run whose row exists and is `running` (claimed by a worker).
    ///
    /// The run's lineage comes from its row. A run that continues another
    /// (`resumed_from`, e.g. a bot retry queued as a resume) first checks
    /// that the playbook did not change since; if it did, the run fails at
    /// once with a message naming the changed steps.
    pub async fn execute(&self, run_id: &str, req: RunRequest) -> anyhow::Result<RunOutcome> {
        self.execute_with(run_id, req, false).await
    }

    pub(crate) async fn execute_with(
        &self,
        run_id: &str,
        req: RunRequest,
        changes_accepted: bool,
    ) -> anyhow::Result<RunOutcome> {
        self.execute_inner(run_id, req, changes_accepted, None)
            .await
    }

    /// The run gets its own secret masker, dropped when it ends.
    async fn execute_inner(
        &self,
        run_id: &str,
        req: RunRequest,
        changes_accepted: bool,
        follow_up: Option<FollowUpFn>,
    ) -> anyhow::Result<RunOutcome> {
        if req.bot.is_none()
            && let Err(e) = self.recorder.store().record_run_owner(run_id).await
        {
            tracing::warn!("cannot record which process runs {run_id}: {e}");
        }
        let masker = crate::secrets::Masker::new();
        masker
            .scope(self.execute_masked(run_id, req, changes_accepted, follow_up))
            .await
    }

    async fn execute_masked(
        &self,
        run_id: &str,
        req: RunRequest,
        changes_accepted: bool,
        follow_up: Option<FollowUpFn>,
    ) -> anyhow::Result<RunOutcome> {
        let store = self.recorder.store();
        let row = store
            .get_run(run_id)
            .await
            .with_context(|| format!("cannot read run {run_id}"))?
            .with_context(|| format!("run {run_id} is not in the store"))?;
        if row.playbook_sha256.is_none() {
            store
                .set_run_playbook(
                    run_id,
                    &req.playbook.sha256,
                    &json!(req.playbook.step_digests()),
                )
                .await
                .with_context(|| format!("cannot record the playbook of run {run_id}"))?;
        }
        let mut refused = None;
        if let (Some(prev), false) = (&row.resumed_from, changes_accepted)
            && let Some(prev) = store.get_run(prev).await.ok().flatten()
            && let Some(changes) = playbook_changes(&prev, &req.playbook)
        {
            refused = Some(format!(
                "the playbook changed since run {} ({}); not resuming with a changed playbook \
                 (clerk runs resume {} --force-changed accepts the change)",
                prev.id,
                changes.describe(),
                prev.id
            ));
        }
        let artifacts_dir = req.workspace.join(".clerk").join("artifacts").join(run_id);
        let run = RunInfo {
            id: run_id.to_string(),
            workspace: req.workspace.clone(),
            playbook: req.playbook.path.clone(),
            actor: req.actor.clone(),
            bot: req.bot.clone(),
            artifacts_dir,
            lineage: row.lineage.clone(),
        };
        let mut vars = BTreeMap::new();
        vars.insert(
            "inputs".to_string(),
            template::to_value(&Value::Object(req.inputs.clone())),
        );
        vars.insert("secrets".to_string(), self.secrets.template_object());
        let mut exec = Exec {
            config: self.config.clone(),
            recorder: self.recorder.clone(),
            secrets: self.secrets.clone(),
            run,
            resources: RunResources::default(),
            cancel: req.cancel.clone(),
            vars,
            tainted: HashSet::new(),
            artifacts: Vec::new(),
            progress: req.progress,
            item_key: None,
            items: ItemCounts::default(),
            last_value: None,
            prestarted: None,
            origins: Default::default(),
        };
        exec.refresh_run_var();
        let playbook = req.playbook.clone();
        let started = std::time::Instant::now();
        let result = if let Some(message) = refused {
            Ok(Err(StepFailure {
                path: String::new(),
                name: None,
                action: None,
                message,
                kind: crate::actions::ErrorKind::Usage,
                cancelled: false,
            }))
        } else {
            let steps = exec.run_steps(&playbook.steps, "");
            match req.max_runtime {
                Some(limit) => match tokio::time::timeout(limit, steps).await {
                    Ok(r) => Ok(r),
                    Err(_) => Err(limit),
                },
                None => Ok(steps.await),
            }
        };
        // Whatever happened, the browser and other resources go away with the run.
        let closing = std::time::Instant::now();
        exec.resources.close_all().await;
        let close_ms = closing.elapsed().as_millis() as u64;

        let (status, error) = match result {
            Ok(Ok(())) if exec.items.exceptions() > 0 => (RunStatus::SucceededWithExceptions, None),
            Ok(Ok(())) => (RunStatus::Succeeded, None),
            Ok(Err(f)) if f.cancelled => (
                RunStatus::Cancelled,
                Some(RunError {
                    step: f.path,
                    step_name: f.name,
                    action: f.action,
                    message: "the run was cancelled".into(),
                }),
            ),
            Ok(Err(f)) => (
                RunStatus::Failed,
                Some(RunError {
                    step: f.path,
                    step_name: f.name,
                    action: f.action,
                    message: f.message,
                }),
            ),
            Err(limit) => (
                RunStatus::TimedOut,
                Some(RunError {
                    step: String::new(),
                    step_name: None,
                    action: None,
                    message: format!(
                        "the run exceeded its max_runtime of {} and was stopped",
                        humantime::format_duration(limit)
                    ),
                }),
            ),
        };
        let vars = exec.masked_vars();
        let error_text = error.as_ref().map(|e| secrets::redact(&e.message));
        let mut detail = json!({
            "status": status.as_str(),
            "duration_ms": started.elapsed().as_millis() as u64,
            "artifacts": exec.artifacts,
            "items": exec.items,
            "lineage": row.lineage,
            "playbook_sha256": req.playbook.sha256,
            // Closing the run's browser and other resources (part of
            // duration_ms): how long a goodbye took, apart from the steps.
            "close_ms": close_ms,
        });
        if let Some(e) = &error {
            detail["failed_step"] = json!(e.step);
            detail["failed_step_name"] = json!(e.step_name);
            detail["failed_action"] = json!(e.action);
        }
        let mut event = NewEvent::new("run.finished", &req.actor)
            .run(run_id)
            .outcome(match status {
                RunStatus::Succeeded => "ok",
                RunStatus::SucceededWithExceptions => "partial",
                _ => "failed",
            })
            .duration_ms(started.elapsed().as_millis() as i64)
            .detail(detail);
        if let Some(e) = &error_text {
            event = event.error(e);
        }
        let change = RunChange {
            status: Some(status.as_str().to_string()),
            finished_at: Some(chrono::Utc::now()),
            error: error_text.clone(),
            failed_step: error.as_ref().map(|e| match &e.step_name {
                Some(n) => format!("{} \"{}\"", e.step, n),
                None => e.step.clone(),
            }),
            vars: Some(vars.clone()),
            ..Default::default()
        };
        let event = self.recorder.redact_event(event);
        let mut outcome = RunOutcome {
            id: run_id.to_string(),
            status,
            playbook: playbook.path.display().to_string(),
            vars,
            error: error.map(|mut e| {
                e.message = secrets::redact(&e.message);
                e
            }),
            artifacts: exec.artifacts.clone(),
            lineage: row.lineage.clone(),
            resumed_from: row.resumed_from.clone(),
            items: exec.items.clone(),
            follow_up: None,
        };
        let follow = follow_up.and_then(|decide| decide(&outcome)).map(|mut f| {
            f.event = self.recorder.redact_event(f.event);
            f
        });
        // Guarded: if another process marked the run (interrupted, say)
        // meanwhile, its record stands and this end is reported, not written.
        // The follow-up run (if any) is queued in the same transaction.
        let (ended, queued) =
            diskfull::record_end(self.recorder.store(), run_id, change, event, follow)
                .await
                .with_context(|| format!("cannot record the end of run {run_id}"))?;
        // A full disk turns an apparent success into a recorded failure
        // (its deferred events could not all be written): report what the
        // store recorded.
        if ended.status == RunStatus::Failed.as_str() && outcome.status != RunStatus::Failed {
            outcome.status = RunStatus::Failed;
            outcome.error = Some(RunError {
                step: String::new(),
                step_name: None,
                action: None,
                message: ended.error.clone().unwrap_or_default(),
            });
        }
        crate::audit::checkpoint::after_run(self.recorder.store(), &self.config, &req.workspace)
            .await;
        outcome.follow_up = queued.map(|r| r.id);
        Ok(outcome)
    }

    /// Like [`Engine::execute`], and when the run has ended `follow_up`
    /// decides from its outcome whether a follow-up run (a bot retry, as a
    /// resume or not) is queued; the run's end, the follow-up and both
    /// events are written in ONE transaction. [`RunOutcome::follow_up`]
    /// names the queued run.
    pub async fn execute_with_follow_up(
        &self,
        run_id: &str,
        req: RunRequest,
        follow_up: FollowUpFn,
    ) -> anyhow::Result<RunOutcome> {
        self.execute_inner(run_id, req, false, Some(follow_up))
            .await
    }
}

/// Decides, from a finished run's outcome, which run (if any) continues it.
pub type FollowUpFn = Box<dyn FnOnce(&RunOutcome) -> Option<FollowUpRun> + Send>;
