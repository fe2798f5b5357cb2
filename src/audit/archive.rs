//! `clerk audit archive --before DATE --out FILE`: retention without
//! breaking the proof.
//!
//! Events older than DATE (a prefix of the chain: events 1..K, never events
//! of a run still queued or running) are written to FILE — the export's
//! JSONL lines, then one trailer line naming the range, the SHA-256 of the
//! lines, the chain state they continue, and an Ed25519 signature — then
//! deleted from the store in ONE transaction with the appending of a chained
//! `audit.archived` event that carries the same record plus the state the
//! chain had reached (event K's hash, every run's last seq and state). Verify
//! starts the chain after event K from that record; the archive file
//! verifies on its own with `clerk audit verify --export FILE`.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::config::AuditConfig;
use super::event::NewEvent;
use super::keys;
use super::verify::{self, ArchiveMarker, ArchiveTrailer, ChainRow, ChainStart, VerifyOptions};
use crate::store::Store;

/// The `format` of archive records.
pub const FORMAT: &str = "clerk-archive/1";

/// What was archived.
#[derive(Serialize, Debug, Clone)]
pub struct ArchiveSummary {
    pub file: String,
    pub from_id: i64,
    pub through_id: i64,
    pub events: i64,
    pub sha256: String,
    pub signed: bool,
    pub marker_event: i64,
}

/// Moves the events before `before` into `out` (which must not exist).
pub async fn archive(
    store: &Store,
    config: &AuditConfig,
    workspace: &Path,
    before: DateTime<Utc>,
    out: &Path,
    actor: &str,
) -> anyhow::Result<ArchiveSummary> {
    if out.exists() {
        anyhow::bail!("{} already exists; choose another --out", out.display());
    }
    let key = keys::load_signing(&config.key_path(workspace))?;
    // Never archive a chain that does not verify: the archive would carry
    // the damage and the proof of it would be gone.
    let report = verify::verify_with(store, &VerifyOptions::default()).await?;
    if let Some(bad) = &report.first_bad {
        anyhow::bail!(
            "the audit chain does not verify ({}); archive refused",
            bad.reason
        );
    }
    let prev = match store.latest_archive_marker().await? {
        Some(t) => serde_json::from_str::<Value>(&t)
            .ok()
            .and_then(|v| ArchiveMarker::from_value(&v))
            .map(|m| m.start)
            .context("the newest audit.archived event is not readable")?,
        None => ChainStart {
            through_id: 0,
            through_hash: super::GENESIS_HASH.into(),
            runs: Default::default(),
        },
    };
    let through = store
        .archive_cutoff(&crate::store::time::format_ts(&before))
        .await?;
    if through <= prev.through_id {
        anyhow::bail!(
            "no event before {} can be archived (events of runs still queued or running stay)",
            crate::store::time::format_ts(&before)
        );
    }

    // Write the file: the events, then the trailer.
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".clerk-archive-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut hasher = sha2::Sha256::default();
    let mut state = prev.clone();
    let mut after = prev.through_id;
    let mut count = 0i64;
    while after < through {
        let page = store.events(None, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in page.into_iter().filter(|e| e.id <= through) {
            let line =
                serde_json::to_string(&e).with_context(|| format!("serialise event {}", e.id))?;
            let line = format!("{line}\n");
            sha2::Digest::update(&mut hasher, line.as_bytes());
            tmp.write_all(line.as_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            let v = serde_json::to_value(&e)?;
            if let Ok(row) = ChainRow::from_json(&v) {
                fold(&mut state, &row);
            }
            state.through_id = e.id;
            state.through_hash = e.hash.clone();
            count += 1;
        }
    }
    if state.through_id != through {
        anyhow::bail!("events up to {through} could not all be read; archive refused");
    }
    let sha256 = hex::encode(sha2::Digest::finalize(hasher));
    let mut marker = ArchiveMarker {
        format: FORMAT.into(),
        file: out.display().to_string(),
        sha256: sha256.clone(),
        from_id: prev.through_id + 1,
        events: count,
        start: state.clone(),
        public_key: None,
        signature: None,
    };
    if let Some(k) = &key {
        marker.public_key = Some(hex::encode(k.verifying_key().to_bytes()));
        marker.signature = Some(keys::sign(k, marker.message().as_bytes()));
    }
    let trailer = ArchiveTrailer {
        archive: marker.clone(),
        prev,
    };
    writeln!(tmp, "{}", serde_json::to_string(&trailer)?)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    tmp.persist_noclobber(out)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the archive into place at {}", out.display()))?;

    let detail = serde_json::to_value(&marker)?;
    let stored = store
        .archive_through(
            through,
            &state.through_hash,
            NewEvent::new("audit.archived", actor)
                .target(out.display().to_string())
                .outcome("ok")
                .detail(detail),
        )
        .await
        .with_context(|| {
            format!(
                "the archive {} was written but the events were NOT deleted",
                out.display()
            )
        })?;
    Ok(ArchiveSummary {
        file: out.display().to_string(),
        from_id: marker.from_id,
        through_id: through,
        events: count,
        sha256,
        signed: key.is_some(),
        marker_event: stored.id,
    })
}

/// Carries a run's seq and last state over the archived event.
fn fold(state: &mut ChainStart, row: &ChainRow) {
    let Some(run) = &row.run_id else { return };
    let e = state.runs.entry(run.clone()).or_default();
    e.seq = row.seq;
    if verify::is_run_state_kind(&row.kind) {
        let detail = row.detail.as_ref().unwrap_or(&Value::Null);
        verify::note_run_event(e, row.id, &row.kind, detail);
    }
}
