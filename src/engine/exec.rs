//! Executes a playbook's step tree for one run.
//!
//! Steps run in order over one variable scope. `if`, `for_each`, nested
//! `steps`, `retry` (every attempt audited), `timeout` (the step's future is
//! dropped, so the work really stops) and `on_error` are handled here; leaf
//! work is delegated to actions through the registry. On a `for_each` step,
//! `if`, `retry`, `timeout` and `on_error` apply to each item, as a
//! transaction does in an RPA framework: one bad item does not end the loop
//! unless `on_error: fail` says so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use minijinja::value::Value as MValue;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::actions::{self, ActionContext, AuditNote, ErrorKind, RunInfo, RunResources, StepInfo};
use crate::audit::{NewEvent, Recorder};
use crate::config::Config;
use crate::playbook::{OnError, RetryPolicy, Step, StepBody};
use crate::secrets::{self, Secrets};
use crate::template;

use super::keep::{self, Origin};

/// Why a step (and so maybe the run) failed.
#[derive(Debug, Clone)]
pub struct StepFailure {
    pub path: String,
    pub name: Option<String>,
    pub action: Option<String>,
    /// The cause chain as one sentence, secrets masked.
    pub message: String,
    pub kind: ErrorKind,
    pub cancelled: bool,
}

impl StepFailure {
    pub(crate) fn new(step: &Step, path: &str, message: String, kind: ErrorKind) -> Self {
        StepFailure {
            path: path.to_string(),
            name: step.name.clone(),
            action: step.action_name().map(str::to_string),
            message: secrets::redact(&message),
            kind,
            cancelled: false,
        }
    }

    fn cancelled(step: &Step, path: &str) -> Self {
        StepFailure {
            cancelled: true,
            ..StepFailure::new(step, path, "the run was cancelled".into(), ErrorKind::Usage)
        }
    }
}

/// The state of one run while it executes.
pub(crate) struct Exec {
    pub config: Arc<Config>,
    pub recorder: Recorder,
    pub secrets: Arc<Secrets>,
    pub run: RunInfo,
    pub resources: RunResources,
    pub cancel: CancellationToken,
    pub vars: BTreeMap<String, MValue>,
    /// Variables holding secret-derived values: masked in vars output and audit.
    pub tainted: HashSet<String>,
    pub artifacts: Vec<String>,
    pub progress: bool,
    /// The key of the work item being run (events and actions carry it).
    pub item_key: Option<String>,
    /// What happened to this run's work items.
    pub items: crate::store::ItemCounts,
    /// The result of the last step that succeeded (a `verify` block's
    /// result when it has no `output`).
    pub last_value: Option<MValue>,
    /// The step each variable came from (named in omitted-value markers).
    pub origins: HashMap<String, Origin>,
    /// The block path whose first `step.started` was committed with its
    /// item's `item.started` (see `item_started`): its first attempt does not
    /// record it again.
    pub prestarted: Option<String>,
}

/// A rendered value, its audit-safe copy, and whether a secret went into it.
pub(crate) struct Rendered {
    pub value: Value,
    pub masked: Value,
    pub tainted: bool,
}

impl Exec {
    pub(crate) fn context(&self) -> MValue {
        MValue::from_iter(self.vars.iter().map(|(k, v)| (k.clone(), v.clone())))
    }

    pub(crate) fn event(&self, kind: &str) -> NewEvent {
        let ev = NewEvent::new(kind, &self.run.actor).run(&self.run.id);
        match &self.item_key {
            Some(k) => ev.item(k),
            None => ev,
        }
    }

    /// Records a step's event by group commit: durable at the next
    /// durability point (before an action with an outside effect, at the
    /// run's end; see docs/audit.md).
    pub(crate) async fn record(&self, event: NewEvent) -> Result<(), String> {
        self.recorder
            .record_deferred(event)
            .await
            .map_err(|e| format!("the audit trail could not be written: {e:#}"))
    }

    pub(crate) async fn record_step(
        &self,
        step: &Step,
        path: &str,
        event: NewEvent,
    ) -> Result<(), StepFailure> {
        self.record(event)
            .await
            .map_err(|m| StepFailure::new(step, path, m, ErrorKind::Internal))
    }

