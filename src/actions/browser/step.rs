//! What every browser step does around its work: the auto-wait limit, the
//! audit's value masking, and failure evidence on the way out.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{BrowserError, evidence, session};
use crate::actions::{ActionContext, ActionError, ActionResult};

/// How long an element action waits: the step's `timeout:` argument, else the
/// step's own `timeout` (minus a margin so clerk can still explain and record
/// the failure), else `browser.timeout` from clerk.yaml.
pub fn wait_limit(ctx: &ActionContext<'_>, arg: Option<Duration>) -> Duration {
    let base = arg.unwrap_or(ctx.config.browser.timeout);
    match ctx.timeout {
        Some(step) => {
            let margin = (step / 10).min(Duration::from_secs(1));
            base.min(step.saturating_sub(margin))
        }
        None => base,
    }
}

/// Ends every browser action: records the duration and URL, and on failure
/// saves a screenshot and the page HTML as evidence.
pub async fn finish(
    ctx: &mut ActionContext<'_>,
    started: Instant,
    result: Result<Value, BrowserError>,
) -> ActionResult {
    ctx.detail("duration_ms", started.elapsed().as_millis() as u64);
    match result {
        Ok(v) => {
            session::action_succeeded(ctx).await;
            Ok(v)
        }
        Err(e) => {
            let mut message = e.message;
            if let Some(h) = session::existing(ctx).await {
                let saved = evidence::capture(ctx, &h.client).await;
                if let Some(png) = saved {
                    message.push_str(&format!(" (screenshot: {png})"));
                }
            }
            let error = anyhow::anyhow!(message);
            Err(ActionError {
                kind: e.kind,
                error,
            })
        }
    }
}

/// Masks a typed value for the audit trail: secrets (and derived values the
/// engine registered) become `***`.
pub fn shown_value(ctx: &ActionContext<'_>, value: &str) -> String {
    if ctx.step.sensitive {
        crate::secrets::MASK.to_string()
    } else {
        crate::secrets::redact(value)
    }
}
