//! Resuming a run: a new run in the same lineage that continues a failed,
//! cancelled, timed-out or interrupted one. Work items already `done` (or
//! ended as business exceptions) are skipped and their outputs restored,
//! `once: true` steps that succeeded are skipped, items found in progress are
//! verified or set aside as in doubt (see `ledger`), everything else runs
//! again. A changed playbook is refused unless the caller accepts it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Engine, RunOutcome, RunRequest};
use crate::audit::NewEvent;
use crate::playbook::{Playbook, StepChanges};
use crate::store::{NewRun, RESUMABLE_STATUSES, RunRow, StoreError};

/// How to resume.
#[derive(Clone, Debug, Default)]
pub struct ResumeOptions {
    /// Resume even if the playbook changed since the previous run (the
    /// changes are recorded in the new run's `run.started` event).
    pub force_changed: bool,
    /// Who resumes (the OS user, or the bot).
    pub actor: String,
    pub workspace: PathBuf,
    pub cancel: CancellationToken,
    pub max_runtime: Option<Duration>,
    pub progress: bool,
    /// The playbook to run; `None`: load the file the previous run ran
    /// (relative paths against the workspace).
    pub playbook: Option<Arc<Playbook>>,
}

/// Why a resume was refused (nothing was started).
#[derive(thiserror::Error, Debug, Clone)]
pub enum ResumeRefused {
    #[error("run {0} is not in the store")]
    NotFound(String),
    #[error(
        "run {id} is {status}; only a failed, cancelled, timed-out or interrupted run (or one that succeeded with exceptions) can be resumed"
    )]
    NotResumable { id: String, status: String },
    #[error(
        "run {id} was already resumed by run {by}; resume the latest run of its lineage instead"
    )]
    AlreadyResumed { id: String, by: String },
    #[error(
        "the playbook {path} changed since run {id} ({}); resuming with a changed playbook could redo or skip the wrong work — use --force-changed to accept the change",
        changes.describe()
    )]
    PlaybookChanged {
        id: String,
        path: String,
        changes: StepChanges,
    },
}

/// The step changes between the playbook a run executed and `playbook`, or
/// `None` if it is the same file (same SHA-256) or the run recorded none.
pub fn playbook_changes(prev: &RunRow, playbook: &Playbook) -> Option<StepChanges> {
    let old_sha = prev.playbook_sha256.as_deref()?;
    if old_sha == playbook.sha256 {
        return None;
    }
    let old: std::collections::BTreeMap<String, String> = prev
        .playbook_steps
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    Some(StepChanges::between(&old, &playbook.step_digests()))
}

impl Engine {
    /// Continues run `prev_run_id` (full id or unique prefix) in a new run of
    /// the same lineage (`resumed_from` = it, attempt + 1) and executes it.
    ///
    /// Refused — with a [`ResumeRefused`] inside the error, nothing started —
    /// unless the previous run is failed / cancelled / timed_out /
    /// interrupted and no other run continues it yet (guarded in the store,
    /// so two resumes racing start one run), and its playbook is unchanged
    /// (or `force_changed`).
    pub async fn resume(
        &self,
        prev_run_id: &str,
        opts: ResumeOptions,
    ) -> anyhow::Result<RunOutcome> {
        let store = self.recorder.store();
        let prev = store
            .get_run(prev_run_id)
            .await
            .with_context(|| format!("cannot read run {prev_run_id}"))?
            .ok_or_else(|| ResumeRefused::NotFound(prev_run_id.to_string()))?;
        if !RESUMABLE_STATUSES.contains(&prev.status.as_str()) {
            return Err(ResumeRefused::NotResumable {
                id: prev.id.clone(),
                status: prev.status.clone(),
            }
            .into());
        }
        let playbook = match &opts.playbook {
            Some(p) => p.clone(),
            None => {
                let path = PathBuf::from(&prev.playbook);
                let path = if path.is_absolute() || path.exists() {
                    path
                } else {
                    opts.workspace.join(path)
                };
                Arc::new(
                    crate::playbook::load_file(&path, &crate::actions::Registry)
                        .map_err(|d| anyhow::anyhow!("{d}"))
                        .with_context(|| format!("cannot load the playbook of run {}", prev.id))?,
                )
            }
        };
        let changes = playbook_changes(&prev, &playbook);
        if let Some(c) = &changes
            && !opts.force_changed
        {
            return Err(ResumeRefused::PlaybookChanged {
                id: prev.id.clone(),
                path: playbook.path.display().to_string(),
                changes: c.clone(),
            }
            .into());
        }
        let inputs = match &prev.inputs {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        let id = ulid::Ulid::new().to_string();
        let new = NewRun {
            id: id.clone(),
            bot: prev.bot.clone(),
            playbook: prev.playbook.clone(),
            inputs: prev.inputs.clone(),
            scheduled_for: None,
            actor: opts.actor.clone(),
            attempt: prev.attempt + 1,
            status: "running".into(),
            lineage: Some(prev.lineage.clone()),
            playbook_sha256: Some(playbook.sha256.clone()),
            playbook_steps: Some(json!(playbook.step_digests())),
            resumed_from: Some(prev.id.clone()),
        };
        let mut detail = json!({
            "playbook": new.playbook,
            "name": playbook.name,
            "inputs": new.inputs,
            "lineage": prev.lineage,
            "resumed_from": prev.id,
            "attempt": new.attempt,
            "resume": true,
            "playbook_sha256": playbook.sha256,
        });
        if let Some(c) = &changes {
            detail["force_changed"] = json!(true);
            detail["playbook_changes"] = json!(c);
            detail["previous_playbook_sha256"] = json!(prev.playbook_sha256);
        }
        let event = self.recorder.redact_event(
            NewEvent::new("run.started", &opts.actor)
                .run(&id)
                .detail(detail),
        );
        match store.create_run(&new, event).await {
            Ok(Some(_)) => {}
            Ok(None) => anyhow::bail!("a run with id {id} already exists"),
            Err(StoreError::StateConflict { found, .. }) => {
                if let Some(by) = found.strip_prefix("already resumed by run ") {
                    return Err(ResumeRefused::AlreadyResumed {
                        id: prev.id.clone(),
                        by: by.to_string(),
                    }
                    .into());
                }
                return Err(ResumeRefused::NotResumable {
                    id: prev.id.clone(),
                    status: found,
                }
                .into());
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context("cannot record the resumed run"));
            }
        }
        if changes.is_some() {
            tracing::warn!(run = %id, previous = %prev.id, "resuming with a changed playbook (--force-changed)");
        }
        let req = RunRequest {
            playbook,
            inputs,
            actor: opts.actor.clone(),
            bot: prev.bot.clone(),
            workspace: opts.workspace.clone(),
            cancel: opts.cancel.clone(),
            max_runtime: opts.max_runtime,
            progress: opts.progress,
        };
        self.execute_with(&id, req, true).await
    }
}
