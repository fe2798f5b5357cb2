//! Signed checkpoints (as Certificate Transparency's signed tree heads): the
//! chain's length and head hash at a moment, signed with the installation's
//! Ed25519 key, written both INTO the chain (an `audit.checkpoint` event)
//! and to an append-only file outside the database
//! (`.clerk/checkpoints.jsonl` by default, `audit: { checkpoints: PATH }`).
//!
//! The file is what catches what a hash chain alone cannot: a truncated
//! tail, a chain recomputed after an edit, a run removed and the chain
//! re-linked, the database replaced by an older copy — `clerk audit verify
//! --checkpoints FILE` names the first checkpoint the store no longer
//! matches. Without a key, checkpoints are written unsigned: they still
//! catch truncation and replacement by someone who cannot edit the file, and
//! verify says that they are unsigned.
//!
//! clerk writes one at the end of every run and every
//! `audit.checkpoint_every` in `clerk serve`, and then hands the new lines
//! of the file to the configured sinks (HTTP, mail: [`super::sink`]).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::AuditConfig;
use super::event::{AuditEvent, NewEvent};
use super::{format, keys};
use crate::store::Store;

/// The `format` of a checkpoint record.
pub const FORMAT: &str = "clerk-checkpoint/1";

/// One checkpoint, as a line of the checkpoint file and as the detail of
/// its `audit.checkpoint` event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub format: String,
    /// Chain length: the number of events ever appended up to the head
    /// (archived ones included), which is also the head's id.
    pub events: i64,
    pub head_id: i64,
    pub head_hash: String,
    /// When it was taken (UTC, microseconds).
    pub at: String,
    /// The signer's public key (hex), or null when unsigned.
    #[serde(default)]
    pub public_key: Option<String>,
    /// Ed25519 signature (hex) of [`Checkpoint::message`], or null.
    #[serde(default)]
    pub signature: Option<String>,
}

impl Checkpoint {
    /// What is signed: the RFC 8785 canonical JSON of `{at, events, format,
    /// head_hash, head_id}`.
    pub fn message(&self) -> String {
        format::jcs(&json!({
            "format": self.format,
            "events": self.events,
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "at": self.at,
        }))
        .unwrap_or_default()
    }

    /// Reads a checkpoint from an event's detail or a file line.
    pub fn from_value(v: &serde_json::Value) -> Option<Checkpoint> {
        serde_json::from_value(v.clone()).ok()
    }
}

/// Takes a checkpoint of the chain now: appends the `audit.checkpoint`
/// event (unless the head already is a checkpoint: nothing new to cover) and
/// appends the record to the checkpoint file. `reason`: `run.finished`,
/// `serve`, `manual`...
pub async fn write(
    store: &Store,
    config: &AuditConfig,
    workspace: &Path,
    actor: &str,
    reason: &str,
) -> anyhow::Result<Option<Checkpoint>> {
    let key = keys::load_signing(&config.key_path(workspace))?;
    let at = crate::store::time::format_ts(&crate::store::time::now_micros());
    let made = std::sync::Mutex::new(None);
    let build = |head_id: i64, head_hash: &str, head_kind: Option<&str>| {
        if head_id == 0 || head_kind == Some("audit.checkpoint") {
            return None;
        }
        let mut cp = Checkpoint {
            format: FORMAT.into(),
            events: head_id,
            head_id,
            head_hash: head_hash.to_string(),
            at: at.clone(),
            public_key: None,
            signature: None,
        };
        if let Some(k) = &key {
            cp.public_key = Some(hex::encode(k.verifying_key().to_bytes()));
            cp.signature = Some(keys::sign(k, cp.message().as_bytes()));
        }
        let mut detail = serde_json::to_value(&cp).unwrap_or_default();
        detail["reason"] = json!(reason);
        if let Ok(mut m) = made.lock() {
            *m = Some(cp);
        }
        Some(
            NewEvent::new("audit.checkpoint", actor)
                .outcome("ok")
                .detail(detail),
        )
    };
    let stored: Option<AuditEvent> = store
        .append_at_head(build)
        .await
        .context("cannot append the audit.checkpoint event")?;
    if stored.is_none() {
        return Ok(None);
    }
    let Some(cp) = made.into_inner().ok().flatten() else {
        return Ok(None);
    };
    append_to_file(&config.checkpoints_path(workspace), &cp)?;
    Ok(Some(cp))
}

