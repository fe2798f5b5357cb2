//! `clerk serve` and `clerk bots ...`: presentation for the scheduler.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Workspace, code};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The folder of bot files.
    #[arg(long, default_value = "bots")]
    pub bots: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BotsCommand {
    /// List bots with their schedule and next firings.
    List,
}

pub async fn serve(_ws: &Workspace, _a: ServeArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`clerk serve` is not available in this build yet")
}

pub async fn bots(_ws: &Workspace, _c: BotsCommand) -> anyhow::Result<u8> {
    let _ = code::OK;
    anyhow::bail!("`clerk bots` is not available in this build yet")
}
