//! Element actions: click, fill, type, select, check, uncheck, read_text,
//! read_value, read_attribute, upload. Each waits for its element (see
//! [`super::resolve`]) and records locator, value (masked), URL and duration.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use fantoccini::Client;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::locator::{Checked, HasLocator, Locator, element_args, has_locator, locator_of};
use super::navigate::{self, Before, HttpErrors, Settled, WaitMode};
use super::resolve::{self, Need};
use super::{BrowserError, finish, session, shown_value, wait_limit, wd};
use crate::actions::{Action, ActionContext, ActionResult};

/// A value typed into a page: text, or a number / boolean written as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Text(s)),
            Value::Number(n) => Ok(Text(n.to_string())),
            Value::Bool(b) => Ok(Text(b.to_string())),
            Value::Null => Ok(Text(String::new())),
            _ => Err(serde::de::Error::custom(
                "expected text (a string, number or boolean), not a list or map",
            )),
        }
    }
}

impl JsonSchema for Text {
    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Text; numbers and booleans are entered as written.",
            "type": ["string", "number", "boolean", "null"]
        })
    }
}

/// Records what every element action records, and returns the session.
pub(super) async fn begin(
    ctx: &mut ActionContext<'_>,
    loc: &Locator,
) -> Result<session::Handle, BrowserError> {
    let shown = loc.to_string();
    ctx.target(shown.clone());
    ctx.detail("locator", shown);
    let h = session::handle(ctx).await?;
    // Frames an earlier action entered and could not leave (it failed, or a
    // dialog opened inside the frame): every step starts where it should.
    resolve::leave_auto(&h).await;
    Ok(h)
}

/// Notes the frame an auto-searched element was found in.
pub(super) fn note_frame(ctx: &mut ActionContext<'_>, answer: &Value) {
    if let Some(f) = answer.get("frame").and_then(Value::as_str) {
        ctx.detail("frame", f.to_string());
    }
}

/// Records what a read returned, under `value` (so that a `sensitive` step
/// masks it like a typed value), secrets masked.
pub(super) fn note_read(ctx: &mut ActionContext<'_>, value: &Value) {
    let mut shown = value.clone();
    crate::secrets::redact_json(&mut shown);
    let text = serde_json::to_string(&shown).unwrap_or_default();
    if text.len() > READ_EVIDENCE_LIMIT {
        // Too big for an audit event: its size and fingerprint instead.
        let count = shown.as_array().map(|a| a.len() as u64);
        ctx.detail(
            "value",
            json!({
                "count": count,
                "bytes": text.len(),
                "sha256": crate::fsutil::sha256_hex(text.as_bytes()),
            }),
        );
    } else {
        ctx.detail("value", shown);
    }
}

/// Reads up to this many bytes of JSON are recorded whole in their audit
/// event; larger ones as `{ count, bytes, sha256 }` of the canonical JSON.
pub const READ_EVIDENCE_LIMIT: usize = 64 * 1024;

/// Notes the page URL the resolver reported (no extra round trip).
pub(super) fn note_url(ctx: &mut ActionContext<'_>, answer: &Value) {
    if let Some(u) = answer.get("url").and_then(Value::as_str) {
        ctx.detail("url", u.to_string());
    }
}

/// Notes the current URL (one round trip; after clicks and navigation).
pub(super) async fn note_current_url(
    ctx: &mut ActionContext<'_>,
    client: &Client,
) -> Option<String> {
    match client.current_url().await {
        Ok(u) => {
            let u = u.to_string();
            ctx.detail("url", u.clone());
            Some(u)
        }
        Err(_) => None,
    }
}

/// Runs a resolver operation and notes the URL.
async fn op(
    ctx: &mut ActionContext<'_>,
    loc: &Locator,
    op: Value,
    need: Need,
    timeout: Option<Duration>,
) -> Result<Value, BrowserError> {
    let h = begin(ctx, loc).await?;
    let limit = wait_limit(ctx, timeout);
    let answer = resolve::run_op(&h, loc, op, need, limit).await?;
    note_url(ctx, &answer);
    note_frame(ctx, &answer);
    Ok(answer)
}

// ---------------------------------------------------------------- click