    fn is_tainted_template(&self, text: &str) -> bool {
        match template::references(text) {
            Ok(refs) => refs.iter().any(|r| {
                let root = r.split('.').next().unwrap_or_default();
                root == "secrets" || self.tainted.contains(root)
            }),
            // Unparseable templates fail at render time anyway; treat as secret to be safe.
            Err(_) => true,
        }
    }

    /// Adds the values of the secret-derived `{{ }}` parts of a template to the
    /// redactor (e.g. `{{ secrets.t | replace('-', '') }}`), so transformed
    /// secrets are masked too — but not the plain text around them.
    fn register_secret_parts(&self, text: &str, ctx: &MValue) {
        for expr in template::expressions(text) {
            if self.is_tainted_template(&format!("{{{{ {expr} }}}}"))
                && let Ok(v) = template::eval(&expr, ctx)
            {
                secrets::register_json(&template::to_json(&v));
            }
        }
    }

    /// Renders every template string inside a value from the playbook.
    pub(crate) fn render_tree(&self, value: &Value, ctx: &MValue) -> Result<Rendered, String> {
        match value {
            Value::String(s) if template::is_template(s) => {
                let tainted = self.is_tainted_template(s);
                let out = template::render(s, ctx).map_err(|e| e.message)?;
                let json = template::to_json(&out);
                if tainted {
                    self.register_secret_parts(s, ctx);
                }
                let masked = if tainted {
                    Value::String(secrets::MASK.into())
                } else {
                    json.clone()
                };
                Ok(Rendered {
                    value: json,
                    masked,
                    tainted,
                })
            }
            Value::Array(items) => {
                let mut value = Vec::with_capacity(items.len());
                let mut masked = Vec::with_capacity(items.len());
                let mut tainted = false;
                for item in items {
                    let r = self.render_tree(item, ctx)?;
                    tainted |= r.tainted;
                    value.push(r.value);
                    masked.push(r.masked);
                }
                Ok(Rendered {
                    value: Value::Array(value),
                    masked: Value::Array(masked),
                    tainted,
                })
            }
            Value::Object(map) => {
                let mut value = serde_json::Map::new();
                let mut masked = serde_json::Map::new();
                let mut tainted = false;
                for (k, v) in map {
                    let r = self.render_tree(v, ctx)?;
                    tainted |= r.tainted;
                    value.insert(k.clone(), r.value);
                    masked.insert(k.clone(), r.masked);
                }
                Ok(Rendered {
                    value: Value::Object(value),
                    masked: Value::Object(masked),
                    tainted,
                })
            }
            other => Ok(Rendered {
                value: other.clone(),
                masked: other.clone(),
                tainted: false,
            }),
        }
    }

    pub(crate) fn set_var(&mut self, name: &str, value: &Value, tainted: bool) {
        if tainted {
            secrets::register_json(value);
            self.tainted.insert(name.to_string());
        } else {
            self.tainted.remove(name);
        }
        self.origins.remove(name);
        self.vars
            .insert(name.to_string(), template::to_value(value));
    }

    /// Sets a variable to a template value as is (a compact sheet result
    /// stays compact), remembering the step it came from.
    pub(crate) fn set_value(
        &mut self,
        name: &str,
        value: MValue,
        tainted: bool,
        origin: Option<Origin>,
    ) {
        if tainted {
            secrets::register_json(&template::to_json(&value));
            self.tainted.insert(name.to_string());
        } else {
            self.tainted.remove(name);
        }
        match origin {
            Some(o) => self.origins.insert(name.to_string(), o),
            None => self.origins.remove(name),
        };
        self.vars.insert(name.to_string(), value);
    }

    /// Where a step's result comes from, for omitted-value markers.
    pub(crate) fn origin(step: &Step) -> Origin {
        Origin {
            step: step.id.clone(),
            action: step
                .action_name()
                .map(str::to_string)
                .or_else(|| step.for_each.as_ref().map(|_| "for_each".to_string())),
        }
    }

    /// Renders a value from the playbook to a template value; a string that
    /// is one whole `{{ expression }}` keeps the expression's value as is
    /// (no JSON copy of a big list). Returns it and whether it is secret.
    pub(crate) fn render_value(
        &self,
        value: &Value,
        ctx: &MValue,
    ) -> Result<(MValue, bool), String> {
        match value {
            Value::String(s) if template::is_template(s) => {
                let tainted = self.is_tainted_template(s);
                let out = template::render(s, ctx).map_err(|e| e.message)?;
                if tainted {
                    self.register_secret_parts(s, ctx);
                }
                Ok((out, tainted))
            }
            other => {
                let r = self.render_tree(other, ctx)?;
                Ok((template::to_value(&r.value), r.tainted))
            }
        }
    }

