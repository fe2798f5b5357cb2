//! `clerk runs list` and `clerk runs show RUN`: run history and one run's timeline.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{UsageError, Workspace, code, output};
use crate::store::{ItemCounts, ItemState, RunFilter, RunRow, Store};

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Run history, newest first.
    List(ListArgs),
    /// One run's timeline: steps, items, actions, durations, errors, artifacts.
    Show(ShowArgs),
    /// Continue a failed, cancelled, timed-out or interrupted run in the same lineage.
    Resume(super::resume::ResumeArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs of this bot.
    #[arg(long)]
    pub bot: Option<String>,
    /// Only runs with this status (queued, running, succeeded, succeeded_with_exceptions, failed, timed_out, cancelled, interrupted, skipped).
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run id (or a unique prefix of at least 6 characters).
    pub run: String,
    /// Print JSON (the run and all its events).
    #[arg(long)]
    pub json: bool,
}

pub async fn runs(ws: &Workspace, cmd: RunsCommand) -> anyhow::Result<u8> {
    if let RunsCommand::Resume(a) = cmd {
        return super::resume::resume(ws, a).await;
    }
    let store = ws.store().await?;
    match cmd {
        RunsCommand::List(a) => {
            let rows = store
                .list_runs(&RunFilter {
                    bot: a.bot,
                    status: a.status,
                    limit: Some(a.limit),
                })
                .await?;
            let mut counts = Vec::with_capacity(rows.len());
            for r in &rows {
                counts.push(store.item_counts_for_run(&r.id).await?);
            }
            if a.json {
                let list: Vec<Value> = rows
                    .iter()
                    .zip(&counts)
                    .map(|(r, c)| with_items(run_json(r), r, c))
                    .collect();
                output::out_json(&Value::Array(list));
            } else if rows.is_empty() {
                output::out("no runs yet");
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .zip(&counts)
                    .map(|(r, c)| {
                        vec![
                            r.id.clone(),
                            r.bot.clone().unwrap_or_else(|| "-".into()),
                            r.playbook.clone(),
                            r.status.clone(),
                            r.started_at
                                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                                .unwrap_or_else(|| "-".into()),
                            duration(r),
                            items_summary(c),
                        ]
                    })
                    .collect();
                output::out(&output::table(
                    &[
                        "ID",
                        "BOT",
                        "PLAYBOOK",
                        "STATUS",
                        "STARTED (UTC)",
                        "DURATION",
                        "ITEMS",
                    ],
                    &table,
                ));
            }
            Ok(code::OK)
        }
        RunsCommand::Show(a) => {
            let Some(run) = store.get_run(&a.run).await? else {
                return Err(UsageError(format!("no run `{}` in this store", a.run)).into());
            };
            let mut events = Vec::new();
            let mut after = 0;
            loop {
                let page = store.events(Some(&run.id), after, 1000).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                events.extend(page);
            }
            let counts = store.item_counts_for_run(&run.id).await?;
            if a.json {
                let mut v = with_items(run_json(&run), &run, &counts);
                v["events"] = serde_json::to_value(&events)?;
                output::out_json(&v);
                return Ok(code::OK);
            }
            let continued_by = continued_by(&store, &run).await?;
            output::out(&timeline(&run, &events, &counts, continued_by.as_deref()));
            Ok(code::OK)
        }
        RunsCommand::Resume(_) => Ok(code::OK),
    }
}

fn duration(r: &RunRow) -> String {
    match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => output::duration_ms((f - s).num_milliseconds()),
        (Some(_), None) => "running".into(),
        _ => "-".into(),
    }
}

pub fn run_json(r: &RunRow) -> Value {
    let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    json!({
        "id": r.id,
        "bot": r.bot,
        "playbook": r.playbook,
        "status": r.status,
        "scheduled_for": ts(r.scheduled_for),
        "queued_at": ts(Some(r.queued_at)),
        "started_at": ts(r.started_at),
        "finished_at": ts(r.finished_at),
        "actor": r.actor,
        "attempt": r.attempt,
        "inputs": r.inputs,
        "error": r.error,
        "failed_step": r.failed_step,
        "vars": r.vars,
        "lineage": r.lineage,
        "resumed_from": r.resumed_from,
        "worker": r.worker,
    })
}

/// Adds the run's lineage, what it continues and its item counts per state.
fn with_items(mut v: Value, r: &RunRow, counts: &ItemCounts) -> Value {
    v["lineage"] = json!(r.lineage);
    v["resumed_from"] = json!(r.resumed_from);
    v["items"] = serde_json::to_value(counts).unwrap_or(Value::Null);
    v
}

