//! The engine's side of the work-item ledger: what a loop does with an item
//! whose key (`checkpoint`) the lineage already knows, the item's state
//! transitions (each written with its audit event), in-doubt items and their
//! `verify:` block, and `once: true` steps.
//!
//! Item states on the way through a loop:
//! - no row / `pending` / `system_exception` / `skipped` → run it:
//!   `in_progress` (`item.started`), then `done` / `business_exception` /
//!   `system_exception` (`item.finished`).
//! - `done` → skipped (`item.skipped`), its output restored in place.
//! - `business_exception` → skipped (a person requeues it), counted again.
//! - `in_doubt` → skipped, counted, never re-entered.
//! - `in_progress` (a run of the lineage died half way) → in doubt: with a
//!   `verify:` block it is looked up (`item.verified`): found → `done` with
//!   the found output, not found → run again; without `verify:` → `in_doubt`
//!   (`item.in_doubt`), never redone.

use std::collections::BTreeMap;

use minijinja::value::Value as MValue;
use serde_json::{Value, json};

use super::exec::{Exec, StepFailure};
use super::keep::{self, Origin};
use crate::actions::ErrorKind;
use crate::audit::NewEvent;
use crate::playbook::Step;
use crate::secrets;
use crate::store::{ItemChange, ItemId, ItemMove, ItemRow, ItemState, StoreError};

/// The states an item may be started from (a fresh run of it).
const START_FROM: &[ItemState] = &[
    ItemState::Pending,
    ItemState::SystemException,
    ItemState::Skipped,
];

/// The end of an in-progress item (done, an exception, in doubt) with its
/// event. One that succeeded is held, not yet committed: the loop commits
/// it with the next item's start (one commit for both, where there were
/// two), or on its own before anything else is recorded and when the loop
/// ends. Until then the item is `in_progress` in the ledger; a crash in
/// between leaves it in doubt, which a resume resolves like any item cut
/// off half way (its `verify:` block, or `in_doubt`) — never redone blindly.
pub(crate) struct ItemEnd {
    path: String,
    key: String,
    change: ItemChange,
    event: NewEvent,
}

impl ItemEnd {
    fn new(path: &str, key: &str, change: ItemChange, event: NewEvent) -> ItemEnd {
        ItemEnd {
            path: path.to_string(),
            key: key.to_string(),
            change,
            event,
        }
    }
}

/// A failed item transition as the step's failure.
fn transition_failed(step: &Step, path: &str, key: &str, e: StoreError) -> StepFailure {
    match e {
        e @ StoreError::StateConflict { .. } => StepFailure::new(
            step,
            path,
            format!("work item {key} was changed by another run at the same time: {e}"),
            ErrorKind::Internal,
        ),
        e => StepFailure::new(
            step,
            path,
            format!("the work item {key} could not be recorded: {e}"),
            ErrorKind::Internal,
        ),
    }
}

/// What the loop does with an item after looking at the ledger.
pub(crate) enum Decision {
    /// Run the item; `after_doubt`: it was in progress and `verify` did not
    /// find it (the start transition expects `in_progress`).
    Run { after_doubt: bool },
    /// Do not run it; `Some(output)` goes into the loop's results in place.
    Skip(Option<Value>),
    /// Do not run it, but run the loop's `on_error` steps again with the
    /// business exception an earlier run recorded, so that what they collect
    /// (a list of rejections for a report) is whole again — as a done item's
    /// output is restored.
    Replay(StepFailure),
}

/// The ledger key of an item: a string checkpoint as is, anything else as
/// its JSON text.
pub(crate) fn item_key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What `skip_once` found for a `once: true` step.
pub(crate) enum Once {
    /// Never succeeded in this lineage: run it (and record it).
    Run,
    /// Succeeded before; skipped, its value restored.
    Skipped,
    /// Succeeded before, but its value was too big to keep and the step is a
    /// read: run it again to re-derive the value (not recorded again).
    Rederive { by_run: String, kept: keep::Measure },
}

/// The output as stored in the ledger: `***` when secret-derived, an
/// omitted-value marker when over the kept size (see `keep`), and any
/// registered secret value inside it masked as well (defence in depth for
/// values whose taint was lost); returns it and whether it is masked.
fn stored_output(value: &MValue, tainted: bool, origin: &Origin) -> (Value, bool) {
    if tainted {
        return (Value::String(secrets::MASK.into()), true);
    }
    let kept = keep::kept(value, Some(origin));
    let mut v = kept.clone();
    secrets::redact_json(&mut v);
    let masked = v != kept;
    (v, masked)
}

