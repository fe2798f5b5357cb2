//! Actions: the leaf work a step does (`file.read`, `browser.fill`, `mail.send`, ...).
//!
//! Each action is one type implementing [`Action`] with a typed, documented
//! `Args` struct (`Deserialize` + `JsonSchema`, `deny_unknown_fields`). The one
//! [`REGISTRY`] list drives validation, `clerk actions`, the JSON Schema and
//! the engine's dispatch. An action never reaches into the engine: it gets an
//! [`ActionContext`].

pub mod browser;
mod builtin;
mod context;
mod file;
mod mail;
mod registry;
pub mod sheet;
pub mod types;

pub use context::{ActionContext, AuditNote, Resource, RunInfo, RunResources, StepInfo};
pub use registry::{ActionDef, REGISTRY, Registry, find};

use std::future::Future;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// How the engine should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying if the step has a retry policy (network, timeouts, 4xx).
    Retryable,
    /// Retrying cannot help (bad input, a permanent 5xx mail reply).
    Permanent,
}

/// A failed action: the cause chain plus whether a retry could help.
#[derive(Debug)]
pub struct ActionError {
    pub kind: ErrorKind,
    pub error: anyhow::Error,
}

impl ActionError {
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        ActionError {
            kind: ErrorKind::Permanent,
            error: error.into(),
        }
    }

    pub fn retryable(error: impl Into<anyhow::Error>) -> Self {
        ActionError {
            kind: ErrorKind::Retryable,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for ActionError {
    fn from(e: E) -> Self {
        ActionError::retryable(e)
    }
}

pub type ActionResult = Result<serde_json::Value, ActionError>;

/// A default retry policy for an action (used when the step sets none).
#[derive(Debug, Clone, Copy)]
pub struct DefaultRetry {
    pub attempts: u32,
    pub delay_ms: u64,
    pub backoff: f64,
}

/// One kind of action.
pub trait Action: Send + Sync + 'static {
    /// The arguments; their doc comments are the user documentation.
    type Args: DeserializeOwned + JsonSchema + Send + 'static;
    /// The key authors write, e.g. `file.read`.
    const NAME: &'static str;
    /// One line for `clerk actions`.
    const SUMMARY: &'static str;
    /// A complete example step in YAML; tested to parse and validate.
    const EXAMPLE: &'static str;
    /// The argument a scalar stands for (`log: hi` → `message`).
    const SHORTHAND: Option<&'static str> = None;
    /// Retry policy when the step does not set one.
    const DEFAULT_RETRY: Option<DefaultRetry> = None;
    /// What the action returns (for `clerk actions`).
    const RESULT: &'static str = "—";

    fn run(
        ctx: &mut ActionContext<'_>,
        args: Self::Args,
    ) -> impl Future<Output = ActionResult> + Send;
}
