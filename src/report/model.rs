//! The run report as data: built from the run row, its audit events, the
//! chain verification and the artifact files on disk, ready to be rendered by
//! a template (the `clerk report` file and the dashboard's run page use the
//! same model and the same body template).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::Digest as _;

use crate::audit::{AuditEvent, VerifyReport};
use crate::store::{ItemFilter, ItemRow, RunRow, Store};

/// How much evidence goes into the report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Embed screenshots of every step, not only of failed ones.
    pub all_screenshots: bool,
    /// At most this many bytes of images and page snapshots in total; the
    /// rest are listed with their hashes but not embedded.
    pub max_embedded_bytes: u64,
    /// The zone absolute times are shown in (`None`: this machine's zone).
    pub tz: Option<chrono_tz::Tz>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            all_screenshots: false,
            max_embedded_bytes: 4 * 1024 * 1024,
            tz: None,
        }
    }
}

/// Everything a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: RunView,
    /// Work-item states and how many items are in each, in a fixed order.
    pub counts: Vec<StateCount>,
    pub verify: ChainView,
    pub items: Vec<ItemView>,
    /// Actions outside any work item (sign-in, reading the export, mail...).
    pub run_actions: Vec<ActionView>,
    /// What the report leaves out, one sentence each.
    pub omitted: Vec<String>,
    pub generated_at: String,
    pub events: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: String,
    pub playbook: String,
    pub bot: Option<String>,
    pub actor: String,
    pub lineage: String,
    pub status: String,
    pub attempt: i64,
    pub queued: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub duration: Option<String>,
    pub error: Option<String>,
    pub failed_step: Option<String>,
    pub timezone: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateCount {
    pub state: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainView {
    pub ok: bool,
    pub events: u64,
    pub last_id: Option<i64>,
    pub last_hash: Option<String>,
    pub first_bad: Option<String>,
    /// Set when the chain could not be read at all.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    pub key: String,
    pub index: i64,
    pub path: String,
    pub state: String,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    /// The item's output as (key, text) pairs, for the table.
    pub output: Vec<(String, String)>,
    pub started: Option<String>,
    pub duration: Option<String>,
    pub actions: Vec<ActionView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionView {
    pub id: i64,
    pub at: String,
    pub at_utc: String,
    pub step: String,
    pub name: Option<String>,
    pub action: String,
    pub locator: Option<String>,
    /// What the bot typed or chose (already masked in the audit trail).
    pub typed: Option<String>,
    /// What the bot read back from the application.
    pub read: Option<String>,
    /// A `fail` that asked to be retried (a system exception).
    pub retryable: bool,
    pub duration: Option<String>,
    pub attempt: i64,
    pub outcome: String,
    pub error: Option<String>,
    pub artifacts: Vec<ArtifactView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArtifactView {
    pub path: String,
    /// `image`, `html` or `file`.
    pub kind: String,
    pub expected_sha256: Option<String>,
    pub actual_sha256: Option<String>,
    /// `ok`, `mismatch`, `missing` or `unchecked` (no hash in the event).
    pub check: String,
    pub size: Option<u64>,
    /// `data:` URI (images) or the HTML text (page snapshots) when embedded.
    pub data_uri: Option<String>,
    pub html: Option<String>,
    /// Why it is not embedded, when it is not.
    pub not_embedded: Option<String>,
}

/// The item states, in the order the report counts them.
pub const ITEM_STATES: [&str; 7] = [
    "done",
    "business_exception",
    "system_exception",
    "in_doubt",
    "in_progress",
    "pending",
    "skipped",
];

/// Reads every event of `run` (paged).
pub async fn run_events(store: &Store, run_id: &str) -> anyhow::Result<Vec<AuditEvent>> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events(Some(run_id), after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        events.extend(page);
    }
    Ok(events)
}

/// Verifies the whole audit chain. The one place the report asks for it, so
/// a richer verify (artifacts, checkpoints) plugs in here.
pub async fn verify_chain(store: &Store) -> ChainView {
    match crate::audit::verify(store).await {
        Ok(r) => chain_view(&r),
        Err(e) => ChainView {
            ok: false,
            events: 0,
            last_id: None,
            last_hash: None,
            first_bad: None,
            error: Some(format!("{e:#}")),
        },
    }
}

fn chain_view(r: &VerifyReport) -> ChainView {
    ChainView {
        ok: r.is_ok(),
        events: r.events,
        last_id: r.last_id,
        last_hash: r.last_hash.clone(),
        first_bad: r.first_bad.as_ref().map(|b| b.reason.clone()),
        error: None,
    }
}

/// The run's lineage: the runs that continue one another share it.
pub fn lineage(run: &RunRow) -> String {
    if !run.lineage.is_empty() {
        return run.lineage.clone();
    }
    match (&run.bot, run.scheduled_for) {
        (Some(bot), Some(at)) => format!(
            "bot:{bot}@{}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        _ => format!("run:{}", run.id),
    }
}

/// Builds the report of `run` from its events and the artifact files under
/// `workspace`.
pub async fn build(
    store: &Store,
    run: &RunRow,
    workspace: &Path,
    opts: &ReportOptions,
) -> anyhow::Result<Report> {
    let events = run_events(store, &run.id).await?;
    let verify = verify_chain(store).await;
    let mut report = assemble(run, &events, verify, workspace, opts);
    let ledger = store
        .list_items(&ItemFilter {
            lineage: Some(run.lineage.clone()),
            items_only: true,
            ..Default::default()
        })
        .await?;
    overlay_ledger(&mut report, run, &ledger);
    Ok(report)
}

/// The work-item ledger is the record of each item's state: where this run
/// made the last change to an item, its state, exception kind and message
/// come from the ledger; where a later run changed it since, the report says so.
fn overlay_ledger(report: &mut Report, run: &RunRow, ledger: &[ItemRow]) {
    let by_key: BTreeMap<&str, &ItemRow> =
        ledger.iter().map(|r| (r.item_key.as_str(), r)).collect();
    for item in &mut report.items {
        let Some(row) = by_key.get(item.key.as_str()) else {
            continue;
        };
        if row.run_id == run.id {
            item.state = row.state.as_str().to_string();
            if row.error.is_some() {
                item.error = row.error.clone();
                item.error_kind = row.error_kind.clone();
            }
        } else if item.state != "skipped" {
            item.error = Some(match &item.error {
                Some(e) => format!("{e} (now {} after run {})", row.state.as_str(), row.run_id),
                None => format!("now {} after run {}", row.state.as_str(), row.run_id),
            });
        }
    }
    report.counts = count_states(&report.items);
}

fn count_states(items: &[ItemView]) -> Vec<StateCount> {
    ITEM_STATES
        .iter()
        .map(|s| StateCount {
            state: (*s).to_string(),
            count: items.iter().filter(|i| i.state == *s).count(),
        })
        .filter(|c| c.count > 0 || c.state == "done")
        .collect()
}

/// Absolute times in the report's zone.
struct Clock(Option<chrono_tz::Tz>);

impl Clock {
    fn fmt(&self, t: DateTime<Utc>) -> String {
        match self.0 {
            Some(tz) => t
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S%.3f %Z (%:z)")
                .to_string(),
            None => t
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S%.3f %:z")
                .to_string(),
        }
    }

    fn name(&self) -> String {
        match self.0 {
            Some(tz) => tz.name().to_string(),
            None => std::env::var("TZ")
                .ok()
                .filter(|z| !z.is_empty())
                .unwrap_or_else(|| {
                    let off = chrono::Local::now().format("%:z").to_string();
                    if off == "+00:00" {
                        "UTC".into()
                    } else {
                        format!("UTC{off}")
                    }
                }),
        }
    }
}

fn ms(d: i64) -> String {
    if d < 1000 {
        format!("{d} ms")
    } else if d < 60_000 {
        format!("{:.1} s", d as f64 / 1000.0)
    } else {
        let s = d / 1000;
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Budget for embedded evidence, shared by the whole report.
struct Budget {
    left: u64,
    skipped: usize,
}

fn assemble(
    run: &RunRow,
    events: &[AuditEvent],
    verify: ChainView,
    workspace: &Path,
    opts: &ReportOptions,
) -> Report {
    let clock = Clock(opts.tz);
    let mut budget = Budget {
        left: opts.max_embedded_bytes,
        skipped: 0,
    };
    let mut not_failed_shots = 0usize;
    let mut step_events = 0usize;

    // Work items in the order they started; events go to the innermost item
    // whose path prefixes theirs.
    let mut items: Vec<ItemView> = Vec::new();
    let mut by_path: BTreeMap<String, usize> = BTreeMap::new();
    let mut run_actions = Vec::new();
    let run_ended = !matches!(run.status.as_str(), "queued" | "running");

    for e in events {
        let step = e.step.clone().unwrap_or_default();
        match e.kind.as_str() {
            "item.started" => {
                let index = e.detail.get("index").and_then(Value::as_i64).unwrap_or(0);
                let key = e
                    .detail
                    .get("checkpoint")
                    .filter(|v| !v.is_null())
                    .map(text)
                    .unwrap_or_else(|| format!("#{index}"));
                let idx = match by_path.get(&step) {
                    // A resumed or retried item: the latest attempt wins.
                    Some(&i) => i,
                    None => {
                        items.push(ItemView {
                            key,
                            index,
                            path: step.clone(),
                            state: "in_progress".into(),
                            error_kind: None,
                            error: None,
                            output: Vec::new(),
                            started: None,
                            duration: None,
                            actions: Vec::new(),
                        });
                        by_path.insert(step.clone(), items.len() - 1);
                        items.len() - 1
                    }
                };
                items[idx].started = Some(clock.fmt(e.at));
                items[idx].state = "in_progress".into();
            }
            "item.finished" => {
                if let Some(&i) = by_path.get(&step) {
                    let item = &mut items[i];
                    item.duration = e.duration_ms.map(ms);
                    if e.outcome.as_deref() == Some("ok") {
                        item.state = "done".into();
                        item.error = None;
                        item.error_kind = None;
                        if let Some(Value::Object(out)) = e.detail.get("output") {
                            item.output = out.iter().map(|(k, v)| (k.clone(), text(v))).collect();
                        } else if let Some(v) = e.detail.get("output").filter(|v| !v.is_null()) {
                            item.output = vec![("output".into(), text(v))];
                        }
                    } else {
                        let failed_step = e.detail.get("failed_step").and_then(Value::as_str);
                        // Newer events carry the kind; older ones are classified
                        // by the action that failed (`fail`/`assert` = business).
                        let recorded = e.detail.get("kind").and_then(Value::as_str);
                        let business = recorded.map(|k| k == "business").unwrap_or_else(|| {
                            failed_step.is_some_and(|fs| {
                                item.actions.iter().rev().any(|a| {
                                    a.step == fs
                                        && a.outcome == "failed"
                                        && matches!(a.action.as_str(), "fail" | "assert")
                                        && !a.retryable
                                })
                            })
                        });
                        let kind = if business { "business" } else { "system" };
                        item.state = format!("{kind}_exception");
                        item.error_kind = Some(kind.into());
                        item.error = e.error.clone();
                    }
                }
            }
            "item.skipped" | "item.in_doubt" | "item.verified" => {
                // Written on the loop step with the item's index and key.
                let index = e.detail.get("index").and_then(Value::as_i64).unwrap_or(0);
                let key = e
                    .detail
                    .get("checkpoint")
                    .filter(|v| !v.is_null())
                    .map(text)
                    .unwrap_or_else(|| format!("#{index}"));
                let path = format!("{step}/item[{index}]");
                let idx = match by_path.get(&path) {
                    Some(&i) => i,
                    None => {
                        items.push(ItemView {
                            key,
                            index,
                            path: path.clone(),
                            state: String::new(),
                            error_kind: None,
                            error: None,
                            output: Vec::new(),
                            started: Some(clock.fmt(e.at)),
                            duration: None,
                            actions: Vec::new(),
                        });
                        by_path.insert(path, items.len() - 1);
                        items.len() - 1
                    }
                };
                let item = &mut items[idx];
                match e.kind.as_str() {
                    "item.skipped" => {
                        let was = e
                            .detail
                            .get("state")
                            .and_then(Value::as_str)
                            .unwrap_or("done");
                        let by = e
                            .detail
                            .get("by_run")
                            .and_then(Value::as_str)
                            .unwrap_or("?");
                        item.state = if was == "done" {
                            "skipped".into()
                        } else {
                            was.to_string()
                        };
                        item.error = Some(format!("not run again: {was} by run {by}"));
                        item.error_kind = (was != "done").then(|| was.to_string());
                    }
                    "item.in_doubt" => {
                        item.state = "in_doubt".into();
                        item.error_kind = Some("in_doubt".into());
                        item.error = e.error.clone();
                    }
                    _ => {
                        if e.outcome.as_deref() == Some("ok") {
                            item.state = "done".into();
                        }
                    }
                }
            }
            "action" => {
                let view = action_view(
                    e,
                    &clock,
                    workspace,
                    opts,
                    &mut budget,
                    &mut not_failed_shots,
                );
                let fields = field_views(e, &view);
                let list = match owner(&by_path, &step) {
                    Some(i) => &mut items[i].actions,
                    None => &mut run_actions,
                };
                list.push(view);
                list.extend(fields);
            }
            _ => step_events += 1,
        }
    }
    if run_ended {
        for item in items.iter_mut().filter(|i| i.state == "in_progress") {
            // Started but never finished: whether its effect happened is unknown.
            item.state = "in_doubt".into();
        }
    }
    let counts = count_states(&items);

    let mut omitted = vec![format!(
        "{step_events} step, loop and run events (started, finished, skipped conditions) are not listed one by one; `clerk runs show {}` prints them all.",
        run.id
    )];
    if not_failed_shots > 0 {
        omitted.push(format!(
            "{not_failed_shots} screenshot(s) or page snapshot(s) of steps that succeeded are listed by path and SHA-256 but not embedded (`clerk report --all-screenshots` embeds them)."
        ));
    } else {
        omitted.push(
            "Only screenshots and page snapshots of failed steps are embedded; this run has no others."
                .into(),
        );
    }
    if budget.skipped > 0 {
        omitted.push(format!(
            "{} piece(s) of evidence are not embedded because the report's budget of {} MB for embedded files was used up; they are listed by path and SHA-256.",
            budget.skipped,
            opts.max_embedded_bytes / (1024 * 1024)
        ));
    }
    omitted.push("Secrets are shown as *** exactly as the audit trail stores them; the report never holds their values.".into());

    let duration = match (run.started_at, run.finished_at) {
        (Some(s), Some(f)) => Some(ms((f - s).num_milliseconds())),
        _ => None,
    };
    Report {
        run: RunView {
            id: run.id.clone(),
            playbook: run.playbook.clone(),
            bot: run.bot.clone(),
            actor: run.actor.clone(),
            lineage: lineage(run),
            status: run.status.clone(),
            attempt: run.attempt,
            queued: clock.fmt(run.queued_at),
            started: run.started_at.map(|t| clock.fmt(t)),
            finished: run.finished_at.map(|t| clock.fmt(t)),
            duration,
            error: run.error.clone(),
            failed_step: run.failed_step.clone(),
            timezone: clock.name(),
        },
        counts,
        verify,
        items,
        run_actions,
        omitted,
        generated_at: clock.fmt(Utc::now()),
        events: events.len(),
    }
}

/// The innermost item whose path is a prefix of `step`.
fn owner(by_path: &BTreeMap<String, usize>, step: &str) -> Option<usize> {
    let mut s = step;
    loop {
        if let Some(&i) = by_path.get(s) {
            return Some(i);
        }
        let (head, _) = s.rsplit_once('/')?;
        s = head;
    }
}

/// One row per field of a `browser.fill_form` event (its `detail.fields`,
/// values already masked): an auditor reads what was typed where as for
/// single `browser.fill` steps.
fn field_views(e: &AuditEvent, form: &ActionView) -> Vec<ActionView> {
    let Some(fields) = e.detail.get("fields").and_then(Value::as_array) else {
        return Vec::new();
    };
    fields
        .iter()
        .map(|f| ActionView {
            id: form.id,
            at: form.at.clone(),
            at_utc: form.at_utc.clone(),
            step: form.step.clone(),
            name: None,
            action: format!("{} field", form.action),
            // Fields are found by their label, as `browser.fill { label }` is.
            locator: f.get("label").map(|l| format!("label '{}'", text(l))),
            typed: f.get("value").map(text),
            read: None,
            retryable: false,
            duration: None,
            attempt: form.attempt,
            outcome: f
                .get("outcome")
                .map(text)
                .unwrap_or_else(|| form.outcome.clone()),
            error: f.get("error").filter(|v| !v.is_null()).map(text),
            artifacts: Vec::new(),
        })
        .collect()
}

fn action_view(
    e: &AuditEvent,
    clock: &Clock,
    workspace: &Path,
    opts: &ReportOptions,
    budget: &mut Budget,
    not_failed_shots: &mut usize,
) -> ActionView {
    let d = &e.detail;
    let args = d.get("args");
    let action = e.action.clone().unwrap_or_default();
    let typed = args
        .and_then(|a| a.get("value").or_else(|| a.get("option")))
        .map(text);
    // `fail` with `retryable: true` raises a system exception, not a business one.
    let retryable = d.get("retryable").and_then(Value::as_bool) == Some(true);
    let read = ["read", "result", "returned"]
        .iter()
        .find_map(|k| d.get(*k))
        .or_else(|| {
            action
                .contains("read")
                .then(|| d.get("text").or_else(|| d.get("value")))
                .flatten()
        })
        .filter(|v| !v.is_null())
        .map(text);
    let failed = e.outcome.as_deref() == Some("failed");
    let artifacts = d
        .get("artifacts")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|a| {
                    let path = a.get("path").and_then(Value::as_str)?;
                    let sha = a.get("sha256").and_then(Value::as_str);
                    let embed = failed || opts.all_screenshots;
                    if !embed {
                        *not_failed_shots += 1;
                    }
                    Some(artifact_view(path, sha, workspace, embed, budget))
                })
                .collect()
        })
        .unwrap_or_default();
    ActionView {
        id: e.id,
        at: clock.fmt(e.at),
        at_utc: e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        step: e.step.clone().unwrap_or_default(),
        name: e.step_name.clone(),
        locator: d
            .get("locator")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| e.target.clone()),
        action,
        typed,
        read,
        retryable,
        duration: e.duration_ms.map(ms),
        attempt: d.get("attempt").and_then(Value::as_i64).unwrap_or(1),
        outcome: e.outcome.clone().unwrap_or_default(),
        error: e.error.clone(),
        artifacts,
    }
}

fn artifact_view(
    path: &str,
    expected: Option<&str>,
    workspace: &Path,
    embed: bool,
    budget: &mut Budget,
) -> ArtifactView {
    let lower = path.to_ascii_lowercase();
    let kind = if lower.ends_with(".png") || lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        "image"
    } else if lower.ends_with(".html") || lower.ends_with(".htm") {
        "html"
    } else {
        "file"
    };
    let full = if Path::new(path).is_absolute() {
        Path::new(path).to_path_buf()
    } else {
        workspace.join(path)
    };
    let mut view = ArtifactView {
        path: path.to_string(),
        kind: kind.into(),
        expected_sha256: expected.map(str::to_string),
        actual_sha256: None,
        check: "missing".into(),
        size: None,
        data_uri: None,
        html: None,
        not_embedded: None,
    };
    let bytes = match std::fs::read(&full) {
        Ok(b) => b,
        Err(e) => {
            view.not_embedded = Some(format!("cannot read {}: {e}", full.display()));
            return view;
        }
    };
    let actual = hex::encode(sha2::Sha256::digest(&bytes));
    view.check = match expected {
        None => "unchecked",
        Some(x) if x.eq_ignore_ascii_case(&actual) => "ok",
        Some(_) => "mismatch",
    }
    .into();
    view.actual_sha256 = Some(actual);
    view.size = Some(bytes.len() as u64);
    if kind == "file" {
        return view;
    }
    if !embed {
        view.not_embedded = Some("the step succeeded (only failures are embedded)".into());
        return view;
    }
    let cost = bytes.len() as u64 * if kind == "image" { 4 } else { 1 } / 3 + 1;
    if cost > budget.left {
        budget.skipped += 1;
        view.not_embedded = Some("the report's budget for embedded files is used up".into());
        return view;
    }
    budget.left -= cost;
    if kind == "image" {
        use base64::Engine as _;
        let mime = if lower.ends_with(".png") {
            "image/png"
        } else {
            "image/jpeg"
        };
        view.data_uri = Some(format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        ));
    } else {
        view.html = Some(String::from_utf8_lossy(&bytes).into_owned());
    }
    view
}
