//! Page-level browser actions: open, press, wait_for, read_table (across
//! pagination), screenshot, download, frame, dialog, execute_script.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::actions::{
    Nav, Text, after_action, begin, click, note_current_url, note_frame, note_read, note_url,
};
use super::locator::{Checked, HasLocator, Locator, element_args, has_locator, locator_of};
use super::navigate::{self, HttpErrors, WaitMode};
use super::resolve::{self, Need};
use super::{BrowserError, evidence, finish, session, wait_limit, wd};
use crate::actions::types::DurationArg;
use crate::actions::{Action, ActionContext, ActionResult};
use crate::fsutil::{sha256_hex, write_atomic};

// ---------------------------------------------------------------- open

/// Arguments of `browser.open`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenArgs {
    /// The address, e.g. `http://127.0.0.1:8088/login`.
    pub url: String,
    /// `fail` (default): a 5xx answer fails the step as a system error
    /// (retried by `retry:`); `ignore`: go on.
    #[serde(default)]
    pub http_errors: Option<HttpErrors>,
    /// Then wait for the first of these named outcomes (as `browser.wait_for
    /// { any }`), e.g. the form or the sign-in page; the result gains
    /// `matched`, `text` and `texts`.
    #[serde(default)]
    pub wait_for: Option<super::outcome::Branches>,
    /// How long to wait for an outcome (default: `browser.timeout`).
    #[serde(default)]
    pub timeout: Option<DurationArg>,
}

/// Opens a page (starting the run's browser on first use) and waits for it to load.
pub struct Open;

impl Action for Open {
    type Args = OpenArgs;
    const NAME: &'static str = "browser.open";
    const SUMMARY: &'static str = "Open a page in the run's browser (started on first use).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<title>Cases</title><h1>Cases</h1>\"   # or \"{{ inputs.portal }}/login\"\n  save_as: page\n";
    const SHORTHAND: Option<&'static str> = Some("url");
    const RESULT: &'static str = "{ url, title }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = async {
            if let Some(b) = &args.wait_for {
                ctx.detail("wait_for", b.shown());
            }
            let mut page = open(ctx, &args.url, args.http_errors).await?;
            if let Some(b) = &args.wait_for {
                let h = session::handle(ctx).await?;
                let limit = wait_limit(ctx, args.timeout.map(|t| t.0));
                let got = super::outcome::wait_outcome(ctx, &h, Some(b), None, limit).await?;
                if let (Some(p), Some(g)) = (page.as_object_mut(), got.as_object()) {
                    p.extend(g.clone());
                }
            }
            Ok::<Value, BrowserError>(page)
        }
        .await;
        finish(ctx, started, r).await
    }
}

/// The page's URL, title and HTTP status in one round trip.
const LANDED: &str = "var e = (performance.getEntriesByType && performance.getEntriesByType('navigation')[0]) || null; \
    return { url: String(location.href), title: document.title, status: e && e.responseStatus ? e.responseStatus : null };";

async fn open(
    ctx: &mut ActionContext<'_>,
    url: &str,
    http_errors: Option<HttpErrors>,
) -> Result<Value, BrowserError> {
    ctx.target(url.to_string());
    let lower = url.to_ascii_lowercase();
    if !["http://", "https://", "file://", "about:", "data:"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err(BrowserError::permanent(format!(
            "`{url}` is not an absolute address (it must start with http:// or https://)"
        )));
    }
    let h = session::handle(ctx).await?;
    // A dialog left open by an earlier, failed attempt would block navigation.
    if let Ok(text) = h.client.get_alert_text().await {
        let _ = h.client.dismiss_alert().await;
        ctx.detail("dismissed_dialog", text);
    }
    // W3C "Navigate To" as it is: fantoccini's `goto` first asks for the
    // current URL to resolve a relative one (a round trip per open, through
    // a Grid two hops), and this one is absolute.
    let navigate =
        session::grid::command(http::Method::POST, "url", Some(json!({ "url": url })), true);
    wd(&h.client, h.client.issue_cmd(navigate).await.map(|_| ()))
        .await
        .map_err(|e| e.context(format!("cannot open {url}")))?;
    h.left_frames(u32::MAX);
    h.auto_frames.store(0, std::sync::atomic::Ordering::SeqCst);
    h.set_pending(None);
    let (now, title, status) = match h.client.execute(LANDED, vec![]).await {
        Ok(v) => {
            let now = v["url"].as_str().unwrap_or_default().to_string();
            ctx.detail("url", now.clone());
            (
                now,
                v["title"].as_str().unwrap_or_default().to_string(),
                v["status"].as_u64(),
            )
        }
        // A page that opened a dialog while loading answers no script.
        Err(_) => (
            note_current_url(ctx, &h.client).await.unwrap_or_default(),
            h.client.title().await.unwrap_or_default(),
            navigate::current_status(&h).await,
        ),
    };
    ctx.detail("title", title.clone());
    if let Some(s) = status {
        ctx.detail("http_status", s);
    }
    let http = http_errors.unwrap_or(h.settings().http_errors);
    navigate::check_status(status, "GET", &now, http)?;
    Ok(json!({ "url": now, "title": title }))
}

