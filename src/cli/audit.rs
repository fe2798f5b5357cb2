//! `clerk audit verify | export | keygen | pubkey | checkpoint | archive`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Workspace, code, output};
use crate::audit::{self, ExportFormat, VerifyOptions, VerifyReport, keys};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Prove the trail was not edited: the hash chain, every artifact, the
    /// runs table, and (with a checkpoint file) truncation and rebuilt
    /// chains. Exit 0 if intact, 1 naming what is wrong.
    Verify(VerifyArgs),
    /// Export events for auditors (JSONL or CSV).
    Export(ExportArgs),
    /// Create the installation's Ed25519 signing key (mode 0600, outside
    /// the database) and print its public key.
    Keygen {
        /// Replace an existing key (old checkpoints then verify only with
        /// the old public key).
        #[arg(long)]
        force: bool,
    },
    /// Print the installation's public key (hex), for auditors.
    Pubkey,
    /// Write a signed checkpoint now (in the chain and to the checkpoint file).
    Checkpoint {
        #[arg(long)]
        json: bool,
    },
    /// Move events older than a date to a signed archive file, leaving a
    /// chained `audit.archived` event so verify still proves continuity.
    Archive(ArchiveArgs),
    /// Every event of one work item (by key) across all runs, in order.
    Trace(super::trace::TraceArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not re-hash the artifacts events name.
    #[arg(long)]
    pub no_artifacts: bool,
    /// Check against this checkpoint file (default: the configured one,
    /// `.clerk/checkpoints.jsonl`, when it exists).
    #[arg(long, env = "CLERK_AUDIT_VERIFY_CHECKPOINTS")]
    pub checkpoints: Option<PathBuf>,
    /// Do not check checkpoints, even if the default file exists.
    #[arg(long, conflicts_with = "checkpoints")]
    pub no_checkpoints: bool,
    /// Verify this export (or archive) file offline instead of the store.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// With --export: re-hash artifacts relative to this folder (default:
    /// artifacts are not checked offline).
    #[arg(long, requires = "export")]
    pub artifacts_root: Option<PathBuf>,
    /// The installation's public key (64 hex characters, or a file holding
    /// them); default: `<key>.pub` in the workspace.
    #[arg(long)]
    pub pubkey: Option<String>,
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

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Archive events before this date (YYYY-MM-DD, UTC midnight) or
    /// RFC 3339 time.
    #[arg(long)]
    pub before: String,
    /// The archive file to write (must not exist).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub async fn audit(ws: &Workspace, cmd: AuditCommand) -> anyhow::Result<u8> {
    let key_path = ws.config.audit.key_path(&ws.root);
    match cmd {
        AuditCommand::Verify(a) => verify(ws, a).await,
        AuditCommand::Export(a) => {
            let store = ws.store().await?;
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
                    output::write_stdout(&crate::secrets::redact(&text));
                    n
                }
            };
            tracing::debug!("exported {n} events");
            Ok(code::OK)
        }
        AuditCommand::Keygen { force } => {
            let public = keys::keygen(&key_path, force)?;
            eprintln!(
                "created the audit key {} (mode 0600) and {}",
                key_path.display(),
                keys::pub_path(&key_path).display()
            );
            output::out(&public);
            Ok(code::OK)
        }
        AuditCommand::Pubkey => match keys::load_public(&key_path)? {
            Some(k) => {
                output::out(&hex::encode(k.to_bytes()));
                Ok(code::OK)
            }
            None => anyhow::bail!(
                "no audit key at {} (create one with `clerk audit keygen`)",
                key_path.display()
            ),
        },
        AuditCommand::Checkpoint { json } => {
            let store = ws.store().await?;
            let cp = audit::checkpoint::write(
                &store,
                &ws.config.audit,
                &ws.root,
                &super::os_user(),
                "manual",
            )
            .await?;
            // Then the sinks (audit.http / audit.smtp) get what is pending.
            for d in audit::sink::deliver_all(&store, &ws.config, &ws.root).await {
                match &d.error {
                    None => eprintln!(
                        "{}: {} checkpoint(s) sent, {} pending",
                        d.sink, d.sent, d.pending
                    ),
                    Some(e) => eprintln!("{}: not delivered ({} pending): {e}", d.sink, d.pending),
                }
            }
            match (cp, json) {
                (Some(cp), true) => output::out_json(&serde_json::to_value(&cp)?),
                (Some(cp), false) => output::out(&format!(
                    "checkpoint: {} events, head {} ({}){}",
                    cp.events,
                    cp.head_hash,
                    ws.config.audit.checkpoints_path(&ws.root).display(),
                    if cp.signature.is_some() {
                        ""
                    } else {
                        " — unsigned: no audit key (`clerk audit keygen`)"
                    }
                )),
                (None, true) => output::out_json(&serde_json::Value::Null),
                (None, false) => output::out("nothing new to checkpoint"),
            }
            Ok(code::OK)
        }
        AuditCommand::Trace(a) => super::trace::trace(ws, a).await,
        AuditCommand::Archive(a) => {
            let before = parse_date(&a.before)?;
            let store = ws.store().await?;
            let s = audit::archive::archive(
                &store,
                &ws.config.audit,
                &ws.root,
                before,
                &a.out,
                &super::os_user(),
            )
            .await?;
            if a.json {
                output::out_json(&serde_json::to_value(&s)?);
            } else {
                output::out(&format!(
                    "archived events {}..{} ({} events) to {} (sha256 {}{}); audit.archived is event {}",
                    s.from_id,
                    s.through_id,
                    s.events,
                    s.file,
                    s.sha256,
                    if s.signed {
                        ", signed"
                    } else {
                        ", UNSIGNED: no audit key"
                    },
                    s.marker_event
                ));
            }
            Ok(code::OK)
        }
    }
}

