//! `clerk run PLAYBOOK`: runs a playbook now and reports the outcome.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{UsageError, Workspace, code, os_user, output};
use crate::actions::Registry;
use crate::engine::{GivenInput, RunRequest, RunStatus, resolve_inputs};
use crate::playbook;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook file.
    pub playbook: PathBuf,
    /// An input value, `key=value` (repeatable).
    #[arg(short, long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// Print the outcome as JSON (id, status, vars, error).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(ws: &Workspace, args: RunArgs) -> anyhow::Result<u8> {
    let path = if args.playbook.is_absolute() || args.playbook.exists() {
        args.playbook.clone()
    } else {
        ws.root.join(&args.playbook)
    };
    let pb = match playbook::load_file(&path, &Registry) {
        Ok(p) => p,
        Err(d) => {
            eprintln!("{d}");
            return Ok(code::INVALID);
        }
    };
    let mut given = Vec::new();
    for raw in &args.inputs {
        let Some((k, v)) = raw.split_once('=') else {
            return Err(UsageError(format!("--input `{raw}` must look like key=value")).into());
        };
        given.push((k.trim().to_string(), GivenInput::Text(v.to_string())));
    }
    let inputs = resolve_inputs(&pb, &given).map_err(UsageError)?;
    let engine = ws.engine().await?;
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("interrupted: cancelling the run (press Ctrl-C again to force)");
            on_signal.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
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
    let outcome = engine
        .run_now(RunRequest {
            playbook: Arc::new(pb),
            inputs,
            actor: os_user(),
            bot: None,
            workspace: ws.root.clone(),
            cancel,
            max_runtime: None,
            progress: !args.json,
        })
        .await?;
    Ok(report(&outcome, args.json))
}

/// Prints a run's outcome (text or `--json`) and gives the exit code.
pub(super) fn report(outcome: &crate::engine::RunOutcome, as_json: bool) -> u8 {
    if as_json {
        output::out_json(&json!({
            "id": outcome.id,
            "status": outcome.status,
            "playbook": outcome.playbook,
            "vars": outcome.vars,
            "error": outcome.error,
            "artifacts": outcome.artifacts,
            "lineage": outcome.lineage,
            "resumed_from": outcome.resumed_from,
            "items": outcome.items,
        }));
    } else {
        match &outcome.error {
            None => {
                let mut text = format!(
                    "run {} {} ({})",
                    outcome.id,
                    outcome.status.as_str(),
                    outcome.playbook
                );
                if outcome.items.total() > 0 {
                    let parts: Vec<String> = crate::store::ItemState::ALL
                        .iter()
                        .filter(|s| outcome.items.get(**s) > 0)
                        .map(|s| format!("{} {}", outcome.items.get(*s), s.as_str()))
                        .collect();
                    text.push_str(&format!("\n  items: {}", parts.join(", ")));
                }
                output::out(&text)
            }
            Some(e) => {
                let step = match (&e.step_name, &e.action) {
                    (Some(n), Some(a)) => format!("{} \"{n}\" ({a})", e.step),
                    (Some(n), None) => format!("{} \"{n}\"", e.step),
                    (None, Some(a)) => format!("{} ({a})", e.step),
                    (None, None) => e.step.clone(),
                };
                let mut text = format!(
                    "run {} {}\n  playbook: {}\n",
                    outcome.id,
                    outcome.status.as_str(),
                    outcome.playbook
                );
                if !e.step.is_empty() {
                    text.push_str(&format!("  step:     {step}\n"));
                }
                text.push_str(&format!("  error:    {}\n", e.message));
                for a in &outcome.artifacts {
                    text.push_str(&format!("  artifact: {a}\n"));
                }
                text.push_str(&format!("  details:  clerk runs show {}", outcome.id));
                output::out(&text);
            }
        }
    }
    // Items that ended as exceptions do not fail the job (as in UiPath
    // Orchestrator): `succeeded_with_exceptions` exits 0 like `succeeded`.
    if matches!(
        outcome.status,
        RunStatus::Succeeded | RunStatus::SucceededWithExceptions
    ) {
        code::OK
    } else {
        code::FAILED
    }
}