// ---------------------------------------------------------------- press

element_args! {
    /// Arguments of `browser.press`. Without a locator the keys go to the focused element.
    pub struct PressArgs {
        /// Keys: `Enter`, `Tab`, `Escape`, `Control+a`, ... or a list of them.
        pub keys: crate::actions::types::OneOrMany<String>,
        /// `auto` (default): wait for the new page when the keys start a
        /// navigation (Enter in a form); `navigation`: one must load; `none`.
        #[serde(default)]
        pub wait: Option<WaitMode>,
        /// `fail` (default): a 5xx answer fails the step; `ignore`: go on.
        #[serde(default)]
        pub http_errors: Option<HttpErrors>,
    }
}
has_locator!(PressArgs, false);

/// Presses keys (on an element, or on whatever has the focus).
pub struct Press;

impl Action for Press {
    type Args = Checked<PressArgs>;
    const NAME: &'static str = "browser.press";
    const SUMMARY: &'static str =
        "Press keys (Enter, Tab, Control+a, ...) on an element or the focused one.";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<form onsubmit='return false'><label>Search <input></label></form>\"\n- browser.press: { keys: Enter, label: \"Search\" }\n";
    const SHORTHAND: Option<&'static str> = Some("keys");

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = press(ctx, &args).await;
        finish(ctx, started, r.map(|_| Value::Null)).await
    }
}

/// Turns `Control+a` into WebDriver key codes (modifiers stay down until NULL).
fn key_codes(spec: &str) -> Result<String, String> {
    let mut out = String::new();
    let parts: Vec<&str> = if spec == "+" {
        vec!["+"]
    } else {
        spec.split('+').collect()
    };
    for part in &parts {
        let k: char = match part.to_ascii_lowercase().as_str() {
            "enter" | "return" => Key::Enter.into(),
            "tab" => Key::Tab.into(),
            "escape" | "esc" => Key::Escape.into(),
            "backspace" => Key::Backspace.into(),
            "delete" | "del" => Key::Delete.into(),
            "space" => ' ',
            "up" | "arrowup" => Key::Up.into(),
            "down" | "arrowdown" => Key::Down.into(),
            "left" | "arrowleft" => Key::Left.into(),
            "right" | "arrowright" => Key::Right.into(),
            "home" => Key::Home.into(),
            "end" => Key::End.into(),
            "pageup" => Key::PageUp.into(),
            "pagedown" => Key::PageDown.into(),
            "control" | "ctrl" => Key::Control.into(),
            "shift" => Key::Shift.into(),
            "alt" => Key::Alt.into(),
            "meta" | "command" | "cmd" => Key::Meta.into(),
            "f1" => Key::F1.into(),
            "f2" => Key::F2.into(),
            "f3" => Key::F3.into(),
            "f4" => Key::F4.into(),
            "f5" => Key::F5.into(),
            _ => {
                let mut chars = part.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => c,
                    _ => {
                        return Err(format!(
                            "unknown key `{part}` (use Enter, Tab, Escape, Backspace, Delete, Space, \
                             Up, Down, Left, Right, Home, End, PageUp, PageDown, Control, Shift, Alt, Meta, \
                             F1-F5 or one character)"
                        ));
                    }
                }
            }
        };
        out.push(k);
    }
    if parts.len() > 1 {
        out.push(Key::Null.into());
    }
    Ok(out)
}

/// The focused window's document token and frame path (for keys pressed
/// without a locator).
const HERE: &str = "var w = window, p = []; try { while (w !== w.parent) { var q = w.parent, i = 0; \
    while (i < q.frames.length && q.frames[i] !== w) i++; p.unshift(i); w = q; } } catch (e) { p = []; } \
    return { doc: window.__clerkDoc || null, targetPath: p };";

