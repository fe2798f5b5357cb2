//! Argument errors in playbook words.
//!
//! serde says `invalid type: string "ten", expected u64` or `data did not match
//! any variant of untagged enum Attachments`; an author needs "`max_rows` must
//! be a whole number, got \"ten\"". This module rewrites those messages using
//! the action's JSON Schema (what the argument accepts) and the value given.

use serde_json::Value;

use crate::playbook::yaml::PathSeg;

/// The argument's name as an author writes it: `max_rows`, `attachments[1].path`.
pub fn arg_name(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Rewrites a serde message about the argument at `path` of `args`; messages
/// it does not recognise keep their text, prefixed with the argument's name.
pub fn describe(schema: &Value, args: &Value, path: &[PathSeg], message: &str) -> String {
    let name = arg_name(path);
    let given = value_at(args, path);
    let got = given.map(shown_value).or_else(|| got_from_message(message));
    let expected = if message.contains("did not match any variant") {
        node_at(schema, path).map(|n| expected_from_schema(schema, n, 0))
    } else if let Some(rest) = message.strip_prefix("invalid type: ") {
        rest.split_once(", expected ")
            .map(|(_, e)| expected_from_serde(e))
            .or_else(|| node_at(schema, path).map(|n| expected_from_schema(schema, n, 0)))
    } else {
        None
    };
    match (expected, name.is_empty()) {
        (Some(exp), false) if !exp.is_empty() => match got {
            Some(g) => format!("`{name}` must be {exp}, got {g}"),
            None => format!("`{name}` must be {exp}"),
        },
        (Some(exp), true) if !exp.is_empty() => match got {
            Some(g) => format!("the arguments must be {exp}, got {g}"),
            None => format!("the arguments must be {exp}"),
        },
        _ if name.is_empty() || message.contains(&format!("`{name}`")) => message.to_string(),
        _ => format!("`{name}`: {message}"),
    }
}

fn value_at<'v>(v: &'v Value, path: &[PathSeg]) -> Option<&'v Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            PathSeg::Key(k) => cur.as_object()?.get(k)?,
            PathSeg::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

/// How a given value is shown back to the author.
fn shown_value(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let short: String = s.chars().take(40).collect();
            let more = if s.chars().count() > 40 { "…" } else { "" };
            format!("{:?}", format!("{short}{more}"))
        }
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
        Value::Null => "nothing (null)".into(),
    }
}

fn got_from_message(message: &str) -> Option<String> {
    let rest = message.strip_prefix("invalid type: ")?;
    let (got, _) = rest.split_once(", expected ")?;
    Some(if let Some(s) = got.strip_prefix("string ") {
        s.to_string()
    } else if got.starts_with("sequence") {
        "a list".into()
    } else if got.starts_with("map") {
        "a map".into()
    } else if got == "null" || got == "unit value" {
        "nothing (null)".into()
    } else {
        got.split('`').nth(1).unwrap_or(got).to_string()
    })
}

/// serde's `expected ...` in playbook words.
fn expected_from_serde(e: &str) -> String {
    let e = e.trim();
    let ints = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
    ];
    if ints.contains(&e) || e.contains("integer") {
        "a whole number".into()
    } else if e == "f32" || e == "f64" || e.contains("floating point") {
        "a number".into()
    } else if e == "a boolean" {
        "true or false".into()
    } else if e == "a string" || e == "a borrowed string" || e == "a character" {
        "text".into()
    } else if e == "a sequence" || e.starts_with("a tuple") {
        "a list".into()
    } else if e == "a map" || e.starts_with("struct ") {
        "a map".into()
    } else {
        e.to_string()
    }
}

/// The schema node of the argument at `path`.
fn node_at<'s>(root: &'s Value, path: &[PathSeg]) -> Option<&'s Value> {
    let mut cur = resolve(root, root);
    for seg in path {
        cur = match seg {
            PathSeg::Key(k) => find_property(root, cur, k, 0)?,
            PathSeg::Index(_) => resolve(root, cur.get("items")?),
        };
    }
    Some(cur)
}

