//! `browser.fill_form`: a whole form in ONE WebDriver round trip per poll.
//!
//! Every field is named by its label and found with the same label rules as
//! the single actions (`resolve.js`), set with the same operation (`fill`,
//! `select`, `check`, plus `choose` for a group of radio buttons), and read
//! back once all are set. Fields that are not there yet are waited for;
//! the others are not touched again. Every problem is reported at once,
//! naming the field's label, and the audit event lists every field and
//! value, each masked like `browser.fill` masks its value.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::locator::Locator;
use super::resolve;
use super::{BrowserError, finish, session, shown_value, wait_limit};
use crate::actions::types::DurationArg;
use crate::actions::{Action, ActionContext, ActionResult, ErrorKind};

/// What one field gets.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Text for a text field, textarea or date field (numbers as written).
    Text(String),
    /// `true` ticks a checkbox (or chooses a single radio button), `false` unticks it.
    Check(bool),
    /// `{ select: "Visitor" }`: the option of a drop-down, by its visible text.
    Select(String),
    /// `{ choose: "By post" }`: the radio button of the group the label
    /// names, by its value or the text after it.
    Choose(String),
}

impl FieldValue {
    fn kind(&self) -> &'static str {
        match self {
            FieldValue::Text(_) => "text",
            FieldValue::Check(_) => "check",
            FieldValue::Select(_) => "select",
            FieldValue::Choose(_) => "choose",
        }
    }

    fn to_js(&self) -> Value {
        match self {
            FieldValue::Text(t) | FieldValue::Select(t) | FieldValue::Choose(t) => json!(t),
            FieldValue::Check(b) => json!(b),
        }
    }
}

/// A scalar written as text (numbers as written).
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

const VALUE_SHAPES: &str = "text, true/false (a checkbox), `{ select: \"option text\" }` or \
    `{ choose: \"radio button\" }`";

impl FieldValue {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Bool(b) => Ok(FieldValue::Check(b)),
            Value::Object(map) => {
                let mut it = map.into_iter();
                match (it.next(), it.next()) {
                    (Some((k, v)), None) if k == "select" || k == "choose" => {
                        let t = text_of(&v).ok_or_else(|| format!("`{k}` takes text"))?;
                        Ok(if k == "select" {
                            FieldValue::Select(t)
                        } else {
                            FieldValue::Choose(t)
                        })
                    }
                    _ => Err(format!("expected {VALUE_SHAPES}")),
                }
            }
            other => text_of(&other)
                .map(FieldValue::Text)
                .ok_or_else(|| format!("expected {VALUE_SHAPES}")),
        }
    }
}

/// The fields, in the order written (label → value).
#[derive(Debug, Clone, PartialEq)]
pub struct Fields(pub Vec<(String, FieldValue)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde_json keeps the order of keys (preserve_order).
        let map = serde_json::Map::<String, Value>::deserialize(d)?;
        if map.is_empty() {
            return Err(serde::de::Error::custom(
                "`fields` is empty: give each field's label and its value",
            ));
        }
        let mut out = Vec::with_capacity(map.len());
        for (label, v) in map {
            if label.trim().is_empty() {
                return Err(serde::de::Error::custom("a field's label is empty"));
            }
            let value = FieldValue::from_value(v)
                .map_err(|e| serde::de::Error::custom(format!("field `{label}`: {e}")))?;
            out.push((label, value));
        }
        Ok(Fields(out))
    }
}

impl JsonSchema for Fields {
    fn schema_name() -> Cow<'static, str> {
        "FormFields".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Each field's label (the same label rules as `label:` locators) and its value: text, true/false for a checkbox, `{ select: \"option text\" }` for a drop-down, `{ choose: \"radio text or value\" }` for a group of radio buttons.",
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "anyOf": [
                    { "type": ["string", "number", "boolean", "null"] },
                    { "type": "object", "properties": { "select": { "type": ["string", "number"] } }, "required": ["select"], "additionalProperties": false },
                    { "type": "object", "properties": { "choose": { "type": ["string", "number"] } }, "required": ["choose"], "additionalProperties": false }
                ]
            }
        })
    }
}

/// Arguments of `browser.fill_form`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FillFormArgs {
    /// Label → value, in the order the fields are to be set.
    pub fields: Fields,
    /// Only look for the fields inside the element this locator finds (a
    /// form, a fieldset) — for pages holding two forms with the same labels.
    #[serde(default)]
    pub within: Option<CheckedLocator>,
    /// How long to wait for fields that are not there yet (default: `browser.timeout`).
    #[serde(default)]
    pub timeout: Option<DurationArg>,
}

/// A locator checked for exactly one kind while deserializing.
#[derive(Debug, Clone)]
pub struct CheckedLocator(pub Locator);