async fn press(ctx: &mut ActionContext<'_>, args: &PressArgs) -> Result<(), BrowserError> {
    let keys = args.keys.to_vec();
    ctx.detail("keys", keys.join(" "));
    let mut codes = String::new();
    for k in &keys {
        codes.push_str(&key_codes(k).map_err(BrowserError::permanent)?);
    }
    let loc = args.locator();
    let limit = wait_limit(ctx, args.wait_limit());
    let (h, el, answer) = if loc.is_empty() {
        ctx.target("(focused element)");
        let h = session::handle(ctx).await?;
        let el = wd(&h.client, h.client.active_element().await).await?;
        // The document's token, to notice the page the keys load.
        let here = h.client.execute(HERE, vec![]).await.unwrap_or(Value::Null);
        (h, el, here)
    } else {
        let h = begin(ctx, &loc).await?;
        let (el, answer) = resolve::find(&h, &loc, Need::Interact, limit).await?;
        note_frame(ctx, &answer);
        (h, el, answer)
    };
    if let Err(e) = el.send_keys(&codes).await {
        let e = BrowserError::webdriver(&h.client, e).await;
        resolve::leave_auto(&h).await;
        return Err(e);
    }
    let nav = Nav {
        wait: args.wait,
        http_errors: args.http_errors,
    };
    after_action(ctx, &h, &answer, nav, limit).await
}

// ---------------------------------------------------------------- wait_for

/// What `browser.wait_for` waits for.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// In the page, shown or not.
    Present,
    /// Shown (the default).
    #[default]
    Visible,
    /// Not shown (or absent).
    Hidden,
    /// Not in the page at all.
    Gone,
}

element_args! {
    /// Arguments of `browser.wait_for`: a locator (with `state`, `contains`),
    /// or `any` — named outcomes, the first to show wins.
    pub struct WaitForArgs {
        /// `present`, `visible` (default), `hidden` or `gone`.
        #[serde(default)]
        pub state: Option<State>,
        /// Also wait until a matching element's text contains this.
        #[serde(default)]
        pub contains: Option<Text>,
        /// Named outcomes: `{ entered: { css: ".case-ref" }, rejected: { css:
        /// "font[color=red]" }, alerted: { dialog: true } }`. Returns
        /// `{ matched, text, texts }` for the first that shows.
        #[serde(default)]
        pub any: Option<super::outcome::Branches>,
    }
}

impl HasLocator for WaitForArgs {
    const REQUIRED: bool = false;

    fn locator(&self) -> Locator {
        locator_of!(self)
    }

    fn check_rest(&self) -> Result<(), String> {
        match (&self.any, self.locator().is_empty()) {
            (Some(_), false) => Err("give a locator or `any` (named outcomes), not both".into()),
            (None, true) => Err(format!(
                "give one locator: {} (none was given), or `any`",
                super::locator::KINDS.join(", ")
            )),
            (Some(b), true) => {
                if self.state.is_some() || self.contains.is_some() {
                    return Err("`state` and `contains` go with a locator, not with `any`".into());
                }
                b.check()
            }
            (None, false) => self.locator().validate(),
        }
    }
}

/// Waits until an element is present / visible / hidden / gone, or shows a text.
pub struct WaitFor;

impl Action for WaitFor {
    type Args = Checked<WaitForArgs>;
    const NAME: &'static str = "browser.wait_for";
    const SUMMARY: &'static str =
        "Wait until an element is present, visible, hidden or gone, or contains a text.";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<p id=results>2 cases found</p>\"\n- browser.wait_for: { css: \"#results\", contains: \"cases found\", timeout: 30s }\n";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = wait_for(ctx, &args).await;
        finish(ctx, started, r).await
    }
}

