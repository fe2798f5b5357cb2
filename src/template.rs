//! Templates in playbooks: minijinja with strict undefined and clerk's filters.
//!
//! A string that is exactly one `{{ expression }}` keeps the expression's type
//! (a list stays a list); any other string renders to text. Only strings
//! written in a playbook are ever rendered: data read at run time is a value
//! and is never treated as a template.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

/// A template that failed to render, with a sentence that says why.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
}

/// True if the text contains template syntax at all.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_keep_trailing_newline(true);
        env.add_function("now", now);
        env.add_function("today", today);
        env.add_filter("date", date);
        env
    })
}

/// Global functions available to every template.
pub fn is_global(name: &str) -> bool {
    env().globals().any(|(n, _)| n == name)
}

tokio::task_local! {
    /// The time zone of the run being executed (a bot's schedule zone).
    static TIMEZONE: chrono_tz::Tz;
}

/// Runs `fut` with `now()` and `today()` in time zone `tz` (a bot's run).
pub fn with_timezone<F: std::future::Future>(
    tz: chrono_tz::Tz,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    TIMEZONE.scope(tz, fut)
}

/// The current time in `tz` if given, else in the run's zone (a bot's), else
/// in the machine's local zone (`clerk run`).
fn now_in(tz: Option<String>) -> Result<chrono::DateTime<chrono::FixedOffset>, Error> {
    let utc = chrono::Utc::now();
    if let Some(name) = tz {
        let zone: chrono_tz::Tz = name.trim().parse().map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "unknown time zone `{name}` (use an IANA name like `Europe/Brussels` or `UTC`)"
                ),
            )
        })?;
        return Ok(utc.with_timezone(&zone).fixed_offset());
    }
    Ok(match TIMEZONE.try_with(|z| *z) {
        Ok(zone) => utc.with_timezone(&zone).fixed_offset(),
        Err(_) => utc.with_timezone(&chrono::Local).fixed_offset(),
    })
}

/// `now()` or `now('Europe/Brussels')`: an ISO 8601 timestamp with offset.
fn now(tz: Option<String>) -> Result<String, Error> {
    Ok(now_in(tz)?.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string())
}

/// `today()` or `today('Europe/Brussels')`: the date, `YYYY-MM-DD`.
fn today(tz: Option<String>) -> Result<String, Error> {
    Ok(now_in(tz)?.format("%Y-%m-%d").to_string())
}

/// `value | date('%d/%m/%Y')`: formats an ISO 8601 date or date-time (or a Unix
/// timestamp) with a strftime pattern.
fn date(value: Value, format: Option<String>) -> Result<String, Error> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
    let fmt = format.unwrap_or_else(|| "%Y-%m-%d".to_string());
    let invalid = |what: String| Error::new(ErrorKind::InvalidOperation, what);
    let render = |d: &dyn Fn(&mut String) -> std::fmt::Result| {
        let mut out = String::new();
        d(&mut out).map_err(|_| invalid(format!("invalid date format `{fmt}`")))?;
        Ok(out)
    };
    use std::fmt::Write;
    if let Some(secs) = value.as_i64() {
        let dt = chrono::Utc
            .timestamp_opt(secs, 0)
            .single()
            .ok_or_else(|| invalid(format!("{secs} is not a valid timestamp")))?;
        return render(&|o| write!(o, "{}", dt.format(&fmt)));
    }
    let text = value
        .as_str()
        .ok_or_else(|| invalid(format!("`date` needs a date string, got {}", value.kind())))?
        .trim()
        .to_string();
    if let Ok(dt) = DateTime::parse_from_rfc3339(&text) {
        return render(&|o| write!(o, "{}", dt.format(&fmt)));
    }
    for pattern in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(&text, pattern) {
            return render(&|o| write!(o, "{}", dt.format(&fmt)));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        return render(&|o| write!(o, "{}", d.format(&fmt)));
    }
    Err(invalid(format!("`{text}` is not an ISO 8601 date")))
}

