//! The one list of actions. Validation, `clerk actions`, the JSON Schema and
//! the engine's dispatch all read it; adding an action means one line here.

use futures::future::BoxFuture;
use serde_json::Value;

use super::{
    Action, ActionContext, ActionError, ActionResult, DefaultRetry, browser, builtin, file, mail,
    report, sheet,
};
use crate::playbook::{ActionCatalog, ArgProblem, yaml::PathSeg};
use crate::template;

/// An action, type-erased so it can live in the registry.
pub struct ActionDef {
    pub name: &'static str,
    pub summary: &'static str,
    pub example: &'static str,
    pub result: &'static str,
    pub shorthand: Option<&'static str>,
    pub default_retry: Option<DefaultRetry>,
    pub schema: fn() -> schemars::Schema,
    pub check: fn(&Value) -> Vec<ArgProblem>,
    pub run: for<'c, 'a> fn(&'c mut ActionContext<'a>, Value) -> BoxFuture<'c, ActionResult>,
}

/// Builds the registry entry of an action type.
pub const fn def<A: Action>() -> ActionDef {
    ActionDef {
        name: A::NAME,
        summary: A::SUMMARY,
        example: A::EXAMPLE,
        result: A::RESULT,
        shorthand: A::SHORTHAND,
        default_retry: A::DEFAULT_RETRY,
        schema: schema_of::<A>,
        check: check_args_described::<A>,
        run: run_erased::<A>,
    }
}

/// Every action clerk knows.
pub static REGISTRY: &[ActionDef] = &[
    def::<builtin::Set>(),
    def::<builtin::Log>(),
    def::<builtin::Assert>(),
    def::<builtin::Fail>(),
    def::<builtin::Wait>(),
    def::<file::Read>(),
    def::<file::Write>(),
    def::<file::Copy>(),
    def::<file::Move>(),
    def::<file::Delete>(),
    def::<file::List>(),
    def::<file::Exists>(),
    def::<sheet::Read>(),
    def::<sheet::Write>(),
    def::<sheet::Append>(),
    def::<mail::Send>(),
    def::<mail::Fetch>(),
    def::<mail::Move>(),
    def::<mail::Flag>(),
    def::<mail::Delete>(),
    def::<browser::page::Open>(),
    def::<browser::actions::Click>(),
    def::<browser::actions::Fill>(),
    def::<browser::form::FillForm>(),
    def::<browser::actions::Type>(),
    def::<browser::actions::Select>(),
    def::<browser::actions::Check>(),
    def::<browser::actions::Uncheck>(),
    def::<browser::page::Press>(),
    def::<browser::actions::ReadText>(),
    def::<browser::actions::ReadValue>(),
    def::<browser::actions::ReadAttribute>(),
    def::<browser::page::ReadTable>(),
    def::<browser::page::WaitFor>(),
    def::<browser::page::Screenshot>(),
    def::<browser::actions::Upload>(),
    def::<browser::page::Download>(),
    def::<browser::page::Frame>(),
    def::<browser::page::Dialog>(),
    def::<browser::page::ExecuteScript>(),
    def::<browser::outcome::ReadTexts>(),
    def::<browser::outcome::Settings>(),
    def::<report::Write>(),
];

/// Actions without an outside effect: they read, compute, wait, or only
/// type into a form that is not yet submitted. Every other action — a
/// click, a key press, a page load, a mail sent, a file or sheet written,
/// any action added later until it is listed here — has one, and the engine
/// makes every audit event before it durable before it starts (the
/// durability rule of the audit trail, docs/audit.md).
pub const WITHOUT_OUTSIDE_EFFECT: &[&str] = &[
    "set",
    "log",
    "assert",
    "fail",
    "wait",
    "file.read",
    "file.list",
    "file.exists",
    "sheet.read",
    "mail.fetch",
    "browser.fill",
    "browser.fill_form",
    "browser.type",
    "browser.select",
    "browser.check",
    "browser.uncheck",
    "browser.read_text",
    "browser.read_value",
    "browser.read_attribute",
    "browser.read_table",
    "browser.read_texts",
    "browser.wait_for",
    "browser.screenshot",
    "browser.frame",
    "browser.settings",
];

impl ActionDef {
    /// Whether running this action can change something outside clerk (see
    /// [`WITHOUT_OUTSIDE_EFFECT`]).
    pub fn has_outside_effect(&self) -> bool {
        !WITHOUT_OUTSIDE_EFFECT.contains(&self.name)
    }
}

pub fn find(name: &str) -> Option<&'static ActionDef> {
    REGISTRY.iter().find(|d| d.name == name)
}

fn schema_of<A: Action>() -> schemars::Schema {
    schemars::schema_for!(A::Args)
}

fn run_erased<'c, 'a, A: Action>(
    ctx: &'c mut ActionContext<'a>,
    args: Value,
) -> BoxFuture<'c, ActionResult> {
    Box::pin(async move {
        let args: A::Args = serde_path_to_error::deserialize(&args).map_err(|e| {
            let path = convert_path(e.path());
            let msg = e.inner().to_string();
            let schema = serde_json::to_value(schema_of::<A>()).unwrap_or_default();
            let described = super::argerr::describe(&schema, &args, &path, &msg);
            ActionError::permanent(anyhow::anyhow!(if path.is_empty() {
                format!("invalid arguments: {described}")
            } else {
                format!("invalid argument {described}")
            }))
        })?;
        A::run(ctx, args).await
    })
}

