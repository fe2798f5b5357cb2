//! `clerk audit trace KEY`: every audit event of one work item (a loop's
//! `checkpoint` value, e.g. a request id) across all runs and lineages, in
//! chain order, with absolute times in UTC and in the local zone. One indexed
//! query (`audit_events.item_key`), not a scan of the trail.

use std::collections::BTreeMap;

use chrono::{DateTime, Local, Utc};
use clap::Args;
use serde_json::{Value, json};

use super::{Workspace, code, output};
use crate::audit::AuditEvent;

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The item key (the loop's `checkpoint` value).
    pub key: String,
    /// Print JSON (an array of events, each with `lineage` and `at_local`).
    #[arg(long)]
    pub json: bool,
}

pub async fn trace(ws: &Workspace, a: TraceArgs) -> anyhow::Result<u8> {
    let store = ws.store().await?;
    let events = store.events_for_item(&a.key).await?;
    if events.is_empty() {
        if a.json {
            output::out_json(&json!([]));
        } else {
            eprintln!("no audit events for item `{}`", a.key);
        }
        return Ok(code::FAILED);
    }
    // The lineage of every run involved (one lookup per run).
    let mut lineages: BTreeMap<String, String> = BTreeMap::new();
    for e in &events {
        if let Some(run) = &e.run_id
            && !lineages.contains_key(run)
        {
            let lineage = store
                .get_run(run)
                .await?
                .map(|r| r.lineage)
                .unwrap_or_default();
            lineages.insert(run.clone(), lineage);
        }
    }
    let lineage_of = |e: &AuditEvent| {
        e.run_id
            .as_ref()
            .and_then(|r| lineages.get(r))
            .cloned()
            .unwrap_or_default()
    };
    if a.json {
        let list: Vec<Value> = events
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or_else(|_| json!({}));
                v["lineage"] = json!(lineage_of(e));
                v["at_local"] = json!(local_time(&e.at));
                v
            })
            .collect();
        output::out_json(&Value::Array(list));
        return Ok(code::OK);
    }
    let zone = local_zone_name();
    let runs: Vec<&String> = lineages.keys().collect();
    let mut text = format!(
        "item {}: {} events in {} run(s); times in UTC and local ({zone})\n",
        a.key,
        events.len(),
        runs.len()
    );
    let mut last_run: Option<&str> = None;
    for e in &events {
        let run = e.run_id.as_deref().unwrap_or("-");
        if last_run != Some(run) {
            text.push_str(&format!("\nrun {run}  lineage {}\n", lineage_of(e)));
            last_run = Some(run);
        }
        let mut line = format!(
            "  #{:<6} {}  {}  {:<14}",
            e.id,
            e.at.format("%Y-%m-%d %H:%M:%S%.6f UTC"),
            local_time(&e.at),
            e.kind
        );
        if let Some(s) = &e.step {
            line.push_str(&format!(" {s}"));
        }
        if let Some(n) = &e.step_name {
            line.push_str(&format!(" \"{n}\""));
        }
        if let Some(act) = &e.action {
            line.push_str(&format!(" {act}"));
        }
        if let Some(t) = &e.target {
            line.push_str(&format!(" -> {t}"));
        }
        if let Some(o) = &e.outcome {
            line.push_str(&format!(" [{o}]"));
        }
        if let Some(err) = &e.error {
            line.push_str(&format!(" error: {}", err.replace('\n', " ")));
        }
        text.push_str(&line);
        text.push('\n');
    }
    output::out(text.trim_end());
    Ok(code::OK)
}

/// `2026-12-02 00:14:45.123456 +01:00`
fn local_time(at: &DateTime<Utc>) -> String {
    at.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S%.6f %:z")
        .to_string()
}

/// The local time zone's name (`TZ`, /etc/timezone or /etc/localtime), else
/// its current offset.
fn local_zone_name() -> String {
    if let Ok(tz) = std::env::var("TZ")
        && !tz.trim().is_empty()
    {
        return tz.trim().trim_start_matches(':').to_string();
    }
    if let Ok(tz) = std::fs::read_to_string("/etc/timezone")
        && !tz.trim().is_empty()
    {
        return tz.trim().to_string();
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let s = target.to_string_lossy().into_owned();
        if let Some((_, name)) = s.split_once("zoneinfo/") {
            return name.to_string();
        }
    }
    Local::now().format("UTC%:z").to_string()
}