async fn wait_for(ctx: &mut ActionContext<'_>, args: &WaitForArgs) -> Result<Value, BrowserError> {
    if let Some(any) = &args.any {
        return super::outcome::wait_any(ctx, any, args.wait_limit()).await;
    }
    let loc = args.locator();
    let state = match args.state.unwrap_or_default() {
        State::Present => "present",
        State::Visible => "visible",
        State::Hidden => "hidden",
        State::Gone => "gone",
    };
    ctx.detail("state", state);
    if let Some(c) = &args.contains {
        ctx.detail("contains", super::shown_value(ctx, &c.0));
    }
    let h = begin(ctx, &loc).await?;
    let limit = wait_limit(ctx, args.wait_limit());
    let op = json!({ "op": "state", "state": state, "contains": args.contains.as_ref().map(|c| c.0.clone()) });
    let answer = resolve::run_op(&h, &loc, op, Need::Present, limit).await?;
    ctx.detail("count", answer.get("count").cloned().unwrap_or(Value::Null));
    note_frame(ctx, &answer);
    Ok(Value::Bool(true))
}

// ---------------------------------------------------------------- read_table

element_args! {
    /// Arguments of `browser.read_table`: the table's locator, and `next` to
    /// follow pagination.
    pub struct ReadTableArgs {
        /// The "next page" link or button; followed until it is gone or disabled.
        #[serde(default)]
        pub next: Option<Locator>,
        /// Fail rather than read more pages than this (default 100).
        #[serde(default)]
        pub max_pages: Option<u32>,
    }
}

impl HasLocator for ReadTableArgs {
    fn locator(&self) -> Locator {
        locator_of!(self)
    }

    fn check_rest(&self) -> Result<(), String> {
        if let Some(n) = &self.next {
            n.validate().map_err(|e| format!("`next`: {e}"))?;
        }
        if self.max_pages == Some(0) {
            return Err("`max_pages` must be at least 1".into());
        }
        Ok(())
    }
}

/// Reads an HTML table into rows keyed by its header cells, across pages.
pub struct ReadTable;

impl Action for ReadTable {
    type Args = Checked<ReadTableArgs>;
    const NAME: &'static str = "browser.read_table";
    const SUMMARY: &'static str =
        "Read an HTML table into rows keyed by header cells, following a next link across pages.";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<table id=results><tr><th>Reference</th><th>Status</th></tr><tr><td>CASE-000001</td><td>open</td></tr></table>\"\n- browser.read_table: { css: \"table#results\", next: { text: \"Next\" }, timeout: 30s }\n  save_as: cases\n";
    const RESULT: &'static str = "list of { header: cell }";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = read_table(ctx, &args).await;
        finish(ctx, started, r).await
    }
}

async fn read_table(
    ctx: &mut ActionContext<'_>,
    args: &ReadTableArgs,
) -> Result<Value, BrowserError> {
    let loc = args.locator();
    let h = begin(ctx, &loc).await?;
    let limit = wait_limit(ctx, args.wait_limit());
    let max_pages = args.max_pages.unwrap_or(100);
    // Each page's table is marked, so after "next" clerk waits for a new one.
    let mark = format!("clerk-{}", ulid::Ulid::new());
    let mut rows: Vec<Value> = Vec::new();
    let mut pages = 0u32;
    loop {
        let op = json!({ "op": "table", "mark": mark, "skipMarked": if pages > 0 { Some(&mark) } else { None } });
        let answer = resolve::run_op(&h, &loc, op, Need::Visible, limit)
            .await
            .map_err(|e| {
                if pages > 0 {
                    e.context(format!(
                        "page {} of the table (after clicking next)",
                        pages + 1
                    ))
                } else {
                    e
                }
            })?;
        pages += 1;
        note_url(ctx, &answer);
        let headers: Vec<String> = answer["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| h.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        for row in answer["rows"].as_array().into_iter().flatten() {
            let mut obj = serde_json::Map::new();
            for (i, cell) in row.as_array().into_iter().flatten().enumerate() {
                let key = headers
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("column_{}", i + 1));
                obj.insert(key, cell.clone());
            }
            rows.push(Value::Object(obj));
        }
        let Some(next) = &args.next else { break };
        let Some(link) = resolve::probe(&h, next, Need::Interact).await? else {
            break;
        };
        if pages >= max_pages {
            return Err(BrowserError::permanent(format!(
                "{loc} has more than max_pages {max_pages} pages; raise `max_pages`"
            )));
        }
        wd(&h.client, link.click().await)
            .await
            .map_err(|e| e.context(format!("cannot click {next}")))?;
    }
    ctx.detail("pages", pages);
    ctx.detail("rows", rows.len() as u64);
    let rows = Value::Array(rows);
    note_read(ctx, &rows);
    Ok(rows)
}

// ---------------------------------------------------------------- screenshot

