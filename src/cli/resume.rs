//! `clerk runs resume RUN`: continues a failed, cancelled, timed-out or
//! interrupted run in a new run of the same lineage (done work items are
//! skipped, their outputs restored; see docs on work items).

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{Workspace, code, os_user};
use crate::engine::{ResumeOptions, ResumeRefused};

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to continue (id or unique prefix of 6+ characters).
    pub run: String,
    /// Resume even though the playbook changed since that run (recorded in the audit trail).
    #[arg(long)]
    pub force_changed: bool,
    /// Print the outcome as JSON (id, status, vars, error, items).
    #[arg(long)]
    pub json: bool,
}

pub async fn resume(ws: &Workspace, args: ResumeArgs) -> anyhow::Result<u8> {
    let engine = ws.engine().await?;
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
        playbook: None,
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
