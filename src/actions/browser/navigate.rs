//! Navigation waits and HTTP errors: after a click, a key press or an
//! answered dialog, clerk knows whether a new document started loading,
//! waits for it, and reads the HTTP status of its response.
//!
//! How: every document gets a random token and a flag set on
//! `beforeunload` (both installed with the resolver, see `resolve.js`). After
//! the action clerk polls one small script: a different token means a new
//! document; the flag without a new token means one is on its way. The
//! status comes from the document's own Navigation Timing entry
//! (`performance.getEntriesByType('navigation')[0].responseStatus`, Chromium
//! 109+), which belongs to the document itself — so it is right inside
//! frames and never mixes up requests made by scripts.

use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::BrowserError;
use super::session::Handle;

/// Whether a click / key press / dialog waits for the page it loads.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WaitMode {
    /// Wait for the new document when the action started a navigation
    /// (noticed within ~150 ms); otherwise go on at once. The default.
    #[default]
    Auto,
    /// The action must load a new document; fail if none arrives in time.
    Navigation,
    /// Do not wait (pages that navigate much later, single-page apps).
    None,
}

/// What a 5xx answer to a navigation clerk caused does to the step.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HttpErrors {
    /// Fail the step as a system error (retried by `retry:`). The default.
    #[default]
    Fail,
    /// Go on; the page is what it is.
    Ignore,
}

/// The run's browser settings (`browser.settings`).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// CSS selectors of the page's error messages (None: the built-in set).
    pub error_patterns: Option<String>,
    pub http_errors: HttpErrors,
    pub wait: WaitMode,
}

/// The state of the page before an action that may navigate.
#[derive(Debug, Clone)]
pub struct Before {
    /// The document's token (None: unknown).
    pub doc: Option<String>,
    /// `POST` when the action submits a form that posts, else `GET`.
    pub method: String,
    pub mode: WaitMode,
    pub http_errors: HttpErrors,
    /// How long to wait for the new document.
    pub limit: Duration,
    /// The window the new document loads into, as frame indexes from the
    /// top (a link may target another frame, or the whole window).
    pub target: Vec<u64>,
}

impl Before {
    /// From the resolver's `find` answer for the element about to be clicked.
    pub fn from_answer(answer: &Value, mode: WaitMode, http: HttpErrors, limit: Duration) -> Self {
        let method = answer
            .get("form")
            .and_then(|f| f.get("method"))
            .and_then(Value::as_str)
            .filter(|m| m.eq_ignore_ascii_case("post"))
            .map(|_| "POST")
            .unwrap_or("GET");
        Before {
            doc: answer
                .get("doc")
                .and_then(Value::as_str)
                .map(str::to_string),
            method: method.to_string(),
            mode,
            http_errors: http,
            limit,
            target: answer
                .get("targetPath")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default(),
        }
    }
}

/// How an action that may navigate ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// No navigation (or `wait: none`).
    Stayed,
    /// A dialog opened (the dialog step waits for what follows).
    Dialog,
    /// A new document loaded.
    Landed { status: Option<u64>, url: String },
}

/// Reads the target window's token, departure flag, readiness and status
/// (`arguments[0]`: its frame indexes from the top; empty: this window).
const PROBE: &str = "var p = arguments[0], w = window; \
    try { if (p && p.length) { w = window.top; for (var i = 0; i < p.length; i++) { w = w.frames[p[i]]; } } \
      var d = w.document, e = (w.performance.getEntriesByType && w.performance.getEntriesByType('navigation')[0]) || null; \
      return { doc: w.__clerkDoc || null, leaving: !!w.__clerkLeaving, ready: d.readyState, \
        status: e && e.responseStatus ? e.responseStatus : null, url: String(w.location.href) }; \
    } catch (x) { return { doc: null, leaving: true, ready: 'loading', status: null, url: '' }; }";

/// How long a click may take to start a navigation before clerk decides it did not.
const GRACE: Duration = Duration::from_millis(150);

