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
        2 => Ok(hex::encode(Sha256::digest(v2_text(f)?.as_bytes()))),
        n => Err(format!(
            "hash_format {n} is unknown to this clerk (it knows 1 and 2)"
        )),
    }
}

/// JCS of the format-2 content, fast path: the top-level keys are fixed, so
/// they are written in their sorted order here and `detail` by
/// [`write_jcs`]. Strings and integers up to 2^53: serde_json's
/// output is exactly RFC 8785's (same escapes, no exponent). The tests
/// check that this equals `jcs(f)`.
fn v2_text(f: &Fields<'_>) -> Result<String, String> {
    fn s(out: &mut String, v: Option<&str>) {
        match v {
            Some(v) => write_str(out, v),
            None => out.push_str("null"),
        }
    }
    // RFC 8785 numbers are IEEE doubles: beyond 2^53 the canonicaliser's
    // rounding applies (clerk's ids, seqs and durations never get there).
    fn n(out: &mut String, v: Option<i64>) {
        match v {
            Some(v) if v.unsigned_abs() <= 1 << 53 => out.push_str(&v.to_string()),
            Some(v) => out.push_str(&jcs(&v).unwrap_or_default()),
            None => out.push_str("null"),
        }
    }
    let mut out = String::with_capacity(1024);
    out.push_str("{\"action\":");
    s(&mut out, f.action);
    out.push_str(",\"actor\":");
    s(&mut out, Some(f.actor));
    out.push_str(",\"at\":");
    s(&mut out, Some(f.at));
    out.push_str(",\"detail\":");
    write_jcs(&mut out, f.detail)?;
    out.push_str(",\"duration_ms\":");
    n(&mut out, f.duration_ms);
    out.push_str(",\"error\":");
    s(&mut out, f.error);
    out.push_str(",\"hash_format\":");
    n(&mut out, Some(f.hash_format));
    out.push_str(",\"id\":");
    n(&mut out, Some(f.id));
    out.push_str(",\"item_key\":");
    s(&mut out, f.item_key);
    out.push_str(",\"kind\":");
    s(&mut out, Some(f.kind));
    out.push_str(",\"outcome\":");
    s(&mut out, f.outcome);
    out.push_str(",\"prev_hash\":");
    s(&mut out, Some(f.prev_hash));
    out.push_str(",\"run_id\":");
    s(&mut out, f.run_id);
    out.push_str(",\"seq\":");
    n(&mut out, Some(f.seq));
    out.push_str(",\"step\":");
    s(&mut out, f.step);
    out.push_str(",\"step_name\":");
    s(&mut out, f.step_name);
    out.push_str(",\"target\":");
    s(&mut out, f.target);
    out.push('}');
    Ok(out)
}

/// RFC 8785 of a JSON value, written straight into `out`: what the
/// canonicaliser crate gives, without its per-key buffers and re-parsing
/// (verify hashes 100,000 details; this is most of its CPU time). Strings:
/// ECMAScript escapes (`\b \t \n \f \r \" \\`, other controls as
/// `\u00xx`), everything else as is; integers up to 2^53 as they are; other
/// numbers through the canonicaliser; object keys sorted by UTF-16 code
/// units. The tests check it against the crate.
pub fn write_jcs(out: &mut String, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) if i.unsigned_abs() <= 1 << 53 => {
                out.push_str(&i.to_string());
            }
            (_, Some(u)) if u <= 1 << 53 => out.push_str(&u.to_string()),
            _ => out.push_str(&jcs(n)?),
        },
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_jcs(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_jcs(out, v)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Orders keys as RFC 8785 does: by UTF-16 code units (differs from byte
/// order only when characters above U+FFFF meet U+E000..U+FFFF).
fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
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
    fn fast_path_equals_the_canonicaliser() {
        let detail = json!({"z": [1, 2.5, "\u{7f}\u{1}\u{2028}</x>"], "A": {"b": null, "a": true}, "ключ": -0.0});
        let mut f = fields(&detail);
        assert_eq!(v2_text(&f).unwrap(), jcs(&f).unwrap());
        f.run_id = Some("01RUN\"quoted\"\n");
        f.step = Some("3/item[2]/1");
        f.step_name = Some("Zoë 😀\t");
        f.action = Some("browser.fill");
        f.duration_ms = Some(-12);
        f.error = Some("\\ back\u{8}slash");
        f.item_key = Some("P-1");
        f.seq = 9_007_199_254_740_993;
        f.id = i64::MAX;
        assert_eq!(v2_text(&f).unwrap(), jcs(&f).unwrap());
    }

    #[test]
    fn direct_writer_equals_the_canonicaliser() {
        let values = [
            json!({"\u{e000}": 1, "\u{1f600}": 2, "a": 3, "B": 4, "é": 5, "": 6}),
            json!([
                null,
                true,
                false,
                0,
                -0.0,
                1e21,
                1e-7,
                0.1,
                123456789012345678i64,
                -9007199254740993i64,
                u64::MAX
            ]),
            json!({"s": "\u{0}\u{1f}\u{7f}\u{2028}\"\\/\u{8}\u{c}\n\r\t é 😀", "n": {"z": [], "y": {}}}),
            json!({"artifacts": [{"path": ".clerk/artifacts/x/step-1.png", "sha256": "ab", "size": 20480}], "run_state": {"status": "running", "error": null}}),
        ];
        for v in values {
            let mut out = String::new();
            write_jcs(&mut out, &v).unwrap();
            assert_eq!(out, jcs(&v).unwrap(), "{v}");
        }
    }

    #[test]
    fn unknown_format_is_an_error() {
        let detail = json!({});
        let mut f = fields(&detail);
        f.hash_format = 7;
        assert!(hash(&f).unwrap_err().contains("hash_format 7"));
    }
}