    pub(crate) fn refresh_run_var(&mut self) {
        let run = json!({
            "id": self.run.id,
            "playbook": self.run.playbook.display().to_string(),
            "actor": self.run.actor,
            "bot": self.run.bot,
            "workspace": self.run.workspace.display().to_string(),
            "artifacts": self.artifacts,
        });
        self.vars.insert("run".into(), template::to_value(&run));
    }

    /// The final variables as kept (`runs.vars`, `clerk run --json`):
    /// tainted ones masked, every string passed through the redactor, big
    /// values as omitted-value markers, all of them within the run budget
    /// (see `keep`).
    pub(crate) fn masked_vars(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (k, v) in &self.vars {
            if k == "secrets" {
                continue;
            }
            let mut json = if self.tainted.contains(k) {
                Value::String(secrets::MASK.into())
            } else {
                keep::kept(v, self.origins.get(k))
            };
            secrets::redact_json(&mut json);
            out.insert(k.clone(), json);
        }
        keep::within_budget(&mut out, |name| {
            let v = self.vars.get(name)?;
            Some((v, self.origins.get(name)))
        });
        Value::Object(out)
    }

    pub(crate) fn run_steps<'a>(
        &'a mut self,
        steps: &'a [Step],
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<(), StepFailure>> {
        Box::pin(async move {
            for step in steps {
                self.run_step(step, prefix).await?;
            }
            Ok(())
        })
    }

    async fn run_step(&mut self, step: &Step, prefix: &str) -> Result<(), StepFailure> {
        let local = step.path.rsplit('/').next().unwrap_or(&step.path);
        let path = if prefix.is_empty() {
            local.to_string()
        } else {
            format!("{prefix}/{local}")
        };
        if self.cancel.is_cancelled() {
            return Err(StepFailure::cancelled(step, &path));
        }
        if step.for_each.is_some() {
            return self.run_loop(step, &path).await;
        }
        if let Some(cond) = &step.when {
            let holds = template::render_condition(cond, &self.context()).map_err(|e| {
                StepFailure::new(
                    step,
                    &path,
                    format!("`if`: {}", e.message),
                    ErrorKind::Usage,
                )
            })?;
            if !holds {
                let ev = self
                    .event("step.finished")
                    .step(&path, step.name.as_deref())
                    .outcome("skipped")
                    .detail(json!({ "reason": "condition is false" }));
                let ev = match step.action_name() {
                    Some(a) => ev.action(a),
                    None => ev,
                };
                return self.record_step(step, &path, ev).await;
            }
        }
        let once = if step.once {
            match self.skip_once(step, &path).await? {
                super::ledger::Once::Skipped => return Ok(()),
                other => other,
            }
        } else {
            super::ledger::Once::Run
        };
        match self.guarded(step, &path).await {
            Ok((value, tainted)) => {
                if let Some(name) = &step.save_as {
                    self.set_value(
                        name,
                        value.clone(),
                        tainted || step.sensitive,
                        Some(Self::origin(step)),
                    );
                }
                match once {
                    super::ledger::Once::Rederive { by_run, kept } => {
                        self.record_rederived(step, &path, &value, &by_run, &kept)
                            .await?;
                    }
                    _ if step.once => {
                        self.record_once(step, &path, &value, tainted || step.sensitive)
                            .await?;
                    }
                    _ => {}
                }
                self.last_value = Some(value);
                Ok(())
            }
            Err(f) => self.handle_failure(step, &path, f).await,
        }
    }

    /// Applies `on_error` to a failure that survived the retries.
    pub(crate) async fn handle_failure(
        &mut self,
        step: &Step,
        path: &str,
        failure: StepFailure,
    ) -> Result<(), StepFailure> {
        if failure.cancelled {
            return Err(failure);
        }
        match &step.on_error {
            OnError::Fail => Err(failure),
            OnError::Continue => {
                let ev = self
                    .event("step.finished")
                    .step(path, step.name.as_deref())
                    .outcome("failed")
                    .error(&failure.message)
                    .detail(json!({ "on_error": "continue", "failed_step": failure.path }));
                self.record_step(step, path, ev).await?;
                tracing::warn!(step = %path, "continuing after failure: {}", failure.message);
                Ok(())
            }
            OnError::Steps(handler) => {
                let business = failure.kind == ErrorKind::Business;
                let error = json!({
                    "message": failure.message,
                    "step": failure.path,
                    "step_name": failure.name,
                    "action": failure.action,
                    "kind": if business { "business" } else { "system" },
                });
                self.set_var("error", &error, false);
                let ev = self
                    .event("step.finished")
                    .step(path, step.name.as_deref())
                    .outcome("failed")
                    .error(&failure.message)
                    .detail(json!({ "on_error": "steps", "failed_step": failure.path }));
                self.record_step(step, path, ev).await?;
                let handler_prefix = format!("{path}/on_error");
                self.run_steps(handler, &handler_prefix).await
            }
        }
    }

