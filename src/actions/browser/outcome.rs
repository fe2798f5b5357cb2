//! Reading a portal's answer without JavaScript: `browser.wait_for { any }`
//! (whichever of several outcomes shows first: a reference, an error
//! message, a dialog), `browser.read_texts` (the texts of every match) and
//! `browser.settings` (the run's error patterns, HTTP error policy, waits).

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, Instant};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::actions::{begin, note_frame, note_read, note_url};
use super::locator::{Checked, Locator, element_args, has_locator};
use super::navigate::{self, Before, HttpErrors, WaitMode};
use super::resolve;
use super::{BrowserError, finish, session, wait_limit, wd};
use crate::actions::{Action, ActionContext, ActionResult};

// ---------------------------------------------------------------- wait_for any

/// `{ dialog: true }`: an alert / confirm / prompt is open.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DialogBranch {
    /// `true`: this outcome is "a dialog opened" (its text is the branch's text).
    pub dialog: bool,
    /// Answer the dialog once its text is read: `true` presses OK, `false`
    /// Cancel. Absent: it stays open for a `browser.dialog` step.
    #[serde(default)]
    pub accept: Option<bool>,
}

/// One outcome of `wait_for { any }`: an element locator, or `{ dialog: true }`.
#[derive(Debug, Clone, PartialEq)]
pub enum Branch {
    Dialog { accept: Option<bool> },
    Element(Box<Locator>),
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum BranchSchema {
    Dialog(DialogBranch),
    Element(Box<Locator>),
}

impl<'de> Deserialize<'de> for Branch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if v.get("dialog").is_some() {
            let b: DialogBranch = serde_json::from_value(v).map_err(serde::de::Error::custom)?;
            if !b.dialog {
                return Err(serde::de::Error::custom(
                    "`dialog: false` is not an outcome; leave the branch out",
                ));
            }
            return Ok(Branch::Dialog { accept: b.accept });
        }
        let l: Locator = serde_json::from_value(v).map_err(serde::de::Error::custom)?;
        Ok(Branch::Element(Box::new(l)))
    }
}

impl JsonSchema for Branch {
    fn schema_name() -> Cow<'static, str> {
        "WaitBranch".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        BranchSchema::json_schema(generator)
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Branch::Dialog { .. } => f.write_str("a dialog"),
            Branch::Element(l) => write!(f, "{l}"),
        }
    }
}

/// The named outcomes, in the order written.
#[derive(Debug, Clone, PartialEq)]
pub struct Branches(pub Vec<(String, Branch)>);

impl<'de> Deserialize<'de> for Branches {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde_json keeps the order of keys (preserve_order).
        let map = serde_json::Map::<String, Value>::deserialize(d)?;
        let mut out = Vec::new();
        for (k, v) in map {
            let b: Branch = serde_json::from_value(v)
                .map_err(|e| serde::de::Error::custom(format!("`any.{k}`: {e}")))?;
            out.push((k, b));
        }
        let b = Branches(out);
        b.check().map_err(serde::de::Error::custom)?;
        Ok(b)
    }
}

impl JsonSchema for Branches {
    fn schema_name() -> Cow<'static, str> {
        "WaitBranches".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        <std::collections::BTreeMap<String, Branch>>::json_schema(generator)
    }
}

impl Branches {
    pub fn check(&self) -> Result<(), String> {
        if self.0.is_empty() {
            return Err(
                "`any` needs at least one outcome, e.g. `any: { entered: { css: \".case-ref\" } }`"
                    .into(),
            );
        }
        for (name, b) in &self.0 {
            if let Branch::Element(l) = b {
                l.validate().map_err(|e| format!("`any.{name}`: {e}"))?;
            }
        }
        Ok(())
    }

    /// `entered: css '.case-ref'; alerted: a dialog`.
    pub fn shown(&self) -> String {
        let shown: Vec<String> = self.0.iter().map(|(n, b)| format!("{n}: {b}")).collect();
        shown.join("; ")
    }
}

/// Waits until one of the outcomes shows (the first in the order written
/// when several do); returns `{ matched, text, texts }`.
pub async fn wait_any(
    ctx: &mut ActionContext<'_>,
    branches: &Branches,
    timeout: Option<Duration>,
) -> Result<Value, BrowserError> {
    ctx.target(format!("any of {}", branches.shown()));
    let h = session::handle(ctx).await?;
    resolve::leave_auto(&h).await;
    let limit = wait_limit(ctx, timeout);
    wait_outcome(ctx, &h, Some(branches), None, limit).await
}

