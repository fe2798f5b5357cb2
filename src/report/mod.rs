//! The run report: one self-contained HTML file per run (`clerk report RUN`,
//! the `report.write` action, the dashboard's run page) that an auditor can
//! read without clerk — header, work items, every action with absolute time,
//! evidence inline with its SHA-256 checked against the audit trail.
//!
//! - [`model`]: the report as data, built from the store and the artifacts.
//! - [`render`]: the minijinja templates (files under `templates/`).

pub mod model;
pub mod render;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use model::{Report, ReportOptions};

use crate::store::Store;

/// Where `clerk report` writes when no `--out` is given.
pub fn default_path(workspace: &Path, run_id: &str) -> PathBuf {
    workspace
        .join(".clerk/reports")
        .join(format!("run-{run_id}.html"))
}

/// Builds the report of run `run_id` and writes it to `out` atomically (a
/// temporary file in the same folder, renamed over `out`). Returns the
/// number of bytes written.
pub async fn write(
    store: &Store,
    run_id: &str,
    out: &Path,
    workspace: &Path,
    opts: &ReportOptions,
) -> anyhow::Result<u64> {
    let run = store
        .get_run(run_id)
        .await?
        .with_context(|| format!("no run `{run_id}` in store {}", store.url()))?;
    let report = model::build(store, &run, workspace, opts).await?;
    let html = render::standalone(&report)
        .with_context(|| format!("cannot render the report of run {}", run.id))?;
    write_atomic(out, html.as_bytes())?;
    Ok(html.len() as u64)
}

/// Writes `bytes` to `path` through a temporary file in the same folder, so
/// a reader never sees half a report.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}
