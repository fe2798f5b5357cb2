//! Loading a playbook file: YAML → positioned tree → checked model.
//!
//! Every problem is collected (not just the first) so `clerk validate` can list
//! them all with `path:line:col`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::checks::{self, suggest};
use super::diag::Diagnostics;
use super::model::*;
use super::yaml::{self, Node, PathSeg, Pos, Value};
use crate::template;

/// A problem with an action's arguments, at a path inside the arguments.
#[derive(Debug, Clone)]
pub struct ArgProblem {
    pub path: Vec<PathSeg>,
    pub message: String,
}

/// What the loader needs to know about actions; implemented by the action registry.
pub trait ActionCatalog {
    fn names(&self) -> Vec<&'static str>;
    fn exists(&self, name: &str) -> bool;
    /// The argument a scalar stands for (`browser.open: URL` → `url`), if any.
    fn shorthand(&self, name: &str) -> Option<&'static str>;
    /// Checks arguments against the action's typed args; templates are accepted
    /// wherever they could render to the right type.
    fn check_args(&self, name: &str, args: &serde_json::Value) -> Vec<ArgProblem>;
}

const STEP_KEYS: &[&str] = &[
    "id",
    "once",
    "verify",
    "name",
    "steps",
    "if",
    "for_each",
    "as",
    "checkpoint",
    "retry",
    "timeout",
    "on_error",
    "save_as",
    "output",
    "sensitive",
];
const TOP_KEYS: &[&str] = &["name", "description", "inputs", "steps"];
const INPUT_KEYS: &[&str] = &["type", "default", "required", "description"];
const RETRY_KEYS: &[&str] = &["attempts", "delay", "backoff", "max_delay"];
const VERIFY_KEYS: &[&str] = &["steps", "output"];

/// Names every template may use without defining them.
const BUILTIN_NAMES: &[&str] = &[
    "inputs",
    "secrets",
    "run",
    "loop",
    "error",
    "now",
    "range",
    "dict",
    "namespace",
    "today",
    "env",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
];

/// Reads and checks a playbook file.
pub fn load_file(path: &Path, catalog: &dyn ActionCatalog) -> Result<Playbook, Diagnostics> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let mut d = Diagnostics::default();
            d.push(
                path,
                Pos { line: 1, col: 1 },
                format!("cannot read the playbook: {e}"),
            );
            return Err(d);
        }
    };
    load_str(&text, path, catalog)
}

/// Checks a playbook given as text; `path` is used in messages.
pub fn load_str(
    text: &str,
    path: &Path,
    catalog: &dyn ActionCatalog,
) -> Result<Playbook, Diagnostics> {
    let mut loader = Loader {
        path,
        catalog,
        diags: Diagnostics::default(),
        declared_inputs: BTreeSet::new(),
        defined_names: BTreeSet::new(),
        templates: Vec::new(),
        explicit_ids: BTreeMap::new(),
        loop_depth: 0,
    };
    let mut root = match yaml::parse(text) {
        Ok(r) => r,
        Err(e) => {
            loader
                .diags
                .push(path, e.pos, format!("invalid YAML: {}", e.message));
            return Err(loader.diags);
        }
    };
    // `include:` steps are spliced in before anything is checked.
    {
        let _loading = super::include::Loading::enter(path);
        super::include::expand(&mut root, path, catalog, &mut loader.diags);
    }
    let mut playbook = loader.playbook(&root);
    if let Some(p) = &mut playbook {
        p.sha256 = crate::fsutil::sha256_hex(text.as_bytes());
    }
    loader.check_template_references();
    loader.diags.sort();
    match playbook {
        Some(p) if loader.diags.is_empty() => Ok(p),
        _ => {
            if loader.diags.is_empty() {
                loader
                    .diags
                    .push(path, root.pos, "the playbook could not be loaded");
            }
            Err(loader.diags)
        }
    }
}