    fn retry_policy(step: &Step) -> RetryPolicy {
        if let Some(r) = &step.retry {
            return r.clone();
        }
        if let Some(def) = step.action_name().and_then(actions::find)
            && let Some(d) = def.default_retry
        {
            return RetryPolicy {
                attempts: d.attempts,
                delay: Duration::from_millis(d.delay_ms),
                backoff: d.backoff,
                max_delay: None,
            };
        }
        RetryPolicy {
            attempts: 1,
            delay: Duration::ZERO,
            backoff: 1.0,
            max_delay: None,
        }
    }

    /// Runs the step's body with its retry policy and timeout. Returns the
    /// step's result (its `output` if it has one) and whether it is secret.
    pub(crate) async fn guarded(
        &mut self,
        step: &Step,
        path: &str,
    ) -> Result<(MValue, bool), StepFailure> {
        let policy = Self::retry_policy(step);
        let mut attempt = 1;
        loop {
            let outcome = match step.timeout {
                Some(limit) => {
                    match tokio::time::timeout(limit, self.attempt(step, path, attempt)).await {
                        Ok(r) => r,
                        Err(_) => {
                            let message = format!(
                                "step timed out after {}",
                                humantime::format_duration(limit)
                            );
                            let mut ev = self
                                .event(if step.action_name().is_some() {
                                    "action"
                                } else {
                                    "step.finished"
                                })
                                .step(path, step.name.as_deref())
                                .outcome("failed")
                                .error(&message)
                                .duration_ms(limit.as_millis() as i64)
                                .detail(json!({ "attempt": attempt, "timed_out": true }));
                            if let Some(a) = step.action_name() {
                                ev = ev.action(a);
                            }
                            self.record_step(step, path, ev).await?;
                            Err(StepFailure::new(step, path, message, ErrorKind::System))
                        }
                    }
                }
                None => self.attempt(step, path, attempt).await,
            };
            match outcome {
                Ok(v) => return Ok(v),
                Err(f) if f.cancelled => return Err(f),
                Err(f) if attempt < policy.attempts && f.kind.is_retryable() => {
                    let wait = policy.delay_before(attempt + 1);
                    tracing::warn!(
                        step = %path,
                        "attempt {attempt} of {} failed, retrying in {}: {}",
                        policy.attempts,
                        humantime::format_duration(wait),
                        f.message
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.cancel.cancelled() => return Err(StepFailure::cancelled(step, path)),
                    }
                    attempt += 1;
                }
                Err(f) => return Err(f),
            }
        }
    }

    /// The `step.started` event of a block's attempt.
    fn block_started(&self, step: &Step, path: &str, attempt: u32, steps: usize) -> NewEvent {
        self.event("step.started")
            .step(path, step.name.as_deref())
            .detail(json!({ "attempt": attempt, "steps": steps }))
    }

