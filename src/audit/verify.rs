//! `clerk audit verify`: proves the audit trail was not edited.
//!
//! It walks the whole chain by id (from the store, or offline from an export
//! file) and recomputes every event's hash by its own hash format, reporting
//! the FIRST event that breaks it: a gap in the ids (an event deleted), a
//! hash that does not match the row's content (a row edited, any column), a
//! `prev_hash` that does not link to the previous event (rows replaced or
//! forged), a run whose `seq` numbers are not contiguous, an event of a run
//! after the run ended (appended), a chained checkpoint or archive marker
//! whose head or signature does not hold (chain recomputed).
//!
//! Then, each reported on its own:
//! - **artifacts**: every file an event names (`detail.artifacts[].path`
//!   with its `sha256`) is re-hashed; missing and changed files are listed
//!   by event id and path (skip with `--no-artifacts`);
//! - **runs**: every run's status, times and error in the `runs` table must
//!   equal the state its last chained `run.*` event recorded (store only);
//! - **checkpoints**: every checkpoint of the file must still match the
//!   chain (its head event still has its hash; its signature verifies) —
//!   which catches tail truncation, a rebuilt chain, a removed run and a
//!   database replaced by an older copy. The first that fails is named.
//!
//! After `clerk audit archive` the chain starts where the newest chained
//! `audit.archived` event says the archive ended (its hash and the runs'
//! states carried over), so continuity is still proven.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chain::GENESIS_HASH;
use super::checkpoint::{self, Checkpoint};
use super::format::{self, Fields};
use super::keys;
use crate::store::Store;

/// Events read per query.
const PAGE: i64 = 5000;

// The run-state snapshot belongs to the event row (the store writes it).
pub use crate::store::event::{RUN_STATE_KEY, is_run_state_kind};

/// Kinds after which a run has ended: only more run-state events may follow.
fn is_terminal_kind(kind: &str) -> bool {
    matches!(
        kind,
        "run.finished" | "run.interrupted" | "scheduler.skipped"
    )
}

/// What to check besides the chain itself.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Re-hash artifacts, with paths relative to this folder (the workspace).
    pub artifacts: Option<PathBuf>,
    /// Check the chain against this checkpoint file.
    pub checkpoints: Option<PathBuf>,
    /// The installation's public key: signatures must be by it. Without it,
    /// signatures are checked against the key each record names (and the
    /// report says so).
    pub pubkey: Option<VerifyingKey>,
    /// Read, hash and walk one after the other on one thread, artifacts
    /// last — how verify worked before it was pipelined; kept so that the
    /// benchmark can compare both in one binary (`benches/verify.rs`).
    pub sequential: bool,
}

/// The result of [`verify`].
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
pub struct VerifyReport {
    /// How many events the chain holds (in the store or the file).
    pub events: u64,
    /// The first event that breaks the chain, if any.
    pub first_bad: Option<BadEvent>,
    /// Id and hash of the last event (the head).
    pub last_id: Option<i64>,
    pub last_hash: Option<String>,
    /// The chain starts after this archived event (`clerk audit archive`).
    pub archived_through: Option<i64>,
    /// Artifacts re-hashed, and those missing or changed.
    pub artifacts_checked: u64,
    pub bad_artifacts: Vec<BadArtifact>,
    /// Runs compared with the chain, and those that disagree.
    pub runs_checked: u64,
    pub bad_runs: Vec<BadRun>,
    /// Checkpoints of the file that were checked, and the first that fails.
    pub checkpoints_checked: u64,
    pub first_bad_checkpoint: Option<BadCheckpoint>,
    /// Events after the newest checkpoint (not yet covered by one).
    pub unconfirmed_events: Option<u64>,
    /// Things that weaken the proof without failing it (unsigned checkpoints...).
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// True when nothing failed.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
            && self.bad_artifacts.is_empty()
            && self.bad_runs.is_empty()
            && self.first_bad_checkpoint.is_none()
    }

    /// Every failure, one sentence each (what `clerk audit verify` prints).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(b) = &self.first_bad {
            out.push(b.reason.clone());
        }
        if let Some(c) = &self.first_bad_checkpoint {
            out.push(c.reason.clone());
        }
        out.extend(self.bad_runs.iter().map(|r| r.reason.clone()));
        out.extend(self.bad_artifacts.iter().map(|a| a.reason.clone()));
        out
    }
}

