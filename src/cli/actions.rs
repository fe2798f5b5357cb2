//! `clerk actions` and `clerk schema`: documentation generated from the registry.

use clap::Args;
use serde_json::{Value, json};

use super::{code, output};
use crate::actions::REGISTRY;

#[derive(Debug, Args)]
pub struct ActionsArgs {
    /// Only this action, with its full schema and example.
    pub name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn args_of(schema: &Value) -> Vec<(String, String, bool, String)> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            let ty = p
                .get("type")
                .map(|t| match t {
                    Value::String(s) => s.clone(),
                    Value::Array(a) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("|"),
                    _ => "any".into(),
                })
                .or_else(|| {
                    p.get("$ref")
                        .and_then(Value::as_str)
                        .map(|r| r.rsplit('/').next().unwrap_or(r).to_string())
                })
                .unwrap_or_else(|| "any".into());
            let desc = p
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .replace('\n', " ");
            out.push((name.clone(), ty, required.contains(&name.as_str()), desc));
        }
    }
    out
}

pub fn list(a: ActionsArgs) -> anyhow::Result<u8> {
    let defs: Vec<_> = REGISTRY
        .iter()
        .filter(|d| a.name.as_deref().is_none_or(|n| n == d.name))
        .collect();
    if defs.is_empty() {
        anyhow::bail!(
            "no action named `{}` (see `clerk actions`)",
            a.name.unwrap_or_default()
        );
    }
    if a.json {
        let list: Vec<Value> = defs
            .iter()
            .map(|d| {
                json!({
                    "name": d.name,
                    "summary": d.summary,
                    "shorthand": d.shorthand,
                    "result": d.result,
                    "example": d.example,
                    "schema": serde_json::to_value((d.schema)()).unwrap_or(Value::Null),
                })
            })
            .collect();
        output::out_json(&Value::Array(list));
        return Ok(code::OK);
    }
    let mut text = String::new();
    for d in defs {
        let schema = serde_json::to_value((d.schema)()).unwrap_or(Value::Null);
        text.push_str(&format!("{}\n  {}\n", d.name, d.summary));
        for (name, ty, required, desc) in args_of(&schema) {
            let req = if required { " (required)" } else { "" };
            let short = if d.shorthand == Some(name.as_str()) {
                " [shorthand]"
            } else {
                ""
            };
            text.push_str(&format!("    {name}: {ty}{req}{short}  {desc}\n"));
        }
        text.push_str(&format!("  returns: {}\n", d.result));
        if a.name.is_some() {
            text.push_str("  example:\n");
            for l in d.example.lines() {
                text.push_str(&format!("    {l}\n"));
            }
        }
        text.push('\n');
    }
    output::out(text.trim_end());
    Ok(code::OK)
}

/// A JSON Schema for playbook files, for editors (yaml-language-server).
pub fn schema() -> anyhow::Result<u8> {
    let common = json!({
        "name": { "type": "string" },
        "if": { "type": ["string", "boolean"] },
        "for_each": { "type": ["string", "array"] },
        "as": { "type": "string" },
        "checkpoint": { "type": "string" },
        "retry": { "type": ["object", "integer"], "properties": {
            "attempts": { "type": "integer", "minimum": 1 },
            "delay": { "type": ["string", "number"] },
            "backoff": { "type": "number" },
            "max_delay": { "type": ["string", "number"] } } },
        "timeout": { "type": ["string", "number"] },
        "on_error": { "anyOf": [ { "enum": ["fail", "continue"] }, { "type": "array", "items": { "$ref": "#/$defs/step" } } ] },
        "save_as": { "type": "string" },
        "output": {},
        "sensitive": { "type": "boolean" },
        "id": { "type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_.-]{0,63}$" },
        "once": { "type": "boolean" },
        "verify": { "anyOf": [
            { "type": "array", "items": { "$ref": "#/$defs/step" } },
            { "type": "object", "properties": {
                "steps": { "type": "array", "items": { "$ref": "#/$defs/step" } },
                "output": {} } } ] },
    });
    let mut variants = vec![json!({
        "type": "object",
        "required": ["steps"],
        "properties": { "steps": { "type": "array", "items": { "$ref": "#/$defs/step" } } },
    })];
    let mut defs = serde_json::Map::new();
    for d in REGISTRY {
        let mut s = serde_json::to_value((d.schema)()).unwrap_or(Value::Null);
        if let Some(obj) = s.as_object_mut() {
            if let Some(Value::Object(inner)) = obj.remove("$defs") {
                for (k, v) in inner {
                    defs.insert(k, v);
                }
            }
            obj.remove("$schema");
        }
        let args = match d.shorthand {
            Some(_) => json!({ "anyOf": [ s, { "type": ["string", "number", "boolean"] } ] }),
            None => s,
        };
        variants.push(json!({
            "type": "object",
            "required": [d.name],
            "properties": { d.name: args },
            "description": d.summary,
        }));
    }
    let mut step = json!({ "type": "object", "properties": common, "anyOf": variants });
    if let Some(props) = step["properties"].as_object_mut() {
        for d in REGISTRY {
            props.entry(d.name.to_string()).or_insert(json!({}));
        }
        props.insert(
            "steps".into(),
            json!({ "type": "array", "items": { "$ref": "#/$defs/step" } }),
        );
    }
    defs.insert("step".into(), step);
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "clerk playbook",
        "type": "object",
        "required": ["name", "steps"],
        "additionalProperties": false,
        "properties": {
            "name": { "type": "string" },
            "description": { "type": "string" },
            "inputs": { "type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "type": { "enum": ["string", "number", "bool", "path", "list", "map"] },
                    "default": {}, "required": { "type": "boolean" }, "description": { "type": "string" } } } },
            "steps": { "type": "array", "items": { "$ref": "#/$defs/step" } },
        },
        "$defs": defs,
    });
    output::out_json(&schema);
    Ok(code::OK)
}