/// Waits (per `before.mode`) for the document an action loads.
pub async fn settle(h: &Handle, before: &Before) -> Result<Settled, BrowserError> {
    if before.mode == WaitMode::None {
        return Ok(Settled::Stayed);
    }
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let args = vec![serde_json::json!(before.target)];
        match h.client.execute(PROBE, args).await {
            Ok(v) => {
                let doc = v.get("doc").and_then(Value::as_str);
                let fresh = match (before.doc.as_deref(), doc) {
                    (Some(b), Some(d)) => b != d,
                    (Some(_), None) => true,
                    // Unknown before: only a visible departure tells.
                    (None, _) => false,
                };
                let ready = v.get("ready").and_then(Value::as_str) == Some("complete");
                let leaving = v.get("leaving").and_then(Value::as_bool) == Some(true);
                if fresh && ready {
                    return Ok(Settled::Landed {
                        status: v.get("status").and_then(Value::as_u64),
                        url: v
                            .get("url")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    });
                }
                if !fresh && !leaving && before.mode == WaitMode::Auto && started.elapsed() >= GRACE
                {
                    return Ok(Settled::Stayed);
                }
            }
            Err(e) if e.is_unexpected_alert_open() => return Ok(Settled::Dialog),
            Err(e) => {
                // A document being replaced has no script context for a moment.
                let transient = e.is_javascript_error()
                    || e.is_no_such_window()
                    || e.to_string().contains("context")
                    || e.to_string().contains("frame");
                if !transient {
                    return Err(BrowserError::webdriver(&h.client, e).await);
                }
            }
        }
        if started.elapsed() >= before.limit {
            return match before.mode {
                WaitMode::Navigation => Err(BrowserError::retryable(format!(
                    "no new page loaded within {} s (wait: navigation)",
                    before.limit.as_secs_f64().round()
                ))),
                // The page began to leave but never arrived: say so; the
                // next step would otherwise read a half-gone page.
                _ => Err(BrowserError::retryable(format!(
                    "the page started loading a new one that did not arrive within {} s",
                    before.limit.as_secs_f64().round()
                ))),
            };
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The status of the current document (after `browser.open`).
pub async fn current_status(h: &Handle) -> Option<u64> {
    let v = h
        .client
        .execute(PROBE, vec![serde_json::json!([])])
        .await
        .ok()?;
    v.get("status").and_then(Value::as_u64)
}

/// Fails on a 5xx answer unless `http_errors: ignore`.
pub fn check_status(
    status: Option<u64>,
    method: &str,
    url: &str,
    http: HttpErrors,
) -> Result<(), BrowserError> {
    match status {
        Some(code) if code >= 500 && http == HttpErrors::Fail => {
            Err(BrowserError::retryable(format!(
                "the portal answered {code} {} on {method} {}",
                reason_phrase(code),
                path_of(url)
            )))
        }
        _ => Ok(()),
    }
}

/// `http://host:8088/cases/new?x=1` → `/cases/new?x=1`.
pub fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    match rest.find('/') {
        Some(i) => &rest[i..],
        None => "/",
    }
}

/// The standard reason phrase of an HTTP status.
pub fn reason_phrase(code: u64) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ if code >= 500 => "Server Error",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_fail_with_method_and_path() {
        let e = check_status(
            Some(500),
            "POST",
            "http://127.0.0.1:8088/cases/new",
            HttpErrors::Fail,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "the portal answered 500 Internal Server Error on POST /cases/new"
        );
        assert!(e.kind.is_retryable());
        assert!(
            check_status(Some(503), "GET", "http://h/x", HttpErrors::Ignore).is_ok(),
            "ignored"
        );
        assert!(check_status(Some(404), "GET", "http://h/x", HttpErrors::Fail).is_ok());
        assert!(check_status(None, "GET", "http://h/x", HttpErrors::Fail).is_ok());
        assert_eq!(path_of("http://h"), "/");
    }
}