/// `36 done, 4 business_exception` (states with items only); `-` for none.
pub fn items_summary(c: &ItemCounts) -> String {
    let parts: Vec<String> = ItemState::ALL
        .iter()
        .filter(|s| c.get(**s) > 0)
        .map(|s| format!("{} {}", c.get(*s), s.as_str()))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// The run that continues this one, if any (the lineage's next run).
async fn continued_by(store: &Store, run: &RunRow) -> anyhow::Result<Option<String>> {
    Ok(store
        .runs_of_lineage(&run.lineage)
        .await?
        .into_iter()
        .find(|r| r.resumed_from.as_deref() == Some(run.id.as_str()))
        .map(|r| r.id))
}

/// The human timeline of a run, readable by an auditor.
fn timeline(
    run: &RunRow,
    events: &[crate::audit::AuditEvent],
    counts: &ItemCounts,
    continued_by: Option<&str>,
) -> String {
    let mut out = Vec::new();
    out.push(format!("run       {}", run.id));
    out.push(format!("playbook  {}", run.playbook));
    if let Some(b) = &run.bot {
        out.push(format!("bot       {b}"));
    }
    out.push(format!("status    {}", run.status));
    out.push(format!("lineage   {}", run.lineage));
    if let Some(prev) = &run.resumed_from {
        out.push(format!("resumes   {prev}"));
    }
    if let Some(next) = continued_by {
        out.push(format!("resumed by {next}"));
    }
    if counts.total() > 0 {
        out.push(format!("items     {}", items_summary(counts)));
    }
    out.push(format!("actor     {}", run.actor));
    if let Some(s) = run.started_at {
        out.push(format!(
            "started   {}",
            s.format("%Y-%m-%d %H:%M:%S%.3f UTC")
        ));
    }
    if run.started_at.is_some() {
        out.push(format!("duration  {}", duration(run)));
    }
    if let Some(e) = &run.error {
        out.push(format!(
            "error     {}{}",
            run.failed_step
                .as_ref()
                .map(|s| format!("at step {s}: "))
                .unwrap_or_default(),
            e
        ));
    }
    out.push(String::new());
    let start = run.started_at.unwrap_or(run.queued_at);
    let mut items_ok = 0;
    // An error travels up from the action through its step, item and loop;
    // the report says it once, where it happened.
    let mut last_error: Option<&str> = None;
    let mut items_failed = 0;
    for e in events {
        let offset = (e.at - start).num_milliseconds().max(0);
        let step = e.step.clone().unwrap_or_default();
        let depth = step.matches('/').count();
        let indent = "  ".repeat(depth);
        let name = e
            .step_name
            .as_ref()
            .map(|n| format!(" \"{n}\""))
            .unwrap_or_default();
        let outcome = e.outcome.clone().unwrap_or_default();
        let dur = e.duration_ms.map(output::duration_ms).unwrap_or_default();
        let line = match e.kind.as_str() {
            "action" => {
                let mut s = format!(
                    "{indent}{step}{name} {} {}",
                    e.action.clone().unwrap_or_default(),
                    e.target
                        .clone()
                        .map(|t| format!("→ {t}"))
                        .unwrap_or_default()
                );
                let args = e.detail.get("args");
                if let Some(v) = args
                    .and_then(|a| a.get("value"))
                    .or_else(|| args.and_then(|a| a.get("option")))
                {
                    s.push_str(&format!(" = {}", short(v)));
                }
                if let Some(a) = e.detail.get("attempt").and_then(Value::as_i64)
                    && a > 1
                {
                    s.push_str(&format!(" (attempt {a})"));
                }
                format!("{s} [{outcome} {dur}]")
            }
            "item.started" => {
                let cp = e
                    .detail
                    .get("checkpoint")
                    .filter(|v| !v.is_null())
                    .map(|v| format!(" {}", short(v)))
                    .unwrap_or_default();
                format!("{indent}{step}{name} item{cp}")
            }
            "item.finished" => {
                if outcome == "ok" {
                    items_ok += 1;
                } else {
                    items_failed += 1;
                }
                let output = e
                    .detail
                    .get("output")
                    .filter(|v| !v.is_null())
                    .map(|v| format!(" → {}", shortened(v, 240)))
                    .unwrap_or_default();
                format!("{indent}{step} item {outcome} {dur}{output}")
            }
            "step.started" => {
                let attempt = e.detail.get("attempt").and_then(Value::as_i64).unwrap_or(1);
                if attempt > 1 {
                    format!("{indent}{step}{name} started (attempt {attempt})")
                } else {
                    format!("{indent}{step}{name} started")
                }
            }
            "step.finished" => format!("{indent}{step}{name} {outcome} {dur}"),
            // Scheduler and notice events (`notify.sent`, `scheduler.skipped`, ...):
            // their target says to whom or why.
            other => match &e.target {
                Some(t) => format!("{indent}{other} → {t} {outcome}"),
                None => format!("{indent}{other} {outcome}"),
            },
        };
        let mut line = format!(
            "{:>9}  {}",
            format!("+{}", output::duration_ms(offset)),
            line.trim_end()
        );
        if let Some(err) = &e.error {
            if e.kind == "action" || last_error != Some(err.as_str()) {
                line.push_str(&format!("\n{:>9}  {indent}  error: {err}", ""));
            }
            last_error = Some(err.as_str());
        }
        if let Some(list) = e.detail.get("artifacts").and_then(Value::as_array) {
            for a in list {
                if let Some(p) = a.get("path").and_then(Value::as_str) {
                    line.push_str(&format!("\n{:>9}  {indent}  artifact: {p}", ""));
                }
            }
        }
        out.push(line);
    }
    if items_ok + items_failed > 0 {
        out.push(String::new());
        out.push(format!("items: {items_ok} ok, {items_failed} failed"));
    }
    out.push(format!("events: {}", events.len()));
    out.join("\n")
}

fn short(v: &Value) -> String {
    shortened(v, 80)
}

fn shortened(v: &Value, max: usize) -> String {
    let s = match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}