/// If the text is exactly one `{{ expression }}`, the expression inside.
fn whole_expression(text: &str) -> Option<&str> {
    let t = text.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") || inner.contains("{#")
    {
        return None;
    }
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    Some(inner)
}

/// The `{{ ... }}` expressions inside a template, in order (used to find
/// exactly which parts of a mixed template come from a secret).
pub fn expressions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let inner = after[..end].trim_matches('-').trim();
        if !inner.is_empty() {
            out.push(inner.to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

/// Evaluates one expression.
pub fn eval(expr: &str, ctx: &Value) -> Result<Value, TemplateError> {
    env()
        .compile_expression(expr)
        .and_then(|e| e.eval(ctx))
        .and_then(|v| {
            if v.is_undefined() {
                Err(Error::new(ErrorKind::UndefinedError, "undefined value"))
            } else {
                Ok(v)
            }
        })
        .map_err(|e| TemplateError {
            message: explain(expr, &e, ctx),
        })
}

/// The kind of error evaluating `expr` gives, if any (for name probes).
pub(crate) fn raw_eval_error_kind(expr: &str) -> Option<ErrorKind> {
    env()
        .compile_expression(expr)
        .and_then(|e| e.eval(Value::UNDEFINED))
        .err()
        .map(|e| e.kind())
}

/// Checks template syntax without rendering.
pub fn check_syntax(text: &str) -> Result<(), TemplateError> {
    let result = match whole_expression(text) {
        Some(expr) => env().compile_expression(expr).map(|_| ()),
        None => env().template_from_str(text).map(|_| ()),
    };
    result.map_err(|e| TemplateError {
        message: describe(&e),
    })
}

/// The variables a template reads, as dotted paths (`inputs.source`, `row`).
pub fn references(text: &str) -> Result<BTreeSet<String>, TemplateError> {
    let names = match whole_expression(text) {
        Some(expr) => env()
            .compile_expression(expr)
            .map(|e| e.undeclared_variables(true)),
        None => env()
            .template_from_str(text)
            .map(|t| t.undeclared_variables(true)),
    }
    .map_err(|e| TemplateError {
        message: describe(&e),
    })?;
    Ok(names.into_iter().collect())
}

/// Renders a playbook string. Whole expressions keep their type.
pub fn render(text: &str, ctx: &Value) -> Result<Value, TemplateError> {
    if !is_template(text) {
        return Ok(Value::from(text));
    }
    let result = match whole_expression(text) {
        // Strict undefined only fires when a value is printed; an expression's
        // value is not printed, so an undefined result is checked here.
        Some(expr) => env()
            .compile_expression(expr)
            .and_then(|e| e.eval(ctx))
            .and_then(|v| {
                if v.is_undefined() {
                    Err(Error::new(ErrorKind::UndefinedError, "undefined value"))
                } else {
                    Ok(v)
                }
            }),
        None => env()
            .template_from_str(text)
            .and_then(|t| t.render(ctx))
            .map(Value::from),
    };
    result.map_err(|e| TemplateError {
        message: explain(text, &e, ctx),
    })
}

/// Renders a condition (`if:`) to a boolean using Jinja truthiness.
pub fn render_condition(text: &str, ctx: &Value) -> Result<bool, TemplateError> {
    let t = text.trim();
    if t == "true" {
        return Ok(true);
    }
    if t == "false" {
        return Ok(false);
    }
    let value = if is_template(t) {
        render(t, ctx)?
    } else {
        // A bare expression is allowed in `if:` as in Ansible's `when:`.
        env()
            .compile_expression(t)
            .and_then(|e| e.eval(ctx))
            .map_err(|e| TemplateError {
                message: explain(t, &e, ctx),
            })?
    };
    Ok(value.is_true())
}

fn describe(e: &Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({})", d, e.kind()),
        None => e.kind().to_string(),
    }
}

/// A readable sentence for a render error; for undefined values it names the
/// variable that is missing and what the parent does have.
fn explain(text: &str, e: &Error, ctx: &Value) -> String {
    if e.kind() == ErrorKind::UndefinedError
        && let Ok(refs) = references(text)
    {
        for r in refs {
            let mut current = ctx.clone();
            let mut walked = Vec::new();
            for part in r.split('.') {
                let next = current.get_attr(part).unwrap_or(Value::UNDEFINED);
                if next.is_undefined() {
                    let keys: Vec<String> = current
                        .try_iter()
                        .map(|it| it.take(12).map(|k| k.to_string()).collect())
                        .unwrap_or_default();
                    let parent = walked.join(".");
                    if walked.is_empty() {
                        return format!("`{part}` is undefined in `{text}`");
                    }
                    if walked == ["secrets"] {
                        return format!(
                            "secret `{part}` is not set: set the environment variable CLERK_SECRET_{} or add `{part}` to .clerk/secrets.yaml",
                            part.to_ascii_uppercase()
                        );
                    }
                    let has = if keys.is_empty()
                        || current.as_object().is_none()
                            && current.kind() != minijinja::value::ValueKind::Map
                    {
                        String::new()
                    } else {
                        format!(" (it has: {})", keys.join(", "))
                    };
                    return format!("`{parent}.{part}` is undefined in `{text}`{has}");
                }
                walked.push(part.to_string());
                current = next;
            }
        }
    }
    format!("cannot render `{text}`: {}", describe(e))
}

/// JSON → template value.
pub fn to_value(json: &serde_json::Value) -> Value {
    Value::from_serialize(json)
}

/// Template value → JSON (undefined becomes null).
pub fn to_json(value: &Value) -> serde_json::Value {
    if value.is_undefined() {
        return serde_json::Value::Null;
    }
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Value {
        minijinja::context! { rows => vec![1, 2, 3], name => "Zoë", inputs => minijinja::context!{ n => 4 } }
    }

    #[test]
    fn whole_expressions_keep_their_type() {
        let v = render("{{ rows }}", &ctx()).unwrap();
        assert_eq!(to_json(&v), serde_json::json!([1, 2, 3]));
        let n = render("{{ inputs.n * 2 }}", &ctx()).unwrap();
        assert_eq!(to_json(&n), serde_json::json!(8));
    }

    #[test]
    fn mixed_strings_render_to_text() {
        let v = render("{{ rows | length }} rows for {{ name | upper }}", &ctx()).unwrap();
        assert_eq!(v.as_str(), Some("3 rows for ZOË"));
    }

    #[test]
    fn undefined_is_an_error_that_names_the_variable() {
        let e = render("{{ inputs.m }}", &ctx()).unwrap_err();
        assert!(e.message.contains("inputs.m"), "{}", e.message);
        let e = render("hello {{ nobody }}", &ctx()).unwrap_err();
        assert!(e.message.contains("nobody"), "{}", e.message);
    }

    #[test]
    fn undefined_whole_expressions_are_errors() {
        let e = render("{{ inputs.missing }}", &ctx()).unwrap_err();
        assert!(e.message.contains("inputs.missing"), "{}", e.message);
    }

    #[test]
    fn filters_exist() {
        let v = render(
            "{{ '2026-03-01' | date('%d/%m/%Y') }} {{ ' a ' | trim }} {{ '7' | int + 1 }} {{ [1,2] | join('-') }} {{ {'a': 1} | tojson }} {{ nothing | default('x') }}",
            &ctx(),
        )
        .unwrap();
        assert_eq!(v.as_str(), Some("01/03/2026 a 8 1-2 {\"a\":1} x"));
        assert!(render("{{ now() | date('%Y') }}", &ctx()).is_ok());
    }

    #[tokio::test]
    async fn now_and_today_follow_the_run_zone_or_an_explicit_one() {
        let ctx = ctx();
        // UTC+14 and UTC-12 are 26 hours apart: never the same date.
        let east = with_timezone(chrono_tz::Pacific::Kiritimati, async {
            to_json(&render("{{ today() }}|{{ now() }}", &ctx).unwrap())
        })
        .await;
        let west = with_timezone(chrono_tz::Etc::GMTPlus12, async {
            to_json(&render("{{ today() }}|{{ now() }}", &ctx).unwrap())
        })
        .await;
        let (east, west) = (
            east.as_str().unwrap().to_string(),
            west.as_str().unwrap().to_string(),
        );
        assert!(east.ends_with("+14:00"), "{east}");
        assert!(west.ends_with("-12:00"), "{west}");
        assert_ne!(east.split('|').next(), west.split('|').next());
        let explicit = render("{{ now('Pacific/Kiritimati') }}", &ctx).unwrap();
        assert!(explicit.as_str().unwrap().ends_with("+14:00"));
        let e = render("{{ today('Mars/Olympus') }}", &ctx).unwrap_err();
        assert!(
            e.message.contains("unknown time zone `Mars/Olympus`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn references_are_dotted() {
        let r = references("{{ inputs.source }} {{ row.name | upper }}").unwrap();
        assert!(r.contains("inputs.source"));
        assert!(r.iter().any(|x| x.starts_with("row")));
    }

    #[test]
    fn conditions() {
        assert!(render_condition("{{ rows | length > 2 }}", &ctx()).unwrap());
        assert!(!render_condition("rows | length > 5", &ctx()).unwrap());
    }
}