/// An event that breaks the chain, and why.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct BadEvent {
    pub id: i64,
    /// A sentence naming the event, e.g. "event 17: hash does not match its
    /// content (edited?)".
    pub reason: String,
}

/// An artifact that is missing or changed.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct BadArtifact {
    pub event: i64,
    pub path: String,
    pub reason: String,
}

/// A run whose row disagrees with the chain.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct BadRun {
    pub run: String,
    pub reason: String,
}

/// The first checkpoint the chain no longer matches.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct BadCheckpoint {
    /// Line of the checkpoint file.
    pub line: usize,
    pub head_id: i64,
    pub reason: String,
}

/// A run's state as the chain says it must be in `runs`. `None` fields are
/// not known (events written before states were recorded).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RunExpect {
    /// The event that says so.
    pub event: i64,
    pub status: Option<String>,
    pub times: Option<[Option<String>; 2]>,
    pub error: Option<Option<String>>,
    /// The run's last seq, and whether it has ended.
    pub seq: i64,
    #[serde(default)]
    pub ended: bool,
}

/// Where a chain starts: after genesis, or after an archive.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ChainStart {
    pub through_id: i64,
    pub through_hash: String,
    /// Per run that has archived events: what the chain said of it.
    #[serde(default)]
    pub runs: HashMap<String, RunExpect>,
}

impl ChainStart {
    fn genesis() -> Self {
        ChainStart {
            through_id: 0,
            through_hash: GENESIS_HASH.to_string(),
            runs: HashMap::new(),
        }
    }
}

/// Updates what the chain says of a run after its run-state event `kind`
/// (`id`, `detail`): the state the store recorded in the detail, or, for
/// events written without one, what the kind implies.
pub(crate) fn note_run_event(e: &mut RunExpect, id: i64, kind: &str, detail: &Value) {
    e.event = id;
    e.ended |= is_terminal_kind(kind);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    if let Some(s) = detail.get(RUN_STATE_KEY).and_then(Value::as_object) {
        e.status = text(s.get("status"));
        e.times = Some([text(s.get("started_at")), text(s.get("finished_at"))]);
        e.error = Some(text(s.get("error")));
        return;
    }
    // Older clerk, or the scheduler's batch inserts of queued runs.
    e.times = None;
    e.error = None;
    e.status = match kind {
        "run.queued" => {
            e.times = Some([None, None]);
            e.error = Some(None);
            Some("queued".into())
        }
        "run.started" => Some("running".into()),
        "run.interrupted" => Some("interrupted".into()),
        "scheduler.skipped" => Some("skipped".into()),
        "run.finished" => text(detail.get("status")),
        _ => None,
    };
}

/// One event as read from a table row or an export line (`at` in its
/// stored text form, `detail` parsed or why not).
pub struct ChainRow {
    pub id: i64,
    pub run_id: Option<String>,
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub step: Option<String>,
    pub step_name: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub detail: Result<Value, String>,
    pub outcome: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub item_key: Option<String>,
    pub hash_format: i64,
    pub prev_hash: String,
    pub hash: String,
    /// The hash recomputed from the content, when already done (on the
    /// hashing thread, see [`verify_with`]); `None`: computed when walked.
    pub computed: Option<Result<String, String>>,
}

impl From<crate::store::RawEvent> for ChainRow {
    fn from(r: crate::store::RawEvent) -> Self {
        ChainRow {
            detail: serde_json::from_str(&r.detail)
                .map_err(|e| format!("detail is not valid JSON ({e}) (edited?)")),
            id: r.id,
            run_id: r.run_id,
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            kind: r.kind,
            step: r.step,
            step_name: r.step_name,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            duration_ms: r.duration_ms,
            error: r.error,
            item_key: r.item_key,
            hash_format: r.hash_format,
            prev_hash: r.prev_hash,
            hash: r.hash,
            computed: None,
        }
    }
}

