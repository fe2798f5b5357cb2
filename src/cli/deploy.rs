//! `clerk deploy`, `clerk bots history` and `clerk bots diff`: presentation
//! for deployed versions (`scheduler::deployed`).

use std::path::{Path, PathBuf};

use clap::Args;

use super::{UsageError, Workspace, code, os_user, output};
use crate::playbook::Diagnostics;
use crate::scheduler::deployed::{self, DeployError, DeployOutcome};
use crate::scheduler::{Bot, load_bots_dir};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The folder of bot files to deploy (relative to the workspace).
    #[arg(long, env = "CLERK_BOTS", default_value = "bots")]
    pub bots: PathBuf,
    /// Deploy the bots of version N again (a rollback) instead of the folder.
    /// (`--version` is taken: it prints clerk's version.)
    #[arg(long, value_name = "N", conflicts_with = "bots")]
    pub from_version: Option<i64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn folder(ws: &Workspace, dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        ws.root.join(dir)
    }
}

fn print_problems(d: &Diagnostics) {
    for p in &d.0 {
        output::out(&p.to_string());
    }
}

pub async fn deploy(ws: &Workspace, a: DeployArgs) -> anyhow::Result<u8> {
    let engine = ws.engine().await?;
    let actor = os_user();
    let result = match a.from_version {
        Some(v) => deployed::redeploy(&engine.recorder, &ws.root, v, &actor).await,
        None => {
            let dir = folder(ws, &a.bots);
            deployed::deploy(&engine.recorder, &ws.root, &dir, &actor).await
        }
    };
    let outcome = match result {
        Ok(o) => o,
        Err(DeployError::Invalid(d)) => {
            print_problems(&d);
            eprintln!("{} problem(s); nothing was deployed", d.len());
            return Ok(code::INVALID);
        }
        Err(e @ DeployError::NoSuchVersion(_)) => return Err(UsageError(e.to_string()).into()),
        Err(DeployError::Other(e)) => return Err(e),
    };
    if a.json {
        output::out_json(&serde_json::to_value(&outcome)?);
    } else {
        output::out(&describe(&outcome));
    }
    Ok(code::OK)
}

fn describe(o: &DeployOutcome) -> String {
    let mut parts = Vec::new();
    for (what, list) in [
        ("added", &o.added),
        ("changed", &o.changed),
        ("removed", &o.removed),
        ("unchanged", &o.unchanged),
    ] {
        if !list.is_empty() {
            parts.push(format!("{what}: {}", list.join(", ")));
        }
    }
    let list = if parts.is_empty() {
        "no bots".to_string()
    } else {
        parts.join("; ")
    };
    match (o.created, o.rollback_of) {
        (false, _) => format!(
            "version {} already has exactly these bots; nothing deployed",
            o.version
        ),
        (true, Some(old)) => format!(
            "deployed version {} = the bots of version {old} (rollback) — {list}",
            o.version
        ),
        (true, None) => format!("deployed version {} — {list}", o.version),
    }
}

/// The bots the store runs: its newest deployment if there is one (with the
/// version), else the local folder.
pub async fn bots_in_effect(
    ws: &Workspace,
    store: &Store,
    dir: &Path,
) -> anyhow::Result<(Vec<Bot>, Diagnostics, Option<i64>)> {
    if let Some(v) = store.latest_deploy_version().await?
        && let Some(d) = store.deployment(v).await?
    {
        return match deployed::load_deployment(store, &ws.root, &d).await {
            Ok((bots, _)) => Ok((bots, Diagnostics::default(), Some(v))),
            Err(DeployError::Invalid(diags)) => Ok((Vec::new(), diags, Some(v))),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
    }
    let (bots, diags) = load_bots_dir(&folder(ws, dir));
    Ok((bots, diags, None))
}

/// The bot `name` as the store runs it (deployed, else the local folder).
pub async fn find_bot(ws: &Workspace, dir: &Path, name: &str) -> anyhow::Result<Bot> {
    let store = ws.store().await?;
    let (bots, diags, version) = bots_in_effect(ws, &store, dir).await?;
    if let Some(b) = bots.into_iter().find(|b| b.name == name) {
        return Ok(b);
    }
    let place = match version {
        Some(v) => format!("deployed version {v}"),
        None => folder(ws, dir).display().to_string(),
    };
    let mut msg = format!("no valid bot named `{name}` in {place}");
    if !diags.is_empty() {
        msg.push_str(&format!(" ({} problem(s) there)", diags.len()));
    }
    Err(UsageError(msg).into())
}

/// `clerk bots history NAME`: every version that deployed, changed or
/// removed the bot.
pub async fn history(ws: &Workspace, name: &str, json: bool) -> anyhow::Result<u8> {
    let store = ws.store().await?;
    let all = store.deployments().await?;
    let entries = store.deployed_bot_history(name).await?;
    if entries.is_empty() {
        return Err(UsageError(format!("bot `{name}` was never deployed (`clerk deploy`)")).into());
    }
    let mut rows = Vec::new();
    let mut prev: Option<&crate::store::DeployedBot> = None;
    for d in &all {
        let here = entries
            .iter()
            .find(|(v, _)| *v == d.version)
            .map(|(_, b)| b);
        let change = match (prev, here) {
            (None, None) => continue,
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(p), Some(h)) if p == h => "unchanged",
            (Some(p), Some(h)) if p.playbook_sha256 != h.playbook_sha256 => {
                if p.bot_sha256 != h.bot_sha256 {
                    "bot and playbook changed"
                } else {
                    "playbook changed"
                }
            }
            (Some(_), Some(_)) => "bot changed",
        };
        rows.push(serde_json::json!({
            "version": d.version,
            "deployed_at": crate::store::time::format_ts(&d.deployed_at),
            "deployed_by": d.deployed_by,
            "host": d.host,
            "rollback_of": d.rollback_of,
            "change": change,
            "bot_sha256": here.map(|b| b.bot_sha256.clone()),
            "playbook": here.map(|b| b.playbook_path.clone()),
            "playbook_sha256": here.map(|b| b.playbook_sha256.clone()),
        }));
        prev = here;
    }
    if json {
        output::out_json(&serde_json::Value::Array(rows));
        return Ok(code::OK);
    }
    let short = |v: &serde_json::Value| {
        v.as_str()
            .map(|s| s.chars().take(12).collect::<String>())
            .unwrap_or_else(|| "-".into())
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut change = r["change"].as_str().unwrap_or("").to_string();
            if let Some(old) = r["rollback_of"].as_i64() {
                change.push_str(&format!(" (rollback to {old})"));
            }
            vec![
                r["version"].to_string(),
                r["deployed_at"]
                    .as_str()
                    .map(|t| t.chars().take(19).collect::<String>().replace('T', " "))
                    .unwrap_or_default(),
                format!(
                    "{}@{}",
                    r["deployed_by"].as_str().unwrap_or(""),
                    r["host"].as_str().unwrap_or("")
                ),
                short(&r["bot_sha256"]),
                r["playbook"].as_str().unwrap_or("-").to_string(),
                short(&r["playbook_sha256"]),
                change,
            ]
        })
        .collect();
    output::out(&output::table(
        &[
            "VERSION",
            "DEPLOYED (UTC)",
            "BY",
            "BOT SHA-256",
            "PLAYBOOK",
            "PLAYBOOK SHA-256",
            "CHANGE",
        ],
        &table,
    ));
    Ok(code::OK)
}