/// Whether a `verify` result means "found".
fn found(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Bool(true) | Value::Number(_) => true,
    }
}

impl Exec {
    fn item_id(&self, step: &Step, key: &str) -> ItemId {
        ItemId::new(&self.run.lineage, &step.id, key)
    }

    /// Reads the ledger rows of a loop step (one query).
    pub(crate) async fn ledger_of(
        &self,
        step: &Step,
        path: &str,
    ) -> Result<BTreeMap<String, ItemRow>, StepFailure> {
        self.recorder
            .store()
            .items_of_step(&self.run.lineage, &step.id)
            .await
            .map_err(|e| {
                StepFailure::new(
                    step,
                    path,
                    format!("cannot read the work items of this loop: {e}"),
                    ErrorKind::System,
                )
            })
    }

    /// One state change of an item with its event (and `then` right after
    /// it), in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn transition(
        &mut self,
        step: &Step,
        path: &str,
        key: &str,
        expected: &[ItemState],
        change: ItemChange,
        event: NewEvent,
        then: Option<NewEvent>,
        known: &mut BTreeMap<String, ItemRow>,
    ) -> Result<(), StepFailure> {
        let id = self.item_id(step, key);
        let event = self.recorder.redact_event(event);
        let then: Vec<NewEvent> = then
            .into_iter()
            .map(|e| self.recorder.redact_event(e))
            .collect();
        match self
            .recorder
            .store()
            .transition_item_then(&id, expected, &change, event, &then)
            .await
        {
            Ok((row, _)) => {
                known.insert(key.to_string(), row);
                Ok(())
            }
            Err(e) => Err(transition_failed(step, path, key, e)),
        }
    }

    /// The end of the previous item, held since it finished (see
    /// [`ItemEnd`]), and the start of this one with its first
    /// `step.started`: one transaction, one commit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn finish_and_start(
        &mut self,
        step: &Step,
        held: ItemEnd,
        path: &str,
        key: &str,
        event: NewEvent,
        then: Option<NewEvent>,
        known: &mut BTreeMap<String, ItemRow>,
    ) -> Result<(), StepFailure> {
        let done_id = self.item_id(step, &held.key);
        let next_id = self.item_id(step, key);
        let mut start = ItemChange::to(ItemState::InProgress, &self.run.id);
        start.new_attempt = true;
        let then: Vec<NewEvent> = then
            .into_iter()
            .map(|e| self.recorder.redact_event(e))
            .collect();
        let first = ItemMove {
            id: &done_id,
            expected: &[ItemState::InProgress],
            change: &held.change,
            event: self.recorder.redact_event(held.event),
            then: &[],
        };
        let second = ItemMove {
            id: &next_id,
            expected: START_FROM,
            change: &start,
            event: self.recorder.redact_event(event),
            then: &then,
        };
        match self
            .recorder
            .store()
            .transition_item_pair(&first, &second)
            .await
        {
            Ok(((done, _), next)) => {
                known.insert(held.key.clone(), done);
                self.items.add(held.change.state, 1);
                let (row, _) = next.map_err(|e| transition_failed(step, path, key, e))?;
                known.insert(key.to_string(), row);
                Ok(())
            }
            Err(e) => Err(transition_failed(step, &held.path, &held.key, e)),
        }
    }

    /// Commits an item's end on its own (from `in_progress`) and counts it:
    /// a held one when the loop goes on otherwise than by starting a fresh
    /// item, or ends; a failed or in-doubt item's.
    pub(crate) async fn commit_end(
        &mut self,
        step: &Step,
        held: ItemEnd,
        known: &mut BTreeMap<String, ItemRow>,
    ) -> Result<(), StepFailure> {
        let state = held.change.state;
        self.transition(
            step,
            &held.path,
            &held.key,
            &[ItemState::InProgress],
            held.change,
            held.event,
            None,
            known,
        )
        .await?;
        self.items.add(state, 1);
        Ok(())
    }

    /// The end of an item that succeeded, to hold (see [`ItemEnd`]).
    pub(crate) fn held_finish(
        &self,
        step: &Step,
        path: &str,
        key: &str,
        value: &MValue,
        tainted: bool,
        event: NewEvent,
    ) -> ItemEnd {
        let (stored, masked) = stored_output(value, tainted, &Exec::origin(step));
        let mut change = ItemChange::to(ItemState::Done, &self.run.id);
        change.output = Some(stored);
        change.output_masked = masked;
        ItemEnd::new(path, key, change, event)
    }

    /// Looks the item up in the ledger; records skips and resolves in-doubt
    /// items. `self.item_key` is already the item's key.
    pub(crate) async fn ledger_decision(
        &mut self,
        step: &Step,
        path: &str,
        index: usize,
        key: &str,
        known: &mut BTreeMap<String, ItemRow>,
    ) -> Result<Decision, StepFailure> {
        let Some(row) = known.get(key).cloned() else {
            return Ok(Decision::Run { after_doubt: false });
        };
        let skipped = |exec: &Exec, reason: String| {
            exec.event("item.skipped")
                .step(path, step.name.as_deref())
                .outcome("skipped")
                .detail(json!({
                    "index": index,
                    "checkpoint": key,
                    "state": row.state.as_str(),
                    "by_run": row.run_id,
                    "reason": reason,
                }))
        };
        match row.state {
            ItemState::Done => {
                let output = row.output.clone().unwrap_or(Value::Null);
                if row.output_masked {
                    tracing::warn!(
                        step = %path,
                        "work item {key}: its output was secret-derived and is stored masked; restored as ***"
                    );
                }
                let mut ev = skipped(self, format!("already done in run {}", row.run_id));
                ev.detail["output_restored"] = json!(true);
                ev.detail["output_masked"] = json!(row.output_masked);
                self.record_step(step, path, ev).await?;
                self.items.add(ItemState::Skipped, 1);
                Ok(Decision::Skip(Some(output)))
            }
            ItemState::BusinessException => {
                let ev = skipped(
                    self,
                    format!(
                        "ended as a business exception in run {}: {}; `clerk items retry {key}` puts it back once fixed",
                        row.run_id,
                        row.error.as_deref().unwrap_or("no reason recorded")
                    ),
                );
                self.record_step(step, path, ev).await?;
                self.items.add(ItemState::BusinessException, 1);
                if matches!(step.on_error, crate::playbook::OnError::Steps(_)) {
                    let message = row
                        .error
                        .clone()
                        .unwrap_or_else(|| "no reason recorded".into());
                    return Ok(Decision::Replay(StepFailure::new(
                        step,
                        path,
                        message,
                        ErrorKind::Business,
                    )));
                }
                Ok(Decision::Skip(None))
            }
            ItemState::InDoubt => {
                let ev = skipped(
                    self,
                    "in doubt: a person must check it in the target system, then `clerk items retry` it".into(),
                );
                self.record_step(step, path, ev).await?;
                self.items.add(ItemState::InDoubt, 1);
                Ok(Decision::Skip(None))
            }
            ItemState::InProgress => {
                self.resolve_in_doubt(step, path, index, key, &row, known)
                    .await
            }
            ItemState::Pending | ItemState::SystemException | ItemState::Skipped => {
                Ok(Decision::Run { after_doubt: false })
            }
        }
    }

    /// An item a run of this lineage started and never finished.
    async fn resolve_in_doubt(
        &mut self,
        step: &Step,
        path: &str,
        index: usize,
        key: &str,
        row: &ItemRow,
        known: &mut BTreeMap<String, ItemRow>,
    ) -> Result<Decision, StepFailure> {
        let Some(verify) = &step.verify else {
            let reason = format!(
                "run {} started this item and never finished it; whether it took effect is unknown and the loop has no `verify:` to look it up, so it is not redone",
                row.run_id
            );
            tracing::warn!(step = %path, "work item {key} is in doubt: {reason}");
            let ev = self
                .event("item.in_doubt")
                .step(path, step.name.as_deref())
                .outcome("in_doubt")
                .error(&reason)
                .detail(json!({ "index": index, "checkpoint": key, "started_by_run": row.run_id }));
            let mut change = ItemChange::to(ItemState::InDoubt, &self.run.id);
            change.error = Some(reason);
            change.error_kind = Some("in_doubt".into());
            self.commit_end(step, ItemEnd::new(path, key, change, ev), known)
                .await?;
            return Ok(Decision::Skip(None));
        };
        let verify_path = format!("{path}/verify");
        self.last_value = None;
        let ran = self.run_steps(&verify.steps, &verify_path).await;
        let result = match ran {
            Err(f) if f.cancelled => return Err(f),
            Err(f) => Err(f.message),
            Ok(()) => match &verify.output {
                Some(out) => self
                    .render_tree(out, &self.context())
                    .map(|r| (r.value, r.tainted))
                    .map_err(|m| format!("`verify` `output`: {m}")),
                None => Ok((
                    self.last_value
                        .take()
                        .map_or(Value::Null, |v| crate::template::to_json(&v)),
                    false,
                )),
            },
        };
        match result {
            Err(message) => {
                let reason = format!(
                    "run {} started this item and never finished it, and `verify` failed: {message}; not redone",
                    row.run_id
                );
                let ev = self
                    .event("item.in_doubt")
                    .step(path, step.name.as_deref())
                    .outcome("in_doubt")
                    .error(&reason)
                    .detail(
                        json!({ "index": index, "checkpoint": key, "started_by_run": row.run_id }),
                    );
                let mut change = ItemChange::to(ItemState::InDoubt, &self.run.id);
                change.error = Some(secrets::redact(&reason));
                change.error_kind = Some("in_doubt".into());
                self.commit_end(step, ItemEnd::new(path, key, change, ev), known)
                    .await?;
                Ok(Decision::Skip(None))
            }
            Ok((value, tainted)) if found(&value) => {
                let (stored, masked) = stored_output(
                    &crate::template::to_value(&value),
                    tainted || step.sensitive,
                    &Exec::origin(step),
                );
                let ev = self
                    .event("item.verified")
                    .step(path, step.name.as_deref())
                    .outcome("ok")
                    .detail(json!({
                        "index": index, "checkpoint": key, "found": true,
                        "started_by_run": row.run_id, "output": stored,
                    }));
                let mut change = ItemChange::to(ItemState::Done, &self.run.id);
                change.output = Some(stored);
                change.output_masked = masked;
                self.transition(
                    step,
                    path,
                    key,
                    &[ItemState::InProgress],
                    change,
                    ev,
                    None,
                    known,
                )
                .await?;
                self.items.add(ItemState::Done, 1);
                Ok(Decision::Skip(Some(value)))
            }
            Ok(_) => {
                let ev = self
                    .event("item.verified")
                    .step(path, step.name.as_deref())
                    .outcome("not_found")
                    .detail(json!({
                        "index": index, "checkpoint": key, "found": false,
                        "started_by_run": row.run_id,
                    }));
                self.record_step(step, path, ev).await?;
                Ok(Decision::Run { after_doubt: true })
            }
        }
    }

    /// `item.started` and the move to `in_progress`, one transaction; with
    /// `then` (the first `step.started` of the item's steps) in it too.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn item_started(
        &mut self,
        step: &Step,
        path: &str,
        key: &str,
        after_doubt: bool,
        event: NewEvent,
        then: Option<NewEvent>,
        known: &mut BTreeMap<String, ItemRow>,
    ) -> Result<(), StepFailure> {
        let expected: &[ItemState] = if after_doubt {
            &[ItemState::InProgress]
        } else {
            START_FROM
        };
        let mut change = ItemChange::to(ItemState::InProgress, &self.run.id);
        change.new_attempt = true;
        self.transition(step, path, key, expected, change, event, then, known)
            .await
    }

    /// `item.finished` of an item that failed and its end state
    /// (`business_exception` / `system_exception`), one transaction. A
    /// cancelled item stays `in_progress`: what it did is unknown, so the
    /// next run treats it as in doubt.
    pub(crate) async fn item_failed(
        &mut self,
        step: &Step,
        path: &str,
        key: &str,
        failure: &StepFailure,
        event: NewEvent,
        known: &mut BTreeMap<String, ItemRow>,
    ) -> Result<(), StepFailure> {
        if failure.cancelled {
            return self.record_step(step, path, event).await;
        }
        let state = if failure.kind == ErrorKind::Business {
            ItemState::BusinessException
        } else {
            ItemState::SystemException
        };
        let mut change = ItemChange::to(state, &self.run.id);
        change.error = Some(failure.message.clone());
        change.error_kind = Some(failure.kind.as_str().into());
        self.commit_end(step, ItemEnd::new(path, key, change, event), known)
            .await
    }

    /// A `once: true` step that already succeeded in this lineage is skipped
    /// (`step.skipped`) and its saved value restored. A value that was too
    /// big to keep (an omitted-value marker) is re-derived by running the
    /// step again when it is a read ([`keep::REDERIVABLE`]); for any other
    /// step the resume fails here, saying why.
    pub(crate) async fn skip_once(&mut self, step: &Step, path: &str) -> Result<Once, StepFailure> {
        let id = self.item_id(step, "");
        let row = self.recorder.store().get_item(&id).await.map_err(|e| {
            StepFailure::new(
                step,
                path,
                format!("cannot read whether this `once` step already ran: {e}"),
                ErrorKind::System,
            )
        })?;
        let Some(row) = row.filter(|r| r.state == ItemState::Done) else {
            return Ok(Once::Run);
        };
        let value = row.output.clone().unwrap_or(Value::Null);
        if let Some(m) = keep::omitted(&value) {
            let action = step.action_name().unwrap_or("a block");
            if keep::REDERIVABLE.contains(&action) {
                return Ok(Once::Rederive {
                    by_run: row.run_id.clone(),
                    kept: m,
                });
            }
            return Err(StepFailure::new(
                step,
                path,
                format!(
                    "this `once: true` step already succeeded in run {}, but its result ({} bytes) was over the {} bytes kept per value and was not stored, so it cannot be restored; {action} is not a read that clerk may run again. Make the step's result smaller with `output:` (keep what later steps need)",
                    row.run_id,
                    m.bytes,
                    keep::MAX_KEPT_VALUE
                ),
                ErrorKind::Usage,
            ));
        }
        if let Some(name) = &step.save_as {
            if row.output_masked {
                tracing::warn!(step = %path, "`once` step: its saved value `{name}` was secret-derived and is stored masked; restored as ***");
            }
            self.set_var(name, &value, false);
            self.origins.insert(name.clone(), Exec::origin(step));
        }
        let ev = self
            .event("step.skipped")
            .step(path, step.name.as_deref())
            .outcome("skipped")
            .detail(json!({
                "reason": format!("`once: true` and it already succeeded in run {} of this lineage", row.run_id),
                "step_id": step.id,
                "by_run": row.run_id,
                "restored": step.save_as,
                "output_masked": row.output_masked,
            }));
        let ev = match step.action_name() {
            Some(a) => ev.action(a),
            None => ev,
        };
        self.record_step(step, path, ev).await?;
        self.last_value = Some(crate::template::to_value(&value));
        Ok(Once::Skipped)
    }

    /// A `once` read run again to re-derive a value that was too big to
    /// keep: `step.rederived` says whether it is the same value (same SHA-256
    /// of its JSON text) as the run that first did it; the ledger row stays.
    pub(crate) async fn record_rederived(
        &mut self,
        step: &Step,
        path: &str,
        value: &MValue,
        by_run: &str,
        kept: &keep::Measure,
    ) -> Result<(), StepFailure> {
        let now = keep::measure(value);
        let same = &now == kept;
        if !same {
            tracing::warn!(step = %path, "`once` read re-derived for the resume, and its data changed since run {by_run} ({} → {} bytes)", kept.bytes, now.bytes);
        }
        let ev = self
            .event("step.rederived")
            .step(path, step.name.as_deref())
            .outcome(if same { "ok" } else { "changed" })
            .detail(json!({
                "reason": format!("`once: true` step done in run {by_run}; its result was too big to keep, so the read ran again"),
                "step_id": step.id,
                "by_run": by_run,
                "same": same,
                "sha256": now.sha256,
                "bytes": now.bytes,
                "kept_sha256": kept.sha256,
                "kept_bytes": kept.bytes,
            }));
        let ev = match step.action_name() {
            Some(a) => ev.action(a),
            None => ev,
        };
        self.record_step(step, path, ev).await
    }

    /// Records that a `once: true` step succeeded (ledger row with item key
    /// '', its result as output, masked when secret-derived).
    pub(crate) async fn record_once(
        &mut self,
        step: &Step,
        path: &str,
        value: &MValue,
        masked: bool,
    ) -> Result<(), StepFailure> {
        let (stored, masked) = stored_output(value, masked, &Exec::origin(step));
        let ev = self
            .event("step.once_done")
            .step(path, step.name.as_deref())
            .outcome("ok")
            .detail(json!({ "step_id": step.id, "output_masked": masked }));
        let mut change = ItemChange::to(ItemState::Done, &self.run.id);
        change.output = Some(stored);
        change.output_masked = masked;
        let mut known = BTreeMap::new();
        self.transition(
            step,
            path,
            "",
            &[
                ItemState::Pending,
                ItemState::InProgress,
                ItemState::SystemException,
                ItemState::BusinessException,
                ItemState::Skipped,
            ],
            change,
            ev,
            None,
            &mut known,
        )
        .await
    }
}