impl ChainRow {
    /// Reads an export line (an [`super::AuditEvent`] as JSON).
    pub fn from_json(v: &Value) -> Result<ChainRow, String> {
        let o = v.as_object().ok_or("not a JSON object")?;
        let s = |k: &str| -> Result<Option<String>, String> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("field {k} is not a string")),
            }
        };
        let req = |k: &str| -> Result<String, String> {
            s(k)?.ok_or_else(|| format!("field {k} is missing"))
        };
        let int = |k: &str| -> Result<Option<i64>, String> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(n) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| format!("field {k} is not an integer")),
            }
        };
        Ok(ChainRow {
            id: int("id")?.ok_or("field id is missing")?,
            run_id: s("run_id")?,
            seq: int("seq")?.unwrap_or(0),
            at: req("at")?,
            actor: req("actor")?,
            kind: req("kind")?,
            step: s("step")?,
            step_name: s("step_name")?,
            action: s("action")?,
            target: s("target")?,
            detail: Ok(o.get("detail").cloned().unwrap_or(Value::Null)),
            outcome: s("outcome")?,
            duration_ms: int("duration_ms")?,
            error: s("error")?,
            item_key: s("item_key")?,
            hash_format: int("hash_format")?.unwrap_or(1),
            prev_hash: req("prev_hash")?,
            hash: req("hash")?,
            computed: None,
        })
    }

    /// Recomputes the hash from the content (by the row's own format) and
    /// keeps it in `computed`: the costly part of verifying, independent of
    /// every other row, so it can be done off the walking thread.
    pub fn precompute(&mut self) {
        if self.computed.is_none()
            && let Ok(d) = &self.detail
        {
            self.computed = Some(format::hash(&self.fields(d)));
        }
    }

    fn fields<'a>(&'a self, detail: &'a Value) -> Fields<'a> {
        Fields {
            hash_format: self.hash_format,
            id: self.id,
            run_id: self.run_id.as_deref(),
            seq: self.seq,
            at: &self.at,
            actor: &self.actor,
            kind: &self.kind,
            step: self.step.as_deref(),
            step_name: self.step_name.as_deref(),
            action: self.action.as_deref(),
            target: self.target.as_deref(),
            detail,
            outcome: self.outcome.as_deref(),
            duration_ms: self.duration_ms,
            error: self.error.as_deref(),
            item_key: self.item_key.as_deref(),
            prev_hash: &self.prev_hash,
        }
    }
}

/// Walks a chain event by event.
struct Walker<'o> {
    opts: &'o VerifyOptions,
    report: VerifyReport,
    prev_id: i64,
    prev_hash: String,
    runs: HashMap<String, RunExpect>,
    /// (event id, path, recorded sha256) of every artifact named.
    artifacts: Vec<(i64, String, String)>,
    /// Re-hashes each artifact path once, on its own thread, while the
    /// chain is still being walked (see [`ArtifactHasher`]).
    hasher: Option<ArtifactHasher>,
    /// Head ids the checkpoint file names → the hash the chain has there.
    wanted: HashMap<i64, Option<String>>,
    /// Newest head covered by a chained checkpoint.
    covered: i64,
    /// Public keys seen in unpinned signatures.
    unpinned_signatures: bool,
    /// An archive file ends here: later checkpoints are not its business.
    range_end: Option<i64>,
}

impl<'o> Walker<'o> {
    fn new(opts: &'o VerifyOptions, start: ChainStart) -> Self {
        let archived = (start.through_id > 0).then_some(start.through_id);
        Walker {
            opts,
            report: VerifyReport {
                archived_through: archived,
                ..Default::default()
            },
            prev_id: start.through_id,
            prev_hash: start.through_hash,
            runs: start.runs,
            artifacts: Vec::new(),
            hasher: if opts.sequential {
                None // started in check_artifacts, after the walk
            } else {
                opts.artifacts.clone().map(ArtifactHasher::start)
            },
            wanted: HashMap::new(),
            covered: 0,
            unpinned_signatures: false,
            range_end: None,
        }
    }

    /// Checks a signature by the pinned key, or else by the key the record
    /// names (remembered, to warn).
    fn signature_ok(&mut self, message: &str, public: Option<&str>, sig: &str) -> bool {
        let key = match (&self.opts.pubkey, public) {
            (Some(k), _) => *k,
            (None, Some(p)) => match keys::parse_public(p) {
                Ok(k) => {
                    self.unpinned_signatures = true;
                    k
                }
                Err(_) => return false,
            },
            (None, None) => return false,
        };
        keys::verify(&key, message.as_bytes(), sig)
    }

