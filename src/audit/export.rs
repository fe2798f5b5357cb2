//! `clerk audit export`: the audit trail for auditors, as JSONL (one
//! [`AuditEvent`] JSON object per line, exactly the stored fields, each with
//! its `hash_format`; `clerk audit verify --export` and docs/verify_export.py
//! verify it offline) or CSV (a
//! header row of field names; `detail` as a JSON string; empty cells for
//! null), optionally for one run (id or unique prefix). [`export_to_file`]
//! writes atomically: a temporary file in the target directory, renamed over
//! the target only when everything was written.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

use super::event::AuditEvent;
use crate::store::Store;
use crate::store::time::format_ts;

/// Events read per query.
const PAGE: i64 = 1000;

/// The CSV columns, in order (also the JSONL field order).
pub const FIELDS: [&str; 18] = [
    "id",
    "run_id",
    "seq",
    "at",
    "actor",
    "kind",
    "step",
    "step_name",
    "action",
    "target",
    "detail",
    "outcome",
    "duration_ms",
    "error",
    "item_key",
    "hash_format",
    "prev_hash",
    "hash",
];

/// Export file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// One JSON object per line.
    #[default]
    Jsonl,
    /// Comma-separated, header row first.
    Csv,
}

impl std::str::FromStr for ExportFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            other => anyhow::bail!("unknown export format '{other}' (expected jsonl or csv)"),
        }
    }
}

impl std::fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
        })
    }
}

/// Writes the events (of `run`, an id or unique prefix, or all) to `out`, in
/// chain order; returns how many.
pub async fn export(
    store: &Store,
    run: Option<&str>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let run_id = match run {
        None => None,
        Some(r) => Some(
            store
                .get_run(r)
                .await?
                .with_context(|| format!("no run matches '{r}' in store {}", store.url()))?
                .id,
        ),
    };
    let mut sink = match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(FIELDS).context("write CSV header")?;
            Sink::Csv(Box::new(w))
        }
        ExportFormat::Jsonl => Sink::Jsonl(out),
    };
    let mut count = 0u64;
    let mut after = i64::MIN;
    loop {
        let page = store.events(run_id.as_deref(), after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in &page {
            match &mut sink {
                Sink::Csv(w) => w
                    .write_record(csv_record(e))
                    .with_context(|| format!("write event {} as CSV", e.id))?,
                Sink::Jsonl(out) => {
                    let line = serde_json::to_string(e)
                        .with_context(|| format!("serialise event {}", e.id))?;
                    writeln!(out, "{line}").with_context(|| format!("write event {}", e.id))?;
                }
            }
            count += 1;
        }
    }
    match &mut sink {
        Sink::Csv(w) => w.flush().context("flush CSV export")?,
        Sink::Jsonl(out) => out.flush().context("flush JSONL export")?,
    }
    Ok(count)
}

enum Sink<'a> {
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
    Jsonl(&'a mut dyn Write),
}

fn csv_record(e: &AuditEvent) -> [String; 18] {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        e.id.to_string(),
        o(&e.run_id),
        e.seq.to_string(),
        format_ts(&e.at),
        e.actor.clone(),
        e.kind.clone(),
        o(&e.step),
        o(&e.step_name),
        o(&e.action),
        o(&e.target),
        e.detail.to_string(),
        o(&e.outcome),
        e.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
        o(&e.error),
        o(&e.item_key),
        e.hash_format.to_string(),
        e.prev_hash.clone(),
        e.hash.clone(),
    ]
}

/// [`export`] to `path`, atomically: written to a temporary file in the same
/// directory (created if missing), synced, then renamed over `path`. On any
/// error the temporary file is removed and `path` is untouched.
pub async fn export_to_file(
    store: &Store,
    run: Option<&str>,
    format: ExportFormat,
    path: &Path,
) -> anyhow::Result<u64> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".clerk-export-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut writer = std::io::BufWriter::new(tmp);
    let n = export(store, run, format, &mut writer)
        .await
        .with_context(|| format!("cannot export the audit trail to {}", path.display()))?;
    let tmp = writer
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    crate::fsutil::set_final_mode(tmp.as_file(), path)
        .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the export into place at {}", path.display()))?;
    Ok(n)
}