fn parse_date(s: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .with_context(|| format!("--before {s}: expected YYYY-MM-DD or an RFC 3339 time"))
}

async fn verify(ws: &Workspace, a: VerifyArgs) -> anyhow::Result<u8> {
    let key_path = ws.config.audit.key_path(&ws.root);
    let pubkey = match &a.pubkey {
        Some(p) => Some(keys::public_from_arg(p)?),
        None => keys::load_public(&key_path)?,
    };
    let default_cps = ws.config.audit.checkpoints_path(&ws.root);
    let checkpoints = match (&a.checkpoints, a.no_checkpoints) {
        (_, true) => None,
        (Some(p), _) => Some(p.clone()),
        (None, _) if a.export.is_none() && default_cps.exists() => Some(default_cps),
        (None, _) => None,
    };
    let mut opts = VerifyOptions {
        artifacts: None,
        checkpoints,
        pubkey,
        ..Default::default()
    };
    let report = match &a.export {
        Some(file) => {
            opts.artifacts = if a.no_artifacts {
                None
            } else {
                a.artifacts_root.clone()
            };
            audit::verify_export(file, &opts)?
        }
        None => {
            opts.artifacts = (!a.no_artifacts).then(|| ws.root.clone());
            let store = ws.store().await?;
            audit::verify_with(&store, &opts).await?
        }
    };
    print_report(&report, &opts, a.json)?;
    Ok(if report.is_ok() {
        code::OK
    } else {
        code::FAILED
    })
}

fn print_report(r: &VerifyReport, opts: &VerifyOptions, json: bool) -> anyhow::Result<()> {
    if json {
        output::out_json(&serde_json::to_value(r)?);
        return Ok(());
    }
    for p in r.problems() {
        output::out(&format!("tampered: {p}"));
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if r.is_ok() {
        let mut parts = vec![format!("{} events verified", r.events)];
        if let Some(t) = r.archived_through {
            parts.push(format!("after archived event {t}"));
        }
        if opts.artifacts.is_some() {
            parts.push(format!("{} artifacts", r.artifacts_checked));
        }
        if r.runs_checked > 0 {
            parts.push(format!("{} runs", r.runs_checked));
        }
        if opts.checkpoints.is_some() {
            parts.push(format!("{} checkpoints", r.checkpoints_checked));
        }
        let mut line = format!("ok: {}", parts.join(", "));
        if let Some(u) = r.unconfirmed_events.filter(|u| *u > 0) {
            line.push_str(&format!(
                " ({u} newest events not yet covered by a checkpoint)"
            ));
        }
        output::out(&line);
    }
    Ok(())
}