/// What an action that may navigate leaves to [`wait_outcome`]: the page
/// before it, and how to answer a dialog it opens before a new page loads
/// (a `confirm()` in the form's `onsubmit`).
#[derive(Debug, Clone)]
pub struct Expect {
    pub before: Before,
    /// `Some(true)`: press OK; `Some(false)`: Cancel; None: a dialog is an outcome.
    pub dialog: Option<bool>,
}

/// One round trip per poll: the target window's document token, readiness
/// and HTTP status (as `navigate::PROBE`), and every outcome's state.
const POLL: &str = "var p = arguments[0], locs = arguments[1], op = arguments[2], w = window, probe; \
    try { if (p && p.length) { w = window.top; for (var i = 0; i < p.length; i++) { w = w.frames[p[i]]; } } \
      var d = w.document, e = (w.performance.getEntriesByType && w.performance.getEntriesByType('navigation')[0]) || null; \
      probe = { doc: w.__clerkDoc || null, leaving: !!w.__clerkLeaving, ready: d.readyState, \
        status: e && e.responseStatus ? e.responseStatus : null, url: String(w.location.href) }; \
    } catch (x) { probe = { doc: null, leaving: true, ready: 'loading', status: null, url: '' }; } \
    if (!locs.length) return { probe: probe, answers: [] }; \
    var f = window.__clerkResolve; \
    if (!f) return { probe: probe, answers: null }; \
    return { probe: probe, answers: locs.map(function (l) { return f(l, op); }) };";

/// How long an action may take to start a navigation before clerk decides it did not.
const GRACE: Duration = Duration::from_millis(150);