element_args! {
    /// Arguments of `browser.screenshot`: optionally a locator (only that element)
    /// and where to save it.
    pub struct ScreenshotArgs {
        /// The PNG file, relative to the workspace (default: in the run's artifacts folder).
        #[serde(default)]
        pub path: Option<String>,
    }
}
has_locator!(ScreenshotArgs, false);

/// Saves a PNG screenshot of the page (or one element).
pub struct Screenshot;

impl Action for Screenshot {
    type Args = Checked<ScreenshotArgs>;
    const NAME: &'static str = "browser.screenshot";
    const SUMMARY: &'static str =
        "Save a PNG of the page or of one element (recorded with its SHA-256).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<h1>Case registered</h1>\"\n- browser.screenshot: { path: out/confirmation.png }\n";
    const SHORTHAND: Option<&'static str> = Some("path");
    const RESULT: &'static str = "{ path, sha256 }";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = screenshot(ctx, &args).await;
        finish(ctx, started, r).await
    }
}

async fn screenshot(
    ctx: &mut ActionContext<'_>,
    args: &ScreenshotArgs,
) -> Result<Value, BrowserError> {
    let loc = args.locator();
    let (h, png) = if loc.is_empty() {
        let h = session::handle(ctx).await?;
        let png = wd(&h.client, h.client.screenshot().await).await?;
        (h, png)
    } else {
        let h = begin(ctx, &loc).await?;
        let limit = wait_limit(ctx, args.wait_limit());
        let (el, answer) = resolve::find(&h, &loc, Need::Visible, limit).await?;
        note_frame(ctx, &answer);
        let png = wd(&h.client, el.screenshot().await).await;
        resolve::leave_auto(&h).await;
        (h, png?)
    };
    let sha = sha256_hex(&png);
    let path = match &args.path {
        Some(p) => {
            let path = ctx
                .resolve(p)
                .map_err(|e| BrowserError::permanent(format!("{:#}", e.error)))?;
            write_atomic(&path, &png).map_err(|e| {
                BrowserError::permanent(format!("cannot save the screenshot: {e:#}"))
            })?;
            if path.starts_with(&ctx.run.artifacts_dir) {
                ctx.artifact(&path, &sha);
            } else {
                ctx.detail("sha256", sha.clone());
            }
            path
        }
        None => {
            let name = format!("{}-screenshot.png", evidence::file_stem(ctx));
            evidence::save(ctx, &name, &png).map_err(|e| {
                BrowserError::permanent(format!("cannot save the screenshot: {e:#}"))
            })?
        }
    };
    let shown = ctx.display_path(&path);
    ctx.detail("path", shown.clone());
    note_current_url(ctx, &h.client).await;
    Ok(json!({ "path": shown, "sha256": sha }))
}

// ---------------------------------------------------------------- download

element_args! {
    /// Arguments of `browser.download`: the link or button that starts it.
    pub struct DownloadArgs {
        /// Also copy the file here (relative to the workspace).
        #[serde(default)]
        pub save_to: Option<String>,
    }
}
has_locator!(DownloadArgs);

/// Clicks a link or button, waits for the file to finish downloading and
/// returns its path (kept under the run's artifacts, with its SHA-256).
pub struct Download;

impl Action for Download {
    type Args = Checked<DownloadArgs>;
    const NAME: &'static str = "browser.download";
    const SUMMARY: &'static str =
        "Click to download a file; waits for it to finish and returns its path.";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<a download=cases.csv href='data:text/csv,id;name'>Export CSV</a>\"\n- browser.download: { text: \"Export CSV\", save_to: out/cases.csv }\n  save_as: export\n";
    const RESULT: &'static str = "{ path, name, sha256, size }";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = download(ctx, &args).await;
        finish(ctx, started, r).await
    }
}

