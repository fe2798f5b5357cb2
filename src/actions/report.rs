//! `report.write`: writes the HTML report of the current run so far (the
//! same file as `clerk report RUN`), so a playbook can mail it:
//! `save_as: report`, then `attachments: ["{{ report.path }}"]`.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Action, ActionContext, ActionError, ActionResult};
use crate::fsutil::sha256_hex;

/// Arguments of `report.write`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// Where to write the report, relative to the workspace (default:
    /// `.clerk/reports/run-<run id>.html`).
    #[serde(default)]
    pub path: Option<String>,
    /// Embed the screenshots of every step, not only of failed ones.
    #[serde(default)]
    pub all_screenshots: bool,
}

/// Writes the run's report so far.
pub struct Write;

impl Action for Write {
    type Args = WriteArgs;
    const NAME: &'static str = "report.write";
    const SUMMARY: &'static str =
        "Write the HTML report of this run so far (one self-contained file), e.g. to mail it.";
    const EXAMPLE: &'static str =
        "- report.write: { path: out/run-report.html }\n  save_as: report\n";
    const SHORTHAND: Option<&'static str> = Some("path");
    const RESULT: &'static str = "{ path, sha256, size }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let path = match &args.path {
            Some(p) => ctx.resolve(p)?,
            None => crate::report::default_path(&ctx.run.workspace, &ctx.run.id),
        };
        let shown = ctx.display_path(&path);
        ctx.target(shown.clone());
        let request = crate::actions::journal::ReportRequest {
            all_screenshots: args.all_screenshots,
        };
        ctx.journal
            .write_report(&ctx.run.id, &path, &ctx.run.workspace, &request)
            .await
            .map_err(|e| {
                ActionError::permanent(e.context(format!("cannot write the report {shown}")))
            })?;
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            ActionError::permanent(anyhow::anyhow!("cannot read back {shown}: {e}"))
        })?;
        let sha = sha256_hex(&bytes);
        ctx.detail("sha256", sha.clone());
        ctx.detail("size", bytes.len() as u64);
        Ok(json!({ "path": shown, "sha256": sha, "size": bytes.len() }) as Value)
    }
}