impl<'de> Deserialize<'de> for CheckedLocator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let l = Locator::deserialize(d)?;
        l.validate()
            .map_err(|e| serde::de::Error::custom(format!("`within`: {e}")))?;
        Ok(CheckedLocator(l))
    }
}

impl JsonSchema for CheckedLocator {
    fn schema_name() -> Cow<'static, str> {
        Locator::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        Locator::json_schema(generator)
    }
}

/// Fills a whole form in one round trip.
pub struct FillForm;

impl Action for FillForm {
    type Args = FillFormArgs;
    const NAME: &'static str = "browser.fill_form";
    const SUMMARY: &'static str = "Fill a whole form by labels in one round trip: text, drop-downs, checkboxes, radio buttons; every field checked and audited.";
    const EXAMPLE: &'static str = "- browser.open: \"data:text/html,<form><label>Request id <input></label> <label>Permit type <select><option>Resident</option><option>Visitor</option></select></label> <label><input type=checkbox> Details confirmed</label> <fieldset><legend>Contact preference</legend><label><input type=radio name=c value=email> By email</label><label><input type=radio name=c value=post> By post</label></fieldset></form>\"\n- browser.fill_form:\n    fields:\n      Request id: PR-2026-0001\n      Permit type: { select: Visitor }\n      Details confirmed: true\n      Contact preference: { choose: By post }\n";
    const RESULT: &'static str = "null";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let started = Instant::now();
        let r = fill_form(ctx, &args).await;
        finish(ctx, started, r.map(|_| Value::Null)).await
    }
}

/// One field's line in the audit event: its label, value (masked) and,
/// once known, the element it resolved to or its error.
fn audit_line(ctx: &ActionContext<'_>, label: &str, value: &FieldValue) -> Value {
    let shown = match value {
        FieldValue::Check(b) => json!(b),
        FieldValue::Text(t) | FieldValue::Select(t) | FieldValue::Choose(t) => {
            json!(shown_value(ctx, t))
        }
    };
    let mut line = json!({ "label": label, "value": shown });
    if !matches!(value, FieldValue::Text(_) | FieldValue::Check(_)) {
        line["kind"] = json!(value.kind());
    }
    line
}

/// The answer of the resolver for one field, or why it is still pending.
#[derive(Debug, Clone)]
enum State {
    Pending(Option<Value>),
    Done(Value),
    Failed(Value),
}

