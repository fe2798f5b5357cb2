//! Browser actions (`browser.open`, `browser.fill`, ...): real Chromium driven
//! over WebDriver (fantoccini + chromedriver, started and stopped by clerk).
//!
//! - [`session`]: chromedriver, the per-run session, cleanup without orphans;
//! - [`locator`]: `css` / `xpath` / `label` / `text` / `name` / `id` + `nth`, `within`;
//! - [`resolve`]: auto-wait, one WebDriver round trip per poll;
//! - [`actions`] (element actions) and [`page`] (page-level actions);
//! - [`evidence`]: screenshot + page HTML when a step fails.

pub mod actions;
pub mod evidence;
pub mod locator;
pub mod page;
pub mod resolve;
pub mod session;

use std::fmt;
use std::time::{Duration, Instant};

use fantoccini::Client;
use fantoccini::error::CmdError;
use serde_json::Value;

use super::{ActionContext, ActionError, ActionResult, ErrorKind};

/// A browser step's failure: its message and whether a retry could help.
#[derive(Debug)]
pub struct BrowserError {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BrowserError {}

impl BrowserError {
    pub fn permanent(message: impl Into<String>) -> Self {
        BrowserError {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        BrowserError {
            kind: ErrorKind::Retryable,
            message: message.into(),
        }
    }

    /// A WebDriver failure, explained (an open dialog names its text).
    pub async fn webdriver(client: &Client, e: CmdError) -> Self {
        if e.is_unexpected_alert_open() {
            let text = client.get_alert_text().await.unwrap_or_default();
            return BrowserError::retryable(format!(
                "a dialog is open ('{text}'): answer it with `browser.dialog: {{ accept: true }}` (or false)"
            ));
        }
        if e.is_invalid_session_id() || matches!(e, CmdError::Lost(_) | CmdError::Failed(_)) {
            return BrowserError::retryable(format!(
                "the browser is gone ({}); it may have crashed",
                wd_message(&e)
            ));
        }
        BrowserError::retryable(wd_message(&e))
    }

    pub fn context(self, prefix: impl fmt::Display) -> Self {
        BrowserError {
            kind: self.kind,
            message: format!("{prefix}: {}", self.message),
        }
    }
}

/// A WebDriver error's message without chromedriver's stack trace and session info.
pub fn wd_message(e: &CmdError) -> String {
    let text = match e {
        CmdError::Standard(w) => w.message.to_string(),
        other => other.to_string(),
    };
    let line = text.lines().next().unwrap_or("").trim();
    match line.find("(Session info") {
        Some(i) => line[..i].trim().to_string(),
        None => line.to_string(),
    }
}

/// Maps a WebDriver call's error (for `?` inside actions).
pub async fn wd<T>(client: &Client, r: Result<T, CmdError>) -> Result<T, BrowserError> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => Err(BrowserError::webdriver(client, e).await),
    }
}

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
        Ok(v) => Ok(v),
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