element_args! {
    /// Arguments of `browser.click`: a locator, and how to treat the page it loads.
    pub struct ClickArgs {
        /// `auto` (default): wait for the new page when the click starts a
        /// navigation; `navigation`: a new page must load; `none`: do not wait.
        #[serde(default)]
        pub wait: Option<WaitMode>,
        /// `fail` (default): a 5xx answer fails the step (a system error);
        /// `ignore`: go on.
        #[serde(default)]
        pub http_errors: Option<HttpErrors>,
        /// Answer the dialog the click opens before a new page loads (a
        /// `confirm()` before a form is sent): `accept` or `dismiss`. Its
        /// text is recorded as `dialog`.
        #[serde(default)]
        pub dialog: Option<Answer>,
        /// Then wait for the first of these named outcomes (as
        /// `browser.wait_for { any }`) and return `{ matched, text, texts }`:
        /// "submit and read the answer" in one step, one round trip per poll.
        #[serde(default)]
        pub wait_for: Option<super::outcome::Branches>,
    }
}

impl HasLocator for ClickArgs {
    fn locator(&self) -> Locator {
        locator_of!(self)
    }

    fn check_rest(&self) -> Result<(), String> {
        match &self.wait_for {
            Some(b) => b.check().map_err(|e| e.replace("`any", "`wait_for")),
            None => Ok(()),
        }
    }
}

/// How to answer a dialog.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// Press OK.
    Accept,
    /// Press Cancel.
    Dismiss,
}

/// Clicks an element (a real mouse click: scrolls it into view, fires
/// trusted mouse events at its centre, follows links, submits forms; see
/// [`click_element`]).
pub struct Click;

impl Action for Click {
    type Args = Checked<ClickArgs>;
    const NAME: &'static str = "browser.click";
    const SUMMARY: &'static str =
        "Click a button, link or other element (waits until it is visible and enabled).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<form onsubmit='return false'><button>Sign in</button></form>\"\n- browser.click: { text: \"Sign in\" }\n";
    const SHORTHAND: Option<&'static str> = Some("text");
    const RESULT: &'static str =
        "null; with `wait_for`: { matched, text, texts } of the first outcome that showed";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let nav = Nav {
            wait: args.wait,
            http_errors: args.http_errors,
        };
        let r = if args.dialog.is_some() || args.wait_for.is_some() {
            click_and_wait(ctx, &args).await
        } else {
            click(ctx, &args.locator(), args.wait_limit(), nav)
                .await
                .map(|_| Value::Null)
        };
        finish(ctx, started, r).await
    }
}

/// `browser.click` with `dialog` / `wait_for`: click, answer the confirm,
/// wait for the new page and the first outcome — polled together.
async fn click_and_wait(
    ctx: &mut ActionContext<'_>,
    args: &ClickArgs,
) -> Result<Value, BrowserError> {
    let loc = args.locator();
    if let Some(b) = &args.wait_for {
        ctx.detail("wait_for", b.shown());
    }
    let (h, answer, limit) = click_only(ctx, &loc, args.wait_limit()).await?;
    let settings = h.settings();
    let before = Before::from_answer(
        &answer,
        args.wait.unwrap_or(settings.wait),
        args.http_errors.unwrap_or(settings.http_errors),
        limit,
    );
    resolve::leave_auto(&h).await;
    let expect = super::outcome::Expect {
        before,
        dialog: args.dialog.map(|d| d == Answer::Accept),
    };
    let r =
        super::outcome::wait_outcome(ctx, &h, args.wait_for.as_ref(), Some(expect), limit).await;
    resolve::leave_auto(&h).await;
    if r.is_ok() && args.wait_for.is_none() {
        note_current_url(ctx, &h.client).await;
    }
    r
}

/// A step's own navigation settings (the run's `browser.settings` otherwise).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Nav {
    pub wait: Option<WaitMode>,
    pub http_errors: Option<HttpErrors>,
}

