//! The hash chain: canonical JSON and SHA-256.
//!
//! `hash = hex(SHA-256(prev_hash ‖ canonical_json(content)))` where `prev_hash`
//! is the previous event's hash as its 64-character lowercase hex string (64
//! zeros for the first event) and `content` is the object
//! `{id, run_id, seq, at, actor, kind, step, step_name, action, target, detail,
//! outcome, duration_ms, error}` plus `item_key` only when the event has one
//! (absent values as `null`, `at` as
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
    let content = content_value(
        e.id,
        e.run_id.as_deref(),
        e.seq,
        &super::time::format_ts(&e.at),
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
    );
    with_item_key(content, e.item_key.as_deref())
}

/// Adds `item_key` to the hashed content when the event has one (events
/// without an item — all events written before work items existed — hash
/// exactly as before).
pub(crate) fn with_item_key(mut content: Value, item_key: Option<&str>) -> Value {
    if let (Some(key), Value::Object(m)) = (item_key, &mut content) {
        m.insert("item_key".into(), Value::String(key.to_string()));
    }
    content
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

    fn sample(item_key: Option<&str>) -> AuditEvent {
        AuditEvent {
            id: 1,
            run_id: Some("01RUN".into()),
            seq: 1,
            at: crate::store::time::parse_ts("2025-01-31T02:30:00.000000Z").unwrap(),
            actor: "alice".into(),
            kind: "action".into(),
            step: Some("2".into()),
            step_name: None,
            action: Some("log".into()),
            target: None,
            detail: json!({"args": "hi"}),
            outcome: Some("ok".into()),
            duration_ms: Some(3),
            error: None,
            item_key: item_key.map(str::to_string),
            hash_format: 1,
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn an_event_without_item_key_hashes_as_before_the_column_existed() {
        // The content object exactly as it was hashed before item_key existed.
        let old_content = json!({
            "id": 1, "run_id": "01RUN", "seq": 1, "at": "2025-01-31T02:30:00.000000Z",
            "actor": "alice", "kind": "action", "step": "2", "step_name": null,
            "action": "log", "target": null, "detail": {"args": "hi"}, "outcome": "ok",
            "duration_ms": 3, "error": null
        });
        let old_hash = event_hash(GENESIS_HASH, &old_content);
        assert_eq!(sample(None).compute_hash(), old_hash);
        // With an item key the key is part of the content, so the hash differs
        // and editing the key breaks the chain.
        let keyed = sample(Some("PR-1")).compute_hash();
        assert_ne!(keyed, old_hash);
        assert_ne!(keyed, sample(Some("PR-2")).compute_hash());
        let mut with_key = old_content.clone();
        with_key["item_key"] = json!("PR-1");
        assert_eq!(keyed, event_hash(GENESIS_HASH, &with_key));
    }
}
