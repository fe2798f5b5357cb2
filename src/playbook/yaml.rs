//! A YAML tree that remembers where every node came from.
//!
//! serde_yaml reports the position of a syntax error but forgets positions once
//! a document is parsed. Authors need `path:line:col` for *every* problem
//! (an unknown action, a wrong argument type, a bad template), so playbooks and
//! bots are first loaded into this small tree of positioned nodes, checked, and
//! only then turned into `serde_json::Value`s for typed deserialisation.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }
}

/// One YAML value and the position it starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their order and their own positions.
    Map(Vec<(Node, Node)>),
}

/// A document that is not well-formed YAML.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Aliases can expand exponentially ("billion laughs"); a playbook never needs
/// anywhere near this many nodes.
const MAX_NODES: usize = 1_000_000;

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// Looks up a map entry by its (string) key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key as text, for map keys that are scalars.
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".into(),
            Value::Seq(_) | Value::Map(_) => "<complex key>".into(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Follows a path of map keys / list indices (as produced by
    /// serde_path_to_error) and returns the deepest node that exists.
    pub fn locate<'a>(&'a self, path: &[PathSeg]) -> &'a Node {
        let mut node = self;
        for seg in path {
            let next = match seg {
                PathSeg::Key(k) => node.get(k),
                PathSeg::Index(i) => node.as_seq().and_then(|s| s.get(*i)),
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Parses one YAML document into a positioned tree. An empty document is `Null`.
pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        pos: Pos::from(*e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Null,
        pos: Pos { line: 1, col: 1 },
    }))
}

enum Frame {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Pos, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if self.error.is_some() {
            return;
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            self.error = Some(SyntaxError {
                pos: node.pos,
                message: format!(
                    "document too large (more than {MAX_NODES} values after expanding aliases)"
                ),
            });
            return;
        }
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, pending_key, _, _)) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(text, style, tag.as_ref().map(|t| t.suffix.as_str()));
                self.push_node(Node { value, pos }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), pos, anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(Vec::new(), None, pos, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, start, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(items, p, a)) => (Value::Seq(items), p, a),
                    Some(Frame::Map(entries, _, p, a)) => {
                        // A block map's start event is reported after its first
                        // key; the first key is where a reader looks.
                        let p = entries.first().map_or(p, |(k, _)| {
                            if k.pos.line == p.line && k.pos.col < p.col {
                                k.pos
                            } else {
                                p
                            }
                        });
                        (Value::Map(entries), p, a)
                    }
                    None => return,
                };
                self.push_node(Node { value, pos: start }, anchor);
            }
            Event::Alias(id) => {
                if self.error.is_some() {
                    return;
                }
                let size = self.anchors.get(&id).map(count_nodes).unwrap_or(1);
                if self.nodes + size > MAX_NODES {
                    self.error = Some(SyntaxError {
                        pos,
                        message: format!(
                            "document too large (more than {MAX_NODES} values after expanding aliases)"
                        ),
                    });
                    return;
                }
                self.nodes += size.saturating_sub(1);
                let node = match self.anchors.get(&id) {
                    Some(n) => Node {
                        value: n.value.clone(),
                        pos,
                    },
                    None => Node {
                        value: Value::Null,
                        pos,
                    },
                };
                self.push_node(node, 0);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// YAML 1.2 core schema for plain scalars; quoted scalars are always strings.
fn resolve_scalar(text: String, style: TScalarStyle, tag: Option<&str>) -> Value {
    match tag {
        Some("str") => return Value::Str(text),
        Some("int") => {
            return text.parse().map(Value::Int).unwrap_or(Value::Str(text));
        }
        Some("float") => {
            return text.parse().map(Value::Float).unwrap_or(Value::Str(text));
        }
        _ => {}
    }
    if style != TScalarStyle::Plain {
        return Value::Str(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Int(i);
    }
    let looks_numeric = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
    if looks_numeric {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        if text
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
            && let Ok(f) = text.parse::<f64>()
        {
            return Value::Float(f);
        }
    }
    Value::Str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let doc = parse("name: x\nsteps:\n  - log: hi\n").unwrap();
        let steps = doc.get("steps").unwrap();
        let first = &steps.as_seq().unwrap()[0];
        assert_eq!(first.get("log").unwrap().pos, Pos { line: 3, col: 10 });
        assert_eq!(doc.get("name").unwrap().pos, Pos { line: 1, col: 7 });
    }

    #[test]
    fn scalars_resolve_like_yaml_1_2() {
        let doc = parse("a: 1\nb: '1'\nc: true\nd: 2.5\ne: ~\nf: 2s\n").unwrap();
        assert_eq!(doc.get("a").unwrap().value, Value::Int(1));
        assert_eq!(doc.get("b").unwrap().value, Value::Str("1".into()));
        assert_eq!(doc.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(doc.get("d").unwrap().value, Value::Float(2.5));
        assert_eq!(doc.get("e").unwrap().value, Value::Null);
        assert_eq!(doc.get("f").unwrap().value, Value::Str("2s".into()));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1);
        assert!(!err.message.is_empty());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut doc = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            doc.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        assert!(parse(&doc).is_err());
    }
}
