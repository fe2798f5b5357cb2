//! The error of a browser step: a message a person can act on (locator,
//! what was found instead, page URL) and whether a retry could help.

use std::fmt;

use fantoccini::Client;
use fantoccini::error::CmdError;

use crate::actions::ErrorKind;

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
            kind: ErrorKind::Usage,
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        BrowserError {
            kind: ErrorKind::System,
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
