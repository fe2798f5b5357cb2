//! Versioned hash formats of the audit chain. Every stored event records the
//! format its hash was computed with (`audit_events.hash_format`), so a new
//! format never re-chains old events: verify hashes each event by its own
//! format.
//!
//! - **1** (clerk 0.1, every event written before migration 0005):
//!   `hex(SHA-256(prev_hash ‖ canonical(content)))`, clerk's own canonical
//!   JSON; see [`super::chain`].
//! - **2** (current): `hex(SHA-256(JCS(content)))` where JCS is RFC 8785 (JSON
//!   Canonicalization Scheme) and `content` is the object of ALL stored fields
//!   except `hash`: `hash_format` (2), `id`, `run_id`, `seq`, `at`, `actor`,
//!   `kind`, `step`, `step_name`, `action`, `target`, `detail`, `outcome`,
//!   `duration_ms`, `error`, `item_key`, `prev_hash` — absent values as `null`,
//!   `at` as stored (`2025-01-31T02:30:00.000000Z`), `detail` as a JSON value.
//!   A field added later is simply one more (nullable) key of the object in a
//!   new format number. docs/audit.md and docs/verify_export.py re-derive it
//!   with nothing but a standard library.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The format new events are written with.
pub const CURRENT: i64 = 2;

/// The stored fields of one event, borrowed, whatever it was read from (an
/// [`super::AuditEvent`], a database row, a line of an export).
#[derive(Serialize, Clone, Copy, Debug)]
pub struct Fields<'a> {
    pub hash_format: i64,
    pub id: i64,
    pub run_id: Option<&'a str>,
    pub seq: i64,
    pub at: &'a str,
    pub actor: &'a str,
    pub kind: &'a str,
    pub step: Option<&'a str>,
    pub step_name: Option<&'a str>,
    pub action: Option<&'a str>,
    pub target: Option<&'a str>,
    pub detail: &'a Value,
    pub outcome: Option<&'a str>,
    pub duration_ms: Option<i64>,
    pub error: Option<&'a str>,
    /// The work item's key (null outside an item).
    pub item_key: Option<&'a str>,
    pub prev_hash: &'a str,
}

/// RFC 8785 canonical JSON of any serialisable value.
pub fn jcs<T: Serialize>(v: &T) -> Result<String, String> {
    serde_json_canonicalizer::to_string(v).map_err(|e| format!("cannot canonicalise: {e}"))
}

/// The hash of an event by its own format; an error names a format this
/// clerk does not know or content that cannot be canonicalised.
pub fn hash(f: &Fields<'_>) -> Result<String, String> {
    match f.hash_format {
        1 => {
            let content = super::chain::content_value(
                f.id,
                f.run_id,
                f.seq,
                f.at,
                f.actor,
                f.kind,
                [f.step, f.step_name, f.action, f.target],
                f.detail,
                f.outcome,
                f.duration_ms,
                f.error,
            );
            // Events of a work item written before format 2 carry their key
            // in the hashed content (only when set: older events hash as
            // they always did).
            let content = super::chain::with_item_key(content, f.item_key);
            Ok(super::chain::event_hash(f.prev_hash, &content))
        }
        2 => {
            let text = jcs(f)?;
            Ok(hex::encode(Sha256::digest(text.as_bytes())))
        }
        n => Err(format!(
            "hash_format {n} is unknown to this clerk (it knows 1 and 2)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(detail: &Value) -> Fields<'_> {
        Fields {
            hash_format: 2,
            id: 1,
            run_id: None,
            seq: 0,
            at: "2025-01-31T02:30:00.000000Z",
            actor: "ana",
            kind: "admin.pause",
            step: None,
            step_name: None,
            action: None,
            target: Some("bot-a"),
            detail,
            outcome: Some("ok"),
            duration_ms: None,
            error: None,
            item_key: None,
            prev_hash: super::super::GENESIS_HASH,
        }
    }

    #[test]
    fn v2_is_sha256_of_rfc8785() {
        let detail = json!({"é": "\u{1f600}\n", "b": 1.0, "a": [1e21, 0.000001, -0.0, 1e-7]});
        let f = fields(&detail);
        let text = jcs(&f).unwrap();
        // Keys sorted, numbers in ECMAScript form, non-ASCII kept as UTF-8,
        // control characters escaped.
        assert!(text.starts_with(
            r#"{"action":null,"actor":"ana","at":"2025-01-31T02:30:00.000000Z","detail":{"a":[1e+21,0.000001,0,1e-7],"b":1,"é":"😀\n"},"duration_ms":null,"error":null,"hash_format":2,"id":1,"item_key":null,"kind":"admin.pause","outcome":"ok","prev_hash":"0000"#
        ), "{text}");
        assert_eq!(
            hash(&f).unwrap(),
            hex::encode(Sha256::digest(text.as_bytes()))
        );
    }

    #[test]
    fn unknown_format_is_an_error() {
        let detail = json!({});
        let mut f = fields(&detail);
        f.hash_format = 7;
        assert!(hash(&f).unwrap_err().contains("hash_format 7"));
    }
}