/// After an action on `answer`'s element that may navigate: waits for the
/// new document, checks its HTTP status, leaves auto-entered frames. A
/// dialog that opened is left for `browser.dialog` (which finishes the wait).
pub(super) async fn after_action(
    ctx: &mut ActionContext<'_>,
    h: &session::Handle,
    answer: &Value,
    nav: Nav,
    limit: Duration,
) -> Result<(), BrowserError> {
    let settings = h.settings();
    let before = Before::from_answer(
        answer,
        nav.wait.unwrap_or(settings.wait),
        nav.http_errors.unwrap_or(settings.http_errors),
        limit,
    );
    // The new page is looked at from the top (its window may be another
    // frame); leaving fails while a dialog is open, and settle says so.
    resolve::leave_auto(h).await;
    let settled = navigate::settle(h, &before).await;
    match settled {
        Ok(Settled::Dialog) => {
            ctx.detail("dialog_opened", true);
            h.set_pending(Some(before));
            Ok(())
        }
        Ok(Settled::Stayed) => {
            resolve::leave_auto(h).await;
            note_current_url(ctx, &h.client).await;
            Ok(())
        }
        Ok(Settled::Landed { status, url }) => {
            resolve::leave_auto(h).await;
            ctx.detail("navigated", true);
            if let Some(s) = status {
                ctx.detail("http_status", s);
            }
            ctx.detail("url", url.clone());
            navigate::check_status(status, &before.method, &url, before.http_errors)
        }
        Err(e) => {
            resolve::leave_auto(h).await;
            Err(e)
        }
    }
}

/// Finds and clicks, retrying while something covers the element; then
/// waits for the page the click loads (see [`after_action`]).
pub(super) async fn click(
    ctx: &mut ActionContext<'_>,
    loc: &Locator,
    timeout: Option<Duration>,
    nav: Nav,
) -> Result<(), BrowserError> {
    let (h, answer, limit) = click_only(ctx, loc, timeout).await?;
    after_action(ctx, &h, &answer, nav, limit).await
}

