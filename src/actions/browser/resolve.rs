//! Auto-wait: runs the page-side resolver (`resolve.js`) until the locator
//! names exactly one usable element and the operation succeeded, or the
//! wait limit passes. Each poll is ONE WebDriver round trip that both finds
//! the element and acts on it, which is why a clerk `fill` costs less than a
//! bare find + clear + send-keys.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fantoccini::Client;
use fantoccini::elements::{Element, ElementRef};
use serde_json::{Value, json};

use super::BrowserError;
use super::locator::Locator;
use super::session::Handle;
use crate::actions::ErrorKind;

/// Defines `window.__clerkResolve` (installed in every new document over CDP).
pub const INSTALL: &str = include_str!("resolve.js");

/// The usual call: a one-line script, the resolver being installed already.
const CALL: &str = "var f = window.__clerkResolve; \
    return f ? f(arguments[0], arguments[1]) : { ok: false, reason: 'missing' };";

/// Runs the resolver, installing it first on pages that lack it (remote
/// WebDriver servers without CDP, documents that replaced `window`).
pub(super) async fn call(
    client: &Client,
    args: Vec<Value>,
) -> Result<Value, fantoccini::error::CmdError> {
    let v = client.execute(CALL, args.clone()).await?;
    if v.get("reason").and_then(Value::as_str) != Some("missing") {
        return Ok(v);
    }
    let full = format!("{INSTALL}\nreturn window.__clerkResolve(arguments[0], arguments[1]);");
    client.execute(&full, args).await
}

/// Runs the resolver once for each locator (one round trip), e.g. for the
/// outcomes of `wait_for { any }`.
pub async fn call_many(
    client: &Client,
    locs: &[&Locator],
    op: &Value,
) -> Result<Vec<Value>, fantoccini::error::CmdError> {
    const MANY: &str = "var f = window.__clerkResolve, a = arguments; \
        return f ? a[0].map(function (l) { return f(l, a[1]); }) : null;";
    let args = vec![
        Value::Array(locs.iter().map(|l| l.to_js()).collect()),
        op.clone(),
    ];
    let mut v = client.execute(MANY, args.clone()).await?;
    if v.is_null() {
        let full = format!(
            "{INSTALL}\nvar a = arguments; return a[0].map(function (l) {{ return window.__clerkResolve(l, a[1]); }});"
        );
        v = client.execute(&full, args).await?;
    }
    Ok(match v {
        Value::Array(a) => a,
        _ => Vec::new(),
    })
}

/// The W3C key of an element reference inside script results.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What the element must be before the operation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// In the DOM (a hidden input's value, a file input styled away).
    Present,
    /// Displayed (reading text).
    Visible,
    /// Displayed and enabled (clicking, typing).
    Interact,
}

impl Need {
    fn as_str(self) -> &'static str {
        match self {
            Need::Present => "present",
            Need::Visible => "visible",
            Need::Interact => "interact",
        }
    }
}

