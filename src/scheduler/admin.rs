//! What `clerk bots ...` does, apart from presentation: the bot listing
//! (schedule, next firings, pause state, last run, skipped firings), running a
//! bot now, and pausing / resuming (persisted, audited as `admin.*` events by
//! the OS user).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::bot::Bot;
use crate::audit::{NewEvent, Recorder};
use crate::engine::GivenInput;
use crate::store::time::{format_ts, now_micros};
use crate::store::{QueuedRun, SchedBatch, Store};

/// One line of `clerk bots list`.
#[derive(Debug, Clone, Serialize)]
pub struct BotListing {
    pub name: String,
    pub description: Option<String>,
    pub file: String,
    pub playbook: String,
    pub schedule: Vec<ScheduleEntry>,
    pub timezone: String,
    /// The next three firings, in the bot's time zone (RFC 3339 with offset).
    pub next: Vec<String>,
    pub enabled: bool,
    pub paused: bool,
    /// `enabled`, `paused` or `disabled`.
    pub state: String,
    pub last_run: Option<LastRun>,
    /// Firings skipped in the last 24 hours (overlap, pause, missed).
    pub skipped_24h: i64,
    /// Set when firings were skipped lately, or when no live worker can
    /// run the bot: say so, never silently.
    pub warning: Option<String>,
    /// Worker labels the bot needs (`runs_on`).
    pub runs_on: Vec<String>,
    /// Set when no live worker has the bot's `runs_on` labels.
    pub no_worker: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleEntry {
    pub cron: String,
    pub timezone: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub id: String,
    pub status: String,
    #[serde(with = "crate::store::time::serde_ts_opt")]
    pub scheduled_for: Option<DateTime<Utc>>,
    #[serde(with = "crate::store::time::serde_ts_opt")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::store::time::serde_ts_opt")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// The listing of `bots` with their state in `store`.
pub async fn list(
    store: &Store,
    bots: &[Bot],
    workspace: &std::path::Path,
) -> anyhow::Result<Vec<BotListing>> {
    let now = Utc::now();
    let paused = store.paused_bots().await?;
    let summaries = store
        .bot_run_summaries(now - chrono::Duration::hours(24))
        .await?;
    let live = store
        .live_workers(crate::store::workers::LIVE_WITHIN)
        .await?;
    let mut out = Vec::new();
    for b in bots {
        let tz = b.display_tz();
        let no_worker = super::registry::no_worker_reason(&b.runs_on, &live);
        let is_paused = paused.contains(&b.name);
        let summary = summaries.get(&b.name).cloned().unwrap_or_default();
        let warning = (summary.skipped > 0).then(|| {
            format!(
                "{} firing(s) skipped in the last 24 h, the last at {} (see `clerk audit export` for scheduler.skipped events)",
                summary.skipped,
                summary
                    .last_skipped_at
                    .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string())
                    .unwrap_or_default()
            )
        });
        out.push(BotListing {
            name: b.name.clone(),
            description: b.description.clone(),
            file: rel(&b.path, workspace),
            playbook: b.playbook_label(workspace),
            schedule: b
                .schedule
                .iter()
                .map(|s| ScheduleEntry {
                    cron: s.source.clone(),
                    timezone: s.timezone.name().to_string(),
                })
                .collect(),
            timezone: tz.name().to_string(),
            next: b
                .upcoming(now, 3)
                .iter()
                .map(|t| t.with_timezone(&tz).to_rfc3339())
                .collect(),
            enabled: b.enabled,
            paused: is_paused,
            state: if !b.enabled {
                "disabled"
            } else if is_paused {
                "paused"
            } else {
                "enabled"
            }
            .into(),
            last_run: summary.last_run.map(|r| LastRun {
                id: r.id,
                status: r.status,
                scheduled_for: r.scheduled_for,
                started_at: r.started_at,
                finished_at: r.finished_at,
            }),
            skipped_24h: summary.skipped,
            warning: match (warning, &no_worker) {
                (Some(w), Some(n)) => Some(format!("{n}; {w}")),
                (w, n) => w.or_else(|| n.clone()),
            },
            runs_on: b.runs_on.clone(),
            no_worker,
        });
    }
    Ok(out)
}

fn rel(p: &std::path::Path, workspace: &std::path::Path) -> String {
    p.strip_prefix(workspace).unwrap_or(p).display().to_string()
}

/// Enqueues a run of `bot` now (a running `clerk serve` picks it up), with
/// `overrides` on top of the bot's inputs. Returns the run id.
pub async fn run_now(
    recorder: &Recorder,
    bot: &Bot,
    overrides: &[(String, GivenInput)],
    actor: &str,
    workspace: &std::path::Path,
) -> anyhow::Result<Result<String, String>> {
    let inputs = match bot.run_inputs(overrides) {
        Ok(i) => serde_json::Value::Object(i),
        Err(problems) => return Ok(Err(problems)),
    };
    let id = ulid::Ulid::new().to_string();
    let playbook = bot.playbook_label(workspace);
    let due = now_micros();
    let event = NewEvent::new("run.queued", actor).detail(json!({
        "bot": bot.name,
        "playbook": playbook,
        "manual": true,
        "due_at": format_ts(&due),
        "inputs": inputs,
    }));
    let batch = SchedBatch {
        runs: vec![QueuedRun {
            id: id.clone(),
            bot: bot.name.clone(),
            playbook,
            inputs,
            scheduled_for: None,
            due_at: due,
            overlap: bot.overlap.as_str().into(),
            actor: actor.to_string(),
            attempt: 1,
            retry_of: None,
            event: recorder.redact_event(event),
        }],
        ..Default::default()
    };
    recorder.store().write_sched_batch(&batch).await?;
    Ok(Ok(id))
}

/// Pauses or resumes `bot`; false if it already was in that state (nothing
/// is written then).
pub async fn set_paused(
    store: &Store,
    bot: &str,
    paused: bool,
    actor: &str,
) -> anyhow::Result<bool> {
    let states = store.bot_states().await?;
    let was = states.get(bot).is_some_and(|s| s.paused);
    if was == paused {
        return Ok(false);
    }
    let kind = if paused {
        "admin.pause"
    } else {
        "admin.resume"
    };
    let event = NewEvent::new(kind, actor)
        .target(bot)
        .outcome("ok")
        .detail(json!({ "bot": bot, "paused": paused }));
    store.set_bot_paused(bot, paused, event).await?;
    Ok(true)
}
