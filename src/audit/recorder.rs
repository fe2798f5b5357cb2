//! [`Recorder`]: the one writer of audit events. It masks secrets in every
//! free-text field of an event (target, error, step_name and every string
//! inside detail, keys included, recursively) with the redaction hook BEFORE
//! the event is hashed and stored, so no secret ever enters the chain.

use std::sync::Arc;

use anyhow::Context as _;
use serde_json::Value;

use super::event::{AuditEvent, NewEvent};
use crate::store::Store;

/// The redaction hook: returns its input with every secret value masked.
pub type RedactFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Appends redacted events to the store's audit chain.
#[derive(Clone)]
pub struct Recorder {
    store: Store,
    redact: RedactFn,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("store", &self.store)
            .finish()
    }
}

impl Recorder {
    /// A recorder writing to `store`, masking with `redact`.
    pub fn new(store: Store, redact: RedactFn) -> Self {
        Recorder { store, redact }
    }

    /// Redacts `e` and appends it now, after any deferred events (one
    /// transaction); returns the stored event, durable.
    pub async fn record(&self, e: NewEvent) -> anyhow::Result<AuditEvent> {
        let e = self.redact_event(e);
        let (kind, run) = (e.kind.clone(), e.run_id.clone());
        self.store.append_event(e).await.with_context(|| match run {
            Some(run) => format!("cannot record audit event {kind} of run {run}"),
            None => format!("cannot record audit event {kind}"),
        })
    }

    /// Redacts `e` and hands it to the store's group commit: it reaches the
    /// chain with the next batch (see [`crate::store::group`]). Cheap (no
    /// database round trip); the caller owns the durability rule and calls
    /// [`Recorder::sync`] before anything with an outside effect.
    pub async fn record_deferred(&self, e: NewEvent) -> anyhow::Result<()> {
        let e = self.redact_event(e);
        let (kind, run) = (e.kind.clone(), e.run_id.clone());
        self.store.defer_event(e).await.with_context(|| match run {
            Some(run) => format!("cannot record audit event {kind} of run {run}"),
            None => format!("cannot record audit event {kind}"),
        })
    }

    /// Commits every deferred event now (one transaction); after `Ok`, all
    /// events recorded before the call are durable.
    pub async fn sync(&self) -> anyhow::Result<()> {
        self.store
            .flush_events()
            .await
            .context("cannot commit the audit trail")
    }

    /// `e` with the hook applied to target, error, step_name and all strings
    /// (and object keys) inside detail. Use it for events handed to the store
    /// directly (`create_run`, `transition_run`, `set_bot_paused`).
    pub fn redact_event(&self, mut e: NewEvent) -> NewEvent {
        let r = &*self.redact;
        e.target = e.target.map(|s| r(&s));
        e.error = e.error.map(|s| r(&s));
        e.step_name = e.step_name.map(|s| r(&s));
        e.detail = redact_value(e.detail, r);
        e
    }

    /// Applies the hook to one string (for callers that build messages).
    pub fn redact_str(&self, s: &str) -> String {
        (self.redact)(s)
    }

    /// The store events are written to.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn redact_value(v: Value, r: &dyn Fn(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(r(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| redact_value(v, r)).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (r(&k), redact_value(v, r)))
                .collect(),
        ),
        other => other,
    }
}
