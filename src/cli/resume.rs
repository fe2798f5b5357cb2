//! `clerk runs resume RUN`: continues a failed, cancelled, timed-out or
//! interrupted run in a new run of the same lineage (done work items are
//! skipped, their outputs restored; in-progress items verified or set aside
//! as in doubt; see docs/work-items.md), and reports it like `clerk run`.

use clap::Args;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{UsageError, Workspace, code, os_user};
use crate::audit::NewEvent;
use crate::engine::{Engine, ResumeOptions, ResumeRefused};
use crate::store::{RunChange, StoreError};

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to continue (id or unique prefix of 6+ characters).
    pub run: String,
    /// Resume even though the playbook changed since that run (recorded in the audit trail).
    #[arg(long)]
    pub force_changed: bool,
    /// The run is still marked `running` but the process that ran it is gone
    /// (crash, `kill -9`, power cut): mark it `interrupted` (audited), then
    /// resume it. Never use this while that process may still be running.
    #[arg(long)]
    pub mark_interrupted: bool,
    /// Print the outcome as JSON (id, status, vars, error, items).
    #[arg(long)]
    pub json: bool,
}

pub async fn resume(ws: &Workspace, args: ResumeArgs) -> anyhow::Result<u8> {
    let engine = ws.engine().await?;
    if let Some(c) = mark_interrupted(&engine, &args).await? {
        return Ok(c);
    }
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("interrupted: cancelling the run");
            on_signal.cancel();
        }
    });
    #[cfg(unix)]
    {
        let on_term = cancel.clone();
        tokio::spawn(async move {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
                on_term.cancel();
            }
        });
    }
    let opts = ResumeOptions {
        force_changed: args.force_changed,
        actor: os_user(),
        workspace: ws.root.clone(),
        cancel,
        max_runtime: None,
        progress: !args.json,
        // A deployed bot's run resumes with the deployed playbook.
        playbook: super::deploy::deployed_playbook_for_run(ws, engine.recorder.store(), &args.run)
            .await?,
    };
    match engine.resume(&args.run, opts).await {
        Ok(outcome) => Ok(super::run::report(&outcome, args.json)),
        Err(e) => match e.downcast_ref::<ResumeRefused>() {
            Some(refused) => {
                eprintln!("error: cannot resume: {refused}");
                Ok(code::INVALID)
            }
            None => Err(e),
        },
    }
}

/// A run still marked `running`: refused with a hint, or (with
/// `--mark-interrupted`) marked `interrupted` with an audited event by the OS
/// user. `Some(code)` ends the command.
async fn mark_interrupted(engine: &Engine, args: &ResumeArgs) -> anyhow::Result<Option<u8>> {
    let store = engine.recorder.store();
    let Some(prev) = store.get_run(&args.run).await? else {
        return Ok(None); // resume says it is not there
    };
    if prev.status != "running" {
        return Ok(None);
    }
    if !args.mark_interrupted {
        return Err(UsageError(format!(
            "cannot resume: run {} is still marked running. If the process that ran it is gone \
             (crash, kill -9, power cut), resume it with `clerk runs resume {} --mark-interrupted`",
            prev.id, prev.id
        ))
        .into());
    }
    let actor = os_user();
    let reason = format!(
        "marked interrupted by {actor} (`clerk runs resume --mark-interrupted`): \
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
        // Lost race: it ended (or was marked) meanwhile; resume decides.
        Ok(_) | Err(StoreError::StateConflict { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