/// Finds and clicks (see [`click`]); returns the session, the resolver's
/// answer for the element and the wait limit. Frames entered to reach the
/// element are still entered.
async fn click_only(
    ctx: &mut ActionContext<'_>,
    loc: &Locator,
    timeout: Option<Duration>,
) -> Result<(session::Handle, Value, Duration), BrowserError> {
    let h = begin(ctx, loc).await?;
    let limit = wait_limit(ctx, timeout);
    let started = Instant::now();
    let answer = loop {
        let left = limit.saturating_sub(started.elapsed());
        let (el, answer) = resolve::find(&h, loc, Need::Interact, left).await?;
        note_frame(ctx, &answer);
        match click_element(&h.client, &el).await {
            Ok(()) => break answer,
            Err(e) => {
                let msg = super::wd_message(&e);
                let passing = msg.contains("click intercepted")
                    || e.is_element_not_interactable()
                    || e.is_stale_element_reference();
                if !e.is_unexpected_alert_open() {
                    resolve::leave_auto(&h).await;
                }
                if !passing || started.elapsed() >= limit {
                    return Err(BrowserError::webdriver(&h.client, e)
                        .await
                        .context(format!("cannot click {loc}")));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    Ok((h, answer, limit))
}

/// Whether `arguments[0]` can take a click at its centre in the top window:
/// scrolled into view if it is not, and the element under its centre is it
/// (or inside it).
const CLEAR_CENTRE: &str = "var el = arguments[0]; \
    if (window !== window.top || !el.getBoundingClientRect) return false; \
    var r = el.getBoundingClientRect(); \
    if (r.width < 1 || r.height < 1) return false; \
    if (r.top < 0 || r.left < 0 || r.bottom > window.innerHeight || r.right > window.innerWidth) { \
      el.scrollIntoView({ block: 'center', inline: 'center' }); r = el.getBoundingClientRect(); } \
    var hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2); \
    return !!hit && (hit === el || el.contains(hit));";

/// A real click on `el`. When its centre is clear (one short script), as a
/// W3C Actions click: the pointer moves to the centre, presses and releases
/// — the same trusted mouse events as chromedriver's element click, in one
/// command of ~30 ms instead of ~70–90 ms (the element click re-runs its own
/// visibility, scrolling and hit checks and a navigation check, which the
/// resolver and the action's own wait already do). In a frame, or when
/// something covers the element, the element click is used: it knows frames
/// and says what intercepts the click.
async fn click_element(
    client: &Client,
    el: &fantoccini::elements::Element,
) -> Result<(), fantoccini::error::CmdError> {
    use fantoccini::actions::{InputSource as _, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
    let arg = serde_json::to_value(el).unwrap_or(Value::Null);
    let clear = matches!(
        client.execute(CLEAR_CENTRE, vec![arg]).await,
        Ok(Value::Bool(true))
    );
    if !clear {
        return el.click().await;
    }
    let mouse = MouseActions::new("clerk-mouse".to_string())
        .then(PointerAction::MoveToElement {
            element: el.clone(),
            duration: Some(Duration::ZERO),
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(mouse).await
}

// ---------------------------------------------------------------- fill

element_args! {
    /// Arguments of `browser.fill`.
    pub struct FillArgs {
        /// The value; replaces what the field holds. Date fields take `YYYY-MM-DD`.
        pub value: Text,
    }
}
has_locator!(FillArgs);

/// Sets a text field, textarea or date field (clears it first) in one round
/// trip, firing `input` and `change` like a person's typing would.
pub struct Fill;

impl Action for Fill {
    type Args = Checked<FillArgs>;
    const NAME: &'static str = "browser.fill";
    const SUMMARY: &'static str =
        "Clear a field and enter a value (one round trip; fires input/change).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<label>Postcode <input></label>\"\n- browser.fill: { label: \"Postcode\", value: \"1000\" }\n";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let value = args.value.0.clone();
        let shown = shown_value(ctx, &value);
        ctx.detail("value", shown);
        let r = op(
            ctx,
            &args.locator(),
            json!({ "op": "fill", "value": value }),
            Need::Interact,
            args.wait_limit(),
        )
        .await;
        finish(ctx, started, r.map(|_| Value::Null)).await
    }
}

// ---------------------------------------------------------------- type

element_args! {
    /// Arguments of `browser.type`.
    pub struct TypeArgs {
        /// The text, sent as real key events one character at a time.
        pub value: Text,
        /// Clear the field first (default false: the text is added).
        #[serde(default)]
        pub clear: bool,
    }
}
has_locator!(TypeArgs);

/// Types text with real key events (for pages that listen to keystrokes).
pub struct Type;

impl Action for Type {
    type Args = Checked<TypeArgs>;
    const NAME: &'static str = "browser.type";
    const SUMMARY: &'static str =
        "Type text with real key events (for pages that react to keystrokes).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<label>Search <input value=old></label>\"\n- browser.type: { label: \"Search\", value: \"Visitor\", clear: true }\n";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let shown = shown_value(ctx, &args.value.0);
        ctx.detail("value", shown);
        let r = type_text(ctx, &args).await;
        finish(ctx, started, r.map(|_| Value::Null)).await
    }
}

async fn type_text(ctx: &mut ActionContext<'_>, args: &TypeArgs) -> Result<(), BrowserError> {
    let loc = args.locator();
    let h = begin(ctx, &loc).await?;
    let limit = wait_limit(ctx, args.wait_limit());
    let (el, answer) = resolve::find(&h, &loc, Need::Interact, limit).await?;
    note_frame(ctx, &answer);
    let typed = async {
        if args.clear {
            wd(&h.client, el.clear().await).await?;
        }
        wd(&h.client, el.send_keys(&args.value.0).await).await
    }
    .await;
    resolve::leave_auto(&h).await;
    typed?;
    note_current_url(ctx, &h.client).await;
    Ok(())
}

// ---------------------------------------------------------------- select

element_args! {
    /// Arguments of `browser.select`: `option` (visible text) or `value`.
    pub struct SelectArgs {
        /// The option's visible text, e.g. `Visitor`.
        #[serde(default)]
        pub option: Option<Text>,
        /// The option's `value` attribute.
        #[serde(default)]
        pub value: Option<Text>,
    }
}

impl HasLocator for SelectArgs {
    fn locator(&self) -> Locator {
        locator_of!(self)
    }

    fn check_rest(&self) -> Result<(), String> {
        match (&self.option, &self.value) {
            (Some(_), Some(_)) => Err("give `option` (visible text) or `value`, not both".into()),
            (None, None) => Err("give `option` (the visible text) or `value`".into()),
            _ => Ok(()),
        }
    }
}

/// Chooses an option of a `<select>`.
pub struct Select;

impl Action for Select {
    type Args = Checked<SelectArgs>;
    const NAME: &'static str = "browser.select";
    const SUMMARY: &'static str = "Choose an option of a drop-down by its visible text or value.";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<label>Permit type <select><option>Resident</option><option>Visitor</option></select></label>\"\n- browser.select: { label: \"Permit type\", option: \"Visitor\" }\n";
    const RESULT: &'static str = "{ value, option }";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let op_args = match (&args.option, &args.value) {
            (Some(o), _) => {
                let shown = shown_value(ctx, &o.0);
                ctx.detail("option", shown);
                json!({ "op": "select", "option": o.0 })
            }
            (None, Some(v)) => {
                let shown = shown_value(ctx, &v.0);
                ctx.detail("value", shown);
                json!({ "op": "select", "value": v.0 })
            }
            (None, None) => json!({ "op": "select", "option": "" }),
        };
        let r = op(
            ctx,
            &args.locator(),
            op_args,
            Need::Interact,
            args.wait_limit(),
        )
        .await
        .map(|a| json!({ "value": a["value"], "option": a["option"] }));
        finish(ctx, started, r).await
    }
}

// ---------------------------------------------------------------- check / uncheck

element_args! {
    /// Arguments of `browser.check` / `browser.uncheck`: a locator, and for a
    /// group of radio buttons (e.g. `name: contact`) the `value` to choose
    /// (its value attribute or the text right after it).
    pub struct CheckArgs {
        /// Which radio button / checkbox of the matched group: its `value`
        /// attribute or the text after it. Absent: a business error listing
        /// the values that exist.
        #[serde(default)]
        pub value: Option<Text>,
    }
}
has_locator!(CheckArgs);

async fn set_checked(ctx: &mut ActionContext<'_>, args: CheckArgs, on: bool) -> ActionResult {
    let started = Instant::now();
    ctx.detail("checked", on);
    if let Some(v) = &args.value {
        let shown = shown_value(ctx, &v.0);
        ctx.detail("value", shown);
    }
    let r = op(
        ctx,
        &args.locator(),
        json!({ "op": "check", "checked": on, "value": args.value.as_ref().map(|v| v.0.clone()) }),
        Need::Interact,
        args.wait_limit(),
    )
    .await;
    finish(ctx, started, r.map(|_| Value::Null)).await
}

/// Ticks a checkbox or chooses a radio button (nothing happens if it already is).
pub struct Check;

impl Action for Check {
    type Args = Checked<CheckArgs>;
    const NAME: &'static str = "browser.check";
    const SUMMARY: &'static str = "Tick a checkbox or choose a radio button (no-op if already so).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<label><input type=checkbox> Details confirmed</label>\"\n- browser.check: { label: \"Details confirmed\" }\n";
    const SHORTHAND: Option<&'static str> = Some("label");

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        set_checked(ctx, args, true).await
    }
}

/// Unticks a checkbox.
pub struct Uncheck;

impl Action for Uncheck {
    type Args = Checked<CheckArgs>;
    const NAME: &'static str = "browser.uncheck";
    const SUMMARY: &'static str = "Untick a checkbox (no-op if already unticked).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<label><input type=checkbox checked> Newsletter</label>\"\n- browser.uncheck: { label: \"Newsletter\" }\n";
    const SHORTHAND: Option<&'static str> = Some("label");

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        set_checked(ctx, args, false).await
    }
}

// ---------------------------------------------------------------- reads

element_args! {
    /// Arguments of `browser.read_text` / `browser.read_value`: a locator.
    pub struct ReadArgs {}
}
has_locator!(ReadArgs);

/// Reads an element's visible text (whitespace collapsed).
pub struct ReadText;

impl Action for ReadText {
    type Args = Checked<ReadArgs>;
    const NAME: &'static str = "browser.read_text";
    const SUMMARY: &'static str = "Read an element's visible text (waits until it is visible).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<p>Case reference: <span class=case-ref>CASE-000001</span></p>\"\n- browser.read_text: { css: \".case-ref\" }\n  save_as: case_ref\n";
    const SHORTHAND: Option<&'static str> = Some("css");
    const RESULT: &'static str = "string";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = read(ctx, &args, json!({ "op": "text" }), Need::Visible).await;
        finish(ctx, started, r).await
    }
}