fn listing(dir: &std::path::Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn is_partial(name: &str) -> bool {
    name.ends_with(".crdownload")
        || name.ends_with(".tmp")
        || name.starts_with(".com.google.Chrome")
}

async fn download(ctx: &mut ActionContext<'_>, args: &DownloadArgs) -> Result<Value, BrowserError> {
    let loc = args.locator();
    let h = begin(ctx, &loc).await?;
    let before = listing(&h.downloads);
    // On a Selenium Grid the file lands on the node: watch it there.
    let grid_before = match &h.grid {
        Some(g) => Some(g.files(&h.client).await?),
        None => None,
    };
    // Waiting for a file takes longer than waiting for a link: at least 30 s.
    let limit = args
        .wait_limit()
        .unwrap_or(ctx.config.browser.timeout.max(Duration::from_secs(30)));
    let limit = wait_limit(ctx, Some(limit));
    let nav = Nav {
        wait: Some(WaitMode::None),
        http_errors: None,
    };
    click(ctx, &loc, args.wait_limit(), nav).await?;
    let found = match (&h.grid, grid_before) {
        (Some(g), Some(before)) => {
            g.wait_download(&h.client, &before, &h.downloads, limit, &loc.to_string())
                .await?
        }
        _ => wait_for_file(&h.downloads, &before, limit, &loc).await?,
    };
    let bytes = std::fs::read(&found).map_err(|e| {
        BrowserError::permanent(format!("cannot read the download {}: {e}", found.display()))
    })?;
    let sha = sha256_hex(&bytes);
    ctx.artifact(&found, &sha);
    let name = found
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut path = ctx.display_path(&found);
    if let Some(dest) = &args.save_to {
        let dest = ctx
            .resolve(dest)
            .map_err(|e| BrowserError::permanent(format!("{:#}", e.error)))?;
        write_atomic(&dest, &bytes)
            .map_err(|e| BrowserError::permanent(format!("cannot save the download: {e:#}")))?;
        path = ctx.display_path(&dest);
    }
    ctx.detail("file", name.clone());
    ctx.detail("sha256", sha.clone());
    ctx.detail("size", bytes.len() as u64);
    Ok(json!({ "path": path, "name": name, "sha256": sha, "size": bytes.len() }))
}

/// Waits until a new file in `dir` (not in `before`) is complete: no partial
/// download left and its size held still between two looks.
async fn wait_for_file(
    dir: &std::path::Path,
    before: &HashSet<String>,
    limit: Duration,
    loc: &Locator,
) -> Result<PathBuf, BrowserError> {
    let started = Instant::now();
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let found: PathBuf = loop {
        let now = listing(dir);
        let fresh: Vec<&String> = now.difference(before).collect();
        let busy = fresh.iter().any(|n| is_partial(n));
        let mut done = None;
        if !busy {
            for name in fresh.iter().filter(|n| !is_partial(n)) {
                let p = dir.join(name);
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                // Finished when the size held still between two looks.
                if sizes.get(*name) == Some(&size) {
                    done = Some(p);
                    break;
                }
                sizes.insert((*name).clone(), size);
            }
        }
        if let Some(p) = done {
            break p;
        }
        if started.elapsed() >= limit {
            return Err(BrowserError::retryable(format!(
                "clicking {loc} did not download a file within {} s{}",
                limit.as_secs(),
                if busy {
                    " (a download was still in progress)"
                } else {
                    ""
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok(found)
}

// ---------------------------------------------------------------- frame

/// Where `browser.frame: { leave: ... }` goes.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Leave {
    /// The frame around the current one.
    Parent,
    /// The page itself.
    Top,
}

element_args! {
    /// Arguments of `browser.frame`: a locator to enter an `<iframe>`, or `leave`.
    pub struct FrameArgs {
        /// `parent` or `top`: leave the current frame instead of entering one.
        #[serde(default)]
        pub leave: Option<Leave>,
    }
}

impl HasLocator for FrameArgs {
    const REQUIRED: bool = false;

    fn locator(&self) -> Locator {
        locator_of!(self)
    }

    fn check_rest(&self) -> Result<(), String> {
        match (self.leave.is_some(), self.locator().is_empty()) {
            (true, false) => Err("give a locator (to enter a frame) or `leave`, not both".into()),
            (false, true) => {
                Err("give a locator of the frame to enter, or `leave: parent|top`".into())
            }
            _ => Ok(()),
        }
    }
}

/// Enters an `<iframe>` (later steps work inside it) or leaves it.
pub struct Frame;

impl Action for Frame {
    type Args = Checked<FrameArgs>;
    const NAME: &'static str = "browser.frame";
    const SUMMARY: &'static str = "Enter an iframe by locator, or leave it (`leave: parent|top`).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<iframe name=reportframe srcdoc='<p>Report</p>'></iframe>\"\n- browser.frame: { css: \"iframe[name=reportframe]\" }\n- browser.read_text: { css: p }\n- browser.frame: top\n";
    const SHORTHAND: Option<&'static str> = Some("leave");

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = frame(ctx, &args).await;
        finish(ctx, started, r.map(|_| Value::Null)).await
    }
}

async fn frame(ctx: &mut ActionContext<'_>, args: &FrameArgs) -> Result<(), BrowserError> {
    match args.leave {
        Some(leave) => {
            let h = session::handle(ctx).await?;
            let steps = match leave {
                Leave::Parent => 1,
                Leave::Top => h.depth().max(1),
            };
            ctx.target(match leave {
                Leave::Parent => "leave frame (parent)",
                Leave::Top => "leave frames (top)",
            });
            for _ in 0..steps {
                wd(&h.client, h.client.enter_parent_frame().await).await?;
            }
            h.left_frames(steps);
        }
        None => {
            let loc = args.locator();
            let h = begin(ctx, &loc).await?;
            let limit = wait_limit(ctx, args.wait_limit());
            let (el, answer) = resolve::find(&h, &loc, Need::Visible, limit).await?;
            if !matches!(
                answer.get("tag").and_then(Value::as_str),
                Some("iframe" | "frame")
            ) {
                resolve::leave_auto(&h).await;
                return Err(BrowserError::permanent(format!(
                    "{loc} is not a frame or iframe"
                )));
            }
            if let Err(e) = el.enter_frame().await {
                let e = BrowserError::webdriver(&h.client, e).await;
                resolve::leave_auto(&h).await;
                return Err(e);
            }
            // Frames entered to reach it become part of where later steps work.
            let via = h.auto_frames.swap(0, std::sync::atomic::Ordering::SeqCst);
            for _ in 0..=via {
                h.enter_frame();
            }
            note_frame(ctx, &answer);
            note_url(ctx, &answer);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- dialog

/// Arguments of `browser.dialog`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DialogArgs {
    /// `true` (default) presses OK; `false` presses Cancel.
    #[serde(default = "yes")]
    pub accept: bool,
    /// Text to type into a `prompt()` before answering.
    #[serde(default)]
    pub text: Option<Text>,
    /// How long to wait for the dialog to appear (default: `browser.timeout`).
    #[serde(default)]
    pub timeout: Option<DurationArg>,
    /// `true`: no dialog within `timeout` is an answer (`null`), not a
    /// failure — for pages that show an alert only on success.
    #[serde(default)]
    pub optional: bool,
    /// After answering: `auto` (default) waits for the page the answer loads
    /// (a `confirm()` before a form is sent); `navigation`; `none`.
    #[serde(default)]
    pub wait: Option<WaitMode>,
    /// `fail` (default): a 5xx answer to the form the dialog let through fails
    /// the step; `ignore`: go on.
    #[serde(default)]
    pub http_errors: Option<HttpErrors>,
}

fn yes() -> bool {
    true
}

/// Answers the page's alert / confirm / prompt dialog and returns its text.
pub struct Dialog;

impl Action for Dialog {
    type Args = DialogArgs;
    const NAME: &'static str = "browser.dialog";
    const SUMMARY: &'static str =
        "Accept or dismiss an alert/confirm/prompt dialog; returns its text.";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<button onclick='confirm(\\\"Delete this case\\\")'>Delete</button>\"\n- browser.click: { text: \"Delete\" }\n- browser.dialog: { accept: true }\n  save_as: question\n";
    const SHORTHAND: Option<&'static str> = Some("accept");
    const RESULT: &'static str = "string (the dialog's text), or null (`optional`, none appeared)";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = dialog(ctx, &args).await;
        if r.as_ref().is_ok_and(Value::is_null) {
            // `optional` and none appeared: an answer, not a failure (no evidence).
            ctx.detail("duration_ms", started.elapsed().as_millis() as u64);
            return Ok(Value::Null);
        }
        finish(ctx, started, r).await
    }
}

async fn dialog(ctx: &mut ActionContext<'_>, args: &DialogArgs) -> Result<Value, BrowserError> {
    ctx.target("dialog");
    ctx.detail("accept", args.accept);
    let h = session::handle(ctx).await?;
    let limit = wait_limit(ctx, args.timeout.map(|t| t.0));
    let started = Instant::now();
    let text = loop {
        match h.client.get_alert_text().await {
            Ok(t) => break t,
            Err(e) if e.is_no_such_alert() && started.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) if e.is_no_such_alert() && args.optional => {
                ctx.detail("appeared", false);
                return Ok(Value::Null);
            }
            Err(e) if e.is_no_such_alert() => {
                return Err(BrowserError::retryable(format!(
                    "no dialog appeared within {} s",
                    limit.as_secs_f64().round()
                )));
            }
            Err(e) => return Err(BrowserError::webdriver(&h.client, e).await),
        }
    };
    // What the dialog said is what this step read: `value` (masked when the
    // step is sensitive, like every read).
    ctx.detail("value", crate::secrets::redact(&text));
    if let Some(t) = &args.text {
        let shown = super::shown_value(ctx, &t.0);
        ctx.detail("typed", shown);
        wd(&h.client, h.client.send_alert_text(&t.0).await).await?;
    }
    if args.accept {
        wd(&h.client, h.client.accept_alert().await).await?;
    } else {
        wd(&h.client, h.client.dismiss_alert().await).await?;
    }
    // The click that opened it may have been about to send a form.
    let settings = h.settings();
    let mut before = h.take_pending().unwrap_or(navigate::Before {
        doc: None,
        method: "GET".into(),
        mode: WaitMode::Auto,
        http_errors: settings.http_errors,
        limit,
        target: Vec::new(),
    });
    if let Some(w) = args.wait {
        before.mode = w;
    }
    if let Some(x) = args.http_errors {
        before.http_errors = x;
    }
    resolve::leave_auto(&h).await;
    let settled = navigate::settle(&h, &before).await;
    match settled {
        Ok(navigate::Settled::Dialog) => {
            // Another dialog (e.g. the alert of the page that loaded): the next step answers it.
            ctx.detail("dialog_opened", true);
            h.set_pending(Some(before));
        }
        Ok(navigate::Settled::Stayed) => resolve::leave_auto(&h).await,
        Ok(navigate::Settled::Landed { status, url }) => {
            resolve::leave_auto(&h).await;
            ctx.detail("navigated", true);
            if let Some(s) = status {
                ctx.detail("http_status", s);
            }
            ctx.detail("url", url.clone());
            navigate::check_status(status, &before.method, &url, before.http_errors)?;
        }
        Err(e) => {
            resolve::leave_auto(&h).await;
            return Err(e);
        }
    }
    Ok(Value::String(text))
}

// ---------------------------------------------------------------- execute_script

/// Arguments of `browser.execute_script`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteScriptArgs {
    /// JavaScript run as a function body; `return` a value; `arguments[i]` are `args`.
    pub script: String,
    /// Values passed to the script.
    #[serde(default)]
    pub args: Vec<Value>,
}

/// Runs JavaScript in the page (the escape hatch; the script is audited in full).
pub struct ExecuteScript;

impl Action for ExecuteScript {
    type Args = ExecuteScriptArgs;
    const NAME: &'static str = "browser.execute_script";
    const SUMMARY: &'static str =
        "Run JavaScript in the page and return its result (audited in full).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<title>Cases</title>\"\n- browser.execute_script: { script: \"return document.title\" }\n  save_as: title\n";
    const SHORTHAND: Option<&'static str> = Some("script");
    const RESULT: &'static str = "what the script returns";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let started = Instant::now();
        ctx.target("script");
        ctx.detail("script", args.script.clone());
        ctx.detail("script_args", Value::Array(args.args.clone()));
        let r = async {
            let h = session::handle(ctx).await?;
            match h.client.execute(&args.script, args.args.clone()).await {
                Ok(v) => {
                    note_current_url(ctx, &h.client).await;
                    note_read(ctx, &v);
                    Ok(v)
                }
                Err(e) if e.is_javascript_error() => Err(BrowserError::permanent(format!(
                    "the script failed: {}",
                    super::wd_message(&e)
                ))),
                Err(e) => Err(BrowserError::webdriver(&h.client, e).await),
            }
        }
        .await;
        finish(ctx, started, r).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        let enter: char = Key::Enter.into();
        assert_eq!(key_codes("Enter").unwrap(), enter.to_string());
        let ctrl: char = Key::Control.into();
        let null: char = Key::Null.into();
        assert_eq!(key_codes("Control+a").unwrap(), format!("{ctrl}a{null}"));
        assert!(
            key_codes("Hyper")
                .unwrap_err()
                .contains("unknown key `Hyper`")
        );
    }
}