    fn step(&mut self, id: i64, row: Result<ChainRow, String>) {
        self.report.events += 1;
        self.report.last_id = Some(id);
        let bad = |reason: String| BadEvent {
            id,
            reason: format!("event {id}: {reason}"),
        };
        let row = match row {
            Ok(row) => row,
            Err(why) => {
                self.report.first_bad.get_or_insert(bad(why));
                self.report.last_hash = None;
                return;
            }
        };
        self.report.last_hash = Some(row.hash.clone());
        if let Some(w) = self.wanted.get_mut(&id) {
            *w = Some(row.hash.clone());
        }
        if self.report.first_bad.is_some() {
            return;
        }
        if let Some(p) = self.problem(&row) {
            self.report.first_bad = Some(bad(p));
        }
        self.prev_id = id;
        self.prev_hash = row.hash;
    }

    fn problem(&mut self, row: &ChainRow) -> Option<String> {
        let (id, prev_id) = (row.id, self.prev_id);
        if id != prev_id + 1 {
            return Some(if id <= prev_id {
                format!("id is not after the previous event {prev_id}")
            } else if id == prev_id + 2 {
                format!("previous event {} is missing (deleted?)", prev_id + 1)
            } else {
                format!(
                    "previous events {}..{} are missing (deleted?)",
                    prev_id + 1,
                    id - 1
                )
            });
        }
        let detail = match &row.detail {
            Ok(d) => d,
            Err(e) => return Some(e.clone()),
        };
        let fresh;
        let computed = match &row.computed {
            Some(c) => c,
            None => {
                fresh = format::hash(&row.fields(detail));
                &fresh
            }
        };
        match computed {
            Err(e) => return Some(e.clone()),
            Ok(h) if *h != row.hash => {
                return Some("hash does not match its content (edited?)".to_string());
            }
            Ok(_) => {}
        }
        if row.prev_hash != self.prev_hash {
            return Some(if prev_id == 0 {
                "prev_hash of the first event is not the genesis hash".to_string()
            } else {
                format!("prev_hash does not link to event {prev_id}")
            });
        }
        if let Some(p) = self.check_run(row, detail) {
            return Some(p);
        }
        match row.kind.as_str() {
            "audit.checkpoint" => self.check_chained_checkpoint(detail),
            "audit.archived" => self.check_archive_marker(detail),
            _ => {
                self.collect_artifacts(id, detail);
                None
            }
        }
    }

    /// seq continuity, nothing after a run's end, and the run's state.
    fn check_run(&mut self, row: &ChainRow, detail: &Value) -> Option<String> {
        let Some(run) = row.run_id.as_deref() else {
            return (row.seq != 0)
                .then(|| format!("seq is {} but events without a run have seq 0", row.seq));
        };
        if !self.runs.contains_key(run) {
            self.runs.insert(run.to_string(), RunExpect::default());
        }
        let e = self.runs.get_mut(run)?; // inserted just above
        let expected = e.seq + 1;
        if row.seq != expected {
            return Some(format!(
                "seq {} of run {run} should be {expected} (an event of the run is missing?)",
                row.seq
            ));
        }
        e.seq = row.seq;
        let state_kind = is_run_state_kind(&row.kind);
        // The failure notice of a bot run (notify.*) is about the ended run
        // and is written after its end, by design.
        if e.ended && !state_kind && !row.kind.starts_with("notify.") {
            return Some(format!(
                "{} event of run {run} comes after the run ended at event {} (appended?)",
                row.kind, e.event
            ));
        }
        if !state_kind {
            return None;
        }
        note_run_event(e, row.id, &row.kind, detail);
        None
    }

    fn check_chained_checkpoint(&mut self, detail: &Value) -> Option<String> {
        let Some(cp) = Checkpoint::from_value(detail) else {
            return Some("audit.checkpoint event without a checkpoint record".into());
        };
        if cp.head_id != self.prev_id || cp.head_hash != self.prev_hash {
            return Some(format!(
                "checkpoint names event {} with hash {} but the chain before it ends at event {} with hash {} (chain recomputed?)",
                cp.head_id,
                short(&cp.head_hash),
                self.prev_id,
                short(&self.prev_hash)
            ));
        }
        if let Some(sig) = &cp.signature
            && !self.signature_ok(&cp.message(), cp.public_key.as_deref(), sig)
        {
            return Some(
                "checkpoint signature does not verify (forged or chain recomputed?)".into(),
            );
        }
        // The checkpoint covers the events before it, and itself.
        self.covered = self.covered.max(cp.head_id + 1);
        None
    }

