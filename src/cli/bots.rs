//! `clerk serve` and `clerk bots ...`: presentation for the scheduler.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{UsageError, Workspace, code, os_user, output};
use crate::engine::GivenInput;
use crate::scheduler::admin;
use crate::scheduler::deployed::{Source, StartError};
use crate::scheduler::serve::{ServeOptions, install_signals, serve as run_serve};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The folder of bot files (relative to the workspace).
    #[arg(long, env = "CLERK_BOTS", default_value = "bots")]
    pub bots: PathBuf,
    /// After SIGTERM/SIGINT, how long running runs may finish before they are
    /// cancelled and marked interrupted.
    #[arg(long, env = "CLERK_GRACE", default_value = "60s", value_parser = parse_grace)]
    pub grace: Duration,
    /// Serve the web dashboard, /healthz and /metrics on this address (e.g.
    /// 127.0.0.1:8480); off unless given. Needs at least one user (`clerk users add`).
    #[arg(long, env = "CLERK_HTTP", value_name = "ADDR")]
    pub http: Option<String>,
    /// This worker's labels, comma-separated (`--labels vpn,grid-eu`): it
    /// also claims runs of bots whose `runs_on` needs them.
    #[arg(
        long,
        env = "CLERK_LABELS",
        value_delimiter = ',',
        value_name = "LABELS"
    )]
    pub labels: Vec<String>,
    /// Log lines as text or as one JSON object per line (for log shipping).
    #[arg(long, env = "CLERK_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The host name shown for this process (logs, `clerk workers`) instead
    /// of the machine's; e.g. several serves on one machine. Identity in the
    /// store is a random instance id per process, never the host name.
    #[arg(long, env = "CLERK_HOSTNAME", value_name = "NAME")]
    pub hostname: Option<String>,
}

