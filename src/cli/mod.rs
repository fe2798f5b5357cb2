//! The command line: parsing, presentation and exit codes. Nothing else in
//! clerk knows about exit codes or prints to stdout.

mod actions;
mod audit;
mod bots;
mod deploy;
mod history;
mod items;
mod output;
mod report;
mod resume;
mod run;
mod sweep;
mod trace;
mod users;
mod validate;
mod workers;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::audit::Recorder;
use crate::config::Config;
use crate::engine::Engine;
use crate::secrets::Secrets;
use crate::store::Store;

pub use output::print_error;

/// Exit codes (see the CLI contract in the README).
pub mod code {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(
    name = "clerk",
    version,
    about = "A virtual-worker runtime: YAML playbooks, scheduled bots, a hash-chained audit trail.",
    propagate_version = true
)]
pub struct Cli {
    /// The workspace folder (clerk.yaml, .clerk/ state, relative paths).
    #[arg(long, global = true, env = "CLERK_WORKSPACE", default_value = ".")]
    pub workspace: PathBuf,
    /// Database URL (overrides clerk.yaml): sqlite://path or postgres://...
    #[arg(long, global = true, env = "CLERK_DATABASE_URL")]
    pub db: Option<String>,
    /// More log output (-v debug, -vv trace); RUST_LOG wins when set.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check playbooks and bots; print `path:line:col: message` per problem.
    Validate(validate::ValidateArgs),
    /// Run a playbook now.
    Run(run::RunArgs),
    /// Run history.
    #[command(subcommand)]
    Runs(history::RunsCommand),
    /// Verify and export the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// List every action with its arguments.
    Actions(actions::ActionsArgs),
    /// Print the JSON Schema of playbooks (for editor completion).
    Schema,
    /// Run the scheduler and workers until SIGTERM.
    Serve(bots::ServeArgs),
    /// Manage bots.
    #[command(subcommand)]
    Bots(bots::BotsCommand),
    /// Validate the bots folder and store it as a new deployed version (or
    /// deploy an earlier version again with --from-version N).
    Deploy(deploy::DeployArgs),
    /// Work items (loop items with a checkpoint): list them, retry them.
    Items(items::ItemsArgs),
    /// Write a self-contained HTML report of a run.
    Report(report::ReportArgs),
    /// Manage the dashboard's users.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// List the `clerk serve` workers on this store: live or stale, labels, heartbeat, runs.
    Workers(workers::WorkersArgs),
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    code::OK
                }
                _ => code::INVALID,
            });
        }
    };
    let json_logs =
        matches!(&cli.command, Command::Serve(a) if a.log_format == bots::LogFormat::Json);
    init_logging(cli.verbose, cli.quiet, json_logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            print_error(&anyhow::anyhow!("cannot start the async runtime: {e}"));
            return ExitCode::from(code::FAILED);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    match result {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            print_error(&e);
            ExitCode::from(if e.downcast_ref::<UsageError>().is_some() {
                code::INVALID
            } else {
                code::FAILED
            })
        }
    }
}

/// A mistake in how clerk was called (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let ws = Workspace::new(&cli.workspace, cli.db.clone())?;
    sweep::stale_browser_profiles();
    sweep::stale_grid_sessions(&ws.root).await;
    match cli.command {
        Command::Validate(a) => validate::validate(&ws, a),
        Command::Run(a) => run::run(&ws, a).await,
        Command::Runs(c) => history::runs(&ws, c).await,
        Command::Audit(c) => audit::audit(&ws, c).await,
        Command::Actions(a) => actions::list(a),
        Command::Schema => actions::schema(),
        Command::Serve(a) => bots::serve(&ws, a).await,
        Command::Bots(c) => bots::bots(&ws, c).await,
        Command::Deploy(a) => deploy::deploy(&ws, a).await,
        Command::Items(a) => items::items(&ws, a).await,
        Command::Report(a) => report::report(&ws, a).await,
        Command::Users(c) => users::users(&ws, c).await,
        Command::Workers(a) => workers::workers(&ws, a).await,
    }
}

fn init_logging(verbose: u8, quiet: bool, json: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "clerk=info,legacy_portal=info,warn",
        (false, 1) => "clerk=debug,info",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(false)
            .with_writer(|| crate::secrets::RedactingWriter(std::io::stderr()))
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| crate::secrets::RedactingWriter(std::io::stderr()))
        .try_init();
}

/// The workspace folder and what is derived from it.
pub struct Workspace {
    pub root: PathBuf,
    pub config: Config,
}

impl Workspace {
    fn new(root: &Path, db: Option<String>) -> anyhow::Result<Workspace> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()
                .context("cannot determine the current folder")?
                .join(root)
        };
        let root = crate::fsutil::normalize(&root);
        if !root.is_dir() {
            return Err(UsageError(format!("workspace {} is not a folder", root.display())).into());
        }
        let mut config = Config::load(&root).map_err(|e| UsageError(format!("{e:#}")))?;
        if let Some(db) = db {
            config.database = db;
        }
        Ok(Workspace { root, config })
    }

    /// The database URL with a relative SQLite path resolved against the workspace.
    pub fn database_url(&self) -> String {
        let url = &self.config.database;
        for prefix in ["sqlite://", "sqlite:"] {
            if let Some(rest) = url.strip_prefix(prefix) {
                let (path, query) = match rest.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (rest, None),
                };
                if path.starts_with('/') || path == ":memory:" {
                    return url.clone();
                }
                let abs = self.root.join(path);
                return match query {
                    Some(q) => format!("sqlite://{}?{q}", abs.display()),
                    None => format!("sqlite://{}", abs.display()),
                };
            }
        }
        url.clone()
    }

    pub async fn store(&self) -> anyhow::Result<Store> {
        let store = Store::open(&self.database_url()).await?;
        crate::cli::sweep::dead_runs(&store).await;
        Ok(store)
    }

    pub async fn engine(&self) -> anyhow::Result<Engine> {
        let secrets = Secrets::load(&self.root)?;
        let store = self.store().await?;
        let recorder = Recorder::new(store, Arc::new(crate::secrets::redact));
        Ok(Engine {
            config: Arc::new(self.config.clone()),
            recorder,
            secrets: Arc::new(secrets),
        })
    }
}

/// The OS user, for manual runs and admin actions.
pub fn os_user() -> String {
    if let Ok(u) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME"))
        && !u.is_empty()
    {
        return u;
    }
    // No login variables (cron, systemd, containers): look the uid up.
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        });
    let name = uid.as_ref().and_then(|uid| {
        std::fs::read_to_string("/etc/passwd")
            .ok()?
            .lines()
            .find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)? == uid).then(|| name.to_string())
            })
    });
    name.or(uid.map(|u| format!("uid {u}")))
        .unwrap_or_else(|| "unknown".into())
}
