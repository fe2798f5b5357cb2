//! The audit event row: [`NewEvent`] is what a component hands to the
//! recorder (built with chained setters); [`AuditEvent`] is a stored event
//! with its place in the chain (`id`, `seq`, `at`) and its hashes.
//!
//! The row and its hashing live in the store (the store appends to the
//! chain); the audit layer (recorder, verify, export) sits above and
//! re-exports them as `crate::audit::{NewEvent, AuditEvent}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where the state of a run is recorded in its run.* events' detail.
pub const RUN_STATE_KEY: &str = "run_state";

/// Event kinds that change a run's row in `runs` (written in the same
/// transaction); the store records the row's state in their detail.
pub fn is_run_state_kind(kind: &str) -> bool {
    kind.starts_with("run.") || kind == "scheduler.skipped"
}

/// An event to append. `id`, `seq`, `at`, `prev_hash` and `hash` are assigned
/// by the store when it is appended.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub run_id: Option<String>,
    pub actor: String,
    pub kind: String,
    pub step: Option<String>,
    pub step_name: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub detail: serde_json::Value,
    pub outcome: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// The work item (loop checkpoint key) this event belongs to.
    pub item_key: Option<String>,
}

impl NewEvent {
    /// An event of `kind` (`run.queued`, `action`, `admin.pause`...) by `actor`
    /// (bot name, or the OS user for manual runs and admin actions).
    /// `detail` starts as `{}`.
    pub fn new(kind: &str, actor: &str) -> Self {
        NewEvent {
            run_id: None,
            actor: actor.to_string(),
            kind: kind.to_string(),
            step: None,
            step_name: None,
            action: None,
            target: None,
            detail: serde_json::Value::Object(serde_json::Map::new()),
            outcome: None,
            duration_ms: None,
            error: None,
            item_key: None,
        }
    }

    /// The work item this event belongs to (the loop item's checkpoint key).
    pub fn item(mut self, key: impl Into<String>) -> Self {
        self.item_key = Some(key.into());
        self
    }

    /// The run this event belongs to.
    pub fn run(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// The step's path in the playbook (`4/item[17]/2`) and its name, if it
    /// has one (`&str`, `String`, `Option<&str>`, `Option<String>`).
    pub fn step(mut self, path: impl Into<String>, name: impl OptString) -> Self {
        self.step = Some(path.into());
        self.step_name = name.into_opt_string();
        self
    }

    /// The action, e.g. `browser.fill`.
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// What the action worked on: locator, file path, recipients, URL.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Structured data: values (masked), hashes of files, counts, replies.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// `ok`, `failed`, `skipped`...
    pub fn outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = Some(outcome.into());
        self
    }

    /// How long it took.
    pub fn duration_ms(mut self, ms: i64) -> Self {
        self.duration_ms = Some(ms);
        self
    }

    /// The cause chain of a failure.
    pub fn error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }
}

/// Anything that can be an optional string argument to [`NewEvent::step`].
pub trait OptString {
    fn into_opt_string(self) -> Option<String>;
}

impl OptString for &str {
    fn into_opt_string(self) -> Option<String> {
        Some(self.to_string())
    }
}

impl OptString for String {
    fn into_opt_string(self) -> Option<String> {
        Some(self)
    }
}

impl OptString for &String {
    fn into_opt_string(self) -> Option<String> {
        Some(self.clone())
    }
}

impl OptString for Option<&str> {
    fn into_opt_string(self) -> Option<String> {
        self.map(str::to_string)
    }
}

impl OptString for Option<String> {
    fn into_opt_string(self) -> Option<String> {
        self
    }
}

impl OptString for &Option<String> {
    fn into_opt_string(self) -> Option<String> {
        self.clone()
    }
}

/// A stored event: one link of the chain.
///
/// `hash` is computed by the event's `hash_format` (see [`super::format`]):
/// format 2 hashes the RFC 8785 canonical JSON of every other field.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// Position in the chain: 1, 2, 3... without gaps.
    pub id: i64,
    pub run_id: Option<String>,
    /// Place within the run: 1, 2, 3... per run; 0 for events without a run.
    pub seq: i64,
    /// UTC, microseconds; serialised as `2025-01-31T02:30:00.000000Z`.
    #[serde(with = "super::time::serde_ts")]
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub step: Option<String>,
    pub step_name: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub detail: serde_json::Value,
    pub outcome: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// The work item this event belongs to (null outside an item).
    #[serde(default)]
    pub item_key: Option<String>,
    /// The hash format of this event (see [`super::format`]); 1 for events
    /// written before formats were recorded.
    #[serde(default = "legacy_format")]
    pub hash_format: i64,
    /// The previous event's hash; 64 zeros for the first event.
    pub prev_hash: String,
    pub hash: String,
}

fn legacy_format() -> i64 {
    1
}

impl AuditEvent {
    /// Recomputes this event's hash by its `hash_format` (see
    /// [`super::format`]); an unknown format yields an empty string, which
    /// matches no hash.
    pub fn compute_hash(&self) -> String {
        let at = super::time::format_ts(&self.at);
        super::format::hash(&self.fields(&at)).unwrap_or_default()
    }

    /// This event's stored fields, with `at` in its stored form.
    pub fn fields<'a>(&'a self, at: &'a str) -> super::format::Fields<'a> {
        super::format::Fields {
            hash_format: self.hash_format,
            id: self.id,
            run_id: self.run_id.as_deref(),
            seq: self.seq,
            at,
            actor: &self.actor,
            kind: &self.kind,
            step: self.step.as_deref(),
            step_name: self.step_name.as_deref(),
            action: self.action.as_deref(),
            target: self.target.as_deref(),
            detail: &self.detail,
            outcome: self.outcome.as_deref(),
            duration_ms: self.duration_ms,
            error: self.error.as_deref(),
            item_key: self.item_key.as_deref(),
            prev_hash: &self.prev_hash,
        }
    }
}
