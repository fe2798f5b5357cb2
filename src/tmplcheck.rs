//! Checks the filter, test and method names a template uses against what the
//! template engine has, so `clerk validate` reports `| combine` or
//! `.startswith(...)` at `path:line:col` instead of the run failing later.
//!
//! The names are found by a small scanner over the `{{ }}` / `{% %}` parts
//! (string literals skipped); whether a name exists is asked of the engine
//! itself by rendering a probe, so the check follows the engine's version.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use minijinja::ErrorKind;

/// Filter names offered as suggestions (kept only if the engine has them).
const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "count",
    "d",
    "date",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "chain",
    "zip",
];
const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "escaped",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];
const METHODS: &[&str] = &["items", "keys", "values", "get"];

/// Python-isms authors bring along, with the Jinja way to write them.
fn python_hint(method: &str) -> Option<&'static str> {
    Some(match method {
        "startswith" => "write `x is startingwith('a')`",
        "endswith" => "write `x is endingwith('a')`",
        "upper" => "use the filter `x | upper`",
        "lower" => "use the filter `x | lower`",
        "strip" => "use the filter `x | trim`",
        "split" => "use the filter `x | split(',')`",
        "join" => "use the filter `list | join(',')`",
        "replace" => "use the filter `x | replace('a', 'b')`",
        "format" => "use the filter `'%s' | format(x)`",
        "title" => "use the filter `x | title`",
        "capitalize" => "use the filter `x | capitalize`",
        "items" => "use the filter `map | items`",
        "keys" => "use `map | list` (the keys) or `map | items`",
        "values" => "use `map | items | map(attribute=1) | list`",
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Filter,
    Test,
    Method,
}

fn known(kind: Kind, name: &str) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<(Kind, String), bool>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(c) = cache.lock()
        && let Some(k) = c.get(&(kind, name.to_string()))
    {
        return *k;
    }
    let result = probe(kind, name);
    if let Ok(mut c) = cache.lock() {
        c.insert((kind, name.to_string()), result);
    }
    result
}

/// Asks the engine: rendering the name on a few values either fails with
/// "unknown filter/test/method" or not (a wrong argument still means it exists).
fn probe(kind: Kind, name: &str) -> bool {
    let receivers = ["none", "'x'", "[1]", "{'a': 1}", "1"];
    let unknown = match kind {
        Kind::Filter => ErrorKind::UnknownFilter,
        Kind::Test => ErrorKind::UnknownTest,
        Kind::Method => ErrorKind::UnknownMethod,
    };
    receivers.iter().any(|r| {
        let expr = match kind {
            Kind::Filter => format!("{r} | {name}"),
            Kind::Test => format!("{r} is {name}"),
            Kind::Method => format!("({r}).{name}()"),
        };
        match crate::template::eval(&expr, &minijinja::Value::UNDEFINED) {
            Ok(_) => true,
            Err(_) => match crate::template::raw_eval_error_kind(&expr) {
                Some(k) => k != unknown,
                None => true,
            },
        }
    })
}

/// The code parts of a template (inside `{{ }}` and `{% %}`), strings blanked.
fn code_parts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let open = match (rest.find("{{"), rest.find("{%")) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let close_tok = if rest[open..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        let body = &rest[open + 2..];
        let Some(end) = body.find(close_tok) else {
            break;
        };
        out.push(blank_strings(&body[..end]));
        rest = &body[end + 2..];
    }
    out
}

fn blank_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in code.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                    continue;
                }
                out.push(' ');
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// (kind, name) of every filter, test and method call in `code`.
fn names(code: &str) -> Vec<(Kind, String)> {
    let chars: Vec<char> = code.chars().collect();
    let ident_at = |mut i: usize| -> (String, usize) {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        (chars[start..i].iter().collect(), i)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '|' {
            let (name, _) = ident_at(i + 1);
            if !name.is_empty() {
                out.push((Kind::Filter, name));
            }
        } else if c == '.' {
            let prev_digit = i > 0 && chars[i - 1].is_ascii_digit();
            let (name, after) = ident_at(i + 1);
            let mut j = after;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if !prev_digit && !name.is_empty() && chars.get(j) == Some(&'(') {
                out.push((Kind::Method, name));
            }
        } else if c.is_alphabetic() || c == '_' {
            let boundary = i == 0
                || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == '.');
            let (word, after) = ident_at(i);
            if boundary && word == "is" {
                let (mut name, after2) = ident_at(after);
                if name == "not" {
                    name = ident_at(after2).0;
                }
                if !name.is_empty() {
                    out.push((Kind::Test, name));
                }
            }
            i = after.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

/// One problem per unknown filter, test or method, with a suggestion.
pub fn unknown_names(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for part in code_parts(text) {
        for (kind, name) in names(&part) {
            if known(kind, &name) {
                continue;
            }
            let (what, candidates) = match kind {
                Kind::Filter => ("filter", FILTERS),
                Kind::Test => ("test", TESTS),
                Kind::Method => ("method", METHODS),
            };
            let hint = match kind {
                Kind::Method => python_hint(&name).map(|h| format!(" ({h})")),
                _ => None,
            }
            .or_else(|| {
                crate::playbook::checks::suggest(
                    &name,
                    candidates.iter().copied().filter(|c| known(kind, c)),
                )
                .map(|s| format!(" (did you mean `{s}`?)"))
            })
            .unwrap_or_default();
            let shown = match kind {
                Kind::Filter => format!("| {name}"),
                Kind::Test => format!("is {name}"),
                Kind::Method => format!(".{name}()"),
            };
            let msg = format!("unknown {what} `{shown}`{hint}");
            if !problems.contains(&msg) {
                problems.push(msg);
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_filters_tests_and_methods_are_named() {
        let p = unknown_names("{{ rows | combine }}");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("unknown filter `| combine`"), "{p:?}");
        let p = unknown_names("{{ name.startswith('a') }}");
        assert_eq!(
            p,
            vec!["unknown method `.startswith()` (write `x is startingwith('a')`)".to_string()]
        );
        let p = unknown_names("{{ rows | lenght }}");
        assert_eq!(
            p,
            vec!["unknown filter `| lenght` (did you mean `length`?)".to_string()]
        );
        let p = unknown_names("{% if x is defnied %}y{% endif %}");
        assert_eq!(
            p,
            vec!["unknown test `is defnied` (did you mean `defined`?)".to_string()]
        );
        // Known names, and look-alikes inside strings, pass.
        assert!(unknown_names("{{ rows | length }} {{ x is defined }} {{ d | items }} {{ '| nope .x()' }} {{ 1.5 | round }} {{ now() | date('%Y') }}").is_empty());
    }
}