/// Reads a form field's current value (checkboxes give true / false).
pub struct ReadValue;

impl Action for ReadValue {
    type Args = Checked<ReadArgs>;
    const NAME: &'static str = "browser.read_value";
    const SUMMARY: &'static str = "Read a form field's current value (checkboxes: true/false).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<label>Postcode <input value=1000></label>\"\n- browser.read_value: { label: \"Postcode\" }\n  save_as: postcode\n";
    const RESULT: &'static str = "string (bool for checkboxes)";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = read(ctx, &args, json!({ "op": "value" }), Need::Present).await;
        finish(ctx, started, r).await
    }
}

async fn read(
    ctx: &mut ActionContext<'_>,
    args: &ReadArgs,
    op_args: Value,
    need: Need,
) -> Result<Value, BrowserError> {
    let answer = op(ctx, &args.locator(), op_args, need, args.wait_limit()).await?;
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if let Value::String(s) = &value {
        ctx.detail("chars", s.chars().count() as u64);
    }
    note_read(ctx, &value);
    Ok(value)
}

element_args! {
    /// Arguments of `browser.read_attribute`.
    pub struct ReadAttributeArgs {
        /// The attribute, e.g. `href`.
        pub attribute: String,
    }
}
has_locator!(ReadAttributeArgs);