/// How `clerk serve` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct BotsDir {
    /// The folder of bot files (relative to the workspace).
    #[arg(long, env = "CLERK_BOTS", default_value = "bots")]
    pub bots: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BotsCommand {
    /// List bots: schedule, time zone, next firings, state, last run.
    List {
        #[command(flatten)]
        dir: BotsDir,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enqueue a run of a bot now; a running `clerk serve` picks it up.
    Run {
        /// The bot's name.
        name: String,
        /// An input value, `key=value` (repeatable), on top of the bot's inputs.
        #[arg(short, long = "input", value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        /// Follow the run to its end; exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        dir: BotsDir,
    },
    /// Pause a bot: it does not fire until resumed (persisted in the store).
    Pause {
        name: String,
        #[command(flatten)]
        dir: BotsDir,
    },
    /// Resume a paused bot.
    Resume {
        name: String,
        #[command(flatten)]
        dir: BotsDir,
    },
    /// The deployed versions of a bot: when, by whom, its SHA-256s, what changed.
    History {
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A unified diff of a bot file and its playbook between two deployed versions.
    Diff { name: String, v1: i64, v2: i64 },
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    crate::playbook::parse_duration(s)
}

fn bots_dir(ws: &Workspace, dir: &std::path::Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        ws.root.join(dir)
    }
}

/// Prints every problem of the bots serve would run.
fn print_problems(dir: &std::path::Path, diags: &crate::playbook::Diagnostics) {
    for d in &diags.0 {
        output::out(&d.to_string());
    }
    eprintln!(
        "{} problem(s) in the bots of {}",
        diags.len(),
        dir.display()
    );
}

pub async fn serve(ws: &Workspace, a: ServeArgs) -> anyhow::Result<u8> {
    let signals = install_signals();
    let labels = crate::store::workers::normalize_labels(&a.labels)
        .map_err(|e| UsageError(format!("clerk serve not started: --labels: {e}")))?;
    if let Some(h) = &a.hostname {
        crate::process::set_hostname(h);
    }
    let engine = ws.engine().await?;
    // The store's deployed version if there is one, else the folder.
    let folder = bots_dir(ws, &a.bots);
    let (deployed, bots) = match Source::open(engine.recorder.clone(), &ws.root, &folder).await {
        Ok(x) => x,
        Err(StartError::Invalid(diags)) => {
            print_problems(&folder, &diags);
            eprintln!("clerk serve not started: fix the problems above first");
            return Ok(code::INVALID);
        }
        Err(StartError::Other(e)) => return Err(e),
    };
    let dashboard = match &a.http {
        Some(addr) => Some(
            crate::server::start(
                engine.recorder.store().clone(),
                engine.recorder.clone(),
                crate::server::HttpOptions {
                    addr: addr.clone(),
                    workspace: ws.root.clone(),
                    bots_dir: bots_dir(ws, &a.bots),
                },
                crate::server::process_prefix(),
            )
            .await
            .map_err(|e| UsageError(format!("clerk serve not started: {e:#}")))?,
        ),
        None => None,
    };
    let result = run_serve(
        engine,
        ServeOptions {
            workspace: ws.root.clone(),
            bots_dir: bots_dir(ws, &a.bots),
            grace: a.grace,
            deployed,
            labels,
        },
        bots,
        signals,
    )
    .await;
    if let Some(d) = dashboard {
        d.stop().await;
    }
    result?;
    Ok(code::OK)
}

pub async fn bots(ws: &Workspace, c: BotsCommand) -> anyhow::Result<u8> {
    match c {
        BotsCommand::List { dir, json } => {
            let folder = bots_dir(ws, &dir.bots);
            let store = ws.store().await?;
            let (bots, diags, _) = super::deploy::bots_in_effect(ws, &store, &dir.bots).await?;
            let list = admin::list(&store, &bots, &ws.root).await?;
            let triggers = crate::scheduler::trigger::describe(&store, &bots).await;
            if json {
                let mut v = serde_json::to_value(&list)?;
                crate::scheduler::trigger::annotate(&mut v, &triggers);
                output::out_json(&v);
            } else if list.is_empty() {
                output::out(&format!("no bots in {}", folder.display()));
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|b| {
                        vec![
                            b.name.clone(),
                            crate::scheduler::trigger::schedule_cell(
                                &b.name,
                                b.schedule
                                    .iter()
                                    .map(|s| s.cron.clone())
                                    .collect::<Vec<_>>()
                                    .join(" | "),
                                &triggers,
                            ),
                            b.timezone.clone(),
                            b.next
                                .iter()
                                .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                .map(|t| t.format("%m-%d %H:%M:%S").to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                            b.state.clone(),
                            b.last_run
                                .as_ref()
                                .map(|r| format!("{} {}", r.status, &r.id))
                                .unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                let mut text = output::table(
                    &["BOT", "SCHEDULE", "TIME ZONE", "NEXT", "STATE", "LAST RUN"],
                    &rows,
                );
                text.push_str(&crate::scheduler::trigger::lines(&triggers));
                for b in &list {
                    if let Some(w) = &b.warning {
                        text.push_str(&format!("\nwarning: bot {}: {w}", b.name));
                    }
                }
                output::out(&text);
            }
            if diags.is_empty() {
                Ok(code::OK)
            } else {
                for d in &diags.0 {
                    eprintln!("{d}");
                }
                Ok(code::INVALID)
            }
        }
        BotsCommand::Run {
            name,
            inputs,
            wait,
            dir,
        } => {
            let bot = super::deploy::find_bot(ws, &dir.bots, &name).await?;
            let mut given = Vec::new();
            for raw in &inputs {
                let Some((k, v)) = raw.split_once('=') else {
                    return Err(
                        UsageError(format!("--input `{raw}` must look like key=value")).into(),
                    );
                };
                given.push((k.trim().to_string(), GivenInput::Text(v.to_string())));
            }
            let engine = ws.engine().await?;
            let id =
                match admin::run_now(&engine.recorder, &bot, &given, &os_user(), &ws.root).await? {
                    Ok(id) => id,
                    Err(problems) => return Err(UsageError(problems).into()),
                };
            output::out(&format!("run {id} queued (bot {name})"));
            if !wait {
                return Ok(code::OK);
            }
            let store = engine.recorder.store().clone();
            let started = std::time::Instant::now();
            let mut hinted = false;
            loop {
                let run = store.get_run(&id).await?;
                if let Some(r) = &run
                    && !matches!(r.status.as_str(), "queued" | "running")
                {
                    output::out(&format!("run {id} {}", r.status));
                    if let Some(e) = &r.error {
                        output::out(&format!("  error: {e}"));
                    }
                    // Same rule as `clerk run`: item exceptions do not fail the job.
                    return Ok(
                        if matches!(r.status.as_str(), "succeeded" | "succeeded_with_exceptions") {
                            code::OK
                        } else {
                            code::FAILED
                        },
                    );
                }
                if started.elapsed() > Duration::from_secs(3)
                    && run.as_ref().is_some_and(|r| r.status == "queued")
                    && !worker_alive(&store).await?
                {
                    eprintln!(
                        "run {id} stays queued: no `clerk serve` is running on this store (no live worker \
                         lease for {} s); start `clerk serve` on store {} and it will run, or follow it \
                         with `clerk runs show {id}`",
                        started.elapsed().as_secs(),
                        store.url()
                    );
                    return Ok(code::FAILED);
                }
                if !hinted
                    && started.elapsed() > Duration::from_secs(10)
                    && run.as_ref().is_some_and(|r| r.status == "queued")
                {
                    eprintln!("still queued: is `clerk serve` running on this store?");
                    hinted = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        BotsCommand::History { name, json } => super::deploy::history(ws, &name, json).await,
        BotsCommand::Diff { name, v1, v2 } => super::deploy::diff(ws, &name, v1, v2).await,
        BotsCommand::Pause { name, dir } => {
            super::deploy::find_bot(ws, &dir.bots, &name).await?;
            let store = ws.store().await?;
            if admin::set_paused(&store, &name, true, &os_user()).await? {
                output::out(&format!("bot {name} paused"));
            } else {
                output::out(&format!("bot {name} was already paused"));
            }
            Ok(code::OK)
        }
        BotsCommand::Resume { name, dir } => {
            super::deploy::find_bot(ws, &dir.bots, &name).await?;
            let store = ws.store().await?;
            if admin::set_paused(&store, &name, false, &os_user()).await? {
                output::out(&format!("bot {name} resumed"));
            } else {
                output::out(&format!("bot {name} was not paused"));
            }
            Ok(code::OK)
        }
    }
}

/// True if some `clerk serve` holds a live worker lease on this store.
async fn worker_alive(store: &crate::store::Store) -> anyhow::Result<bool> {
    let now = chrono::Utc::now();
    Ok(store
        .leases("worker:")
        .await?
        .iter()
        .any(|l| l.expires_at > now))
}
