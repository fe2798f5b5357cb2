//! `clerk audit verify` and `clerk audit export`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Workspace, code, output};
use crate::audit::{self, ExportFormat};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain: exit 0 if intact, 1 naming the first bad event.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export events for auditors (JSONL or CSV).
    Export(ExportArgs),
    /// Every event of one work item (by key) across all runs, in order.
    Trace(super::trace::TraceArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only this run's events (id or unique prefix).
    #[arg(long)]
    pub run: Option<String>,
    /// jsonl (default) or csv.
    #[arg(long, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Write to this file (atomically) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub async fn audit(ws: &Workspace, cmd: AuditCommand) -> anyhow::Result<u8> {
    let store = ws.store().await?;
    match cmd {
        AuditCommand::Verify { json } => {
            let report = audit::verify(&store).await?;
            if json {
                output::out_json(&serde_json::to_value(&report)?);
            } else if let Some(bad) = &report.first_bad {
                output::out(&format!("tampered: {}", bad.reason));
            } else {
                output::out(&format!("ok: {} events verified", report.events));
            }
            Ok(if report.is_ok() {
                code::OK
            } else {
                code::FAILED
            })
        }
        AuditCommand::Export(a) => {
            let n = match &a.out {
                Some(path) => {
                    let n = audit::export_to_file(&store, a.run.as_deref(), a.format, path).await?;
                    eprintln!("exported {n} events to {}", path.display());
                    n
                }
                None => {
                    let mut buf = Vec::new();
                    let n = audit::export(&store, a.run.as_deref(), a.format, &mut buf).await?;
                    let text = String::from_utf8_lossy(&buf);
                    print!("{}", crate::secrets::redact(&text));
                    n
                }
            };
            tracing::debug!("exported {n} events");
            Ok(code::OK)
        }
        AuditCommand::Trace(a) => super::trace::trace(ws, a).await,
    }
}