/// Reads an attribute of an element (null when it has none).
pub struct ReadAttribute;

impl Action for ReadAttribute {
    type Args = Checked<ReadAttributeArgs>;
    const NAME: &'static str = "browser.read_attribute";
    const SUMMARY: &'static str = "Read an element's attribute (null when absent).";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<a href=/cases/export.csv>Export CSV</a>\"\n- browser.read_attribute: { text: \"Export CSV\", attribute: href }\n  save_as: link\n";
    const RESULT: &'static str = "string or null";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        ctx.detail("attribute", args.attribute.clone());
        let r = op(
            ctx,
            &args.locator(),
            json!({ "op": "attr", "name": args.attribute }),
            Need::Present,
            args.wait_limit(),
        )
        .await
        .map(|a| a.get("value").cloned().unwrap_or(Value::Null));
        if let Ok(v) = &r {
            note_read(ctx, v);
        }
        finish(ctx, started, r).await
    }
}

// ---------------------------------------------------------------- upload

element_args! {
    /// Arguments of `browser.upload`.
    pub struct UploadArgs {
        /// The file to attach, relative to the workspace.
        pub path: String,
    }
}
has_locator!(UploadArgs);

/// Attaches a file to an `<input type="file">`.
pub struct Upload;

impl Action for Upload {
    type Args = Checked<UploadArgs>;
    const NAME: &'static str = "browser.upload";
    const SUMMARY: &'static str = "Attach a workspace file to a file input.";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<label>Supporting document <input type=file></label>\"\n- browser.upload: { label: \"Supporting document\", path: fixtures/hello.txt }\n";
    const RESULT: &'static str = "{ path, sha256, size }";

    async fn run(ctx: &mut ActionContext<'_>, Checked(args): Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = upload(ctx, &args).await;
        finish(ctx, started, r).await
    }
}

async fn upload(ctx: &mut ActionContext<'_>, args: &UploadArgs) -> Result<Value, BrowserError> {
    let path = ctx
        .resolve(&args.path)
        .map_err(|e| BrowserError::permanent(format!("{:#}", e.error)))?;
    let shown = ctx.display_path(&path);
    ctx.detail("path", shown.clone());
    let (sha, size) = crate::fsutil::sha256_file(&path)
        .map_err(|e| BrowserError::permanent(format!("cannot upload {shown}: {e:#}")))?;
    ctx.detail("sha256", sha.clone());
    ctx.detail("size", size);
    let abs = std::path::absolute(&path)
        .map_err(|e| BrowserError::permanent(format!("cannot upload {shown}: {e}")))?;
    let loc = args.locator();
    let h = begin(ctx, &loc).await?;
    let limit = wait_limit(ctx, args.wait_limit());
    // File inputs are often styled away behind a nicer button: present is enough.
    let (el, answer) = resolve::find(&h, &loc, Need::Present, limit).await?;
    note_frame(ctx, &answer);
    let sent = if answer.get("tag").and_then(Value::as_str) != Some("input") {
        Err(BrowserError::permanent(format!(
            "{loc} is not a file input"
        )))
    } else {
        wd(&h.client, el.send_keys(&abs.display().to_string()).await).await
    };
    resolve::leave_auto(&h).await;
    sent?;
    note_url(ctx, &answer);
    Ok(json!({ "path": shown, "sha256": sha, "size": size }))
}
