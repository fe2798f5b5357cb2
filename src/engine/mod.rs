//! The engine: runs one playbook as one run, from `run.started` to `run.finished`.
//!
//! It owns the run's lifecycle in the store (status transitions, each with its
//! audit event in the same transaction), closes per-run resources whatever
//! happens (success, failure, timeout, cancellation), and reports a
//! [`RunOutcome`] that the CLI and the scheduler present.

mod exec;
mod inputs;

pub use exec::StepFailure;
pub use inputs::{GivenInput, resolve_inputs};

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
use crate::store::{NewRun, RunChange};
use crate::template;
use exec::Exec;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
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
    pub async fn execute(&self, run_id: &str, req: RunRequest) -> anyhow::Result<RunOutcome> {
        let artifacts_dir = req.workspace.join(".clerk").join("artifacts").join(run_id);
        let run = RunInfo {
            id: run_id.to_string(),
            workspace: req.workspace.clone(),
            playbook: req.playbook.path.clone(),
            actor: req.actor.clone(),
            bot: req.bot.clone(),
            artifacts_dir,
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
        };
        exec.refresh_run_var();
        let playbook = req.playbook.clone();
        let started = std::time::Instant::now();
        let steps = exec.run_steps(&playbook.steps, "");
        let result = match req.max_runtime {
            Some(limit) => match tokio::time::timeout(limit, steps).await {
                Ok(r) => Ok(r),
                Err(_) => Err(limit),
            },
            None => Ok(steps.await),
        };
        // Whatever happened, the browser and other resources go away with the run.
        exec.resources.close_all().await;

        let (status, error) = match result {
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
        });
        if let Some(e) = &error {
            detail["failed_step"] = json!(e.step);
            detail["failed_step_name"] = json!(e.step_name);
            detail["failed_action"] = json!(e.action);
        }
        let mut event = NewEvent::new("run.finished", &req.actor)
            .run(run_id)
            .outcome(if status == RunStatus::Succeeded {
                "ok"
            } else {
                "failed"
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
        self.recorder
            .store()
            .transition_run(run_id, change, event)
            .await
            .with_context(|| format!("cannot record the end of run {run_id}"))?;
        crate::audit::checkpoint::after_run(self.recorder.store(), &self.config, &req.workspace)
            .await;
        Ok(RunOutcome {
            id: run_id.to_string(),
            status,
            playbook: playbook.path.display().to_string(),
            vars,
            error: error.map(|mut e| {
                e.message = secrets::redact(&e.message);
                e
            }),
            artifacts: exec.artifacts.clone(),
        })
    }
}
