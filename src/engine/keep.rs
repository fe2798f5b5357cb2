//! What a run keeps of its values: the final variables (`runs.vars`), the
//! outputs of work items and `once` steps (the ledger, for resume), and item
//! outputs in audit events hold what is needed to resume and report — never
//! every row of every sheet read.
//!
//! A value whose compact JSON text is over [`MAX_KEPT_VALUE`] bytes is kept
//! as an *omitted-value marker*: `{ omitted: true, bytes, sha256, step,
//! action }` — its size, the SHA-256 of its JSON text and the step that made
//! it. The variables of a run together stay under [`MAX_KEPT_VARS`]: when
//! small values add up past it, the biggest are omitted too. Hashing streams
//! the value through SHA-256 without building its text, so a 100,000-row
//! sheet costs one pass and no memory.
//!
//! Resume does not read `runs.vars` (a resumed run runs its steps again); it
//! restores ledger outputs. An omitted output of a `once` read step
//! (`sheet.read`, `file.read`, `file.list`, `file.exists`) is re-derived by
//! running the read again; any other omitted output a resume would need
//! fails the step with a message saying so (see `ledger`).

use std::io::Write;

use minijinja::value::Value as MValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::template;

/// Largest value kept as is (bytes of compact JSON text): 16 KiB.
pub const MAX_KEPT_VALUE: usize = 16 * 1024;

/// Budget for all the variables of a run together (`runs.vars`): 48 KiB, so
/// that a `runs` row stays well under 64 KB.
pub const MAX_KEPT_VARS: usize = 48 * 1024;

/// Actions whose result can be made again by running the step again: they
/// only read local files and change nothing.
pub const REDERIVABLE: &[&str] = &["sheet.read", "file.read", "file.list", "file.exists"];

/// The step a value came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The stable step id (`1`, `2.read-requests`, or the step's `id:`).
    pub step: String,
    pub action: Option<String>,
}

/// Size and SHA-256 of a value's compact JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measure {
    pub bytes: usize,
    pub sha256: String,
}

struct HashWriter {
    hash: Sha256,
    bytes: usize,
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hash.update(buf);
        self.bytes += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams the value's JSON text through SHA-256 (no text is built).
pub fn measure(value: &MValue) -> Measure {
    let mut w = std::io::BufWriter::with_capacity(
        64 * 1024,
        HashWriter {
            hash: Sha256::new(),
            bytes: 0,
        },
    );
    // A value that cannot be serialised is measured as far as it got.
    let _ = serde_json::to_writer(&mut w, value);
    // The hash writer never fails, so the flush empties the buffer.
    let _ = w.flush();
    let (inner, _) = w.into_parts();
    Measure {
        bytes: inner.bytes,
        sha256: hex::encode(inner.hash.finalize()),
    }
}

/// The marker kept in place of a big value.
pub fn marker(m: &Measure, origin: Option<&Origin>) -> Value {
    json!({
        "omitted": true,
        "bytes": m.bytes,
        "sha256": m.sha256,
        "step": origin.map(|o| o.step.as_str()),
        "action": origin.and_then(|o| o.action.as_deref()),
    })
}

/// The measure inside a marker, if `v` is one.
pub fn omitted(v: &Value) -> Option<Measure> {
    let m = v.as_object()?;
    if m.get("omitted") != Some(&Value::Bool(true)) {
        return None;
    }
    Some(Measure {
        bytes: m.get("bytes")?.as_u64()? as usize,
        sha256: m.get("sha256")?.as_str()?.to_string(),
    })
}

/// A value as kept: its JSON when small, else a marker. Small values are
/// measured with a writer that stops counting at the limit (cheap); only big
/// ones are hashed whole.
pub fn kept(value: &MValue, origin: Option<&Origin>) -> Value {
    if fits(value, MAX_KEPT_VALUE) {
        template::to_json(value)
    } else {
        marker(&measure(value), origin)
    }
}

/// Whether the value's JSON text is at most `limit` bytes (stops early).
fn fits(value: &MValue, limit: usize) -> bool {
    struct Capped {
        left: usize,
    }
    impl Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if buf.len() > self.left {
                return Err(std::io::Error::other("over the limit"));
            }
            self.left -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Capped { left: limit }, value).is_ok()
}

/// Applies the run budget to kept variables: while their JSON text adds up
/// to more than [`MAX_KEPT_VARS`], the biggest one left is omitted.
/// `sources` gives a variable's value and origin (to hash it).
pub fn within_budget<'a>(
    vars: &mut serde_json::Map<String, Value>,
    source: impl Fn(&str) -> Option<(&'a MValue, Option<&'a Origin>)>,
) {
    let size = |v: &Value| serde_json::to_vec(v).map_or(0, |b| b.len());
    let mut sizes: Vec<(String, usize)> = vars
        .iter()
        .filter(|(_, v)| omitted(v).is_none())
        .map(|(k, v)| (k.clone(), size(v)))
        .collect();
    let mut total: usize = vars.iter().map(|(k, v)| k.len() + size(v)).sum();
    sizes.sort_by_key(|(_, s)| std::cmp::Reverse(*s));
    for (name, bytes) in sizes {
        if total <= MAX_KEPT_VARS {
            break;
        }
        let Some(slot) = vars.get_mut(&name) else {
            continue;
        };
        let m = match source(&name) {
            Some((v, origin)) => marker(&measure(v), origin),
            None => kept_json_forced(slot),
        };
        total = total.saturating_sub(bytes) + size(&m);
        *slot = m;
    }
}

fn kept_json_forced(v: &Value) -> Value {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    marker(
        &Measure {
            bytes: bytes.len(),
            sha256: hex::encode(Sha256::digest(&bytes)),
        },
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_kept_big_ones_become_markers() {
        let small = template::to_value(&json!({"a": [1, 2, 3]}));
        assert_eq!(kept(&small, None), json!({"a": [1, 2, 3]}));
        let big: Vec<String> = (0..5000).map(|i| format!("row {i}")).collect();
        let big_json = json!(big);
        let big = template::to_value(&big_json);
        let origin = Origin {
            step: "1".into(),
            action: Some("sheet.read".into()),
        };
        let m = kept(&big, Some(&origin));
        let text = serde_json::to_vec(&big_json).unwrap();
        assert_eq!(m["omitted"], true);
        assert_eq!(m["bytes"], text.len());
        assert_eq!(m["sha256"], hex::encode(Sha256::digest(&text)));
        assert_eq!(m["step"], "1");
        assert_eq!(m["action"], "sheet.read");
        assert_eq!(omitted(&m).unwrap().bytes, text.len());
        assert!(omitted(&json!({"omitted": true})).is_none());
    }

    #[test]
    fn the_budget_omits_the_biggest_first() {
        let a = template::to_value(&json!("a".repeat(15_000)));
        let b = template::to_value(&json!("b".repeat(14_000)));
        let c = template::to_value(&json!("c".repeat(13_000)));
        let d = template::to_value(&json!("d".repeat(12_000)));
        let all = [("a", &a), ("b", &b), ("c", &c), ("d", &d)];
        let mut vars: serde_json::Map<String, Value> = all
            .iter()
            .map(|(k, v)| (k.to_string(), kept(v, None)))
            .collect();
        within_budget(&mut vars, |name| {
            all.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v, None))
        });
        assert!(omitted(&vars["a"]).is_some());
        assert!(omitted(&vars["b"]).is_none());
        assert!(serde_json::to_vec(&vars).unwrap().len() <= MAX_KEPT_VARS);
    }
}
