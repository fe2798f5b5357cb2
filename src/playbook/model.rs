//! The playbook as the engine sees it once it has been loaded and checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::yaml::Pos;

/// A loaded, validated playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub description: Option<String>,
    pub inputs: Vec<InputDef>,
    pub steps: Vec<Step>,
    /// The file it came from (as given by the user).
    pub path: PathBuf,
    /// SHA-256 (hex) of the file's text: a run records it, a resume compares it.
    pub sha256: String,
}

impl Playbook {
    /// Every step (nested, `on_error` and `verify` steps included) by id,
    /// with the digest of its definition.
    pub fn step_digests(&self) -> BTreeMap<String, String> {
        fn walk(steps: &[Step], out: &mut BTreeMap<String, String>) {
            for s in steps {
                out.insert(s.id.clone(), s.digest.clone());
                if let StepBody::Block(children) = &s.body {
                    walk(children, out);
                }
                if let OnError::Steps(h) = &s.on_error {
                    walk(h, out);
                }
                if let Some(v) = &s.verify {
                    walk(&v.steps, out);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.steps, &mut out);
        out
    }
}

/// What differs between two versions of a playbook, by step id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StepChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl StepChanges {
    /// Compares the step digests a run recorded with the current ones.
    pub fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Self {
        let mut c = StepChanges::default();
        for (id, d) in new {
            match old.get(id) {
                None => c.added.push(id.clone()),
                Some(o) if o != d => c.changed.push(id.clone()),
                Some(_) => {}
            }
        }
        for id in old.keys() {
            if !new.contains_key(id) {
                c.removed.push(id.clone());
            }
        }
        c
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `steps added: a, b; removed: c; changed: d`
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (what, ids) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ] {
            if !ids.is_empty() {
                parts.push(format!("{what}: {}", ids.join(", ")));
            }
        }
        if parts.is_empty() {
            "no step changed (only formatting or comments)".into()
        } else {
            format!("steps {}", parts.join("; "))
        }
    }
}

/// The declared type of a playbook input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    Bool,
    Path,
    List,
    Map,
}

impl InputType {
    pub fn parse(text: &str) -> Option<InputType> {
        Some(match text {
            "string" | "str" | "text" => InputType::String,
            "number" | "int" | "integer" | "float" => InputType::Number,
            "bool" | "boolean" => InputType::Bool,
            "path" | "file" => InputType::Path,
            "list" | "array" => InputType::List,
            "map" | "object" | "dict" => InputType::Map,
            _ => return None,
        })
    }

    pub const NAMES: &'static [&'static str] = &["string", "number", "bool", "path", "list", "map"];

    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Number => "number",
            InputType::Bool => "bool",
            InputType::Path => "path",
            InputType::List => "list",
            InputType::Map => "map",
        }
    }

    /// Whether a JSON value is acceptable for this type.
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match self {
            InputType::String | InputType::Path => value.is_string(),
            InputType::Number => value.is_number(),
            InputType::Bool => value.is_boolean(),
            InputType::List => matches!(value, J::Array(_)),
            InputType::Map => matches!(value, J::Object(_)),
        }
    }

    /// Turns the text given on the command line (`--input k=v`) into a typed value.
    pub fn coerce(self, text: &str) -> Result<serde_json::Value, String> {
        use serde_json::Value as J;
        match self {
            InputType::String | InputType::Path => Ok(J::String(text.to_string())),
            InputType::Number => {
                if let Ok(i) = text.trim().parse::<i64>() {
                    Ok(J::from(i))
                } else {
                    text.trim()
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(J::Number)
                        .ok_or_else(|| format!("`{text}` is not a number"))
                }
            }
            InputType::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Ok(J::Bool(true)),
                "false" | "no" | "0" | "off" => Ok(J::Bool(false)),
                _ => Err(format!("`{text}` is not a boolean (use true or false)")),
            },
            InputType::List | InputType::Map => {
                let parsed: serde_json::Value = serde_yaml::from_str(text)
                    .map_err(|e| format!("`{text}` is not valid YAML/JSON: {e}"))?;
                if self.accepts(&parsed) {
                    Ok(parsed)
                } else if self == InputType::List {
                    Ok(J::Array(
                        text.split(',')
                            .map(|s| J::String(s.trim().to_string()))
                            .filter(|v| v.as_str() != Some(""))
                            .collect(),
                    ))
                } else {
                    Err(format!(
                        "`{text}` is not a map (use YAML/JSON like {{a: 1}})"
                    ))
                }
            }
        }
    }
}

