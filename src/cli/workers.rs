//! `clerk workers`: the `clerk serve` processes registered in the store —
//! live or stale (judged by the database clock), their labels, heartbeat age
//! and runs in flight.

use clap::Args;

use super::{Workspace, code, output};
use crate::store::workers::LIVE_WITHIN;

#[derive(Debug, Args)]
pub struct WorkersArgs {
    /// Also list workers that stopped cleanly.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn workers(ws: &Workspace, a: WorkersArgs) -> anyhow::Result<u8> {
    let store = ws.store().await?;
    let list: Vec<_> = store
        .workers(LIVE_WITHIN)
        .await?
        .into_iter()
        .filter(|w| a.all || w.stopped_at.is_none())
        .collect();
    if a.json {
        output::out_json(&serde_json::to_value(&list)?);
        return Ok(code::OK);
    }
    if list.is_empty() {
        output::out("no workers registered (start `clerk serve` on this store)");
        return Ok(code::OK);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            vec![
                w.instance_id.clone(),
                w.host.clone(),
                w.pid.to_string(),
                w.version.clone(),
                if w.labels.is_empty() {
                    "-".into()
                } else {
                    w.labels.join(",")
                },
                if w.live {
                    "live"
                } else if w.stopped_at.is_some() {
                    "stopped"
                } else {
                    "stale"
                }
                .into(),
                format!("{:.1}s ago", w.heartbeat_age_s),
                w.runs_in_flight.to_string(),
                w.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ]
        })
        .collect();
    let mut text = output::table(
        &[
            "INSTANCE",
            "HOST",
            "PID",
            "VERSION",
            "LABELS",
            "STATE",
            "HEARTBEAT",
            "RUNS",
            "STARTED",
        ],
        &rows,
    );
    let stale = list
        .iter()
        .filter(|w| !w.live && w.stopped_at.is_none())
        .count();
    if stale > 0 {
        text.push_str(&format!(
            "\n{stale} stale worker(s): no heartbeat for more than {} s (killed, or cut off from the store); their running runs are handed over by the scheduler",
            LIVE_WITHIN.as_secs()
        ));
    }
    output::out(&text);
    Ok(code::OK)
}
