//! Actions: the leaf work a step does (`file.read`, `browser.fill`, `mail.send`, ...).
//!
//! Each action is one type implementing [`Action`] with a typed, documented
//! `Args` struct (`Deserialize` + `JsonSchema`, `deny_unknown_fields`). The one
//! [`REGISTRY`] list drives validation, `clerk actions`, the JSON Schema and
//! the engine's dispatch. An action never reaches into the engine: it gets an
//! [`ActionContext`].

mod argerr;
mod boundary;
pub mod browser;
mod builtin;
mod context;
mod file;
pub mod journal;
pub mod mail;
mod registry;
mod report;
pub mod sheet;
pub mod types;

pub use context::{ActionContext, AuditNote, Resource, RunInfo, RunResources, StepInfo};
pub use journal::Journal;
pub use registry::{ActionDef, REGISTRY, Registry, find};

use std::future::Future;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// What kind of failure an action (or step) ended with. The engine retries
/// only [`ErrorKind::System`]; a work item that ends with a business error is a
/// business exception for a person to look at, any other failure a system
/// exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The data or the system under automation said no (a rule the portal
    /// enforces, an option that does not exist, `fail`, `assert`): retrying
    /// cannot help; a person must look at the item.
    Business,
    /// Something outside clerk failed, maybe transiently (network, timeout, a
    /// 5xx page, a dead browser, a 4xx mail reply): worth retrying.
    System,
    /// The playbook, its arguments or the configuration are wrong (a missing
    /// file, a bad argument, an unknown action): retrying cannot help.
    Usage,
    /// A broken invariant inside clerk (the audit trail cannot be written):
    /// retrying cannot help.
    Internal,
}

impl ErrorKind {
    /// Whether a `retry:` policy may run the step again.
    pub fn is_retryable(self) -> bool {
        self == ErrorKind::System
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Business => "business",
            ErrorKind::System => "system",
            ErrorKind::Usage => "usage",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A failed action: the cause chain plus what kind of failure it is.
#[derive(Debug)]
pub struct ActionError {
    pub kind: ErrorKind,
    pub error: anyhow::Error,
}

impl ActionError {
    pub fn new(kind: ErrorKind, error: impl Into<anyhow::Error>) -> Self {
        ActionError {
            kind,
            error: error.into(),
        }
    }

    /// The system under automation (or the data) refused: never retried.
    pub fn business(error: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorKind::Business, error)
    }

    /// A failure outside clerk that a retry may cure.
    pub fn system(error: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorKind::System, error)
    }

    /// Bad arguments, files or configuration: never retried.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorKind::Usage, error)
    }

    /// A broken invariant inside clerk: never retried.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorKind::Internal, error)
    }

    /// Retrying cannot help (kept for the many call sites written before the
    /// kinds were split): a usage error.
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        Self::usage(error)
    }

    /// Worth retrying: a system error.
    pub fn retryable(error: impl Into<anyhow::Error>) -> Self {
        Self::system(error)
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