    fn check_archive_marker(&mut self, detail: &Value) -> Option<String> {
        let Some(m) = ArchiveMarker::from_value(detail) else {
            return Some("audit.archived event without an archive record".into());
        };
        if let Some(sig) = &m.signature
            && !self.signature_ok(&m.message(), m.public_key.as_deref(), sig)
        {
            return Some("archive signature does not verify (forged?)".into());
        }
        None
    }

    fn collect_artifacts(&mut self, id: i64, detail: &Value) {
        if self.opts.artifacts.is_none() {
            return;
        }
        if let Some(list) = detail.get("artifacts").and_then(Value::as_array) {
            for a in list {
                if let (Some(p), Some(s)) = (
                    a.get("path").and_then(Value::as_str),
                    a.get("sha256").and_then(Value::as_str),
                ) {
                    if let Some(h) = &mut self.hasher {
                        h.want(p);
                    }
                    self.artifacts.push((id, p.to_string(), s.to_string()));
                }
            }
        }
    }

    /// Compares every artifact named with its file's hash (each file hashed
    /// once, by the hasher thread).
    fn check_artifacts(&mut self) {
        let hasher = match (self.hasher.take(), &self.opts.artifacts) {
            (Some(h), _) => h,
            (None, Some(root)) => {
                let mut h = ArtifactHasher::start(root.clone());
                for (_, path, _) in &self.artifacts {
                    h.want(path);
                }
                h
            }
            (None, None) => return,
        };
        let mut cache = hasher.finish();
        for (event, path, sha) in std::mem::take(&mut self.artifacts) {
            let got = cache
                .entry(path.clone())
                .or_insert_with(|| Err("was not hashed (internal error)".to_string()));
            self.report.artifacts_checked += 1;
            let reason = match got {
                Ok(h) if *h == sha => continue,
                Ok(h) => format!(
                    "has changed (sha256 {}, the event recorded {})",
                    short(h),
                    short(&sha)
                ),
                Err(why) => why.clone(),
            };
            self.report.bad_artifacts.push(BadArtifact {
                event,
                reason: format!("event {event}: artifact {path} {reason}"),
                path,
            });
        }
    }

