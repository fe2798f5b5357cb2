//! Built-in actions that touch nothing outside the run: `set`, `log`, `assert`,
//! `fail`, `wait`.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::types::DurationArg;
use super::{Action, ActionContext, ActionError, ActionResult};

/// Sets variables: each key becomes a variable for later steps.
pub struct Set;

impl Action for Set {
    type Args = serde_json::Map<String, Value>;
    const NAME: &'static str = "set";
    const SUMMARY: &'static str = "Set variables: each key becomes a variable for later steps.";
    const EXAMPLE: &'static str = "- set: { greeting: \"Hello\", limit: 10 }\n";
    const RESULT: &'static str = "the map of variables set";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let names: Vec<Value> = args.keys().map(|k| Value::from(k.as_str())).collect();
        ctx.detail("variables", names);
        Ok(Value::Object(args))
    }
}

#[derive(Debug, Deserialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// Arguments of `log`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogArgs {
    /// The message (any value; lists and maps are shown as JSON).
    pub message: Value,
    /// `debug`, `info` (default), `warn` or `error`.
    #[serde(default)]
    pub level: Level,
}

/// Writes a message to the log and the audit trail.
pub struct Log;

impl Action for Log {
    type Args = LogArgs;
    const NAME: &'static str = "log";
    const SUMMARY: &'static str = "Write a message to the log and the audit trail.";
    const EXAMPLE: &'static str = "- log: \"Starting with {{ inputs.source }}\"\n";
    const SHORTHAND: Option<&'static str> = Some("message");

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let text = match &args.message {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let shown = crate::secrets::redact(&text);
        match args.level {
            Level::Debug => tracing::debug!(step = %ctx.step.path, "{shown}"),
            Level::Info => tracing::info!(step = %ctx.step.path, "{shown}"),
            Level::Warn => tracing::warn!(step = %ctx.step.path, "{shown}"),
            Level::Error => tracing::error!(step = %ctx.step.path, "{shown}"),
        }
        ctx.detail("message", shown);
        Ok(Value::Null)
    }
}

/// Arguments of `assert`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertArgs {
    /// The condition, e.g. `"{{ rows | length > 0 }}"`; must be true.
    pub that: Value,
    /// Said when the condition is false.
    #[serde(default)]
    pub message: Option<String>,
}

/// Fails the step unless a condition holds.
pub struct Assert;

impl Action for Assert {
    type Args = AssertArgs;
    const NAME: &'static str = "assert";
    const SUMMARY: &'static str = "Fail the step unless a condition is true.";
    const EXAMPLE: &'static str =
        "- assert: { that: \"{{ inputs.source | length > 0 }}\", message: \"no source given\" }\n";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let holds = match &args.that {
            Value::Bool(b) => *b,
            Value::Null => false,
            Value::String(s) => matches!(s.trim(), "true" | "True" | "yes"),
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        };
        ctx.detail("holds", holds);
        if holds {
            Ok(Value::Null)
        } else {
            Err(ActionError::business(anyhow::anyhow!(
                "assertion failed: {}",
                args.message
                    .unwrap_or_else(|| "the condition is false".to_string())
            )))
        }
    }
}

/// Arguments of `fail`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailArgs {
    /// Why the step fails.
    pub message: String,
    /// A system exception that a `retry:` may retry (default false: a business
    /// exception, never retried).
    #[serde(default)]
    pub retryable: bool,
}

/// Fails the step with a message (a business exception).
pub struct Fail;

impl Action for Fail {
    type Args = FailArgs;
    const NAME: &'static str = "fail";
    const SUMMARY: &'static str = "Fail the step with a message (a business exception; `retryable: true` for a system exception).";
    const EXAMPLE: &'static str =
        "- fail: \"The export is empty\"\n  if: \"{{ inputs.source == '' }}\"\n";
    const SHORTHAND: Option<&'static str> = Some("message");

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        ctx.detail("retryable", args.retryable);
        let e = anyhow::anyhow!("{}", args.message);
        Err(if args.retryable {
            ActionError::system(e)
        } else {
            ActionError::business(e)
        })
    }
}

/// Arguments of `wait`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    /// How long to wait.
    pub duration: DurationArg,
}

/// Waits for a while (cancellable).
pub struct Wait;

impl Action for Wait {
    type Args = WaitArgs;
    const NAME: &'static str = "wait";
    const SUMMARY: &'static str = "Wait for a duration (e.g. `500ms`, `2s`).";
    const EXAMPLE: &'static str = "- wait: 10ms\n";
    const SHORTHAND: Option<&'static str> = Some("duration");

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        ctx.detail("ms", args.duration.0.as_millis() as u64);
        tokio::select! {
            _ = tokio::time::sleep(args.duration.0) => Ok(Value::Null),
            _ = ctx.cancel.cancelled() => Err(ActionError::permanent(anyhow::anyhow!("cancelled while waiting"))),
        }
    }
}