fn find_property<'s>(root: &'s Value, node: &'s Value, key: &str, depth: u8) -> Option<&'s Value> {
    if depth > 8 {
        return None;
    }
    let node = resolve(root, node);
    if let Some(p) = node.get("properties").and_then(|p| p.get(key)) {
        return Some(resolve(root, p));
    }
    for combo in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = node.get(combo).and_then(Value::as_array) {
            for branch in list {
                if let Some(p) = find_property(root, branch, key, depth + 1) {
                    return Some(p);
                }
            }
        }
    }
    None
}

fn resolve<'s>(root: &'s Value, node: &'s Value) -> &'s Value {
    let mut cur = node;
    for _ in 0..8 {
        let Some(r) = cur.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let Some(name) = r.strip_prefix("#/$defs/") else {
            break;
        };
        match root.get("$defs").and_then(|d| d.get(name)) {
            Some(n) => cur = n,
            None => break,
        }
    }
    cur
}

/// What a schema node accepts, e.g. "text or a list of text".
fn expected_from_schema(root: &Value, node: &Value, depth: u8) -> String {
    let node = resolve(root, node);
    let mut words: Vec<String> = Vec::new();
    fn add(words: &mut Vec<String>, w: String) {
        if !w.is_empty() && !words.contains(&w) {
            words.push(w);
        }
    }
    if depth < 3 {
        for combo in ["anyOf", "oneOf"] {
            if let Some(list) = node.get(combo).and_then(Value::as_array) {
                for b in list {
                    for w in expected_from_schema(root, b, depth + 1).split(" or ") {
                        add(&mut words, w.to_string());
                    }
                }
            }
        }
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for t in types {
        let w = match t {
            "string" => "text".to_string(),
            "integer" => "a whole number".to_string(),
            "number" => "a number".to_string(),
            "boolean" => "true or false".to_string(),
            "object" => "a map".to_string(),
            "array" => match node.get("items") {
                Some(items) if depth < 3 => {
                    let inner = expected_from_schema(root, items, depth + 1);
                    if inner.is_empty() || inner.contains(" or ") {
                        "a list".to_string()
                    } else {
                        format!("a list of {}", plural(&inner))
                    }
                }
                _ => "a list".to_string(),
            },
            _ => continue,
        };
        add(&mut words, w);
    }
    if words.is_empty()
        && let Some(list) = node.get("enum").and_then(Value::as_array)
    {
        {
            let names: Vec<String> = list
                .iter()
                .filter_map(Value::as_str)
                .map(|s| format!("`{s}`"))
                .collect();
            add(&mut words, format!("one of {}", names.join(", ")));
        }
    }
    words.join(" or ")
}

fn plural(word: &str) -> String {
    match word {
        "text" => "text".into(),
        "a whole number" => "whole numbers".into(),
        "a number" => "numbers".into(),
        "a map" => "maps".into(),
        "a list" => "lists".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_errors_name_the_argument_in_playbook_words() {
        let schema = json!({"properties": {"max_rows": {"type": ["integer", "null"]}}});
        let args = json!({"max_rows": "ten"});
        let msg = describe(
            &schema,
            &args,
            &[PathSeg::Key("max_rows".into())],
            "invalid type: string \"ten\", expected u64",
        );
        assert_eq!(msg, "`max_rows` must be a whole number, got \"ten\"");
    }

    #[test]
    fn untagged_enums_are_described_from_the_schema() {
        let schema = json!({
            "properties": {"attachments": {"$ref": "#/$defs/A"}},
            "$defs": {"A": {"anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}}
            ]}}
        });
        let args = json!({"attachments": 5});
        let msg = describe(
            &schema,
            &args,
            &[PathSeg::Key("attachments".into())],
            "data did not match any variant of untagged enum Attachments",
        );
        assert_eq!(msg, "`attachments` must be text or a list of text, got 5");
    }
}