    /// Compares the `runs` table with what the chain says.
    fn check_runs(&mut self, table: Vec<[Option<String>; 5]>) {
        let mut seen = std::collections::HashSet::new();
        for [id, status, started, finished, error] in table {
            let Some(id) = id else { continue };
            self.report.runs_checked += 1;
            seen.insert(id.clone());
            let Some(e) = self.runs.get(&id) else {
                self.report.bad_runs.push(BadRun {
                    reason: format!(
                        "run {id}: in the runs table but no event of it is in the chain (its events were deleted?)"
                    ),
                    run: id,
                });
                continue;
            };
            let mut diffs = Vec::new();
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "null".into());
            if let Some(s) = &e.status
                && status.as_ref() != Some(s)
            {
                diffs.push(format!(
                    "status is {} in runs but {s} in the chain",
                    show(&status)
                ));
            }
            if let Some([s, f]) = &e.times {
                if started != *s {
                    diffs.push(format!(
                        "started_at is {} in runs but {} in the chain",
                        show(&started),
                        show(s)
                    ));
                }
                if finished != *f {
                    diffs.push(format!(
                        "finished_at is {} in runs but {} in the chain",
                        show(&finished),
                        show(f)
                    ));
                }
            }
            if let Some(err) = &e.error
                && error != *err
            {
                diffs.push("error differs from the chain".to_string());
            }
            if !diffs.is_empty() {
                self.report.bad_runs.push(BadRun {
                    reason: format!(
                        "run {id}: {} (event {}) (runs table edited?)",
                        diffs.join("; "),
                        e.event
                    ),
                    run: id,
                });
            }
        }
        for (id, e) in &self.runs {
            if !seen.contains(id) && e.status.is_some() {
                self.report.bad_runs.push(BadRun {
                    run: id.clone(),
                    reason: format!(
                        "run {id}: has events in the chain (last state at event {}) but no row in runs (deleted?)",
                        e.event
                    ),
                });
            }
        }
        self.report.bad_runs.sort_by(|a, b| a.run.cmp(&b.run));
    }

    /// Compares the checkpoint file with what was seen.
    fn check_checkpoints(&mut self, list: &[(usize, Checkpoint)]) {
        let archived = self.report.archived_through.unwrap_or(0);
        let last = self.report.last_id.unwrap_or(archived);
        let mut unsigned = 0;
        let mut newest = 0;
        for (line, cp) in list {
            self.report.checkpoints_checked += 1;
            let fail = |why: String| BadCheckpoint {
                line: *line,
                head_id: cp.head_id,
                reason: format!(
                    "checkpoint of {} (line {line}: event {}, hash {}) {why}",
                    cp.at,
                    cp.head_id,
                    short(&cp.head_hash)
                ),
            };
            match &cp.signature {
                None => unsigned += 1,
                Some(sig) => {
                    if !self.signature_ok(&cp.message(), cp.public_key.as_deref(), sig) {
                        self.report.first_bad_checkpoint = Some(fail(
                            "has a signature that does not verify (the checkpoint file was edited?)"
                                .into(),
                        ));
                        return;
                    }
                }
            }
            if self.range_end.is_some_and(|end| cp.head_id > end) {
                continue; // after the archive: checked against the store
            }
            newest = newest.max(cp.head_id);
            if cp.head_id <= archived {
                continue; // in the archive: checked with the archive file
            }
            match self.wanted.get(&cp.head_id).cloned().flatten() {
                Some(h) if h == cp.head_hash => {}
                Some(h) => {
                    self.report.first_bad_checkpoint = Some(fail(format!(
                        "does not match the store: event {} now has hash {} (the chain was rebuilt, a run removed, or the database replaced)",
                        cp.head_id,
                        short(&h)
                    )));
                    return;
                }
                None if cp.head_id > last => {
                    self.report.first_bad_checkpoint = Some(fail(format!(
                        "is beyond the end of the chain: it ends at event {last}, so events {}..{} are gone (tail truncated, or the database replaced by an older copy)",
                        last + 1,
                        cp.head_id
                    )));
                    return;
                }
                None => {
                    self.report.first_bad_checkpoint = Some(fail(format!(
                        "names event {} which the chain cannot show (unreadable row)",
                        cp.head_id
                    )));
                    return;
                }
            }
        }
        if unsigned > 0 {
            self.report.warnings.push(format!(
                "{unsigned} checkpoint(s) are unsigned: they prove nothing against someone who can also edit the checkpoint file (create a key with `clerk audit keygen`)"
            ));
        }
        if newest > 0 {
            let covered = newest.max(self.covered);
            self.report.unconfirmed_events = Some(last.saturating_sub(covered).max(0) as u64);
        }
    }

    fn finish(mut self) -> VerifyReport {
        if self.unpinned_signatures {
            self.report.warnings.push(
                "signatures were checked against the public key each record names; pin the installation's key with --pubkey (or keep `<key>.pub` in the workspace)".into(),
            );
        }
        self.report
    }
}

/// The newest archive marker's record, as written by `clerk audit archive`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ArchiveMarker {
    pub format: String,
    pub file: String,
    /// SHA-256 of the whole archive file.
    pub sha256: String,
    pub from_id: i64,
    pub events: i64,
    #[serde(flatten)]
    pub start: ChainStart,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub signature: Option<String>,
}

impl ArchiveMarker {
    /// What is signed: JCS of `{format, sha256, from_id, through_id,
    /// through_hash, events}`.
    pub fn message(&self) -> String {
        format::jcs(&serde_json::json!({
            "format": self.format,
            "sha256": self.sha256,
            "from_id": self.from_id,
            "through_id": self.start.through_id,
            "through_hash": self.start.through_hash,
            "events": self.events,
        }))
        .unwrap_or_default()
    }

    pub fn from_value(v: &Value) -> Option<ArchiveMarker> {
        serde_json::from_value(v.clone()).ok()
    }
}

/// Hashes artifact files on a thread of its own: verify's chain walk is
/// CPU work on one core, re-hashing files is I/O and CPU on another.
struct ArtifactHasher {
    tx: Option<std::sync::mpsc::Sender<String>>,
    asked: std::collections::HashSet<String>,
    thread: std::thread::JoinHandle<HashMap<String, Result<String, String>>>,
}