struct Loader<'a> {
    path: &'a Path,
    catalog: &'a dyn ActionCatalog,
    diags: Diagnostics,
    declared_inputs: BTreeSet<String>,
    /// Names a step defines (save_as, as, set keys): allowed in later templates.
    defined_names: BTreeSet<String>,
    /// Templates seen, checked for references once all names are known.
    templates: Vec<(String, Pos)>,
    /// Explicit step ids seen, with where.
    explicit_ids: BTreeMap<String, Pos>,
    /// How many `for_each` bodies enclose the steps being read.
    loop_depth: usize,
}

impl Loader<'_> {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(self.path, pos, message);
    }

    fn unknown_keys(&mut self, node: &Node, allowed: &[&str], what: &str) {
        checks::unknown_keys(&mut self.diags, self.path, node, allowed, what);
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        checks::string(&mut self.diags, self.path, node, what)
    }

    fn playbook(&mut self, root: &Node) -> Option<Playbook> {
        if root.as_map().is_none() {
            self.err(
                root.pos,
                format!(
                    "a playbook must be a map with `name` and `steps`, found {}",
                    root.kind_name()
                ),
            );
            return None;
        }
        self.unknown_keys(root, TOP_KEYS, "the playbook");
        let name = match root.get("name") {
            Some(n) => self.string(n, "name"),
            None => {
                self.err(root.pos, "missing `name`");
                None
            }
        };
        let description = root
            .get("description")
            .and_then(|d| self.string(d, "description"));
        let inputs = root
            .get("inputs")
            .map(|n| self.inputs(n))
            .unwrap_or_default();
        self.collect_defined_names(root.get("steps"));
        let steps = match root.get("steps") {
            Some(s) => self.steps(s, "", ""),
            None => {
                self.err(root.pos, "missing `steps`");
                Vec::new()
            }
        };
        Some(Playbook {
            name: name?,
            description,
            inputs,
            steps,
            path: self.path.to_path_buf(),
            sha256: String::new(),
        })
    }

    fn inputs(&mut self, node: &Node) -> Vec<InputDef> {
        let Some(map) = node.as_map() else {
            if node.value != Value::Null {
                self.err(
                    node.pos,
                    format!(
                        "`inputs` must be a map of input names, found {}",
                        node.kind_name()
                    ),
                );
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in map {
            let name = k.key_text();
            self.declared_inputs.insert(name.clone());
            if let Some(def) = self.input(&name, k.pos, v) {
                out.push(def);
            }
        }
        out
    }

    fn input(&mut self, name: &str, pos: Pos, node: &Node) -> Option<InputDef> {
        if node.as_map().is_none() {
            self.err(
                node.pos,
                format!(
                    "input `{name}` must be a map like {{ type: string, default: ... }}, found {}",
                    node.kind_name()
                ),
            );
            return None;
        }
        self.unknown_keys(node, INPUT_KEYS, &format!("input `{name}`"));
        let kind = match node.get("type") {
            None => InputType::String,
            Some(t) => {
                let text = t.as_str().unwrap_or_default();
                match InputType::parse(text) {
                    Some(k) => k,
                    None => {
                        let hint = suggest(text, InputType::NAMES.iter().copied())
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        self.err(
                            t.pos,
                            format!(
                                "unknown input type `{}` for `{name}`; expected one of {}{hint}",
                                t.key_text(),
                                InputType::NAMES.join(", ")
                            ),
                        );
                        InputType::String
                    }
                }
            }
        };
        let default = node.get("default").map(|d| {
            let v = d.to_json();
            if !v.is_null() && !kind.accepts(&v) {
                self.err(
                    d.pos,
                    format!(
                        "default of input `{name}` must be {}, found {}",
                        kind.name(),
                        d.kind_name()
                    ),
                );
            }
            v
        });
        let required = match node.get("required") {
            None => false,
            Some(r) => match r.value {
                Value::Bool(b) => b,
                _ => {
                    self.err(r.pos, "`required` must be true or false");
                    false
                }
            },
        };
        let description = node
            .get("description")
            .and_then(|d| self.string(d, "description"));
        Some(InputDef {
            name: name.to_string(),
            kind,
            default,
            required,
            description,
            pos,
        })
    }

    /// First pass: every name a step defines, so templates may use them anywhere.
    fn collect_defined_names(&mut self, steps: Option<&Node>) {
        let Some(items) = steps.and_then(Node::as_seq) else {
            return;
        };
        for step in items {
            if let Some(s) = step.get("save_as").and_then(Node::as_str) {
                self.defined_names.insert(s.to_string());
            }
            if step.get("for_each").is_some() {
                let var = step.get("as").and_then(Node::as_str).unwrap_or("item");
                self.defined_names.insert(var.to_string());
            }
            if let Some(set) = step.get("set").and_then(Node::as_map) {
                for (k, _) in set {
                    self.defined_names.insert(k.key_text());
                }
            }
            self.collect_defined_names(step.get("steps"));
            if let Some(v) = step.get("verify") {
                if v.as_seq().is_some() {
                    self.collect_defined_names(Some(v));
                } else {
                    self.collect_defined_names(v.get("steps"));
                }
            }
            if let Some(handler) = step.get("on_error")
                && handler.as_seq().is_some()
            {
                self.collect_defined_names(Some(handler));
            }
        }
    }

    fn steps(&mut self, node: &Node, parent: &str, parent_id: &str) -> Vec<Step> {
        let Some(items) = node.as_seq() else {
            self.err(
                node.pos,
                format!(
                    "`steps` must be a list of steps, found {}",
                    node.kind_name()
                ),
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.err(node.pos, "`steps` is empty");
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = if parent.is_empty() {
                format!("{}", i + 1)
            } else {
                format!("{parent}/{}", i + 1)
            };
            if let Some(step) = self.step(item, path, parent_id, i + 1) {
                out.push(step);
            }
        }
        out
    }

    fn step(&mut self, node: &Node, path: String, parent_id: &str, index: usize) -> Option<Step> {
        let Some(map) = node.as_map() else {
            self.err(
                node.pos,
                format!(
                    "step {path} must be a map with one action (e.g. `log: hello`), found {}",
                    node.kind_name()
                ),
            );
            return None;
        };
        // Which keys are actions?
        let mut action_keys: Vec<&(Node, Node)> = Vec::new();
        for entry in map {
            let key = entry.0.key_text();
            if STEP_KEYS.contains(&key.as_str()) {
                continue;
            }
            if self.catalog.exists(&key) {
                action_keys.push(entry);
            } else {
                let candidates: Vec<&str> = self
                    .catalog
                    .names()
                    .into_iter()
                    .chain(STEP_KEYS.iter().copied())
                    .collect();
                let hint = suggest(&key, candidates.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                let what = if key.contains('.') || !key.is_empty() {
                    "unknown action"
                } else {
                    "unknown key"
                };
                self.err(entry.0.pos, format!("{what} `{key}`{hint}"));
                // Still count it as the action so we do not also say "no action".
                action_keys.push(entry);
            }
        }
        let block = node.get("steps");
        if action_keys.len() > 1 {
            let names: Vec<String> = action_keys.iter().map(|(k, _)| k.key_text()).collect();
            self.err(
                action_keys[1].0.pos,
                format!(
                    "a step has exactly one action, found {}: {}; split it into separate steps",
                    names.len(),
                    names.join(", ")
                ),
            );
        }
        if !action_keys.is_empty() && block.is_some() {
            self.err(
                node.pos,
                "a step has either an action or a `steps:` block, not both",
            );
        }
        let id = self.step_id(node, parent_id, index, action_keys.first().map(|(k, _)| k));
        let is_loop = node.get("for_each").is_some();
        if is_loop {
            self.loop_depth += 1;
        }
        let body = if let Some(b) = block {
            StepBody::Block(self.steps(b, &path, &id))
        } else if let Some((k, v)) = action_keys.first() {
            let name = k.key_text();
            let args = self.action_args(&name, v);
            StepBody::Action { name, args }
        } else {
            self.err(
                node.pos,
                format!("step {path} has no action (e.g. `log: hello`) and no `steps:` block"),
            );
            StepBody::Block(Vec::new())
        };

        let verify = node.get("verify").and_then(|v| self.verify(v, &path, &id));
        if is_loop {
            self.loop_depth -= 1;
        }
        let name = node.get("name").and_then(|n| self.string(n, "name"));
        let when = node.get("if").and_then(|n| self.condition(n));
        let for_each = node.get("for_each").map(|n| {
            self.template_tree(n);
            let var = match node.get("as") {
                Some(a) => match a.as_str() {
                    Some(s) if is_identifier(s) => s.to_string(),
                    _ => {
                        self.err(a.pos, "`as` must be a plain name like `row`");
                        "item".into()
                    }
                },
                None => "item".into(),
            };
            if !matches!(n.value, Value::Str(_) | Value::Seq(_)) {
                self.err(
                    n.pos,
                    format!(
                        "`for_each` must be a list or a template like \"{{{{ rows }}}}\", found {}",
                        n.kind_name()
                    ),
                );
            }
            ForEach {
                items: n.to_json(),
                var,
            }
        });
        if let (Some(a), None) = (node.get("as"), &for_each) {
            self.err(a.pos, "`as` only makes sense together with `for_each`");
        }
        let checkpoint = node.get("checkpoint").and_then(|n| {
            let s = self.string(n, "checkpoint");
            if s.is_some() {
                self.template_tree(n);
            }
            s
        });
        let retry = node.get("retry").and_then(|n| self.retry(n));
        let timeout = node
            .get("timeout")
            .and_then(|n| self.duration(n, "timeout"));
        let on_error = match node.get("on_error") {
            None => OnError::Fail,
            Some(n) => match &n.value {
                Value::Str(s) if s == "fail" => OnError::Fail,
                Value::Str(s) if s == "continue" => OnError::Continue,
                Value::Seq(_) => OnError::Steps(self.steps(
                    n,
                    &format!("{path}/on_error"),
                    &format!("{id}/on_error"),
                )),
                _ => {
                    self.err(
                        n.pos,
                        "`on_error` must be `fail`, `continue`, or a list of steps",
                    );
                    OnError::Fail
                }
            },
        };
        let save_as = node.get("save_as").and_then(|n| match n.as_str() {
            Some(s) if is_identifier(s) && !BUILTIN_NAMES.contains(&s) => Some(s.to_string()),
            _ => {
                self.err(
                    n.pos,
                    format!(
                        "`save_as` must be a plain variable name (letters, digits, _), not a reserved name like `inputs`; found {}",
                        n.key_text()
                    ),
                );
                None
            }
        });
        let output = node.get("output").map(|n| {
            self.template_tree(n);
            n.to_json()
        });
        let sensitive = match node.get("sensitive") {
            None => false,
            Some(n) => match n.value {
                Value::Bool(b) => b,
                _ => {
                    self.err(n.pos, "`sensitive` must be true or false");
                    false
                }
            },
        };
        let once = match node.get("once") {
            None => false,
            Some(n) => match n.value {
                Value::Bool(b) => {
                    if b && (self.loop_depth > 0 || is_loop) {
                        self.err(
                            n.pos,
                            "`once` is for steps outside loops; the items of a loop are tracked with `checkpoint`",
                        );
                    }
                    b
                }
                _ => {
                    self.err(n.pos, "`once` must be true or false");
                    false
                }
            },
        };
        if let Some(v) = node.get("verify")
            && (!is_loop || checkpoint.is_none())
        {
            self.err(
                v.pos,
                "`verify` belongs on a `for_each` step with a `checkpoint`: it looks up an item whose outcome is unknown",
            );
        }
        Some(Step {
            path,
            id,
            digest: step_digest(node),
            once,
            verify,
            name,
            body,
            when,
            for_each,
            checkpoint,
            retry,
            timeout,
            on_error,
            save_as,
            output,
            sensitive,
            pos: node.pos,
        })
    }

    /// The step's `id:` (checked: characters, uniqueness), else the derived id.
    fn step_id(
        &mut self,
        node: &Node,
        parent_id: &str,
        index: usize,
        action_key: Option<&Node>,
    ) -> String {
        if let Some(n) = node.get("id") {
            match n.as_str() {
                Some(s) if valid_id(s) => {
                    if let Some(first) = self.explicit_ids.get(s) {
                        let first = *first;
                        self.err(
                            n.pos,
                            format!(
                                "duplicate step id `{s}`: already used by the step at line {}:{}; step ids must be unique in a playbook",
                                first.line, first.col
                            ),
                        );
                    } else {
                        self.explicit_ids.insert(s.to_string(), n.pos);
                    }
                    return s.to_string();
                }
                _ => self.err(
                    n.pos,
                    format!(
                        "`id` must start with a letter and hold only letters, digits, `_`, `-` or `.` (at most 64), found `{}`",
                        n.key_text()
                    ),
                ),
            }
        }
        let name = node.get("name").and_then(Node::as_str);
        let action = action_key.map(Node::key_text);
        derive_id(parent_id, index, name.or(action.as_deref()))
    }

    /// `verify:` — a list of steps, or `{ steps: [...], output: ... }`.
    fn verify(&mut self, node: &Node, path: &str, id: &str) -> Option<Verify> {
        let (vpath, vid) = (format!("{path}/verify"), format!("{id}/verify"));
        match &node.value {
            Value::Seq(_) => Some(Verify {
                steps: self.steps(node, &vpath, &vid),
                output: None,
            }),
            Value::Map(_) => {
                self.unknown_keys(node, VERIFY_KEYS, "`verify`");
                let steps = match node.get("steps") {
                    Some(s) => self.steps(s, &vpath, &vid),
                    None => {
                        self.err(node.pos, "`verify` needs `steps:`");
                        Vec::new()
                    }
                };
                let output = node.get("output").map(|o| {
                    self.template_tree(o);
                    o.to_json()
                });
                Some(Verify { steps, output })
            }
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "`verify` must be a list of steps (or {{ steps, output }}), found {}",
                        node.kind_name()
                    ),
                );
                None
            }
        }
    }

    fn condition(&mut self, node: &Node) -> Option<String> {
        match &node.value {
            Value::Str(s) => {
                self.template_tree(node);
                Some(s.clone())
            }
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "`if` must be a condition like \"{{{{ row.amount > 0 }}}}\", found {}",
                        node.kind_name()
                    ),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<std::time::Duration> {
        checks::duration(&mut self.diags, self.path, node, what, "`2s`")
    }

    fn retry(&mut self, node: &Node) -> Option<RetryPolicy> {
        if let Value::Int(n) = node.value {
            if !(1..=100).contains(&n) {
                self.err(node.pos, "`retry` attempts must be between 1 and 100");
                return None;
            }
            return Some(RetryPolicy {
                attempts: n as u32,
                delay: std::time::Duration::from_secs(1),
                backoff: 1.0,
                max_delay: None,
            });
        }
        if node.as_map().is_none() {
            self.err(
                node.pos,
                "`retry` must be a map like { attempts: 3, delay: 2s, backoff: 2.0 }",
            );
            return None;
        }
        self.unknown_keys(node, RETRY_KEYS, "`retry`");
        let attempts = match node.get("attempts") {
            None => 3,
            Some(a) => match a.value {
                Value::Int(n) if (1..=100).contains(&n) => n as u32,
                _ => {
                    self.err(a.pos, "`attempts` must be a whole number from 1 to 100");
                    3
                }
            },
        };
        let delay = node
            .get("delay")
            .and_then(|d| self.duration(d, "delay"))
            .unwrap_or(std::time::Duration::from_secs(1));
        let backoff = match node.get("backoff") {
            None => 1.0,
            Some(b) => match b.value {
                Value::Int(n) if (1..=10).contains(&n) => n as f64,
                Value::Float(f) if (1.0..=10.0).contains(&f) => f,
                _ => {
                    self.err(b.pos, "`backoff` must be a number from 1.0 to 10.0");
                    1.0
                }
            },
        };
        let max_delay = node
            .get("max_delay")
            .and_then(|d| self.duration(d, "max_delay"));
        Some(RetryPolicy {
            attempts,
            delay,
            backoff,
            max_delay,
        })
    }

    fn action_args(&mut self, name: &str, node: &Node) -> serde_json::Value {
        self.template_tree(node);
        let wrapped;
        let args_node = match (&node.value, self.catalog.shorthand(name)) {
            (Value::Map(_), _) => node,
            (_, Some(field)) => {
                wrapped = Node {
                    value: Value::Map(vec![(
                        Node {
                            value: Value::Str(field.to_string()),
                            pos: node.pos,
                        },
                        node.clone(),
                    )]),
                    pos: node.pos,
                };
                &wrapped
            }
            (Value::Null, None) => {
                wrapped = Node {
                    value: Value::Map(Vec::new()),
                    pos: node.pos,
                };
                &wrapped
            }
            (_, None) => node,
        };
        let args = args_node.to_json();
        if self.catalog.exists(name) {
            for problem in self.catalog.check_args(name, &args) {
                let at = args_node.locate(&problem.path);
                // A missing field is reported at the map that lacks it.
                self.err(at.pos, format!("`{name}`: {}", problem.message));
            }
        }
        args
    }

    /// Checks the syntax of every template string in a value and remembers it
    /// for the reference check.
    fn template_tree(&mut self, node: &Node) {
        match &node.value {
            Value::Str(s) if template::is_template(s) => {
                if let Err(e) = template::check_syntax(s) {
                    self.err(node.pos, format!("invalid template: {e}"));
                } else {
                    for problem in crate::tmplcheck::unknown_names(s) {
                        self.err(node.pos, problem);
                    }
                    self.templates.push((s.clone(), node.pos));
                }
            }
            Value::Seq(items) => items.iter().for_each(|n| self.template_tree(n)),
            Value::Map(entries) => entries.iter().for_each(|(_, v)| self.template_tree(v)),
            _ => {}
        }
    }

    fn check_template_references(&mut self) {
        let templates = std::mem::take(&mut self.templates);
        for (source, pos) in templates {
            let Ok(refs) = template::references(&source) else {
                continue;
            };
            for r in refs {
                let mut parts = r.split('.');
                let root = parts.next().unwrap_or_default();
                if root == "inputs" {
                    if let Some(input) = parts.next()
                        && !self.declared_inputs.contains(input)
                    {
                        let hint = suggest(input, self.declared_inputs.iter().map(String::as_str))
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        self.err(
                            pos,
                            format!("input `{input}` is not declared in `inputs:`{hint}"),
                        );
                    }
                    continue;
                }
                if BUILTIN_NAMES.contains(&root)
                    || self.defined_names.contains(root)
                    || template::is_global(root)
                {
                    continue;
                }
                let known: Vec<&str> = self
                    .defined_names
                    .iter()
                    .map(String::as_str)
                    .chain(BUILTIN_NAMES.iter().copied())
                    .collect();
                let hint = suggest(root, known.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.err(
                    pos,
                    format!(
                        "unknown variable `{root}`: no step defines it with `save_as`, `set` or `as`{hint}"
                    ),
                );
            }
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An explicit step id: a letter, then letters, digits, `_`, `-`, `.`; at
/// most 64 characters. Starting with a letter keeps it apart from derived
/// ids, which start with a position number.
fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The id of a step without `id:`: its 1-based position among its siblings,
/// then `.` and a slug of its name (or, without a name, of its action), under
/// its parent's id: `3.sign-in`, `4.enter-each-renewal/2.browser-fill`,
/// `5/on_error/1.log`. The slug is lowercase ASCII letters and digits, other
/// runs of characters become `-`, at most 40 characters.
pub fn derive_id(parent_id: &str, index: usize, label: Option<&str>) -> String {
    let slug = label.map(slug).unwrap_or_default();
    let local = if slug.is_empty() {
        index.to_string()
    } else {
        format!("{index}.{slug}")
    };
    if parent_id.is_empty() {
        local
    } else {
        format!("{parent_id}/{local}")
    }
}

fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 40 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

/// 16 hex digits of SHA-256 over the step's own keys (child step lists
/// excluded: they have their own digests), keys sorted at every depth.
fn step_digest(node: &Node) -> String {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(
                    entries.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
                )
            }
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(sorted).collect())
            }
            other => other,
        }
    }
    let mut v = node.to_json();
    if let serde_json::Value::Object(m) = &mut v {
        m.remove("steps");
        if m.get("on_error").is_some_and(serde_json::Value::is_array) {
            m.remove("on_error");
        }
        if let Some(verify) = m.get_mut("verify") {
            if verify.is_array() {
                *verify = serde_json::Value::Null;
            } else if let serde_json::Value::Object(vm) = verify {
                vm.remove("steps");
            }
        }
    }
    let text = sorted(v).to_string();
    crate::fsutil::sha256_hex(text.as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::Registry;

    fn load(text: &str) -> Result<Playbook, Diagnostics> {
        load_str(text, Path::new("p.yaml"), &Registry)
    }

    fn ids(steps: &[Step], out: &mut Vec<String>) {
        for s in steps {
            out.push(s.id.clone());
            if let StepBody::Block(c) = &s.body {
                ids(c, out);
            }
            if let OnError::Steps(h) = &s.on_error {
                ids(h, out);
            }
            if let Some(v) = &s.verify {
                ids(&v.steps, out);
            }
        }
    }

    #[test]
    fn step_ids_are_derived_from_position_and_name() {
        let p = load(
            r#"name: t
steps:
  - name: Sign in (portal)
    log: hi
  - log: plain
  - name: Enter each request
    for_each: [1, 2]
    checkpoint: "{{ item }}"
    verify:
      - name: Look it up
        log: "{{ item }}"
    steps:
      - browser.open: http://x
      - name: Über   Straße!!
        log: x
    on_error:
      - log: oops
  - id: mail-team
    steps:
      - log: inside
"#,
        )
        .unwrap();
        let mut got = Vec::new();
        ids(&p.steps, &mut got);
        assert_eq!(
            got,
            [
                "1.sign-in-portal",
                "2.log",
                "3.enter-each-request",
                "3.enter-each-request/1.browser-open",
                "3.enter-each-request/2.ber-stra-e",
                "3.enter-each-request/on_error/1.log",
                "3.enter-each-request/verify/1.look-it-up",
                "mail-team",
                "mail-team/1.log",
            ]
        );
        assert_eq!(p.sha256.len(), 64);
        assert_eq!(derive_id("", 7, None), "7");
        assert_eq!(derive_id("a", 2, Some("---")), "a/2");
    }

    #[test]
    fn step_digests_name_what_changed() {
        let a = load("name: t\nsteps:\n  - name: A\n    log: one\n  - log: two\n").unwrap();
        let b = load("name: t\nsteps:\n  - name: A\n    log: ONE\n  - log: two\n  - log: three\n")
            .unwrap();
        let c = StepChanges::between(&a.step_digests(), &b.step_digests());
        assert_eq!(c.changed, ["1.a"]);
        assert_eq!(c.added, ["3.log"]);
        assert!(c.removed.is_empty());
        assert_eq!(c.describe(), "steps added: 3.log; changed: 1.a");
        // Key order and comments do not change a digest.
        let d = load("name: t\nsteps:\n  # hi\n  - log: one\n    name: A\n  - log: two\n").unwrap();
        assert!(StepChanges::between(&a.step_digests(), &d.step_digests()).is_empty());
        assert_ne!(a.sha256, d.sha256);
    }

    #[test]
    fn bad_and_duplicate_ids_once_and_verify_are_reported_with_positions() {
        let d = load(
            r#"name: t
steps:
  - id: sign-in
    log: a
  - id: sign-in
    log: b
  - id: "3 bad id"
    log: c
  - for_each: [1]
    steps:
      - log: x
        once: true
  - log: y
    verify:
      - log: z
  - for_each: [1]
    verify: [{ log: z }]
    steps: [{ log: w }]
  - log: v
    once: maybe
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            d.contains(
                "p.yaml:5:9: duplicate step id `sign-in`: already used by the step at line 3:9"
            ),
            "{d}"
        );
        assert!(
            d.contains("p.yaml:7:9: `id` must start with a letter"),
            "{d}"
        );
        assert!(
            d.contains("p.yaml:12:15: `once` is for steps outside loops"),
            "{d}"
        );
        assert!(
            d.contains("p.yaml:15:7: `verify` belongs on a `for_each` step with a `checkpoint`"),
            "{d}"
        );
        assert!(d.contains("p.yaml:17:13: `verify` belongs on"), "{d}");
        assert!(
            d.contains("p.yaml:20:11: `once` must be true or false"),
            "{d}"
        );
    }
}
