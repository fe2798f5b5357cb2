//! `include:` — steps shared between playbooks without copying them.
//!
//! A step list may hold
//!
//! ```yaml
//! - include: { playbook: parking-permits.yaml, steps: [sign-in, enter-requests] }
//! ```
//!
//! which is replaced, before anything else is checked, by those top-level
//! steps (by `id`) of the other playbook, in the order listed. The path is
//! relative to the including playbook's folder. The other playbook must load
//! cleanly on its own (its problems are reported with its own path); the
//! spliced steps are then checked as part of the including playbook — they
//! may use its inputs and the names its steps define — and any problem found
//! in them points at the `include:` line. Step ids stay the included ones,
//! so the including playbook must not reuse them; resume digests cover the
//! included steps' content, so a change to them is seen like any other.
//!
//! There is no call at run time: the including playbook runs the steps as
//! its own (same run, same lineage, same work-item ledger).

use std::path::{Path, PathBuf};

use super::load::ActionCatalog;
use super::yaml::{self, Node, Pos, Value};
use super::{Diagnostics, load_file};

const INCLUDE_KEYS: &[&str] = &["playbook", "steps"];
/// Includes may include, this deep at most (and never in a cycle).
const MAX_DEPTH: usize = 8;

thread_local! {
    /// The playbook files being loaded on this thread, outermost first: an
    /// include of one of them is a cycle.
    static LOADING: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Marks a file as being loaded until dropped.
pub(crate) struct Loading;

impl Loading {
    pub(crate) fn enter(path: &Path) -> Loading {
        let p = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        LOADING.with(|l| l.borrow_mut().push(p));
        Loading
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        LOADING.with(|l| {
            l.borrow_mut().pop();
        });
    }
}

fn cycle_or_too_deep(p: &Path) -> bool {
    LOADING.with(|l| {
        let l = l.borrow();
        l.iter().any(|x| x == p) || l.len() >= MAX_DEPTH
    })
}

/// Replaces every `include:` step in `root` (at any depth) by the steps it
/// names. `path` is the including file (being loaded: see [`Loading`]).
pub(crate) fn expand(
    root: &mut Node,
    path: &Path,
    catalog: &dyn ActionCatalog,
    diags: &mut Diagnostics,
) {
    match &mut root.value {
        Value::Map(entries) => {
            for (_, v) in entries.iter_mut() {
                expand(v, path, catalog, diags);
            }
        }
        Value::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for mut item in std::mem::take(items) {
                if is_include(&item) {
                    out.extend(splice(&item, path, catalog, diags));
                } else {
                    expand(&mut item, path, catalog, diags);
                    out.push(item);
                }
            }
            *items = out;
        }
        _ => {}
    }
}

fn is_include(node: &Node) -> bool {
    node.as_map()
        .is_some_and(|m| m.len() == 1 && m[0].0.as_str() == Some("include"))
}