/// [`check_args`] with serde's messages rewritten in playbook words.
fn check_args_described<A: Action>(args: &Value) -> Vec<ArgProblem> {
    let mut problems = check_args::<A::Args>(args);
    if problems.is_empty() {
        return problems;
    }
    let schema = serde_json::to_value(schema_of::<A>()).unwrap_or_default();
    for p in &mut problems {
        // Only serde's type messages are rewritten; the others (a custom
        // message, `missing field`) already say what is wrong.
        if p.message.starts_with("invalid type: ")
            || p.message.contains("did not match any variant")
        {
            p.message = super::argerr::describe(&schema, args, &p.path, &p.message);
        }
    }
    problems
}

/// Values tried in place of a template when checking argument types: a
/// template can render to any of them, so it is accepted if one fits.
fn placeholders() -> [Value; 6] {
    [
        Value::from(1),
        Value::from("x"),
        Value::Bool(true),
        Value::from(1.5),
        Value::Array(vec![]),
        Value::Object(Default::default()),
    ]
}

fn convert_path(path: &serde_path_to_error::Path) -> Vec<PathSeg> {
    path.iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(PathSeg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

fn slot_mut<'v>(value: &'v mut Value, path: &[PathSeg]) -> Option<&'v mut Value> {
    let mut cur = value;
    for seg in path {
        cur = match seg {
            PathSeg::Key(k) => cur.as_object_mut()?.get_mut(k)?,
            PathSeg::Index(i) => cur.as_array_mut()?.get_mut(*i)?,
        };
    }
    Some(cur)
}

fn try_de<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), (Vec<PathSeg>, String)> {
    serde_path_to_error::deserialize::<_, T>(v.clone())
        .map(|_| ())
        .map_err(|e| (convert_path(e.path()), e.inner().to_string()))
}

/// Checks arguments against the typed struct, accepting templates wherever
/// they could render to the expected type, and continuing past unknown fields
/// so that several problems are reported at once.
pub fn check_args<T: serde::de::DeserializeOwned>(args: &Value) -> Vec<ArgProblem> {
    let mut v = args.clone();
    let mut problems = Vec::new();
    for _ in 0..64 {
        let (path, message) = match try_de::<T>(&v) {
            Ok(()) => return problems,
            Err(e) => e,
        };
        // `unknown field `x`, expected ...`: point at the key and drop it.
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some(field) = rest.split('`').next()
        {
            let field = field.to_string();
            let mut at = path.clone();
            at.push(PathSeg::Key(field.clone()));
            problems.push(ArgProblem {
                path: at,
                message: message.replace(", expected", "; expected"),
            });
            if let Some(obj) = slot_mut(&mut v, &path).and_then(Value::as_object_mut)
                && obj.remove(&field).is_some()
            {
                continue;
            }
            return problems;
        }
        let is_template = slot_mut(&mut v, &path)
            .and_then(|s| s.as_str().map(template::is_template))
            .unwrap_or(false);
        let mut fixed = false;
        for candidate in placeholders() {
            let mut trial = v.clone();
            if let Some(slot) = slot_mut(&mut trial, &path) {
                *slot = candidate;
            } else {
                break;
            }
            let moved_on = match try_de::<T>(&trial) {
                Ok(()) => true,
                Err((p, _)) => p != path,
            };
            if moved_on {
                v = trial;
                fixed = true;
                break;
            }
        }
        if !is_template {
            problems.push(ArgProblem {
                path: path.clone(),
                message: message.clone(),
            });
        }
        if !fixed {
            if is_template {
                // No placeholder fits, e.g. a template where a fixed word is expected.
                problems.push(ArgProblem {
                    path,
                    message: format!("{message} (a template cannot be used here)"),
                });
            }
            return problems;
        }
    }
    problems
}

/// The registry seen as a catalog by the playbook loader.
pub struct Registry;

impl ActionCatalog for Registry {
    fn names(&self) -> Vec<&'static str> {
        REGISTRY.iter().map(|d| d.name).collect()
    }

    fn exists(&self, name: &str) -> bool {
        find(name).is_some()
    }

    fn shorthand(&self, name: &str) -> Option<&'static str> {
        find(name).and_then(|d| d.shorthand)
    }

    fn check_args(&self, name: &str, args: &Value) -> Vec<ArgProblem> {
        match find(name) {
            Some(d) => (d.check)(args),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = REGISTRY.iter().map(|d| d.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    /// Every action's example parses and validates (the Vector rule).
    #[test]
    fn every_example_validates() {
        for def in REGISTRY {
            let doc = format!(
                "name: example\ninputs:\n  source: {{ type: string, default: x }}\nsteps:\n{}",
                def.example
                    .lines()
                    .map(|l| format!("  {l}\n"))
                    .collect::<String>()
            );
            let result =
                crate::playbook::load_str(&doc, std::path::Path::new("example.yaml"), &Registry);
            if let Err(d) = result {
                panic!(
                    "example of `{}` does not validate:\n{d}\n---\n{doc}",
                    def.name
                );
            }
            let schema = (def.schema)();
            assert!(schema.as_object().is_some(), "{} schema", def.name);
        }
    }

    #[test]
    fn templates_are_accepted_for_typed_fields() {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct A {
            n: u32,
            list: Vec<String>,
            flag: bool,
        }
        let ok = serde_json::json!({"n": "{{ x }}", "list": "{{ y }}", "flag": "{{ z }}"});
        assert!(check_args::<A>(&ok).is_empty());
        let bad = serde_json::json!({"n": "seven", "list": [], "flag": true, "extra": 1});
        let problems = check_args::<A>(&bad);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