/// `clerk bots diff NAME V1 V2`: a unified diff of the bot file and of its
/// playbook between two versions.
pub async fn diff(ws: &Workspace, name: &str, v1: i64, v2: i64) -> anyhow::Result<u8> {
    let store = ws.store().await?;
    let mut sides = Vec::new();
    for v in [v1, v2] {
        let d = store
            .deployment(v)
            .await?
            .ok_or_else(|| UsageError(format!("no deployed version {v} in the store")))?;
        let entry = d.bots.into_iter().find(|b| b.bot == name);
        let (bot_text, pb_text, pb_path) = match &entry {
            Some(b) => (
                store
                    .deployed_content(&b.bot_sha256)
                    .await?
                    .unwrap_or_default(),
                store
                    .deployed_content(&b.playbook_sha256)
                    .await?
                    .unwrap_or_default(),
                b.playbook_path.clone(),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        sides.push((v, entry, bot_text, pb_text, pb_path));
    }
    if sides.iter().all(|s| s.1.is_none()) {
        return Err(UsageError(format!(
            "bot `{name}` is in neither version {v1} nor version {v2}"
        ))
        .into());
    }
    let label = |v: i64, present: bool, path: &str| {
        if present {
            format!("v{v}/{path}")
        } else {
            format!("v{v} (bot {name} not deployed)")
        }
    };
    let (a, b) = (&sides[0], &sides[1]);
    let bot_path = |s: &(
        i64,
        Option<crate::store::DeployedBot>,
        String,
        String,
        String,
    )| { s.1.as_ref().map(|e| e.bot_path.clone()).unwrap_or_default() };
    let mut text = crate::textdiff::unified(
        &a.2,
        &b.2,
        &label(a.0, a.1.is_some(), &bot_path(a)),
        &label(b.0, b.1.is_some(), &bot_path(b)),
    );
    text.push_str(&crate::textdiff::unified(
        &a.3,
        &b.3,
        &label(a.0, a.1.is_some(), &a.4),
        &label(b.0, b.1.is_some(), &b.4),
    ));
    if text.is_empty() {
        output::out(&format!(
            "bot {name}: versions {v1} and {v2} are the same (bot file and playbook)"
        ));
    } else {
        output::write_stdout(&crate::secrets::redact(&text));
    }
    Ok(code::OK)
}

/// For `clerk runs resume`: the playbook of the run's bot in the newest
/// deployed version (never a local file that may differ), or `None` (no
/// deployment, or not a bot's run) to use the recorded path as before.
pub async fn deployed_playbook_for_run(
    ws: &Workspace,
    store: &Store,
    run: &str,
) -> anyhow::Result<Option<std::sync::Arc<crate::playbook::Playbook>>> {
    let Some(bot) = store.get_run(run).await?.and_then(|r| r.bot) else {
        return Ok(None);
    };
    let Some(v) = store.latest_deploy_version().await? else {
        return Ok(None);
    };
    let Some(entry) = store
        .deployment(v)
        .await?
        .and_then(|d| d.bots.into_iter().find(|b| b.bot == bot))
    else {
        return Err(UsageError(format!(
            "cannot resume: bot `{bot}` is not in deployed version {v} (deploy it again to resume its runs)"
        ))
        .into());
    };
    let text = store
        .deployed_content(&entry.playbook_sha256)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("the deployed playbook of bot {bot} is missing from the store")
        })?;
    let path = crate::fsutil::normalize(&ws.root.join(&entry.playbook_path));
    match crate::engine::load_playbook_str(&text, &path) {
        Ok(p) => Ok(Some(std::sync::Arc::new(p))),
        Err(d) => {
            print_problems(&d);
            Err(UsageError(format!(
                "the playbook of bot {bot} in deployed version {v} no longer validates"
            ))
            .into())
        }
    }
}