/// One declared input.
#[derive(Debug, Clone)]
pub struct InputDef {
    pub name: String,
    pub kind: InputType,
    pub default: Option<serde_json::Value>,
    pub required: bool,
    pub description: Option<String>,
    pub pos: Pos,
}

/// What to do when a step still fails after its retries.
#[derive(Debug, Clone)]
pub enum OnError {
    Fail,
    Continue,
    /// Run these steps (with `error` in scope), then go on.
    Steps(Vec<Step>),
}

/// Retry a failing step: `attempts` in all, waiting `delay`, then `delay * backoff`, ...
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub delay: Duration,
    pub backoff: f64,
    pub max_delay: Option<Duration>,
}

impl RetryPolicy {
    /// The wait before attempt `next` (2 = the first retry).
    pub fn delay_before(&self, next: u32) -> Duration {
        let factor = self.backoff.powi(next.saturating_sub(2) as i32);
        let secs = (self.delay.as_secs_f64() * factor).min(86_400.0);
        let d = Duration::from_secs_f64(secs.max(0.0));
        match self.max_delay {
            Some(max) if d > max => max,
            _ => d,
        }
    }
}

/// The body of a step: one action, or a block of steps.
#[derive(Debug, Clone)]
pub enum StepBody {
    Action {
        name: String,
        /// Arguments as written (templates not yet rendered), shorthand expanded.
        args: serde_json::Value,
    },
    Block(Vec<Step>),
}

/// `for_each` + `as`.
#[derive(Debug, Clone)]
pub struct ForEach {
    /// A template (usually `{{ list }}`) or a literal list.
    pub items: serde_json::Value,
    pub var: String,
}

/// A loop's `verify:` block: steps that look an in-doubt item up. Its
/// result is `output` if given, else the last step's result; `null`, `false`,
/// `""`, `[]` or `{}` mean "not found".
#[derive(Debug, Clone)]
pub struct Verify {
    pub steps: Vec<Step>,
    pub output: Option<serde_json::Value>,
}

/// One step of a playbook, with the keys shared by every kind of step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Position in the playbook: `3`, `3/2` (1-based).
    pub path: String,
    /// Stable id: the step's `id:`, else derived from its position and name
    /// (`3.sign-in`, `4.enter-each/2.browser-fill`); see `derive_id`.
    pub id: String,
    /// Short digest of the step's own definition (children excluded).
    pub digest: String,
    /// Run at most once per lineage: a resume skips it once it succeeded.
    pub once: bool,
    /// For a loop with `checkpoint`: how to look up an in-doubt item.
    pub verify: Option<Verify>,
    pub name: Option<String>,
    pub body: StepBody,
    pub when: Option<String>,
    pub for_each: Option<ForEach>,
    pub checkpoint: Option<String>,
    pub retry: Option<RetryPolicy>,
    pub timeout: Option<Duration>,
    pub on_error: OnError,
    pub save_as: Option<String>,
    pub output: Option<serde_json::Value>,
    /// Mask this step's arguments in the audit trail even if they hold no secret.
    pub sensitive: bool,
    pub pos: Pos,
}

impl Step {
    /// `3 "Sign in"` or `3 (browser.open)`: how a step is named in messages.
    pub fn label(&self) -> String {
        match (&self.name, &self.body) {
            (Some(n), _) => format!("{} \"{}\"", self.path, n),
            (None, StepBody::Action { name, .. }) => format!("{} ({})", self.path, name),
            (None, StepBody::Block(_)) => format!("{} (steps)", self.path),
        }
    }

    pub fn action_name(&self) -> Option<&str> {
        match &self.body {
            StepBody::Action { name, .. } => Some(name),
            StepBody::Block(_) => None,
        }
    }
}
