//! `clerk report RUN [--out FILE]`: one self-contained HTML report of a run.

use std::path::PathBuf;

use clap::Args;

use super::{UsageError, Workspace, code, output};
use crate::report::{self, ReportOptions};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run id (or a unique prefix of at least 6 characters).
    pub run: String,
    /// Where to write the HTML file (default: .clerk/reports/run-ID.html in the workspace).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Embed screenshots and page snapshots of every step, not only of failed ones.
    #[arg(long)]
    pub all_screenshots: bool,
    /// Show absolute times in this IANA time zone (default: this machine's zone).
    #[arg(long, env = "CLERK_REPORT_TZ")]
    pub tz: Option<String>,
}

pub async fn report(ws: &Workspace, a: ReportArgs) -> anyhow::Result<u8> {
    let tz = match &a.tz {
        Some(name) => Some(name.parse::<chrono_tz::Tz>().map_err(|_| {
            UsageError(format!(
                "--tz `{name}` is not an IANA time zone (e.g. Europe/Brussels, UTC)"
            ))
        })?),
        None => None,
    };
    let store = ws.store().await?;
    let Some(run) = store.get_run(&a.run).await? else {
        return Err(UsageError(format!("no run `{}` in this store", a.run)).into());
    };
    let out = match a.out {
        Some(p) if p.is_absolute() => p,
        Some(p) => std::env::current_dir()?.join(p),
        None => report::default_path(&ws.root, &run.id),
    };
    let opts = ReportOptions {
        all_screenshots: a.all_screenshots,
        tz,
        ..Default::default()
    };
    let size = report::write(&store, &run.id, &out, &ws.root, &opts).await?;
    output::out(&format!(
        "report of run {} written to {} ({} KB)",
        run.id,
        out.display(),
        size.div_ceil(1024)
    ));
    Ok(code::OK)
}