/// Waits for the page an action loads (when `expect` says it may), answers
/// the dialog it opens first (`expect.dialog`), then for the first of the
/// outcomes — all in one polling loop of one round trip each. Without
/// outcomes, returns null once the page settled.
pub async fn wait_outcome(
    ctx: &mut ActionContext<'_>,
    h: &session::Handle,
    branches: Option<&Branches>,
    expect: Option<Expect>,
    limit: Duration,
) -> Result<Value, BrowserError> {
    let empty = Branches(Vec::new());
    let branches = branches.unwrap_or(&empty);
    let locs: Vec<(usize, &Locator)> = branches
        .0
        .iter()
        .enumerate()
        .filter_map(|(i, (_, b))| match b {
            Branch::Element(l) => Some((i, l.as_ref())),
            Branch::Dialog { .. } => None,
        })
        .collect();
    let js_locs: Vec<Value> = locs.iter().map(|(_, l)| l.to_js()).collect();
    let dialog_branch = branches.0.iter().find_map(|(n, b)| match b {
        Branch::Dialog { accept } => Some((n.clone(), *accept)),
        Branch::Element(_) => None,
    });
    let mut op = json!({ "op": "state", "state": "visible", "need": "present" });
    if let Some(p) = h.settings().error_patterns {
        op["errorPatterns"] = json!(p);
    }
    let target = expect
        .as_ref()
        .map(|e| json!(e.before.target))
        .unwrap_or(json!([]));
    let mut landed = expect
        .as_ref()
        .is_none_or(|e| e.before.mode == WaitMode::None);
    let mut dialog_pending = expect.as_ref().and_then(|e| e.dialog);
    let started = Instant::now();
    let mut grace_from = Instant::now();
    let mut pause = Duration::from_millis(20);
    let mut last: Option<Value> = None;
    loop {
        let args = vec![target.clone(), Value::Array(js_locs.clone()), op.clone()];
        let polled = match h.client.execute(POLL, args.clone()).await {
            Ok(v) if v.get("answers").is_some_and(Value::is_null) => {
                // A page without the resolver (no CDP): install it and look again.
                let full = format!("{}\n{POLL}", resolve::INSTALL);
                h.client.execute(&full, args).await
            }
            other => other,
        };
        match polled {
            Ok(v) => {
                if !landed && let Some(ex) = &expect {
                    let probe = v.get("probe").cloned().unwrap_or(Value::Null);
                    let doc = probe.get("doc").and_then(Value::as_str);
                    let fresh = match (ex.before.doc.as_deref(), doc) {
                        (Some(b), Some(d)) => b != d,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    let ready = probe.get("ready").and_then(Value::as_str) == Some("complete");
                    let leaving = probe.get("leaving").and_then(Value::as_bool) == Some(true);
                    if fresh && ready {
                        landed = true;
                        let status = probe.get("status").and_then(Value::as_u64);
                        let url = probe
                            .get("url")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        ctx.detail("navigated", true);
                        if let Some(s) = status {
                            ctx.detail("http_status", s);
                        }
                        ctx.detail("url", url.clone());
                        navigate::check_status(
                            status,
                            &ex.before.method,
                            &url,
                            ex.before.http_errors,
                        )?;
                    } else if !fresh
                        && !leaving
                        && ex.before.mode == WaitMode::Auto
                        && grace_from.elapsed() >= GRACE
                    {
                        landed = true;
                    }
                }
                if landed {
                    if branches.0.is_empty() {
                        return Ok(Value::Null);
                    }
                    let answers = v
                        .get("answers")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for ((i, _), a) in locs.iter().zip(&answers) {
                        if a.get("reason").and_then(Value::as_str) == Some("bad") {
                            return Err(BrowserError::permanent(format!(
                                "`any.{}`: {}",
                                branches.0[*i].0,
                                a.get("message")
                                    .and_then(Value::as_str)
                                    .unwrap_or("bad locator")
                            )));
                        }
                        if a.get("ok").and_then(Value::as_bool) == Some(true) {
                            let texts = a.get("texts").cloned().unwrap_or(json!([]));
                            let text = texts.get(0).cloned().unwrap_or(Value::Null);
                            let name = &branches.0[*i].0;
                            ctx.detail("matched", name.clone());
                            note_frame(ctx, a);
                            note_read(ctx, &text);
                            return Ok(json!({ "matched": name, "text": text, "texts": texts }));
                        }
                    }
                    last = answers.into_iter().next();
                }
            }
            Err(e) if e.is_unexpected_alert_open() => {
                let text = h.client.get_alert_text().await.unwrap_or_default();
                if let Some(accept) = dialog_pending.take() {
                    // The action's own dialog (a confirm before the form is sent).
                    ctx.detail("dialog", crate::secrets::redact(&text));
                    let answered = if accept {
                        h.client.accept_alert().await
                    } else {
                        h.client.dismiss_alert().await
                    };
                    wd(&h.client, answered).await?;
                    resolve::leave_auto(h).await;
                    // The page the answer sends is awaited like a fresh
                    // click's: short pauses again.
                    grace_from = Instant::now();
                    pause = Duration::from_millis(20);
                    continue;
                }
                let Some((name, accept)) = &dialog_branch else {
                    let waiting = if branches.0.is_empty() {
                        "the page".to_string()
                    } else {
                        branches.shown()
                    };
                    return Err(BrowserError::retryable(format!(
                        "a dialog is open ('{text}') while waiting for {waiting}: answer it with \
                         `dialog: accept` on the click or a `browser.dialog` step, or add an outcome \
                         `{{ dialog: true }}`"
                    )));
                };
                ctx.detail("matched", name.clone());
                note_read(ctx, &json!(text));
                if let Some(a) = accept {
                    ctx.detail("answered", if *a { "accept" } else { "dismiss" });
                    let answered = if *a {
                        h.client.accept_alert().await
                    } else {
                        h.client.dismiss_alert().await
                    };
                    wd(&h.client, answered).await?;
                    resolve::leave_auto(h).await;
                } else if let Some(ex) = &expect {
                    // Left open: the `browser.dialog` that answers it finishes the wait.
                    h.set_pending(Some(ex.before.clone()));
                }
                return Ok(json!({ "matched": name, "text": text, "texts": [text] }));
            }
            Err(e) => {
                let transient = e.is_javascript_error()
                    || e.is_no_such_window()
                    || e.to_string().contains("context")
                    || e.to_string().contains("frame");
                if !transient {
                    return Err(BrowserError::webdriver(&h.client, e).await);
                }
            }
        }
        if started.elapsed() >= limit {
            if !landed {
                let nav = expect
                    .as_ref()
                    .is_some_and(|e| e.before.mode == WaitMode::Navigation);
                return Err(BrowserError::retryable(if nav {
                    format!(
                        "no new page loaded within {} s (wait: navigation)",
                        limit.as_secs_f64().round()
                    )
                } else {
                    format!(
                        "the page started loading a new one that did not arrive within {} s",
                        limit.as_secs_f64().round()
                    )
                }));
            }
            let mut message = format!(
                "none of the outcomes showed after {} s ({})",
                limit.as_secs_f64().round(),
                branches.shown()
            );
            if let Some(a) = &last {
                if let Some(u) = a.get("url").and_then(Value::as_str) {
                    message.push_str(&format!(" on {u}"));
                }
                let errors: Vec<String> = a
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|v| {
                        v.iter()
                            .filter_map(Value::as_str)
                            .map(|e| format!("'{e}'"))
                            .collect()
                    })
                    .unwrap_or_default();
                if !errors.is_empty() {
                    message.push_str(&format!("; the page shows: {}", errors.join(", ")));
                }
            }
            return Err(BrowserError::retryable(message));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- read_texts

element_args! {
    /// Arguments of `browser.read_texts`: a locator (any number of matches).
    pub struct ReadTextsArgs {
        /// Wait until at least one element matches (default false: an empty
        /// list is an answer too).
        #[serde(default)]
        pub wait: bool,
    }
}
has_locator!(ReadTextsArgs);

/// Reads the visible text of every element a locator matches (a list,
/// possibly empty) — e.g. all the error messages of a refused form.
pub struct ReadTexts;

impl Action for ReadTexts {
    type Args = Checked<ReadTextsArgs>;
    const NAME: &'static str = "browser.read_texts";
    const SUMMARY: &'static str =
        "Read the visible texts of all elements a locator matches (a list, maybe empty).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<span class=error>Postcode must be 4 digits</span> <font color=red>Email must be a valid address</font>\"\n- browser.read_texts: { css: \"span.error, font[color=red]\" }\n  save_as: errors\n";
    const SHORTHAND: Option<&'static str> = Some("css");
    const RESULT: &'static str = "list of strings";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = read_texts(ctx, &args).await;
        finish(ctx, started, r).await
    }
}

async fn read_texts(
    ctx: &mut ActionContext<'_>,
    args: &ReadTextsArgs,
) -> Result<Value, BrowserError> {
    let loc = super::locator::HasLocator::locator(args);
    let h = begin(ctx, &loc).await?;
    let limit = wait_limit(ctx, args.wait_limit());
    let op = if args.wait {
        json!({ "op": "state", "state": "visible" })
    } else {
        json!({ "op": "texts" })
    };
    let answer = resolve::run_op(&h, &loc, op, resolve::Need::Present, limit).await?;
    note_url(ctx, &answer);
    note_frame(ctx, &answer);
    let texts = answer.get("texts").cloned().unwrap_or(json!([]));
    ctx.detail(
        "count",
        texts.as_array().map(|a| a.len()).unwrap_or(0) as u64,
    );
    note_read(ctx, &texts);
    Ok(texts)
}

// ---------------------------------------------------------------- settings

/// Arguments of `browser.settings`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsArgs {
    /// CSS selectors of the page's error messages, quoted in step failures
    /// (replaces the built-in set: class names containing "error",
    /// `font[color=red]`, `[role=alert]`, `.alert-danger`).
    #[serde(default)]
    pub error_patterns: Option<crate::actions::types::OneOrMany<String>>,
    /// `fail` (default) or `ignore`: what a 5xx answer to `open`, a click or
    /// a form submission does.
    #[serde(default)]
    pub http_errors: Option<HttpErrors>,
    /// `auto` (default), `navigation` or `none`: how clicks and key presses
    /// wait for the page they load.
    #[serde(default)]
    pub wait: Option<WaitMode>,
}

/// Sets, for the rest of the run, how browser steps detect error messages,
/// treat HTTP errors and wait for navigations.
pub struct Settings;

impl Action for Settings {
    type Args = SettingsArgs;
    const NAME: &'static str = "browser.settings";
    const SUMMARY: &'static str =
        "Set the run's page error patterns, HTTP error policy and navigation waits.";
    const EXAMPLE: &'static str = "- browser.settings: { error_patterns: [\"font[color=red]\", \".msg-err\"], http_errors: fail }\n";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let started = Instant::now();
        ctx.target("browser settings");
        let r = async {
            let h = session::handle(ctx).await?;
            let mut s = h.settings();
            if let Some(p) = &args.error_patterns {
                let list = p.to_vec();
                if list.iter().any(|p| p.trim().is_empty()) {
                    return Err(BrowserError::permanent("an error pattern is empty"));
                }
                s.error_patterns = Some(list.join(", "));
            }
            if let Some(x) = args.http_errors {
                s.http_errors = x;
            }
            if let Some(w) = args.wait {
                s.wait = w;
            }
            if let Ok(mut slot) = h.settings.lock() {
                *slot = s;
            }
            Ok(Value::Null)
        }
        .await;
        finish(ctx, started, r).await
    }
}