async fn fill_form(ctx: &mut ActionContext<'_>, args: &FillFormArgs) -> Result<(), BrowserError> {
    let fields = &args.fields.0;
    let labels: Vec<&str> = fields.iter().map(|(l, _)| l.as_str()).collect();
    let within = args.within.as_ref().map(|w| &w.0);
    let mut target = format!("form: {}", labels.join(", "));
    if let Some(w) = within {
        target.push_str(&format!(" within {w}"));
    }
    ctx.target(target);
    let mut lines: Vec<Value> = fields.iter().map(|(l, v)| audit_line(ctx, l, v)).collect();
    ctx.detail("fields", Value::Array(lines.clone()));
    let h = session::handle(ctx).await?;
    resolve::leave_auto(&h).await;
    let limit = wait_limit(ctx, args.timeout.map(|t| t.0));
    let loc = within.map(Locator::to_js).unwrap_or(Value::Null);
    let mut state: Vec<State> = vec![State::Pending(None); fields.len()];
    let started = Instant::now();
    let mut pause = Duration::from_millis(25);
    let mut last_page: Option<Value> = None;
    let mut explain = false;
    loop {
        let pending: Vec<Value> = state
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, State::Pending(_)))
            .map(|(i, _)| {
                let (label, value) = &fields[i];
                json!({ "i": i, "label": label, "kind": value.kind(), "value": value.to_js() })
            })
            .collect();
        let mut op =
            json!({ "op": "form", "need": "interact", "fields": pending, "explain": explain });
        if let Some(p) = h.settings().error_patterns {
            op["errorPatterns"] = json!(p);
        }
        match resolve::call(&h.client, vec![loc.clone(), op]).await {
            Ok(answer) => {
                for f in answer
                    .get("fields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(i) = f.get("i").and_then(Value::as_u64).map(|i| i as usize) else {
                        continue;
                    };
                    if i >= state.len() {
                        continue;
                    }
                    let reason = f.get("reason").and_then(Value::as_str).unwrap_or("");
                    state[i] = if f.get("ok").and_then(Value::as_bool) == Some(true) {
                        State::Done(f.clone())
                    } else if matches!(reason, "bad" | "op" | "business") || explain {
                        State::Failed(f.clone())
                    } else {
                        State::Pending(Some(f.clone()))
                    };
                }
                last_page = Some(answer);
            }
            Err(e) => {
                // A page that is navigating has no script context for a moment.
                let transient = e.is_javascript_error()
                    || e.is_no_such_window()
                    || e.to_string().contains("context")
                    || e.to_string().contains("frame");
                if !transient || started.elapsed() >= limit {
                    return Err(BrowserError::webdriver(&h.client, e).await);
                }
            }
        }
        let pending = state
            .iter()
            .filter(|s| matches!(s, State::Pending(_)))
            .count();
        let failed = state.iter().any(|s| matches!(s, State::Failed(_)));
        if pending == 0 || explain {
            break;
        }
        if failed || started.elapsed() >= limit {
            // One more look that also explains the misses (the page's
            // captions, a did-you-mean), too costly for every poll.
            explain = true;
            continue;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }

    // The audit lists every field with what it resolved to or its error.
    let mut problems: Vec<String> = Vec::new();
    let mut kind = ErrorKind::System;
    let mut rank = 0;
    for (i, s) in state.iter().enumerate() {
        let line = &mut lines[i];
        match s {
            State::Done(a) => {
                line["outcome"] = json!("ok");
                for k in ["element", "frame"] {
                    if let Some(v) = a.get(k).filter(|v| !v.is_null()) {
                        line[k] = v.clone();
                    }
                }
            }
            State::Failed(a) | State::Pending(Some(a)) => {
                let reason = a.get("reason").and_then(Value::as_str).unwrap_or("none");
                let mut message = crate::secrets::redact(
                    a.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("the field was not found"),
                );
                if !matches!(reason, "bad" | "op" | "business") {
                    message.push_str(&format!(" after {}", secs(limit)));
                }
                let (k, r) = match reason {
                    "bad" | "op" => (ErrorKind::Usage, 3),
                    "business" => (ErrorKind::Business, 2),
                    _ => (ErrorKind::System, 1),
                };
                if r > rank {
                    rank = r;
                    kind = k;
                }
                line["outcome"] = json!("failed");
                line["error"] = json!(message.clone());
                problems.push(message);
            }
            State::Pending(None) => {
                line["outcome"] = json!("not tried");
            }
        }
    }
    if let Some(page) = &last_page
        && let Some(u) = page.get("url").and_then(Value::as_str)
    {
        ctx.detail("url", u.to_string());
    }
    ctx.detail("fields", Value::Array(lines));
    if problems.is_empty() {
        return Ok(());
    }
    let mut text = format!(
        "{} of {} field{} could not be filled: {}",
        problems.len(),
        fields.len(),
        if fields.len() == 1 { "" } else { "s" },
        problems.join("; ")
    );
    if let Some(page) = &last_page {
        let url = page.get("url").and_then(Value::as_str).unwrap_or("?");
        text.push_str(&format!(" (on {url}"));
        if let Some(t) = page
            .get("title")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            text.push_str(&format!(", page '{t}'"));
        }
        text.push(')');
        let errors: Vec<String> = page
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|e| format!("'{e}'"))
                    .collect()
            })
            .unwrap_or_default();
        if !errors.is_empty() {
            text.push_str(&format!("; the page shows: {}", errors.join(", ")));
        }
    }
    Err(BrowserError {
        kind,
        message: text,
    })
}

fn secs(d: Duration) -> String {
    let tenths = (d.as_secs_f64() * 10.0).round() as u64;
    if tenths.is_multiple_of(10) {
        format!("{} s", tenths / 10)
    } else {
        format!("{}.{} s", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<FillFormArgs, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn field_values_keep_their_order_and_kind() {
        let a = parse(json!({ "fields": {
            "Request id": "PR-1", "Postcode": 1000, "Permit type": { "select": "Visitor" },
            "Details confirmed": true, "Contact preference": { "choose": "By post" }, "Notes": null
        }}))
        .unwrap();
        let kinds: Vec<(&str, &str)> = a
            .fields
            .0
            .iter()
            .map(|(l, v)| (l.as_str(), v.kind()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("Request id", "text"),
                ("Postcode", "text"),
                ("Permit type", "select"),
                ("Details confirmed", "check"),
                ("Contact preference", "choose"),
                ("Notes", "text")
            ]
        );
        assert_eq!(a.fields.0[1].1, FieldValue::Text("1000".into()));
    }

    #[test]
    fn bad_shapes_name_the_field() {
        let e = parse(json!({ "fields": { "Permit type": { "option": "Visitor" } } })).unwrap_err();
        assert!(e.contains("field `Permit type`"), "{e}");
        assert!(e.contains("select"), "{e}");
        let e = parse(json!({ "fields": {} })).unwrap_err();
        assert!(e.contains("`fields` is empty"), "{e}");
        let e = parse(json!({ "fields": { "A": [1] } })).unwrap_err();
        assert!(e.contains("field `A`"), "{e}");
        let e = parse(json!({ "fields": { "A": "x" }, "within": { "css": "a", "id": "b" } }))
            .unwrap_err();
        assert!(e.contains("`within`"), "{e}");
    }
}