/// Appends one line to the checkpoint file (created, with its folder, if
/// missing), synced before returning.
pub fn append_to_file(path: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let line = serde_json::to_string(cp).context("serialise checkpoint")?;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open the checkpoint file {}", path.display()))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot append to the checkpoint file {}", path.display()))
}

/// Reads a checkpoint file: (line number, checkpoint) per non-empty line.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<(usize, Checkpoint)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the checkpoint file {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cp: Checkpoint = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a checkpoint record", path.display(), i + 1))?;
        out.push((i + 1, cp));
    }
    Ok(out)
}

/// Coalesces end-of-run checkpoints of one checkpoint file (group commit):
/// runs that end while a checkpoint is being written share the next one.
/// Why: at thousands of runs a minute (`clerk serve`), a checkpoint per run
/// was two more fsyncs per run (the chain and the file) on the one writer.
/// What stays true: every run's end is covered by a checkpoint taken after
/// that end was committed.
#[derive(Default)]
struct Gate {
    /// Requests made so far (each after its run's end was committed).
    requested: AtomicU64,
    /// Requests covered by a written (or attempted) checkpoint.
    covered: AtomicU64,
    writing: tokio::sync::Mutex<()>,
}

fn gate_of(file: &Path) -> Arc<Gate> {
    static GATES: LazyLock<Mutex<HashMap<PathBuf, Arc<Gate>>>> = LazyLock::new(Default::default);
    let mut gates = GATES.lock().unwrap_or_else(PoisonError::into_inner);
    gates.entry(file.to_path_buf()).or_default().clone()
}

/// The end-of-run checkpoint: never fails the run (a problem is logged),
/// then delivered to the configured sinks (bounded: see [`super::sink`]).
/// Runs ending at the same time share one checkpoint ([`Gate`]).
pub async fn after_run(store: &Store, config: &crate::config::Config, workspace: &Path) {
    if !config.audit.checkpoint_after_run {
        return;
    }
    let gate = gate_of(&config.audit.checkpoints_path(workspace));
    let ticket = gate.requested.fetch_add(1, Ordering::SeqCst) + 1;
    let _writing = gate.writing.lock().await;
    if gate.covered.load(Ordering::SeqCst) >= ticket {
        return; // a checkpoint taken after this run's end covers it
    }
    // Every request counted here was made after its run's end committed,
    // so the head this checkpoint reads covers all of them.
    let covering = gate.requested.load(Ordering::SeqCst);
    let actor = "clerk".to_string();
    if let Err(e) = write(store, &config.audit, workspace, &actor, "run.finished").await {
        tracing::warn!(error = %format!("{e:#}"), "cannot write the end-of-run audit checkpoint");
    }
    gate.covered.fetch_max(covering, Ordering::SeqCst);
    super::sink::deliver_all(store, config, workspace).await;
}

/// `clerk serve`: a checkpoint every `audit.checkpoint_every` and one when
/// `stop` is cancelled.
pub async fn periodic(
    store: Store,
    config: std::sync::Arc<crate::config::Config>,
    workspace: std::path::PathBuf,
    stop: tokio_util::sync::CancellationToken,
) {
    let every = config
        .audit
        .checkpoint_every
        .max(std::time::Duration::from_secs(1));
    let actor = "clerk".to_string();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = stop.cancelled() => true,
        };
        if let Err(e) = write(&store, &config.audit, &workspace, &actor, "serve").await {
            tracing::warn!(error = %format!("{e:#}"), "cannot write the periodic audit checkpoint");
        }
        super::sink::deliver_all(&store, &config, &workspace).await;
        if stopping {
            return;
        }
    }
}