/// The steps one `include:` names, re-positioned at the include.
fn splice(
    item: &Node,
    path: &Path,
    catalog: &dyn ActionCatalog,
    diags: &mut Diagnostics,
) -> Vec<Node> {
    let Some(spec) = item.get("include") else {
        return Vec::new();
    };
    let at = spec.pos;
    if spec.as_map().is_none() {
        diags.push(
            path,
            at,
            format!(
                "`include` must be a map like {{ playbook: other.yaml, steps: [step-id] }}, found {}",
                spec.kind_name()
            ),
        );
        return Vec::new();
    }
    super::checks::unknown_keys(diags, path, spec, INCLUDE_KEYS, "`include`");
    let Some(file) = spec.get("playbook").and_then(Node::as_str) else {
        diags.push(
            path,
            at,
            "`include` needs `playbook: FILE` (relative to this playbook)",
        );
        return Vec::new();
    };
    let wanted: Vec<(String, Pos)> = match spec.get("steps").and_then(Node::as_seq) {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|n| n.as_str().map(|s| (s.to_string(), n.pos)))
            .collect(),
        _ => {
            diags.push(
                path,
                at,
                "`include` needs `steps: [step-id, ...]`: the ids of the other playbook's top-level steps to run here",
            );
            return Vec::new();
        }
    };
    let target = path.parent().unwrap_or(Path::new(".")).join(file);
    let canonical = target.canonicalize().unwrap_or_else(|_| target.clone());
    if cycle_or_too_deep(&canonical) {
        diags.push(
            path,
            at,
            format!(
                "`include` of {} would include itself (or nests more than {MAX_DEPTH} deep)",
                target.display()
            ),
        );
        return Vec::new();
    }
    // A missing or unreadable file is a problem of the `include` line.
    let text = match std::fs::read_to_string(&target) {
        Ok(t) => t,
        Err(e) => {
            diags.push(path, at, format!("cannot read {}: {e}", target.display()));
            return Vec::new();
        }
    };
    // The other playbook must be sound on its own.
    if let Err(d) = load_file(&target, catalog) {
        diags.push(
            path,
            at,
            format!(
                "the included playbook {} has problems (below)",
                target.display()
            ),
        );
        diags.0.extend(d.0);
        return Vec::new();
    }
    let mut other = match yaml::parse(&text) {
        Ok(r) => r,
        Err(e) => {
            diags.push(&target, e.pos, format!("invalid YAML: {}", e.message));
            return Vec::new();
        }
    };
    {
        let _loading = Loading::enter(&target);
        expand(&mut other, &target, catalog, diags);
    }
    let steps = other
        .get("steps")
        .and_then(Node::as_seq)
        .unwrap_or_default();
    let mut out = Vec::new();
    for (id, pos) in wanted {
        match steps
            .iter()
            .find(|s| s.get("id").and_then(Node::as_str) == Some(id.as_str()))
        {
            Some(step) => {
                let mut step = step.clone();
                reposition(&mut step, at);
                out.push(step);
            }
            None => {
                let known: Vec<&str> = steps
                    .iter()
                    .filter_map(|s| s.get("id").and_then(Node::as_str))
                    .collect();
                diags.push(
                    path,
                    pos,
                    format!(
                        "{} has no top-level step with id `{id}` (its ids: {})",
                        target.display(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
    }
    out
}

/// Problems found later in spliced steps point at the `include:`.
fn reposition(node: &mut Node, at: Pos) {
    node.pos = at;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| reposition(n, at)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            reposition(k, at);
            reposition(v, at);
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::actions::Registry;
    use crate::playbook::{StepBody, load_file};

    const SHARED: &str = "name: shared\ninputs:\n  who: { type: string, default: x }\nsteps:\n  - id: greet\n    log: \"hello {{ inputs.who }}\"\n  - id: count\n    set: { n: 1 }\n  - id: other\n    log: not included\n";

    #[test]
    fn includes_named_steps_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shared.yaml"), SHARED).unwrap();
        let main = dir.path().join("main.yaml");
        std::fs::write(
            &main,
            "name: main\ninputs:\n  who: { type: string, default: y }\nsteps:\n  - log: first\n  - steps:\n      - include: { playbook: shared.yaml, steps: [count, greet] }\n  - log: \"{{ n }}\"\n",
        )
        .unwrap();
        let pb = load_file(&main, &Registry).unwrap();
        let StepBody::Block(inner) = &pb.steps[1].body else {
            panic!("a block")
        };
        let ids: Vec<&str> = inner.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["count", "greet"]);
    }

    #[test]
    fn problems_name_the_include_or_the_other_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shared.yaml"), SHARED).unwrap();
        let main = dir.path().join("main.yaml");
        // Unknown id: listed with the ids there are; an input the including
        // playbook lacks: reported at the include line.
        std::fs::write(
            &main,
            "name: main\nsteps:\n  - include: { playbook: shared.yaml, steps: [greet, nope] }\n",
        )
        .unwrap();
        let d = load_file(&main, &Registry).unwrap_err().to_string();
        assert!(
            d.contains("has no top-level step with id `nope` (its ids: greet, count, other)"),
            "{d}"
        );
        assert!(d.contains("main.yaml:3:14"), "{d}");
        assert!(d.contains("who"), "the undeclared input is reported: {d}");
        // A broken included playbook is reported with its own path.
        std::fs::write(
            dir.path().join("broken.yaml"),
            "name: broken\nsteps:\n  - id: a\n    lgo: x\n",
        )
        .unwrap();
        std::fs::write(
            &main,
            "name: main\nsteps:\n  - include: { playbook: broken.yaml, steps: [a] }\n",
        )
        .unwrap();
        let d = load_file(&main, &Registry).unwrap_err().to_string();
        assert!(d.contains("broken.yaml:4:5: unknown"), "{d}");
        // Itself: refused.
        std::fs::write(
            &main,
            "name: main\nsteps:\n  - id: a\n    log: x\n  - include: { playbook: main.yaml, steps: [a] }\n",
        )
        .unwrap();
        let d = load_file(&main, &Registry).unwrap_err().to_string();
        assert!(d.contains("would include itself"), "{d}");
    }
}