    /// One attempt of the step's body, plus its `output`.
    fn attempt<'a>(
        &'a mut self,
        step: &'a Step,
        path: &'a str,
        attempt: u32,
    ) -> BoxFuture<'a, Result<(MValue, bool), StepFailure>> {
        Box::pin(async move {
            let (result, mut tainted) = match &step.body {
                StepBody::Action { name, args } => {
                    self.run_action(step, path, name, args, attempt).await?
                }
                StepBody::Block(children) => {
                    let start = Instant::now();
                    let recorded = self
                        .prestarted
                        .take()
                        .is_some_and(|p| attempt == 1 && p == path);
                    if !recorded {
                        let ev = self.block_started(step, path, attempt, children.len());
                        self.record_step(step, path, ev).await?;
                    }
                    let r = self.run_steps(children, path).await;
                    let mut ev = self
                        .event("step.finished")
                        .step(path, step.name.as_deref())
                        .duration_ms(start.elapsed().as_millis() as i64)
                        .detail(json!({ "attempt": attempt }));
                    ev = match &r {
                        Ok(()) => ev.outcome("ok"),
                        Err(f) => ev.outcome("failed").error(&f.message),
                    };
                    self.record_step(step, path, ev).await?;
                    r?;
                    (MValue::from(()), false)
                }
            };
            match &step.output {
                Some(out) => {
                    let (value, t) = self.render_value(out, &self.context()).map_err(|m| {
                        StepFailure::new(step, path, format!("`output`: {m}"), ErrorKind::Usage)
                    })?;
                    tainted = t;
                    Ok((value, tainted))
                }
                None => Ok((result, tainted)),
            }
        })
    }

    async fn run_action(
        &mut self,
        step: &Step,
        path: &str,
        name: &str,
        args: &Value,
        attempt: u32,
    ) -> Result<(MValue, bool), StepFailure> {
        let start = Instant::now();
        let Some(def) = actions::find(name) else {
            return Err(StepFailure::new(
                step,
                path,
                format!("unknown action `{name}`"),
                ErrorKind::Usage,
            ));
        };
        let rendered = match self.render_tree(args, &self.context()) {
            Ok(r) => r,
            Err(message) => {
                let ev = self
                    .event("action")
                    .step(path, step.name.as_deref())
                    .action(name)
                    .outcome("failed")
                    .error(&message)
                    .detail(json!({ "attempt": attempt }));
                self.record_step(step, path, ev).await?;
                return Err(StepFailure::new(step, path, message, ErrorKind::Usage));
            }
        };
        // The durability rule: everything recorded so far is on disk before
        // an action that changes the world outside starts.
        if def.has_outside_effect() {
            self.recorder.sync().await.map_err(|e| {
                StepFailure::new(
                    step,
                    path,
                    format!("the audit trail could not be written: {e:#}"),
                    ErrorKind::Internal,
                )
            })?;
        }
        let info = StepInfo {
            path: path.to_string(),
            name: step.name.clone(),
            attempt,
            sensitive: step.sensitive,
            id: step.id.clone(),
            item_key: self.item_key.clone(),
        };
        // A handle on the store (an Arc clone): actions reach it only
        // through the narrow journal trait.
        let journal = super::journal::StoreJournal::new(self.recorder.store().clone());
        let mut ctx = ActionContext {
            run: &self.run,
            step: &info,
            config: &self.config,
            secrets: &self.secrets,
            resources: &self.resources,
            recorder: &self.recorder,
            journal: &journal,
            cancel: &self.cancel,
            timeout: step.timeout,
            note: AuditNote::default(),
        };
        let outcome = {
            let fut = (def.run)(&mut ctx, rendered.value.clone());
            tokio::select! {
                r = fut => Some(r),
                _ = self.cancel.cancelled() => None,
            }
        };
        // An action that noticed the cancellation itself still ends as cancelled.
        let outcome = if self.cancel.is_cancelled() {
            None
        } else {
            outcome
        };
        let mut note = std::mem::take(&mut ctx.note);
        // An action that gave its result as a template value (big results,
        // kept compact) returned only a JSON summary.
        let native = note.result.take();
        let elapsed = start.elapsed().as_millis() as i64;

        let mut detail = serde_json::Map::new();
        let shown_args = if step.sensitive {
            Value::String(secrets::MASK.into())
        } else {
            summarize(&rendered.masked)
        };
        detail.insert("args".into(), shown_args);
        detail.insert("attempt".into(), json!(attempt));
        for (k, v) in note.detail {
            let v = if step.sensitive && k == "value" {
                Value::String(secrets::MASK.into())
            } else {
                v
            };
            detail.insert(k, v);
        }
        if !note.artifacts.is_empty() {
            let list: Vec<Value> = note
                .artifacts
                .iter()
                .map(|(p, sha)| json!({ "path": p, "sha256": sha }))
                .collect();
            detail.insert("artifacts".into(), Value::Array(list));
            for (p, _) in &note.artifacts {
                if !self.artifacts.contains(p) {
                    self.artifacts.push(p.clone());
                }
            }
            self.refresh_run_var();
        }
        let mut ev = self
            .event("action")
            .step(path, step.name.as_deref())
            .action(name)
            .duration_ms(elapsed)
            .detail(Value::Object(detail));
        if let Some(t) = note.target {
            ev = ev.target(&t);
        }
        let result = match outcome {
            None => {
                let ev = ev.outcome("failed").error("cancelled");
                self.record_step(step, path, ev).await?;
                return Err(StepFailure::cancelled(step, path));
            }
            Some(Ok(v)) => {
                self.record_step(step, path, ev.outcome("ok")).await?;
                v
            }
            Some(Err(e)) => {
                let message = format!("{:#}", e.error);
                let ev = ev.outcome("failed").error(secrets::redact(&message));
                self.record_step(step, path, ev).await?;
                return Err(StepFailure::new(step, path, message, e.kind));
            }
        };
        if name == "set"
            && let (Value::Object(values), Value::Object(rendered_args)) =
                (&result, &rendered.masked)
        {
            for (k, v) in values {
                let tainted = step.sensitive
                    || rendered_args.get(k).and_then(Value::as_str) == Some(secrets::MASK);
                self.set_var(k, v, tainted);
                self.origins.insert(
                    k.clone(),
                    Origin {
                        step: step.id.clone(),
                        action: Some("set".into()),
                    },
                );
            }
        }
        let value = native.unwrap_or_else(|| template::to_value(&result));
        // A result computed from a secret is as secret as its arguments.
        Ok((value, step.sensitive || rendered.tainted))
    }

    async fn run_loop(&mut self, step: &Step, path: &str) -> Result<(), StepFailure> {
        let Some(each) = &step.for_each else {
            return Ok(());
        };
        let start = Instant::now();
        // Items stay template values: the rows of a sheet are iterated in
        // their compact form, one row object at a time, never as JSON.
        let (items_value, _) = self
            .render_value(&each.items, &self.context())
            .map_err(|m| {
                StepFailure::new(step, path, format!("`for_each`: {m}"), ErrorKind::Usage)
            })?;
        use minijinja::value::ValueKind;
        let items: Vec<MValue> = match items_value.kind() {
            ValueKind::Seq | ValueKind::Iterable => items_value
                .try_iter()
                .map(|it| it.collect())
                .unwrap_or_default(),
            ValueKind::None | ValueKind::Undefined => Vec::new(),
            ValueKind::Map => items_value
                .try_iter()
                .map(|keys| {
                    keys.map(|k| {
                        let v = items_value.get_item(&k).unwrap_or_default();
                        MValue::from_iter([("key", k), ("value", v)])
                    })
                    .collect()
                })
                .unwrap_or_default(),
            other => {
                return Err(StepFailure::new(
                    step,
                    path,
                    format!(
                        "`for_each` must give a list, got {}",
                        match other {
                            ValueKind::String => "a string",
                            ValueKind::Number => "a number",
                            ValueKind::Bool => "a boolean",
                            _ => "something else",
                        }
                    ),
                    ErrorKind::Usage,
                ));
            }
        };
        let total = items.len();
        let ev = self
            .event("step.started")
            .step(path, step.name.as_deref())
            .detail(json!({ "for_each": total }));
        self.record_step(step, path, ev).await?;

        // Loops with a checkpoint keep a ledger row per item (see `ledger`).
        let mut known = if step.checkpoint.is_some() {
            self.ledger_of(step, path).await?
        } else {
            Default::default()
        };
        let outer_key = self.item_key.clone();
        let bar = self.progress_bar(step, total);
        let saved_var = self.vars.get(&each.var).cloned();
        let saved_loop = self.vars.get("loop").cloned();
        let mut outputs = Vec::new();
        let mut outputs_tainted = false;
        let (mut ok, mut failed, mut skipped) = (0usize, 0usize, 0usize);
        let mut result = Ok(());
        let mut held: Option<super::ledger::ItemEnd> = None;
        for (i, item) in items.into_iter().enumerate() {
            if self.cancel.is_cancelled() {
                result = Err(StepFailure::cancelled(step, path));
                break;
            }
            let item_path = format!("{path}/item[{}]", i + 1);
            self.set_value(&each.var, item, false, None);
            let loop_info = json!({
                "index": i + 1, "index0": i, "first": i == 0, "last": i + 1 == total, "length": total
            });
            self.set_var("loop", &loop_info, false);
            if let Some(cond) = &step.when {
                match template::render_condition(cond, &self.context()) {
                    Ok(true) => {}
                    Ok(false) => {
                        skipped += 1;
                        if let Some(b) = &bar {
                            b.inc(1);
                        }
                        continue;
                    }
                    Err(e) => {
                        result = Err(StepFailure::new(
                            step,
                            &item_path,
                            format!("`if`: {}", e.message),
                            ErrorKind::Usage,
                        ));
                        break;
                    }
                }
            }
            let checkpoint = match &step.checkpoint {
                Some(c) => match template::render(c, &self.context()) {
                    Ok(v) => Some(template::to_json(&v)),
                    Err(e) => {
                        result = Err(StepFailure::new(
                            step,
                            &item_path,
                            format!("`checkpoint`: {}", e.message),
                            ErrorKind::Usage,
                        ));
                        break;
                    }
                },
                None => None,
            };
            let key = checkpoint.as_ref().map(super::ledger::item_key_text);
            self.item_key = key.clone().or_else(|| outer_key.clone());
            // The previous item's held end goes with this item's start only
            // when this item is fresh (nothing is recorded before its start);
            // otherwise it is committed now.
            let fresh = key.as_ref().is_some_and(|k| !known.contains_key(k));
            if !fresh
                && let Some(h) = held.take()
                && let Err(f) = self.commit_end(step, h, &mut known).await
            {
                result = Err(f);
                break;
            }
            let mut after_doubt = false;
            if let Some(k) = &key {
                match self
                    .ledger_decision(step, &item_path, i + 1, k, &mut known)
                    .await
                {
                    Ok(super::ledger::Decision::Run { after_doubt: d }) => after_doubt = d,
                    Ok(super::ledger::Decision::Replay(f)) => {
                        skipped += 1;
                        if let Some(b) = &bar {
                            b.inc(1);
                        }
                        if let Err(f) = self.handle_failure(step, &item_path, f).await {
                            result = Err(f);
                            break;
                        }
                        continue;
                    }
                    Ok(super::ledger::Decision::Skip(restored)) => {
                        if let Some(v) = restored {
                            if step.save_as.is_some()
                                && let Some(m) = keep::omitted(&v)
                            {
                                result = Err(StepFailure::new(
                                    step,
                                    &item_path,
                                    format!(
                                        "work item {} was done by an earlier run, but its output ({} bytes) was over the {} bytes kept per value and was not stored, so the loop's `save_as` cannot be restored; give the loop an `output:` that keeps what later steps need (a reference, a status)",
                                        key.as_deref().unwrap_or_default(),
                                        m.bytes,
                                        keep::MAX_KEPT_VALUE
                                    ),
                                    ErrorKind::Usage,
                                ));
                                break;
                            }
                            outputs.push(template::to_value(&v));
                        }
                        skipped += 1;
                        if let Some(b) = &bar {
                            b.inc(1);
                        }
                        continue;
                    }
                    Err(f) => {
                        result = Err(f);
                        break;
                    }
                }
            }
            let item_start = Instant::now();
            let ev = self
                .event("item.started")
                .step(&item_path, step.name.as_deref())
                .detail(json!({ "index": i + 1, "of": total, "checkpoint": checkpoint }));
            let started = match &key {
                Some(k) => {
                    // The item's steps start right away: their first
                    // `step.started` commits with the transition (one commit,
                    // where the next action with an outside effect would
                    // otherwise need another).
                    let first = match &step.body {
                        StepBody::Block(children) => {
                            Some(self.block_started(step, &item_path, 1, children.len()))
                        }
                        StepBody::Action { .. } => None,
                    };
                    let prestarted = first.is_some().then(|| item_path.clone());
                    let r = match held.take() {
                        Some(h) => {
                            self.finish_and_start(step, h, &item_path, k, ev, first, &mut known)
                                .await
                        }
                        None => {
                            self.item_started(
                                step,
                                &item_path,
                                k,
                                after_doubt,
                                ev,
                                first,
                                &mut known,
                            )
                            .await
                        }
                    };
                    if r.is_ok() {
                        self.prestarted = prestarted;
                    }
                    r
                }
                None => self.record_step(step, &item_path, ev).await,
            };
            if let Err(f) = started {
                result = Err(f);
                break;
            }
            let outcome = self.guarded(step, &item_path).await;
            let finished = self
                .event("item.finished")
                .step(&item_path, step.name.as_deref())
                .duration_ms(item_start.elapsed().as_millis() as i64);
            match outcome {
                Ok((value, tainted)) => {
                    ok += 1;
                    outputs_tainted |= tainted;
                    // The item's `output` goes in its event so the run report can
                    // say what each item produced (a case reference, say).
                    let masked = tainted || step.sensitive;
                    let shown = if masked {
                        json!("***")
                    } else {
                        keep::kept(&value, Some(&Self::origin(step)))
                    };
                    let ev = finished.outcome("ok").detail(
                        json!({ "index": i + 1, "checkpoint": checkpoint, "output": shown }),
                    );
                    let recorded = match &key {
                        // Held: committed with the next item's start.
                        Some(k) => {
                            held = Some(self.held_finish(step, &item_path, k, &value, masked, ev));
                            Ok(())
                        }
                        None => self.record_step(step, &item_path, ev).await,
                    };
                    outputs.push(value);
                    if let Err(f) = recorded {
                        result = Err(f);
                        break;
                    }
                }
                Err(f) => {
                    failed += 1;
                    let ev = finished.outcome("failed").error(&f.message).detail(json!({
                        "index": i + 1, "checkpoint": checkpoint, "failed_step": f.path,
                        "kind": f.kind.as_str(),
                    }));
                    let recorded = match &key {
                        Some(k) => {
                            self.item_failed(step, &item_path, k, &f, ev, &mut known)
                                .await
                        }
                        None => self.record_step(step, &item_path, ev).await,
                    };
                    if let Err(e) = recorded {
                        result = Err(e);
                        break;
                    }
                    if let Err(f) = self.handle_failure(step, &item_path, f).await {
                        result = Err(f);
                        break;
                    }
                }
            }
            if let Some(b) = &bar {
                b.inc(1);
            } else {
                tracing::info!(step = %path, "item {} of {total} done", i + 1);
            }
        }
        // The last item's end, or one left by a loop that stopped early.
        if let Some(h) = held.take() {
            let flushed = self.commit_end(step, h, &mut known).await;
            if let Err(f) = flushed
                && result.is_ok()
            {
                result = Err(f);
            }
        }
        self.item_key = outer_key;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match saved_var {
            Some(v) => {
                self.vars.insert(each.var.clone(), v);
            }
            None => {
                self.vars.remove(&each.var);
            }
        }
        match saved_loop {
            Some(v) => {
                self.vars.insert("loop".into(), v);
            }
            None => {
                self.vars.remove("loop");
            }
        }
        let mut ev = self
            .event("step.finished")
            .step(path, step.name.as_deref())
            .duration_ms(start.elapsed().as_millis() as i64)
            .detail(json!({ "items": total, "ok": ok, "failed": failed, "skipped": skipped }));
        ev = match &result {
            Ok(()) => ev.outcome(if failed > 0 { "partial" } else { "ok" }),
            Err(f) => ev.outcome("failed").error(&f.message),
        };
        self.record_step(step, path, ev).await?;
        result?;
        if let Some(name) = &step.save_as {
            self.set_value(
                name,
                MValue::from(outputs),
                outputs_tainted || step.sensitive,
                Some(Self::origin(step)),
            );
        }
        Ok(())
    }

    pub(crate) fn progress_bar(&self, step: &Step, total: usize) -> Option<indicatif::ProgressBar> {
        use std::io::IsTerminal;
        if !self.progress || total < 2 || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new(total as u64);
        let style =
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)")
                .map(|s| s.progress_chars("=> "));
        if let Ok(s) = style {
            bar.set_style(s);
        }
        bar.set_message(step.name.clone().unwrap_or_else(|| step.path.clone()));
        Some(bar)
    }
}

/// Keeps audit events readable: long lists and texts are summarised.
fn summarize(value: &Value) -> Value {
    const MAX_ITEMS: usize = 20;
    const MAX_TEXT: usize = 2000;
    match value {
        Value::String(s) if s.len() > MAX_TEXT => {
            let cut: String = s.chars().take(MAX_TEXT).collect();
            Value::String(format!("{cut}… ({} characters in all)", s.chars().count()))
        }
        Value::Array(items) if items.len() > MAX_ITEMS => json!({
            "items": items.len(),
            "first": items.iter().take(3).map(summarize).collect::<Vec<_>>(),
        }),
        Value::Array(items) => Value::Array(items.iter().map(summarize).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), summarize(v))).collect())
        }
        other => other.clone(),
    }
}
