//! Turning what the user or a bot gives (`--input k=v`, a bot's `inputs:`)
//! into the typed `inputs` a playbook declares.

use serde_json::{Map, Value};

use crate::playbook::Playbook;

/// A value given for an input.
#[derive(Debug, Clone)]
pub enum GivenInput {
    /// From the command line: coerced to the declared type.
    Text(String),
    /// From a bot file or JSON: must already have the declared type.
    Json(Value),
}

/// Checks the given inputs against the declaration and fills in defaults.
/// Every problem is reported, one per line.
pub fn resolve_inputs(
    playbook: &Playbook,
    given: &[(String, GivenInput)],
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut problems = Vec::new();
    for (name, value) in given {
        let Some(def) = playbook.inputs.iter().find(|d| &d.name == name) else {
            let declared: Vec<&str> = playbook.inputs.iter().map(|d| d.name.as_str()).collect();
            problems.push(if declared.is_empty() {
                format!("unknown input `{name}`: the playbook declares no inputs")
            } else {
                format!(
                    "unknown input `{name}` (the playbook declares: {})",
                    declared.join(", ")
                )
            });
            continue;
        };
        let typed = match value {
            GivenInput::Text(t) => def.kind.coerce(t),
            GivenInput::Json(v) if def.kind.accepts(v) => Ok(v.clone()),
            GivenInput::Json(Value::String(s)) => def.kind.coerce(s),
            GivenInput::Json(v) => Err(format!("{v} is not a {}", def.kind.name())),
        };
        match typed {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(e) => problems.push(format!("input `{name}`: {e}")),
        }
    }
    for def in &playbook.inputs {
        if out.contains_key(&def.name) {
            continue;
        }
        match &def.default {
            Some(v) if !v.is_null() => {
                out.insert(def.name.clone(), v.clone());
            }
            _ if def.required => problems.push(format!(
                "input `{}` is required: pass --input {}=...",
                def.name, def.name
            )),
            _ => {
                out.insert(def.name.clone(), Value::Null);
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("\n"))
    }
}