/// Runs `op` against the element `loc` names, polling until it succeeds or
/// `limit` passes. Returns the resolver's answer (`ok: true`). When the
/// element of a `find` is inside a frame, the session is left inside that
/// frame (see [`leave_auto`]) so that WebDriver can act on it.
pub async fn run_op(
    h: &Handle,
    loc: &Locator,
    mut op: Value,
    need: Need,
    limit: Duration,
) -> Result<Value, BrowserError> {
    let client = &h.client;
    if let Some(obj) = op.as_object_mut() {
        obj.insert("need".into(), json!(need.as_str()));
        if let Some(p) = h.settings().error_patterns {
            obj.insert("errorPatterns".into(), json!(p));
        }
    }
    let started = Instant::now();
    let args = vec![loc.to_js(), op];
    let mut pause = Duration::from_millis(25);
    let mut frame: Option<Value> = None;
    loop {
        let last = match call(client, args.clone()).await {
            Ok(v) => v,
            Err(e) => {
                // A page that is navigating has no script context for a moment;
                // anything else (an open dialog, a lost browser) is final.
                let transient = e.is_javascript_error()
                    || e.is_stale_element_reference()
                    || e.is_no_such_element()
                    || e.is_no_such_window()
                    || e.to_string().contains("context")
                    || e.to_string().contains("frame");
                if !transient {
                    return Err(BrowserError::webdriver(client, e).await);
                }
                leave_auto(h).await;
                if started.elapsed() >= limit {
                    return Err(BrowserError::retryable(format!(
                        "{loc}: the page did not settle after {} ({})",
                        secs(limit),
                        super::wd_message(&e)
                    )));
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        if last.get("ok").and_then(Value::as_bool) == Some(true) {
            let mut last = last;
            if let (Some(f), Some(obj)) = (&frame, last.as_object_mut())
                && h.auto_frames.load(Ordering::SeqCst) > 0
            {
                obj.insert("frame".into(), f.clone());
            }
            return Ok(last);
        }
        let reason = last.get("reason").and_then(Value::as_str).unwrap_or("none");
        if reason == "frame" && h.auto_frames.load(Ordering::SeqCst) == 0 {
            frame = last.get("frame").cloned();
            let path: Vec<u16> = last
                .get("framePath")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i.as_u64().and_then(|i| u16::try_from(i).ok()))
                        .collect()
                })
                .unwrap_or_default();
            let mut ok = !path.is_empty();
            for i in &path {
                if client.enter_frame(*i).await.is_err() {
                    ok = false;
                    break;
                }
                h.auto_frames.fetch_add(1, Ordering::SeqCst);
            }
            if ok {
                continue;
            }
            leave_auto(h).await;
        } else if h.auto_frames.load(Ordering::SeqCst) > 0 {
            // The frame changed under us: look again from where we were.
            leave_auto(h).await;
        }
        // Bad selectors, wrong element kinds and refused data do not improve by waiting.
        if matches!(reason, "bad" | "op" | "business") {
            return Err(failure(&last, reason, limit));
        }
        if started.elapsed() >= limit {
            // One more look that also explains a miss (the page's captions,
            // a did-you-mean), which is too costly to do on every poll.
            let mut explain = args.clone();
            explain[1]["explain"] = json!(true);
            let last = match call(client, explain).await {
                // Found at the last moment (the operation ran): a success.
                Ok(v) if v.get("ok").and_then(Value::as_bool) == Some(true) => return Ok(v),
                Ok(v) => v,
                Err(_) => last,
            };
            leave_auto(h).await;
            let reason = last.get("reason").and_then(Value::as_str).unwrap_or("none");
            return Err(failure(&last, reason, limit));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Leaves the frames a `find` entered for one action (best effort: a frame
/// that navigated away is left all the same).
pub async fn leave_auto(h: &Handle) {
    while h.auto_frames.load(Ordering::SeqCst) > 0 {
        // Fails while a dialog is open: the count stays, the next step leaves.
        if h.client.enter_parent_frame().await.is_err() {
            break;
        }
        h.auto_frames.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A single look without waiting (e.g. "is there a Next link?").
pub async fn probe(h: &Handle, loc: &Locator, need: Need) -> Result<Option<Element>, BrowserError> {
    let client = &h.client;
    let op = json!({ "op": "find", "need": need.as_str() });
    let v = call(client, vec![loc.to_js(), op])
        .await
        .map_err(|e| BrowserError::permanent(format!("{loc}: {}", super::wd_message(&e))))?;
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(element_of(client, &v));
    }
    if v.get("reason").and_then(Value::as_str) == Some("bad") {
        return Err(failure(&v, "bad", Duration::ZERO));
    }
    Ok(None)
}

/// The element reference inside a resolver answer.
pub fn element_of(client: &Client, v: &Value) -> Option<Element> {
    let id = v.get("el")?.get(ELEMENT_KEY)?.as_str()?;
    Some(Element::from_element_id(
        client.clone(),
        ElementRef::from(id.to_string()),
    ))
}

/// Finds one element (waiting), for operations WebDriver itself performs;
/// also returns the resolver's answer (tag, form, document token, frame).
/// Call [`leave_auto`] after acting on it.
pub async fn find(
    h: &Handle,
    loc: &Locator,
    need: Need,
    limit: Duration,
) -> Result<(Element, Value), BrowserError> {
    let v = run_op(h, loc, json!({ "op": "find" }), need, limit).await?;
    let el = element_of(&h.client, &v).ok_or_else(|| {
        BrowserError::permanent(format!("{loc}: the browser returned no element"))
    })?;
    Ok((el, v))
}

fn secs(d: Duration) -> String {
    let tenths = (d.as_secs_f64() * 10.0).round() as u64;
    if tenths.is_multiple_of(10) {
        format!("{} s", tenths / 10)
    } else {
        format!("{}.{} s", tenths / 10, tenths % 10)
    }
}

/// Turns the resolver's last answer into the error a person reads.
fn failure(last: &Value, reason: &str, limit: Duration) -> BrowserError {
    let message = last
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the element was not found");
    let url = last.get("url").and_then(Value::as_str).unwrap_or("?");
    let title = last.get("title").and_then(Value::as_str).unwrap_or("");
    let mut text = match reason {
        "bad" | "op" | "business" => message.to_string(),
        _ => format!("{message} after {}", secs(limit)),
    };
    text.push_str(&format!(" on {url}"));
    if !title.is_empty() {
        text.push_str(&format!(" (page '{title}')"));
    }
    let errors: Vec<&str> = last
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !errors.is_empty() {
        text.push_str("; the page shows: ");
        let quoted: Vec<String> = errors.iter().map(|e| format!("'{e}'")).collect();
        text.push_str(&quoted.join(", "));
    }
    let kind = match reason {
        "bad" | "op" => ErrorKind::Usage,
        "business" => ErrorKind::Business,
        _ => ErrorKind::System,
    };
    BrowserError {
        kind,
        message: text,
    }
}