impl ArtifactHasher {
    fn start(root: PathBuf) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let thread = std::thread::spawn(move || {
            let mut done = HashMap::new();
            for path in rx {
                let full = if Path::new(&path).is_absolute() {
                    PathBuf::from(&path)
                } else {
                    root.join(&path)
                };
                let got = match crate::fsutil::sha256_file(&full) {
                    Ok((h, _)) => Ok(h),
                    Err(_) if !full.exists() => Err("is missing".to_string()),
                    Err(e) => Err(format!("cannot be read ({e:#})")),
                };
                done.insert(path, got);
            }
            done
        });
        ArtifactHasher {
            tx: Some(tx),
            asked: std::collections::HashSet::new(),
            thread,
        }
    }

    /// Asks for a path's hash (each path once).
    fn want(&mut self, path: &str) {
        if self.asked.insert(path.to_string())
            && let Some(tx) = &self.tx
        {
            // A send fails only if the thread is gone; `finish` says so.
            let _ = tx.send(path.to_string());
        }
    }

    /// Every hash asked for, by path.
    fn finish(mut self) -> HashMap<String, Result<String, String>> {
        self.tx = None; // ends the thread's loop
        self.thread.join().unwrap_or_default()
    }
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// Verifies the store's chain, runs, artifacts and (optionally) checkpoints.
pub async fn verify(store: &Store) -> anyhow::Result<VerifyReport> {
    verify_with(store, &VerifyOptions::default()).await
}

/// [`verify`] with options.
pub async fn verify_with(store: &Store, opts: &VerifyOptions) -> anyhow::Result<VerifyReport> {
    let start = match store.latest_archive_marker().await? {
        Some(text) => {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            ArchiveMarker::from_value(&v)
                .map(|m| m.start)
                .unwrap_or_else(ChainStart::genesis)
        }
        None => ChainStart::genesis(),
    };
    let cps = load_checkpoints(opts)?;
    let mut w = Walker::new(opts, start);
    for (_, cp) in &cps {
        w.wanted.insert(cp.head_id, None);
    }
    if opts.sequential {
        let mut after = i64::MIN;
        loop {
            let page = store.raw_events(after, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            for (id, row) in page {
                w.step(id, row.map(ChainRow::from));
            }
        }
        return finish_store(store, opts, w, &cps).await;
    }
    // Three stages, so the two cores work at once: this task's reader
    // fetches page N+1 while a blocking thread parses and hashes page N
    // (rows are independent), and the walk (cheap, in id order) follows.
    let (raw_tx, mut raw_rx) = tokio::sync::mpsc::channel::<Vec<crate::store::RawRow>>(2);
    let (ready_tx, mut ready_rx) =
        tokio::sync::mpsc::channel::<Vec<(i64, Result<ChainRow, String>)>>(2);
    let hashing = tokio::task::spawn_blocking(move || {
        while let Some(page) = raw_rx.blocking_recv() {
            let rows = page
                .into_iter()
                .map(|(id, row)| {
                    let row = row.map(|r| {
                        let mut c = ChainRow::from(r);
                        c.precompute();
                        c
                    });
                    (id, row)
                })
                .collect();
            if ready_tx.blocking_send(rows).is_err() {
                return;
            }
        }
    });
    let reading = async move {
        let mut after = i64::MIN;
        loop {
            let page = store.raw_events(after, PAGE).await?;
            let Some((last, _)) = page.last() else {
                return Ok::<(), anyhow::Error>(());
            };
            after = *last;
            if raw_tx.send(page).await.is_err() {
                return Ok(()); // the walk stopped
            }
        }
    };
    let walking = async {
        while let Some(rows) = ready_rx.recv().await {
            for (id, row) in rows {
                w.step(id, row);
            }
        }
    };
    let (read, ()) = tokio::join!(reading, walking);
    read?;
    hashing
        .await
        .context("the hashing thread of audit verify failed")?;
    finish_store(store, opts, w, &cps).await
}

/// Artifacts, the runs table and the checkpoint file, once the chain is walked.
async fn finish_store(
    store: &Store,
    opts: &VerifyOptions,
    mut w: Walker<'_>,
    cps: &[(usize, Checkpoint)],
) -> anyhow::Result<VerifyReport> {
    w.check_artifacts();
    let table = store.run_states().await?;
    w.check_runs(table);
    if opts.checkpoints.is_some() {
        w.check_checkpoints(cps);
    }
    Ok(w.finish())
}

fn load_checkpoints(opts: &VerifyOptions) -> anyhow::Result<Vec<(usize, Checkpoint)>> {
    match &opts.checkpoints {
        Some(p) => checkpoint::read_file(p),
        None => Ok(Vec::new()),
    }
}

/// The trailer line of an archive file (its last line).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ArchiveTrailer {
    pub archive: ArchiveMarker,
    /// The chain state the archive's first event continues.
    pub prev: ChainStart,
}

