//! Checks of YAML nodes shared by the playbook and bot loaders: unknown keys
//! with a did-you-mean, strings, durations. Each reports to a [`Diagnostics`]
//! at the node's `path:line:col` and returns `None` (or nothing) on a problem,
//! so a loader goes on and reports every problem of a file at once.

use std::path::Path;
use std::time::Duration;

use super::diag::Diagnostics;
use super::duration::parse_duration;
use super::yaml::{Node, Value};

/// The closest candidate, if it is close enough to be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Reports each key of the map `node` that is not in `allowed`.
pub fn unknown_keys(
    diags: &mut Diagnostics,
    path: &Path,
    node: &Node,
    allowed: &[&str],
    what: &str,
) {
    if let Some(map) = node.as_map() {
        for (k, _) in map {
            let key = k.key_text();
            if !allowed.contains(&key.as_str()) {
                let hint = suggest(&key, allowed.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                diags.push(path, k.pos, format!("unknown key `{key}` in {what}{hint}"));
            }
        }
    }
}

/// The node's text, or a problem if it is not a string.
pub fn string(diags: &mut Diagnostics, path: &Path, node: &Node, what: &str) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        _ => {
            diags.push(
                path,
                node.pos,
                format!("`{what}` must be a string, found {}", node.kind_name()),
            );
            None
        }
    }
}

/// The node as a duration (`500ms`, `2s`, `1h`); `example` shows the form in
/// the message when it is not one.
pub fn duration(
    diags: &mut Diagnostics,
    path: &Path,
    node: &Node,
    what: &str,
    example: &str,
) -> Option<Duration> {
    let text = match &node.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        _ => {
            diags.push(
                path,
                node.pos,
                format!(
                    "`{what}` must be a duration like {example}, found {}",
                    node.kind_name()
                ),
            );
            return None;
        }
    };
    match parse_duration(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.push(path, node.pos, format!("`{what}`: {e}"));
            None
        }
    }
}
