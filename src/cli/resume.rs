//! `clerk runs resume RUN`: continues a failed, cancelled, timed-out or
//! interrupted run in a new run of the same lineage (done items skipped,
//! in-progress items verified or set aside as in doubt; see
//! docs/work-items.md), and reports it like `clerk run`.

use clap::Args;
use serde_json::json;

use super::{UsageError, Workspace, code, os_user, run};
use crate::audit::NewEvent;
use crate::engine::{ResumeOptions, ResumeRefused};
use crate::store::{RunChange, StoreError};

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to continue (id or unique prefix of at least 6 characters).
    pub run: String,
    /// Resume even though the playbook changed since that run (the changes
    /// are recorded in the audit trail).
    #[arg(long)]
    pub force_changed: bool,
    /// The run is still marked `running` but the process that ran it is gone
    /// (crash, `kill -9`, power cut): mark it `interrupted` (audited), then
    /// resume it. Never use this while that process may still be running.
    #[arg(long)]
    pub mark_interrupted: bool,
    /// Print the outcome as JSON (like `clerk run --json`).
    #[arg(long)]
    pub json: bool,
}

pub async fn resume(ws: &Workspace, a: ResumeArgs) -> anyhow::Result<u8> {
    let engine = ws.engine().await?;
    let store = engine.recorder.store().clone();
    let Some(prev) = store.get_run(&a.run).await? else {
        return Err(UsageError(format!("no run `{}` in this store", a.run)).into());
    };
    let actor = os_user();
    if prev.status == "running" {
        if !a.mark_interrupted {
            return Err(UsageError(format!(
                "run {} is still marked running. If the process that ran it is gone \
                 (crash, kill -9, power cut), resume it with \
                 `clerk runs resume {} --mark-interrupted`",
                prev.id, prev.id
            ))
            .into());
        }
        let reason = format!(
            "marked interrupted by {actor} with `clerk runs resume --mark-interrupted`: \
             the process running it is gone"
        );
        let event = engine.recorder.redact_event(
            NewEvent::new("run.interrupted", &actor)
                .run(prev.id.as_str())
                .outcome("failed")
                .error(reason.as_str())
                .detail(json!({ "status": "interrupted", "by": actor, "bot": prev.bot })),
        );
        let change = RunChange {
            status: Some("interrupted".into()),
            finished_at: Some(chrono::Utc::now()),
            error: Some(reason),
            ..Default::default()
        };
        match store
            .transition_run(&prev.id, &["running"], change, event)
            .await
        {
            Ok(_) => {}
            // It ended (or was marked) meanwhile: resume from what it is now.
            Err(StoreError::StateConflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let cancel = run::cancel_on_signals();
    let opts = ResumeOptions {
        force_changed: a.force_changed,
        actor,
        workspace: ws.root.clone(),
        cancel,
        max_runtime: None,
        progress: !a.json,
        playbook: None,
    };
    let outcome = match engine.resume(&prev.id, opts).await {
        Ok(o) => o,
        Err(e) => {
            if let Some(refused) = e.downcast_ref::<ResumeRefused>() {
                return Err(UsageError(refused.to_string()).into());
            }
            return Err(e);
        }
    };
    Ok(run::report(&outcome, a.json))
}