/// Verifies an export (`clerk audit export`, JSONL) or an archive file
/// offline, without the database: the chain, and optionally artifacts and
/// checkpoints. A full export, or an archive; an export of one run is not a
/// chain.
pub fn verify_export(path: &Path, opts: &VerifyOptions) -> anyhow::Result<VerifyReport> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open the export {}", path.display()))?;
    let mut lines: Vec<(usize, Value)> = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        lines.push((i + 1, v));
    }
    // An archive file ends with its trailer; an export after an archive has
    // the audit.archived marker in it.
    let mut trailer = None;
    if let Some((_, v)) = lines.last()
        && v.get("archive").is_some()
    {
        let (_, v) = lines.pop().unwrap_or_default();
        trailer = Some(
            serde_json::from_value::<ArchiveTrailer>(v).with_context(|| {
                format!("{}: the archive trailer is not readable", path.display())
            })?,
        );
    }
    let start = match &trailer {
        Some(t) => t.prev.clone(),
        None => lines
            .iter()
            .rev()
            .find(|(_, v)| v.get("kind").and_then(Value::as_str) == Some("audit.archived"))
            .and_then(|(_, v)| v.get("detail"))
            .and_then(ArchiveMarker::from_value)
            .map(|m| m.start)
            .unwrap_or_else(ChainStart::genesis),
    };
    let cps = load_checkpoints(opts)?;
    let mut w = Walker::new(opts, start);
    w.range_end = trailer.as_ref().map(|t| t.archive.start.through_id);
    for (_, cp) in &cps {
        w.wanted.insert(cp.head_id, None);
    }
    for (n, v) in &lines {
        let id = v.get("id").and_then(Value::as_i64).unwrap_or(w.prev_id + 1);
        let row = ChainRow::from_json(v).map_err(|e| format!("line {n}: {e}"));
        w.step(id, row);
    }
    if let Some(t) = &trailer {
        check_trailer(&mut w, t, path)?;
    }
    w.check_artifacts();
    if opts.checkpoints.is_some() {
        w.check_checkpoints(&cps);
    }
    Ok(w.finish())
}

/// The archive's trailer must name the chain it holds and be signed.
fn check_trailer(w: &mut Walker<'_>, t: &ArchiveTrailer, path: &Path) -> anyhow::Result<()> {
    let m = &t.archive;
    let mut why = None;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let body_end = bytes[..bytes.len().saturating_sub(1)]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let body_sha = crate::fsutil::sha256_hex(&bytes[..body_end]);
    if body_sha != m.sha256 {
        why = Some(format!(
            "its events hash to {} but the trailer says {} (edited?)",
            short(&body_sha),
            short(&m.sha256)
        ));
    } else if w.report.last_id != Some(m.start.through_id)
        || w.report.last_hash.as_deref() != Some(m.start.through_hash.as_str())
    {
        why = Some(format!(
            "the archive says it ends at event {} ({}) but its events end at {:?}",
            m.start.through_id,
            short(&m.start.through_hash),
            w.report.last_id
        ));
    } else if let Some(sig) = &m.signature {
        if !w.signature_ok(&m.message(), m.public_key.as_deref(), sig) {
            why = Some("the archive signature does not verify".into());
        }
    } else {
        w.report
            .warnings
            .push(format!("{} is not signed (no audit key)", path.display()));
    }
    if let Some(why) = why
        && w.report.first_bad.is_none()
    {
        w.report.first_bad = Some(BadEvent {
            id: m.start.through_id,
            reason: format!("archive {}: {why}", path.display()),
        });
    }
    Ok(())
}
