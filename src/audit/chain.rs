//! The hash chain: canonical JSON and SHA-256.
//!
//! `hash = hex(SHA-256(prev_hash ‖ canonical_json(content)))` where `prev_hash`
//! is the previous event's hash as its 64-character lowercase hex string (64
//! zeros for the first event) and `content` is the object
//! `{id, run_id, seq, at, actor, kind, step, step_name, action, target, detail,
//! outcome, duration_ms, error}` (absent values as `null`, `at` as
//! `2025-01-31T02:30:00.000000Z`). Canonical JSON = object keys sorted
//! (byte order) at every depth, no whitespace, serde_json's escaping and
//! number formatting. Anyone can re-derive the chain from an export with these
//! rules.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::event::AuditEvent;

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hashed content of a stored event (everything except the hashes).
pub fn hashed_content(e: &AuditEvent) -> Value {
    content_value(
        e.id,
        e.run_id.as_deref(),
        e.seq,
        &crate::store::time::format_ts(&e.at),
        &e.actor,
        &e.kind,
        [
            e.step.as_deref(),
            e.step_name.as_deref(),
            e.action.as_deref(),
            e.target.as_deref(),
        ],
        &e.detail,
        e.outcome.as_deref(),
        e.duration_ms,
        e.error.as_deref(),
    )
}

/// Builds the hashed content object from raw field values (`at` already in
/// its stored string form). Used by [`hashed_content`] and by verify, which
/// hashes exactly what is in the table.
#[allow(clippy::too_many_arguments)]
pub(crate) fn content_value(
    id: i64,
    run_id: Option<&str>,
    seq: i64,
    at: &str,
    actor: &str,
    kind: &str,
    [step, step_name, action, target]: [Option<&str>; 4],
    detail: &Value,
    outcome: Option<&str>,
    duration_ms: Option<i64>,
    error: Option<&str>,
) -> Value {
    let s = |v: Option<&str>| v.map_or(Value::Null, |v| Value::String(v.to_string()));
    let mut m = Map::new();
    m.insert("id".into(), Value::from(id));
    m.insert("run_id".into(), s(run_id));
    m.insert("seq".into(), Value::from(seq));
    m.insert("at".into(), Value::String(at.to_string()));
    m.insert("actor".into(), Value::String(actor.to_string()));
    m.insert("kind".into(), Value::String(kind.to_string()));
    m.insert("step".into(), s(step));
    m.insert("step_name".into(), s(step_name));
    m.insert("action".into(), s(action));
    m.insert("target".into(), s(target));
    m.insert("detail".into(), detail.clone());
    m.insert("outcome".into(), s(outcome));
    m.insert(
        "duration_ms".into(),
        duration_ms.map_or(Value::Null, Value::from),
    );
    m.insert("error".into(), s(error));
    Value::Object(m)
}

/// Canonical JSON: keys sorted at every depth, no whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `hex(SHA-256(prev_hash ‖ canonical_json(content)))`.
pub fn event_hash(prev_hash: &str, content: &Value) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical_json(content).as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_recursively() {
        let v = json!({"b": 1, "a": {"d": [3, {"z": null, "y": "x\"y"}], "c": 1.5}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":1.5,"d":[3,{"y":"x\"y","z":null}]},"b":1}"#
        );
    }

    #[test]
    fn hash_is_sha256_of_prev_and_content() {
        let v = json!({"b": 2, "a": 1});
        let mut h = Sha256::new();
        h.update(format!("{GENESIS_HASH}{{\"a\":1,\"b\":2}}").as_bytes());
        assert_eq!(event_hash(GENESIS_HASH, &v), hex::encode(h.finalize()));
        assert_eq!(GENESIS_HASH.len(), 64);
    }
}
